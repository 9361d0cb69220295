//! GPU batches that fail at submit time: every task of the batch fails (the innocent ones
//! naming the batch's error), and no dependent released early from the batch runs on the
//! data it did not produce.

mod common;

use hetflow::{Placement, TaskError, Uniform};

const FILL: &str = include_str!("../shaders/fill_f32.wgsl");

/// Records a copy from a buffer the body then destroys: the command buffer is valid when
/// encoded, and `queue.submit` rejects it.
fn poisoned_copy(cx: &mut hetflow::GpuContext<'_>) {
    let device = cx.device().wgpu_device().clone();
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let src = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("destroyed-src"),
        size: 256,
        usage,
        mapped_at_creation: false,
    });
    let dst = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dst"),
        size: 256,
        usage,
        mapped_at_creation: false,
    });
    cx.encoder().copy_buffer_to_buffer(&src, 0, &dst, 0, 256);
    src.destroy();
}

#[test]
fn a_rejected_submit_fails_its_batch_and_nothing_released_early_runs_on_it() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let fill = rt.kernel(FILL, "main").unwrap();
    for round in 0..5 {
        let a = rt.array_named("A", vec![1.0f32; 256]);
        let (a1, f1) = (a.clone(), fill.clone());
        // The innocent writer: its dependents are released when it is encoded.
        let innocent = rt
            .task("innocent")
            .writes(&a)
            .on(Placement::Gpu(0))
            .gpu(move |cx| {
                cx.dispatch_dyn(
                    &f1,
                    &[&Uniform([6.0f32, 0.0, 0.0, 0.0]), &a1],
                    f1.groups_for(256),
                )
            })
            .spawn();
        // Released at the innocent task's encoding, so it joins the same batch.
        let culprit = rt
            .task("culprit")
            .reads(&a)
            .on(Placement::Gpu(0))
            .gpu(poisoned_copy)
            .spawn();
        // A CPU reader released early: it waits for the batch's fence.
        let a3 = a.clone();
        let reader = rt
            .task("cpu-reader")
            .reads(&a)
            .on(Placement::Cpu)
            .cpu(move |cx| cx.read(&a3)[0])
            .spawn();
        let culprit = culprit.wait();
        let innocent = innocent.wait();
        let reader = reader.wait();
        assert!(culprit.is_err(), "round {round}: the culprit succeeded");
        match &innocent {
            Ok(()) => {
                // Re-run or in another batch: then its write must be there for everyone.
                assert_eq!(a.to_vec().unwrap(), vec![6.0; 256], "round {round}");
                assert_eq!(reader.as_ref().ok(), Some(&6.0), "round {round}");
            }
            Err(e) => {
                assert!(
                    matches!(e, TaskError::GpuBatchFailed { .. }),
                    "round {round}: {e}"
                );
                let msg = e.to_string();
                assert!(msg.contains("innocent") && msg.contains("batch"), "{msg}");
                match &reader {
                    Err(TaskError::DependencyFailed { root, .. }) => {
                        assert_eq!(root, "innocent", "round {round}")
                    }
                    other => panic!("round {round}: the early-released reader gave {other:?}"),
                }
            }
        }
    }
    // The device keeps serving.
    let b = rt.array_from(vec![0.0f32; 64]);
    let b2 = b.clone();
    rt.task("after")
        .writes(&b)
        .on(Placement::Gpu(0))
        .gpu(move |cx| {
            cx.dispatch_dyn(
                &fill,
                &[&Uniform([2.0f32, 0.0, 0.0, 0.0]), &b2],
                fill.groups_for(64),
            )
        })
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![2.0; 64]);
}

const ADD_ONE: &str = include_str!("../shaders/add_one_f32.wgsl");

/// Kernel dispatches of a batch share one command buffer; a body that records raw commands
/// (`cx.encoder()`) gets a command buffer of its own, queued between them in spawn order.
#[test]
fn raw_commands_and_shared_dispatches_keep_queue_order() {
    if common::gpu_runtime().is_none() {
        return;
    }
    // A runtime of its own: the shared one's batches may hold the poisoned copy above.
    let rt = hetflow::Runtime::builder().cpu_workers(1).build().unwrap();
    let add = rt.kernel(ADD_ONE, "main").unwrap();
    for round in 0..5 {
        let x = rt.array_named("x", vec![1.0f32; 256]);
        let y = rt.array_named("y", vec![0.0f32; 256]);
        let inc = |a: &hetflow::Array<f32>, name: &'static str| {
            let (a2, k) = (a.clone(), add.clone());
            rt.task(name)
                .read_write(a)
                .on(Placement::Gpu(0))
                .gpu(move |cx| cx.dispatch_dyn(&k, &[&a2], k.groups_for(256)))
                .spawn()
        };
        drop(inc(&x, "x+1"));
        let (x2, y2) = (x.clone(), y.clone());
        drop(
            rt.task("copy x->y (raw)")
                .reads(&x)
                .writes(&y)
                .on(Placement::Gpu(0))
                .gpu(move |cx| {
                    let (src, dst) = (
                        cx.buffer(&x2).unwrap().clone(),
                        cx.buffer(&y2).unwrap().clone(),
                    );
                    cx.encoder().copy_buffer_to_buffer(&src, 0, &dst, 0, 1024);
                })
                .spawn(),
        );
        drop(inc(&y, "y+1"));
        drop(inc(&x, "x+1 again"));
        assert_eq!(y.to_vec().unwrap(), vec![3.0; 256], "round {round}");
        assert_eq!(x.to_vec().unwrap(), vec![3.0; 256], "round {round}");
    }
}

/// A wgpu validation error in a body's own command buffer fails that task alone: the
/// dispatches around it in the same batch run.
#[test]
fn a_raw_command_error_fails_only_its_task() {
    if common::gpu_runtime().is_none() {
        return;
    }
    // A runtime of its own: the shared one's batches may hold the poisoned copy above.
    let rt = hetflow::Runtime::builder().cpu_workers(1).build().unwrap();
    let add = rt.kernel(ADD_ONE, "main").unwrap();
    for round in 0..5 {
        let a = rt.array_named("a", vec![1.0f32; 256]);
        let b = rt.array_named("b", vec![0.0f32; 256]);
        let (a1, k1) = (a.clone(), add.clone());
        let before = rt
            .task("before")
            .read_write(&a)
            .on(Placement::Gpu(0))
            .gpu(move |cx| cx.dispatch_dyn(&k1, &[&a1], k1.groups_for(256)))
            .spawn();
        let b2 = b.clone();
        let bad = rt
            .task("out-of-bounds copy")
            .read_write(&b)
            .on(Placement::Gpu(0))
            .gpu(move |cx| {
                let buf = cx.buffer(&b2).unwrap().clone();
                // 1 MiB from a 1 KiB buffer: rejected when the task's command buffer is
                // finished.
                cx.encoder()
                    .copy_buffer_to_buffer(&buf, 0, &buf, 0, 1 << 20);
            })
            .spawn();
        let (a3, k3) = (a.clone(), add.clone());
        let after = rt
            .task("after")
            .read_write(&a)
            .on(Placement::Gpu(0))
            .gpu(move |cx| cx.dispatch_dyn(&k3, &[&a3], k3.groups_for(256)))
            .spawn();
        before.wait().unwrap();
        after.wait().unwrap();
        match bad.wait() {
            Err(TaskError::Wgpu { task, .. }) => assert_eq!(task, "out-of-bounds copy"),
            other => panic!("round {round}: expected a wgpu validation error, got {other:?}"),
        }
        assert_eq!(a.to_vec().unwrap(), vec![3.0; 256], "round {round}");
    }
}
