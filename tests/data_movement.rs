//! The Parla data-movement story: exact coherence states and exact bytes moved.

mod common;

use common::gpu_runtime;
use hetflow::{Coherence, MemorySpace, Placement};

const ADD_ONE_F32: &str = include_str!("../shaders/add_one_f32.wgsl");

#[test]
fn read_then_read_write_then_read_on_gpu() {
    if gpu_runtime().is_none() {
        return;
    }
    // Own runtime so the transfer counters are this test's alone (the device is shared).
    let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
    let story = common::parla::spawn(&rt).unwrap();
    story.last.wait().unwrap();
    assert_eq!(*story.seen.lock().unwrap(), common::parla::STATES);
    let a = story.array;
    use Coherence::*;
    assert_eq!(a.to_vec().unwrap(), vec![2.0; 5]);
    assert_eq!(a.states().get(MemorySpace::Host), Shared);
    let s = rt.stats();
    let up = s.link(MemorySpace::Host, MemorySpace::Gpu(0));
    let down = s.link(MemorySpace::Gpu(0), MemorySpace::Host);
    assert_eq!((up.moves, up.bytes), (1, 20), "one upload of A's 20 bytes");
    assert_eq!(
        (down.moves, down.bytes),
        (1, 20),
        "one download of A's 20 bytes"
    );
    assert!(a.overview().contains("At GPU 0: state: SHARED"));
}

#[test]
fn read_only_array_used_by_100_gpu_tasks_moves_once() {
    if gpu_runtime().is_none() {
        return;
    }
    let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
    let k = rt
        .kernel(
            "@group(0) @binding(0) var<storage, read> src: array<f32>;
             @group(0) @binding(1) var<storage, read_write> dst: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                 if id.x < arrayLength(&dst) { dst[id.x] = dst[id.x] + src[id.x]; }
             }",
            "main",
        )
        .unwrap();
    let src = rt.array_from(vec![0.5f32; 1000]);
    let outs: Vec<_> = (0..100).map(|_| rt.array::<f32>(1000)).collect();
    for out in &outs {
        let (k, s, o) = (k.clone(), src.clone(), out.clone());
        rt.task("use-src")
            .reads(&src)
            .writes(out)
            .on(Placement::Gpu(0))
            .gpu(move |cx| cx.dispatch_dyn(&k, &[&s, &o], k.groups_for(1000)))
            .spawn();
    }
    rt.wait_idle();
    let up = rt.stats().link(MemorySpace::Host, MemorySpace::Gpu(0));
    // `src` is uploaded once; the outputs are written on the GPU (nothing to upload).
    assert_eq!((up.moves, up.bytes), (1, 4000));
    assert_eq!(outs[99].to_vec().unwrap(), vec![0.5; 1000]);
}

#[test]
fn every_upload_path_moves_large_arrays_correctly() {
    use hetflow::data::UploadPath;
    if gpu_runtime().is_none() {
        return;
    }
    let n = 5 << 20; // 20 MiB of f32: above write_buffer's slow size and the staging threshold
    let host: Vec<f32> = (0..n).map(|i| (i % 4093) as f32).collect();
    for path in [
        UploadPath::Auto,
        UploadPath::WriteBuffer,
        UploadPath::Staging,
        UploadPath::Mapped,
    ] {
        let rt = hetflow::Runtime::builder()
            .cpu_workers(2)
            .upload_path(path)
            .build()
            .unwrap();
        let k = rt.kernel(ADD_ONE_F32, "main").unwrap();
        let a = rt.array_from(host.clone());
        // Twice, so the second upload reuses a recycled staging buffer.
        for round in 1..=2 {
            let (k2, a2) = (k.clone(), a.clone());
            rt.task("add-one")
                .read_write(&a)
                .on(Placement::Gpu(0))
                .gpu(move |cx| cx.dispatch_dyn(&k2, &[&a2], [(n / 64 / 64) as u32, 64, 1]))
                .spawn();
            let a3 = a.clone();
            // Back to the host and modified there, so the next round uploads again.
            rt.task("host-touch")
                .read_write(&a)
                .on(Placement::Cpu)
                .cpu(move |cx| cx.write(&a3)[0] += 0.0)
                .spawn();
            let v = a.to_vec().unwrap();
            for i in [0usize, 1, 4093, n / 2, n - 1] {
                assert_eq!(
                    v[i],
                    host[i] + round as f32,
                    "{path:?} round {round} element {i}"
                );
            }
        }
        let up = rt.stats().link(MemorySpace::Host, MemorySpace::Gpu(0));
        assert_eq!(up.moves, 2, "{path:?}");
    }
}

