//! GPU tasks on whatever adapter exists (lavapipe in CI): kernels, batching, data movement.

mod common;

use common::{gpu_runtime, ADD_ONE, SAXPY};
use hetflow::{DeviceError, DeviceId, Placement, TaskError, Uniform};

#[test]
fn gpu_saxpy_equals_cpu_result() {
    let Some(rt) = gpu_runtime() else { return };
    let n = 100_003; // not a multiple of the workgroup size
    let xs: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5).collect();
    let ys: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
    let k = rt.kernel(SAXPY, "main").unwrap();
    let mut results = Vec::new();
    for place in [Placement::Gpu(0), Placement::Cpu] {
        let x = rt.array_from(xs.clone());
        let y = rt.array_from(ys.clone());
        let (xc, yc, xg, yg, k) = (x.clone(), y.clone(), x.clone(), y.clone(), k.clone());
        let h = rt
            .task("saxpy")
            .reads(&x)
            .read_write(&y)
            .on(place.clone())
            .cpu(move |cx| {
                let (x, y) = (cx.read(&xc), cx.write(&yc));
                y.iter_mut().zip(x).for_each(|(y, x)| *y += 2.0 * x);
            })
            .gpu(move |cx| {
                cx.dispatch_dyn(
                    &k,
                    &[&Uniform([2.0f32, 0.0, 0.0, 0.0]), &xg, &yg],
                    k.groups_for(n),
                )
            })
            .spawn();
        let expected = if place == Placement::Cpu {
            DeviceId::Cpu
        } else {
            DeviceId::Gpu(0)
        };
        let r = h.task_ref();
        h.wait().unwrap();
        assert_eq!(r.device(), Some(expected));
        results.push(y.to_vec().unwrap());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0][3], 2.0 * 1.5 + 3.0);
}

#[test]
fn wgsl_errors_are_err_with_compiler_message() {
    let Some(rt) = gpu_runtime() else { return };
    match rt.kernel(
        "@compute @workgroup_size(1) fn main() { let x = ; }",
        "main",
    ) {
        Err(DeviceError::Compile { message, .. }) => {
            assert!(message.contains("expected"), "{message}")
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    assert!(matches!(
        rt.kernel(ADD_ONE, "missing"),
        Err(DeviceError::EntryPointNotFound { .. })
    ));
    // The same source compiles once: the second call returns the cached pipeline.
    let a = rt.kernel(ADD_ONE, "main").unwrap();
    let b = rt.kernel(ADD_ONE, "main").unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &a.inner_for_tests(),
        &b.inner_for_tests()
    ));
}

#[test]
fn thousand_dependent_gpu_tasks_batch_into_few_submits() {
    if gpu_runtime().is_none() {
        return;
    }
    // A runtime of its own (the device is still the shared one) so that no other test's
    // submissions are counted.
    let rt = &hetflow::Runtime::builder().cpu_workers(1).build().unwrap();
    let k = rt.kernel(ADD_ONE, "main").unwrap();
    let a = rt.array_from(vec![0u32; 256]);
    let before = rt.stats().gpu_submits[0];
    let mut last = None;
    for _ in 0..1000 {
        let (k, a2) = (k.clone(), a.clone());
        last = Some(
            rt.task("inc")
                .read_write(&a)
                .on(Placement::Gpu(0))
                .gpu(move |cx| cx.dispatch_dyn(&k, &[&a2], k.groups_for(256)))
                .spawn(),
        );
    }
    last.unwrap().wait().unwrap();
    let submits = rt.stats().gpu_submits[0] - before;
    assert_eq!(a.to_vec().unwrap(), vec![1000u32; 256]);
    // Same-GPU dependents are released at encode time, so the chain shares submissions.
    assert!(submits < 100, "1000 dependent tasks took {submits} submits");
}

#[test]
fn data_moves_between_cpu_and_gpu_tasks() {
    let Some(rt) = gpu_runtime() else { return };
    let k = rt.kernel(ADD_ONE, "main").unwrap();
    let a = rt.array::<u32>(1000);
    for round in 0..5 {
        let a2 = a.clone();
        rt.task("cpu-add")
            .read_write(&a)
            .on(Placement::Cpu)
            .cpu(move |cx| cx.write(&a2).iter_mut().for_each(|v| *v += 10))
            .spawn();
        let (k, a3) = (k.clone(), a.clone());
        rt.task("gpu-add")
            .read_write(&a)
            .on(Placement::Gpu(0))
            .gpu(move |cx| cx.dispatch_dyn(&k, &[&a3], k.groups_for(1000)))
            .spawn();
        let v = a.to_vec().unwrap();
        assert_eq!(v, vec![11 * (round + 1); 1000]);
    }
}

