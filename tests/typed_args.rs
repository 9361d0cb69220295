//! Typed task arguments: arrays declared once, the bodies receive them in order.

mod common;

use hetflow::data::{DataError, ReduceOp};
use hetflow::{Placement, Runtime, TaskError, Uniform};

fn cpu_runtime() -> Runtime {
    Runtime::builder().cpu_workers(2).no_gpu().build().unwrap()
}

#[test]
fn cpu_bodies_get_slices_in_declared_order() {
    let rt = cpu_runtime();
    let x = rt.array_from(vec![1.0f32, 2.0, 3.0]);
    let y = rt.array_from(vec![10.0f32; 3]);
    let z = rt.array::<f32>(3);
    rt.task("axpy")
        .args((x.read(), y.read_write()))
        .cpu(|(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y += 2.0 * x))
        .spawn();
    // A write-only argument: the old contents are not fetched.
    let h = rt
        .task("copy")
        .args((y.read(), z.write()))
        .cpu(|(y, z)| {
            z.copy_from_slice(y);
            z.len()
        })
        .spawn();
    assert_eq!(h.wait().unwrap(), 3);
    assert_eq!(z.to_vec().unwrap(), vec![12.0, 14.0, 16.0]);
    // A single argument needs no tuple.
    let total = rt
        .task("sum")
        .args(z.read())
        .cpu(|z| z.iter().sum::<f32>())
        .spawn();
    assert_eq!(total.wait().unwrap(), 42.0);
}

#[test]
fn reductions_and_dependencies_follow_the_declared_accesses() {
    let rt = cpu_runtime();
    let s = rt.array_from(vec![0u32; 2]);
    let handles: Vec<_> = (1..=8u32)
        .map(|i| {
            rt.task("add")
                .args(s.reduce(ReduceOp::Add))
                .cpu(move |p| {
                    p[0] += i;
                    p[1] += 1;
                })
                .spawn()
        })
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    // Read after the reducers: sees every partial folded in.
    let got = rt.task("read").args(s.read()).cpu(|s| s.to_vec()).spawn();
    assert_eq!(got.wait().unwrap(), vec![36, 8]);
}

#[test]
fn one_array_read_and_written_by_one_task_reads_its_old_contents() {
    let rt = cpu_runtime();
    let a = rt.array_from(vec![1u32, 2, 3, 4]);
    rt.task("reverse")
        .args((a.read(), a.read_write()))
        .cpu(|(old, new)| {
            for (i, v) in new.iter_mut().enumerate() {
                *v = old[old.len() - 1 - i];
            }
        })
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(a.to_vec().unwrap(), vec![4, 3, 2, 1]);
}

#[test]
fn two_writes_of_one_array_fail_the_task_with_a_typed_error() {
    let rt = cpu_runtime();
    let a = rt.array_from(vec![1u32; 4]);
    let err = rt
        .task("twice")
        .args((a.read_write(), a.read_write()))
        .cpu(|(_, _)| ())
        .spawn()
        .wait()
        .unwrap_err();
    match &err {
        TaskError::Failed { error, .. } => {
            let data = error.downcast_ref::<DataError>();
            assert!(
                matches!(data, Some(DataError::BorrowConflict { .. })),
                "{err}"
            );
        }
        other => panic!("expected a failed task, got {other}"),
    }
}

#[test]
fn nested_spawns_use_the_body_context() {
    let rt = cpu_runtime();
    let a = rt.array_from(vec![5u32; 3]);
    let inner = rt
        .task("outer")
        .args(a.read())
        .cpu_with(|cx, a| {
            let first = a[0];
            cx.runtime().task("inner").cpu(move |_| first * 2).spawn()
        })
        .spawn()
        .wait()
        .unwrap();
    assert_eq!(inner.wait().unwrap(), 10);
}

#[test]
fn gpu_bodies_dispatch_the_declared_bindings() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let n = 1000;
    let x = rt.array_from(vec![1.0f32; n]);
    let y = rt.array_from(vec![2.0f32; n]);
    let k = rt.kernel(common::SAXPY, "main").unwrap();
    let t = rt
        .task("saxpy")
        .args((x.read(), y.read_write()))
        .on(Placement::Gpu(0))
        .gpu(move |cx, (x, y)| {
            assert_eq!((x.len(), y.label().is_empty()), (n, false));
            cx.dispatch(
                &k,
                (Uniform([3.0f32, 0.0, 0.0, 0.0]), x, y),
                k.groups_for(n),
            );
            cx.gpu_index()
        })
        .spawn();
    assert_eq!(t.wait().unwrap(), 0);
    assert!(y.to_vec().unwrap().iter().all(|&v| v == 5.0));
}

