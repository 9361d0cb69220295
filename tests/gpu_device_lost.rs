//! A GPU that is lost (here: destroyed by a task body) ends every later use of it in a typed
//! error — tasks, downloads of the copies it held — and nothing waits forever. Alone in its
//! test binary: it destroys the process's device.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use hetflow::{Placement, TaskError, Uniform};

const FILL: &str = include_str!("../shaders/fill_f32.wgsl");

#[test]
fn a_lost_device_fails_tasks_and_reads_instead_of_hanging() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let (tx, rx) = mpsc::channel();
    // Detached, so that a hang fails the test instead of blocking it.
    std::thread::spawn(move || {
        let fill = rt.kernel(FILL, "main").unwrap();
        // A copy that lives only on the GPU.
        let x = rt.array_named("X", vec![0.0f32; 64]);
        let (x2, f2) = (x.clone(), fill.clone());
        rt.task("fill-x")
            .writes(&x)
            .on(Placement::Gpu(0))
            .gpu(move |cx| {
                let u = Uniform([4.0f32, 0.0, 0.0, 0.0]);
                cx.dispatch_dyn(&f2, &[&u, &x2], f2.groups_for(64))
            })
            .spawn()
            .wait()
            .unwrap();
        let lose = rt
            .task("lose-device")
            .on(Placement::Gpu(0))
            .gpu(|cx| cx.device().wgpu_device().destroy())
            .spawn()
            .wait();
        let y = rt.array_named("Y", vec![0.0f32; 64]);
        let (y2, f3) = (y.clone(), fill.clone());
        let after = rt
            .task("after-loss")
            .writes(&y)
            .on(Placement::Gpu(0))
            .gpu(move |cx| {
                let u = Uniform([1.0f32, 0.0, 0.0, 0.0]);
                cx.dispatch_dyn(&f3, &[&u, &y2], f3.groups_for(64))
            })
            .spawn()
            .wait();
        let read = x.to_vec();
        tx.send((
            lose.is_ok(),
            matches!(&after, Err(e) if !matches!(e, TaskError::Panicked { .. })),
            read.map_err(|e| e.to_string()),
        ))
        .unwrap();
    });
    {
        let (lose_ok, after_failed, read) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a lost device left the runtime hanging");
        // Destroying the device is the body's own business; what follows must fail, typed.
        let _ = lose_ok;
        assert!(
            after_failed,
            "a task on the lost device succeeded or panicked instead of a typed error"
        );
        match read {
            Ok(v) => assert_eq!(v, vec![4.0; 64], "a read after loss returned stale data"),
            Err(e) => assert!(!e.is_empty()),
        }
    }
}