#[test]
fn gpu_task_errors_are_typed_and_fail_dependents() {
    let Some(rt) = gpu_runtime() else { return };
    let k = rt.kernel(SAXPY, "main").unwrap();
    let y = rt.array_from(vec![1.0f32; 16]);
    let (k2, y2) = (k.clone(), y.clone());
    // Wrong number of arguments.
    let bad = rt
        .task("bad-args")
        .read_write(&y)
        .gpu(move |cx| cx.dispatch_dyn(&k2, &[&y2], [1, 1, 1]))
        .spawn();
    let dep = rt.task("after-bad").after(&bad).cpu(|_| 1).spawn();
    let err = bad.wait().unwrap_err();
    assert!(
        matches!(&err, TaskError::Gpu { message, .. } if message.contains("expects 3 argument")),
        "{err}"
    );
    assert!(
        matches!(dep.wait(), Err(TaskError::DependencyFailed { root, .. }) if root == "bad-args")
    );
    // Later users of `y` depend on the failed writer, so they fail too.
    let y2 = y.clone();
    let reader = rt
        .task("reads-y")
        .reads(&y)
        .cpu(move |cx| cx.read(&y2)[0])
        .spawn();
    assert!(
        matches!(reader.wait(), Err(TaskError::DependencyFailed { root, .. }) if root == "bad-args")
    );
    // An array bound without being declared.
    let y = rt.array_from(vec![1.0f32; 16]);
    let x = rt.array_from(vec![1.0f32; 16]);
    let (k3, x3, y3) = (k.clone(), x.clone(), y.clone());
    let undeclared = rt
        .task("undeclared")
        .read_write(&y)
        .gpu(move |cx| cx.dispatch_dyn(&k3, &[&Uniform([1.0f32; 4]), &x3, &y3], [1, 1, 1]))
        .spawn();
    let err = undeclared.wait().unwrap_err();
    assert!(err.to_string().contains("declare it"), "{err}");
    // A panic in a GPU body.
    let p = rt
        .task("gpu-panic")
        .gpu(|_| -> u8 { panic!("encode failed") })
        .spawn();
    assert!(matches!(p.wait(), Err(TaskError::Panicked { .. })));
    // Too many workgroups.
    let (x, y) = (
        rt.array_from(vec![1.0f32; 16]),
        rt.array_from(vec![1.0f32; 16]),
    );
    let (k4, x4, y4) = (k.clone(), x.clone(), y.clone());
    let huge = rt
        .task("huge")
        .reads(&x)
        .read_write(&y)
        .gpu(move |cx| cx.dispatch_dyn(&k4, &[&Uniform([1.0f32; 4]), &x4, &y4], [u32::MAX, 1, 1]))
        .spawn();
    assert!(huge.wait().unwrap_err().to_string().contains("exceed"));
    // The device keeps serving.
    assert_eq!(
        rt.task("fine")
            .gpu(|cx| cx.gpu_index())
            .spawn()
            .wait()
            .unwrap(),
        0
    );
}

#[test]
fn gpu_task_value_and_waiting_from_gpu_body_is_an_error() {
    let Some(rt) = gpu_runtime() else { return };
    let first = rt
        .task("first")
        .on(Placement::Cpu)
        .cpu(|_| 1)
        .spawn()
        .task_ref();
    first.wait().unwrap();
    let r = first.clone();
    let h = rt.task("waits").gpu(move |_| r.wait()).spawn();
    // first is already done, so waiting returns at once even on the driver.
    assert!(h.wait().unwrap().is_ok());
    // `slow` cannot finish before the GPU body has tried to wait for it: it waits for the
    // test to let it go (a condition, not a sleep, so a loaded machine cannot reorder them).
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let slow = rt
        .task("slow")
        .on(Placement::Cpu)
        .cpu(move |_| gate.recv().unwrap())
        .spawn()
        .task_ref();
    let s = slow.clone();
    let h = rt.task("blocks").gpu(move |_| s.wait()).spawn();
    assert!(matches!(
        h.wait().unwrap(),
        Err(TaskError::WaitInGpuBody { .. })
    ));
    go.send(()).unwrap();
    slow.wait().unwrap();
}