// ANCHOR: read_bound_rw
#[test]
fn a_read_argument_bound_to_a_read_write_binding_fails_the_task() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let a = rt.array_from(vec![0u32; 64]);
    let k = rt.kernel(common::ADD_ONE, "main").unwrap();
    let err = rt
        .task("bad")
        .args(a.read())
        .on(Placement::Gpu(0))
        .gpu(move |cx, a| cx.dispatch(&k, (a,), [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TaskError::TaskData {
                error: DataError::Undeclared {
                    declared: "read",
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(a.to_vec().unwrap(), vec![0; 64]);
}
// ANCHOR_END: read_bound_rw

// ANCHOR: optional
#[test]
fn an_optional_argument_is_declared_only_when_present() {
    let rt = cpu_runtime();
    let x = rt.array_from(vec![0.0f32; 4]);
    // `hetflow::ReduceOp`: the operation is re-exported at the crate root.
    let biggest = rt.array_from(vec![f32::MIN]);
    for i in 0..25 {
        let check = (i % 10 == 0).then(|| biggest.reduce(hetflow::ReduceOp::Max));
        rt.task("step")
            .args((x.read_write(), check))
            .cpu(move |(x, check)| {
                x.iter_mut().for_each(|v| *v += 1.0);
                assert_eq!(check.is_some(), i % 10 == 0, "iteration {i}");
                if let Some(m) = check {
                    // A reducer's partial starts at the identity (f32::MIN for Max).
                    assert_eq!(m[0], f32::MIN);
                    m[0] = m[0].max(x[0] * 100.0);
                }
            })
            .spawn();
    }
    assert_eq!(x.to_vec().unwrap(), vec![25.0; 4]);
    // Reduced after iterations 0, 10 and 20 (x then 1, 11, 21).
    assert_eq!(biggest.to_vec().unwrap(), vec![2100.0]);

    // `None` declares nothing: a task holding `None` for an array does not wait for the
    // array's writer (which here waits for it, and would time out if they were ordered).
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = rt
        .task("writer")
        .args(x.write())
        .cpu(move |x| {
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .expect("the task with None ran after the writer");
            x.fill(7.0);
        })
        .spawn();
    let absent: Option<hetflow::task::ReadArg<f32>> = None;
    let other = rt.array_from(vec![1u32]);
    let free = rt
        .task("free")
        .args((absent, other.read_write()))
        .cpu(move |(absent, other)| {
            other[0] += 1;
            tx.send(()).unwrap();
            absent.is_none()
        })
        .spawn();
    assert!(free.wait().unwrap());
    writer.wait().unwrap();
    assert_eq!(x.to_vec().unwrap(), vec![7.0; 4]);
}
// ANCHOR_END: optional

#[test]
fn an_optional_argument_on_the_gpu_is_bound_only_when_present() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let n = 300;
    let add = rt
        .kernel(include_str!("../shaders/add_f32.wgsl"), "main")
        .unwrap();
    let x = rt.array_from(vec![1.0f32; n]);
    let sum = rt.array_from(vec![0.0f32; n]);
    for i in 0..4 {
        let k = add.clone();
        let every_other = (i % 2 == 0).then(|| sum.reduce(hetflow::ReduceOp::Add));
        rt.task("step")
            .args((x.read_write(), every_other))
            .on(Placement::Gpu(0))
            .gpu(move |cx, (x, every_other)| {
                cx.dispatch(&k, (Uniform([1.0f32, 0.0, 0.0, 0.0]), x), k.groups_for(n));
                if let Some(s) = every_other {
                    cx.dispatch(&k, (Uniform([10.0f32, 0.0, 0.0, 0.0]), s), k.groups_for(n));
                }
            })
            .spawn();
    }
    assert_eq!(x.to_vec().unwrap(), vec![5.0; n]);
    assert_eq!(sum.to_vec().unwrap(), vec![20.0; n]);
}