#[test]
fn inputs_are_prefetched_while_the_task_waits() {
    if gpu_runtime().is_none() {
        return;
    }
    let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
    let copy = rt
        .kernel(include_str!("../shaders/copy_f32.wgsl"), "main")
        .unwrap();
    let n = 1 << 18;
    let x = rt.array_named("x", vec![3.0f32; n]);
    let y = rt.array::<f32>(n);
    let slow = rt
        .task("slow")
        .on(Placement::Cpu)
        .cpu(|_| std::thread::sleep(std::time::Duration::from_millis(300)))
        .spawn();
    let (k, x2, y2) = (copy.clone(), x.clone(), y.clone());
    let t = rt
        .task("uses-x")
        .after(&slow)
        .reads(&x)
        .writes(&y)
        .on(Placement::Gpu(0))
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&x2, &y2], [(n / 64) as u32, 1, 1]))
        .spawn();
    // x is moved to the GPU while `slow` still runs: the move starts at placement.
    let start = std::time::Instant::now();
    while !x.states().get(MemorySpace::Gpu(0)).is_valid() {
        assert!(start.elapsed().as_millis() < 250, "x was not prefetched");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        !slow.is_done(),
        "prefetch must overlap the task being waited for"
    );
    t.wait().unwrap();
    assert_eq!(y.to_vec().unwrap()[n - 1], 3.0);
    let up = rt.stats().link(MemorySpace::Host, MemorySpace::Gpu(0));
    assert_eq!(
        (up.moves, up.bytes),
        (1, 4 * n as u64),
        "x moved once, ahead of time"
    );
}

#[test]
fn copy_and_clone_run_where_the_data_is() {
    if gpu_runtime().is_none() {
        return;
    }
    let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
    let k = rt.kernel(ADD_ONE_F32, "main").unwrap();
    let a = rt.array_from_slice(&[1.0f32, 2.0, 3.0, 4.0]);
    // Make `a` live on the GPU only.
    let (k2, a2) = (k.clone(), a.clone());
    rt.task("gpu-add")
        .read_write(&a)
        .on(Placement::Gpu(0))
        .gpu(move |cx| cx.dispatch_dyn(&k2, &[&a2], [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap();
    // The copy runs on the GPU (where `a` is valid): no move to the host for it.
    let b = rt.array::<f32>(4);
    let before = rt.stats();
    let h = rt.copy(&a, &b);
    let r = h.task_ref();
    h.wait().unwrap();
    assert_eq!(r.device(), Some(hetflow::DeviceId::Gpu(0)));
    assert_eq!(
        rt.stats().link(MemorySpace::Gpu(0), MemorySpace::Host),
        before.link(MemorySpace::Gpu(0), MemorySpace::Host)
    );
    assert_eq!(b.to_vec().unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
    // copy_on the CPU: the copy runs there, moving `a` down once.
    let d = rt.array::<f32>(4);
    let h = rt.copy_on(&a, &d, hetflow::DeviceId::Cpu);
    let r = h.task_ref();
    h.wait().unwrap();
    assert_eq!(r.device(), Some(hetflow::DeviceId::Cpu));
    assert_eq!(d.to_vec().unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
    let short = rt.array::<f32>(3);
    match rt.copy_on(&a, &short, hetflow::DeviceId::Gpu(0)).wait() {
        Err(hetflow::TaskError::TaskData {
            error:
                hetflow::DataError::LengthMismatch {
                    expected: 3,
                    got: 4,
                    ..
                },
            ..
        }) => {}
        other => panic!("expected a length mismatch, got {other:?}"),
    }
    // clone_to the CPU: a new array with the same contents, valid on the host.
    let c = rt.clone_to(&a, hetflow::DeviceId::Cpu);
    assert_eq!(c.to_vec().unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
    // clone_here inside a CPU body.
    let a3 = a.clone();
    let v = rt
        .task("clone-here")
        .reads(&a)
        .on(Placement::Cpu)
        .cpu(move |cx| cx.clone_here(&a3))
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(v.unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
    // Mismatched lengths are a typed error.
    let short = rt.array::<f32>(3);
    let err = rt.copy(&a, &short).wait().unwrap_err();
    assert!(
        err.to_string().contains("expected 3 elements, got 4"),
        "{err}"
    );
}

#[test]
fn array_beyond_the_storage_binding_limit_is_a_typed_error() {
    let Some(shared) = gpu_runtime() else { return };
    let limit = shared.topology().gpus[0].max_storage_binding;
    if limit > 512 << 20 {
        eprintln!("storage binding limit {limit} too large to test cheaply; skipped");
        return;
    }
    let rt = hetflow::Runtime::builder().cpu_workers(1).build().unwrap();
    let big = rt.array::<u32>((limit / 4) as usize + 4);
    let h = rt
        .task("too-big")
        .reads(&big)
        .on(Placement::Gpu(0))
        .gpu(|_| ())
        .spawn();
    match h.wait() {
        Err(hetflow::TaskError::TaskData {
            error: hetflow::DataError::TooLarge {
                bytes, limit: l, ..
            },
            ..
        }) => {
            assert_eq!((bytes, l), (limit + 16, limit));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The same array works on the CPU.
    let b2 = big.clone();
    let n = rt
        .task("cpu-ok")
        .reads(&big)
        .on(Placement::Cpu)
        .cpu(move |cx| cx.read(&b2).len())
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(n as u64, limit / 4 + 4);
}