#[test]
fn bindings_check_element_type_and_whole_elements() {
    let Some(rt) = gpu_runtime() else { return };
    let add_one = rt.kernel(common::ADD_ONE, "main").unwrap();
    let vec4 = rt
        .kernel(
            "@group(0) @binding(0) var<storage, read_write> a: array<vec4<f32>>;
            @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                if id.x < arrayLength(&a) { a[id.x] = a[id.x] + vec4<f32>(1.0); }
            }",
            "main",
        )
        .unwrap();
    // An Array<f32> bound to array<u32> would reinterpret the bits.
    let floats = rt.array_named("floats", vec![1.0f32; 8]);
    let (k, f2) = (add_one.clone(), floats.clone());
    let err = rt
        .task("f32-as-u32")
        .read_write(&floats)
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&f2], [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap_err();
    match &err {
        TaskError::BindingMismatch {
            binding,
            array,
            expected,
            found,
            ..
        } => {
            assert_eq!((*binding, &**array), (0, "floats"));
            assert!(expected.contains("array<u32>"), "{expected}");
            assert!(found.contains("f32"), "{found}");
        }
        other => panic!("expected BindingMismatch, got {other}"),
    }
    // Six floats bound to array<vec4<f32>>: one and a half elements.
    let six = rt.array_named("six", vec![1.0f32; 6]);
    let (k, s2) = (vec4.clone(), six.clone());
    let err = rt
        .task("six-as-vec4")
        .read_write(&six)
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&s2], [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::BindingMismatch { expected, found, .. }
            if expected.contains("vec4<f32>") && expected.contains("16 bytes") && &**found == "24 bytes"),
        "{err}"
    );
    // Matching arrays run: eight floats as two vec4s, u32s, and raw bytes (meaning unknown:
    // only the size is checked).
    let eight = rt.array_from(vec![1.0f32; 8]);
    let (k, e2) = (vec4.clone(), eight.clone());
    rt.task("eight-as-vec4")
        .read_write(&eight)
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&e2], [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(eight.to_vec().unwrap(), vec![2.0; 8]);
    let bytes = rt.array_from(vec![0u8; 16]);
    let (k, b2) = (add_one.clone(), bytes.clone());
    rt.task("bytes-as-u32")
        .read_write(&bytes)
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&b2], [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(bytes.to_vec().unwrap(), [1u8, 0, 0, 0].repeat(4));
}

#[test]
fn a_uniform_of_another_size_than_its_wgsl_struct_is_a_binding_mismatch() {
    let Some(rt) = gpu_runtime() else { return };
    // A 32-byte struct: two vec4<f32>.
    let k = rt
        .kernel(
            "struct P { a: vec4<f32>, b: vec4<f32> }
             @group(0) @binding(0) var<uniform> p: P;
             @group(0) @binding(1) var<storage, read_write> out: array<f32>;
             @compute @workgroup_size(1) fn main() { out[0] = p.a.x + p.b.w; }",
            "main",
        )
        .unwrap();
    let out = rt.array::<f32>(1);
    let run = |u: &[f32]| {
        let (k, o, u) = (k.clone(), out.clone(), u.to_vec());
        rt.task("uniform-size")
            .writes(&out)
            .on(Placement::Gpu(0))
            .gpu(move |cx| match u.len() {
                5 => cx.dispatch_dyn(
                    &k,
                    &[&Uniform(<[f32; 5]>::try_from(&u[..]).unwrap()), &o],
                    [1, 1, 1],
                ),
                8 => cx.dispatch_dyn(
                    &k,
                    &[&Uniform(<[f32; 8]>::try_from(&u[..]).unwrap()), &o],
                    [1, 1, 1],
                ),
                _ => cx.dispatch_dyn(
                    &k,
                    &[&Uniform(<[f32; 9]>::try_from(&u[..]).unwrap()), &o],
                    [1, 1, 1],
                ),
            })
            .spawn()
            .wait()
    };
    for n in [5usize, 9] {
        let u = vec![1.0f32; n];
        match run(&u) {
            Err(TaskError::BindingMismatch {
                binding,
                expected,
                found,
                ..
            }) => {
                assert_eq!(binding, 0);
                assert!(expected.contains("32 bytes"), "{expected}");
                assert_eq!(&*found, format!("{} bytes", 4 * n).as_str());
            }
            other => panic!("a {}-byte uniform for a 32-byte struct: {other:?}", 4 * n),
        }
    }
    let mut u = vec![0.0f32; 8];
    u[0] = 2.0;
    u[7] = 3.0;
    run(&u).unwrap();
    assert_eq!(out.to_vec().unwrap(), vec![5.0]);
}
