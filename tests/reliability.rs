//! Issue 13, "nothing lost, nothing hangs": every scenario here ends in a typed error or a
//! correct result. Each runs on its own thread under a timeout, so a regression fails the
//! test instead of hanging the suite.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use hetflow::{Runtime, TaskError, TaskSpace};

fn rt() -> Runtime {
    Runtime::builder().cpu_workers(2).no_gpu().build().unwrap()
}

/// Runs `f` on a thread and fails the test if it does not finish within 20 seconds.
fn within_timeout(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => t.join().unwrap(),
        // The scenario panicked: re-raise its panic message.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p)
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for 20 s"),
    }
}

/// The root task named by a `DependencyFailed`, or a panic naming what came instead.
fn root_of(e: &TaskError) -> String {
    match e {
        TaskError::DependencyFailed { root, .. } => root.clone(),
        other => panic!("expected DependencyFailed, got {other:?}"),
    }
}

#[test]
fn task_after_a_never_spawned_key_fails_at_runtime_drop() {
    within_timeout("never-spawned key", || {
        let ts = TaskSpace::new("T");
        let rt = rt();
        let a = rt.array_from(vec![1.0f32; 4]);
        let aw = a.clone();
        let waiter = rt
            .task("waiter")
            .key(&ts, 1)
            .after_key(&ts, 0)
            .writes(&a)
            .cpu(move |cx| cx.write(&aw).fill(2.0))
            .spawn();
        // Found before the drop: the check names the key and the task stuck on it.
        let report = rt.wait_idle_checked().unwrap_err();
        match &report {
            TaskError::Stalled { keys, tasks } => {
                assert_eq!(keys, &vec!["T[0]".to_string()]);
                assert_eq!(tasks, &vec!["waiter".to_string()]);
            }
            other => panic!("expected Stalled, got {other:?}"),
        }
        assert!(report.to_string().contains("T[0]"), "{report}");
        // A reader blocked behind the stuck writer returns once the runtime is dropped.
        let ar = a.clone();
        let reader = std::thread::spawn(move || ar.to_vec());
        std::thread::sleep(Duration::from_millis(200));
        drop(rt);
        let e = waiter.wait().unwrap_err();
        assert_eq!(root_of(&e), "T[0]");
        match &e {
            TaskError::DependencyFailed { cause, .. } => assert!(
                matches!(&**cause, TaskError::NeverSpawned { space, key } if space == "T" && key == "[0]"),
                "{cause:?}"
            ),
            _ => unreachable!(),
        }
        assert_eq!(root_of(&ts.wait(1).unwrap_err()), "T[0]");
        assert!(matches!(
            ts.wait(0).unwrap_err(),
            TaskError::NeverSpawned { .. }
        ));
        assert!(!ts.contains(0));
        // The reader either was ordered behind the writer (fails naming the root) or came
        // after the shutdown.
        match reader.join().unwrap().unwrap_err() {
            TaskError::ShutDown { .. } => {}
            e => assert_eq!(root_of(&e), "T[0]"),
        }
        assert!(matches!(a.to_vec(), Err(TaskError::ShutDown { .. })));
        // The key can be spawned again in a new runtime.
        let rt2 = crate::rt();
        let h = rt2.task("late").key(&ts, 0).cpu(|_| 5).spawn();
        assert_eq!(h.wait().unwrap(), 5);
        assert!(ts.contains(0));
    });
}

#[test]
fn wait_idle_checked_is_ok_when_every_key_is_spawned() {
    within_timeout("wait_idle_checked", || {
        let ts = TaskSpace::new("T");
        let rt = rt();
        let second = rt.task("second").after_key(&ts, 0).cpu(|_| 2).spawn();
        rt.task("first").key(&ts, 0).cpu(|_| 1).spawn();
        rt.wait_idle_checked().unwrap();
        assert_eq!(second.wait().unwrap(), 2);
    });
}

#[test]
fn key_cycle_is_an_error_at_spawn() {
    within_timeout("key cycle", || {
        let ts = TaskSpace::new("C");
        let rt = rt();
        let a = rt
            .task("A")
            .key(&ts, 0)
            .after_key(&ts, 1)
            .cpu(|_| 1)
            .spawn();
        let b = rt
            .task("B")
            .key(&ts, 1)
            .after_key(&ts, 0)
            .cpu(|_| 2)
            .spawn();
        match b.wait().unwrap_err() {
            TaskError::KeyCycle { task, cycle } => {
                assert_eq!(task, "B");
                assert_eq!(cycle, vec!["C[1]", "C[0]", "C[1]"]);
            }
            other => panic!("expected KeyCycle, got {other:?}"),
        }
        assert_eq!(root_of(&a.wait().unwrap_err()), "B");
        rt.wait_idle_checked().unwrap();
    });
}

#[test]
fn key_cycle_closed_by_an_array_dependency_is_an_error() {
    within_timeout("key cycle through an array", || {
        let ts = TaskSpace::new("D");
        let rt = rt();
        let x = rt.array_from(vec![0u32; 4]);
        let xw = x.clone();
        // W (key 0) waits for key 1 and writes x; R (key 1) reads x, so it waits for W.
        let w = rt
            .task("W")
            .key(&ts, 0)
            .after_key(&ts, 1)
            .writes(&x)
            .cpu(move |cx| cx.write(&xw).fill(1))
            .spawn();
        let r = rt.task("R").key(&ts, 1).reads(&x).cpu(|_| ()).spawn();
        match r.wait().unwrap_err() {
            TaskError::KeyCycle { task, cycle } => {
                assert_eq!(task, "R");
                assert_eq!(cycle, vec!["D[1]", "D[0]", "D[1]"]);
            }
            other => panic!("expected KeyCycle, got {other:?}"),
        }
        assert_eq!(root_of(&w.wait().unwrap_err()), "R");
    });
}

#[test]
fn array_of_another_runtime_is_an_error_at_spawn() {
    within_timeout("foreign array", || {
        let (rt1, rt2) = (rt(), rt());
        let x = rt1.array_from(vec![1.0f32; 8]);
        let xr = x.clone();
        let h = rt2
            .task("stranger")
            .reads(&x)
            .cpu(move |cx| cx.read(&xr)[0])
            .spawn();
        match h.wait().unwrap_err() {
            TaskError::ForeignArray { task, array } => {
                assert_eq!(task, "stranger");
                assert_eq!(array, x.label());
            }
            other => panic!("expected ForeignArray, got {other:?}"),
        }
        // Both runtimes carry on, and the array is untouched.
        assert_eq!(rt2.task("ok").cpu(|_| 3).spawn().wait().unwrap(), 3);
        assert_eq!(x.to_vec().unwrap(), vec![1.0; 8]);
    });
}

#[test]
fn array_valid_only_on_another_runtimes_gpu_is_an_error_not_a_worker_panic() {
    let Some(gpu_rt) = common::gpu_runtime() else {
        return;
    };
    let k = gpu_rt.kernel(common::ADD_ONE, "main").unwrap();
    let x = gpu_rt.array_from(vec![1u32; 64]);
    let xg = x.clone();
    gpu_rt
        .task("on gpu")
        .read_write(&x)
        .on(hetflow::Placement::Gpu(0))
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&xg], [1, 1, 1]))
        .spawn()
        .wait()
        .unwrap();
    within_timeout("foreign GPU array", move || {
        let cpu_rt = rt();
        let xr = x.clone();
        let h = cpu_rt
            .task("stranger")
            .reads(&x)
            .cpu(move |cx| cx.read(&xr)[0])
            .spawn();
        assert!(
            matches!(h.wait(), Err(TaskError::ForeignArray { .. })),
            "expected ForeignArray"
        );
        assert_eq!(x.to_vec().unwrap(), vec![2; 64]);
        drop(cpu_rt);
    });
}

// ANCHOR: poison
#[test]
fn full_overwrite_clears_a_failed_writers_poison() {
    within_timeout("poison", || {
        let rt = rt();
        let a = rt.array_from(vec![0.0f32; 4]);
        let bad = rt
            .task("bad")
            .writes(&a)
            .cpu(|_| panic!("boom"))
            .spawn()
            .wait()
            .unwrap_err();
        assert!(matches!(bad, TaskError::Panicked { .. }));
        assert_eq!(root_of(&a.to_vec().unwrap_err()), "bad");
        let mut last = None;
        for i in 0..100 {
            let aw = a.clone();
            last = Some(
                rt.task("fill")
                    .writes(&a)
                    .cpu(move |cx| cx.write(&aw).fill(i as f32))
                    .spawn(),
            );
        }
        last.unwrap().wait().unwrap();
        assert_eq!(a.to_vec().unwrap(), vec![99.0; 4]);
    });
}
// ANCHOR_END: poison

/// Whether a dependent takes on a pending dependency's failure is recorded per edge, for the
/// first dependent (inline in the node) and for the others alike, in either order: an
/// overwrite (order only) runs, a task `after` it fails naming it.
#[test]
fn each_dependent_of_a_pending_failure_keeps_its_own_propagation() {
    within_timeout("propagation per edge", || {
        let rt = rt();
        for overwrite_first in [true, false] {
            let a = rt.array_from(vec![0u32; 4]);
            let gate = Arc::new(std::sync::Barrier::new(2));
            let g = gate.clone();
            let bad = rt
                .task("bad")
                .writes(&a)
                .cpu(move |_| {
                    g.wait();
                    panic!("boom")
                })
                .spawn();
            let aw = a.clone();
            let overwrite = || {
                rt.task("overwrite")
                    .writes(&a)
                    .cpu(move |cx| cx.write(&aw).fill(5))
                    .spawn()
            };
            let after = || rt.task("after").after(&bad).cpu(|_| ()).spawn();
            let (w, t) = if overwrite_first {
                let w = overwrite();
                (w, after())
            } else {
                let t = after();
                (overwrite(), t)
            };
            // Both registered while `bad` still runs: now it fails.
            gate.wait();
            w.wait().unwrap();
            assert_eq!(root_of(&t.wait().unwrap_err()), "bad");
            assert!(matches!(
                bad.wait().unwrap_err(),
                TaskError::Panicked { .. }
            ));
            assert_eq!(a.to_vec().unwrap(), vec![5; 4]);
        }
    });
}

#[test]
fn slice_overwrite_runs_but_the_rest_stays_poisoned() {
    within_timeout("slice poison", || {
        let rt = rt();
        let a = rt.array_from(vec![0u32; 4]);
        rt.task("bad")
            .writes(&a)
            .cpu(|_| panic!("boom"))
            .spawn()
            .wait()
            .unwrap_err();
        let left = a.slice(0..2).unwrap();
        let lw = left.clone();
        // A write reads nothing: it runs even though the array is poisoned...
        rt.task("left")
            .writes(&left)
            .cpu(move |cx| cx.write(&lw).fill(7))
            .spawn()
            .wait()
            .unwrap();
        // ...but the part it did not overwrite is still the failed task's.
        assert_eq!(root_of(&a.to_vec().unwrap_err()), "bad");
    });
}

#[test]
fn clear_error_recovers_an_array_after_a_failed_update() {
    within_timeout("clear_error", || {
        let rt = rt();
        let a = rt.array_from(vec![1u32; 4]);
        rt.task("bad")
            .read_write(&a)
            .cpu(|_| panic!("boom"))
            .spawn()
            .wait()
            .unwrap_err();
        let aw = a.clone();
        let e = rt
            .task("update")
            .read_write(&a)
            .cpu(move |cx| cx.write(&aw)[0] += 1)
            .spawn()
            .wait()
            .unwrap_err();
        assert_eq!(root_of(&e), "bad");
        a.clear_error().wait().unwrap();
        let aw = a.clone();
        rt.task("update again")
            .read_write(&a)
            .cpu(move |cx| cx.write(&aw)[0] += 1)
            .spawn()
            .wait()
            .unwrap();
        assert_eq!(a.to_vec().unwrap(), vec![2, 1, 1, 1]);
    });
}

#[test]
fn read_then_write_of_one_array_in_one_body() {
    within_timeout("read then write", || {
        let rt = rt();
        let a = rt.array_from(vec![1.0f32, 5.0]);
        let a2 = a.clone();
        rt.task("increment")
            .read_write(&a)
            .cpu(move |cx| {
                let v = cx.read(&a2)[0];
                cx.write(&a2)[0] = v + 1.0;
            })
            .spawn()
            .wait()
            .unwrap();
        assert_eq!(a.to_vec().unwrap(), vec![2.0, 5.0]);
        // A read slice kept across the write still shows the contents the body started with;
        // the write lands when the body returns.
        let a2 = a.clone();
        let seen = rt
            .task("keep the read")
            .read_write(&a)
            .cpu(move |cx| {
                let r = cx.read(&a2);
                let w = cx.write(&a2);
                w[1] = r[0] * 10.0;
                w[0] = 0.0;
                (r[0], r[1])
            })
            .spawn()
            .wait()
            .unwrap();
        assert_eq!(seen, (2.0, 5.0));
        assert_eq!(a.to_vec().unwrap(), vec![0.0, 20.0]);
        // Reading while a write borrow may be alive is still refused.
        let a2 = a.clone();
        let conflict = rt
            .task("write then read")
            .read_write(&a)
            .cpu(move |cx| {
                cx.write(&a2)[0] = 1.0;
                cx.try_read(&a2).map(|_| ()).map_err(|e| e.to_string())
            })
            .spawn()
            .wait()
            .unwrap();
        assert!(conflict.unwrap_err().contains("borrowed for writing"));
    });
}
