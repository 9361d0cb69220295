//! Engine behaviour on the CPU: DAG ordering, task spaces, nesting, failures, scale.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hetflow::{Placement, Runtime, TaskError, TaskSpace};

fn rt() -> Runtime {
    Runtime::builder().cpu_workers(2).no_gpu().build().unwrap()
}

/// Records the order in which tasks ran.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<&'static str>>>);

impl Log {
    fn push(&self, s: &'static str) {
        self.0.lock().unwrap().push(s);
    }
    fn pos(&self, s: &str) -> usize {
        self.0.lock().unwrap().iter().position(|x| *x == s).unwrap()
    }
}

#[test]
fn diamond_runs_in_dependency_order() {
    let rt = rt();
    for _ in 0..50 {
        let log = Log::default();
        let l = log.clone();
        let a = rt.task("a").cpu(move |_| l.push("a")).spawn();
        let l = log.clone();
        let b = rt.task("b").after(&a).cpu(move |_| l.push("b")).spawn();
        let l = log.clone();
        let c = rt.task("c").after(&a).cpu(move |_| l.push("c")).spawn();
        let l = log.clone();
        let d = rt
            .task("d")
            .after(&b)
            .after(&c)
            .cpu(move |_| l.push("d"))
            .spawn();
        d.wait().unwrap();
        assert!(log.pos("a") < log.pos("b") && log.pos("a") < log.pos("c"));
        assert!(log.pos("b") < log.pos("d") && log.pos("c") < log.pos("d"));
    }
}

#[test]
fn long_chain_passes_values_in_order() {
    let rt = rt();
    let acc = Arc::new(AtomicUsize::new(0));
    let mut prev: Option<hetflow::TaskRef> = None;
    let n = 10_000;
    for i in 0..n {
        let acc = acc.clone();
        let mut b = rt.task(format!("link{i}")).cpu(move |_| {
            // Each link sees exactly the links before it.
            assert_eq!(acc.fetch_add(1, Ordering::SeqCst), i);
        });
        if let Some(p) = &prev {
            b = b.after(p);
        }
        prev = Some(b.spawn().task_ref());
    }
    prev.unwrap().wait().unwrap();
    assert_eq!(acc.load(Ordering::SeqCst), n);
}

#[test]
fn fan_in_of_1000() {
    let rt = rt();
    let sum = Arc::new(AtomicUsize::new(0));
    let parts: Vec<_> = (0..1000)
        .map(|i| {
            let s = sum.clone();
            rt.task(format!("part{i}"))
                .cpu(move |_| {
                    s.fetch_add(i, Ordering::SeqCst);
                })
                .spawn()
        })
        .collect();
    let s = sum.clone();
    let total = rt
        .task("join")
        .after_all(&parts)
        .cpu(move |_| s.load(Ordering::SeqCst))
        .spawn();
    assert_eq!(total.wait().unwrap(), 999 * 1000 / 2);
    assert!(parts.iter().all(|p| p.is_done()));
}

#[test]
fn task_space_keys_spawned_out_of_order() {
    let rt = rt();
    // ANCHOR: task_space
    let ts = TaskSpace::new("T");
    let log = Arc::new(Mutex::new(Vec::new()));
    // Spawn T[9] first, T[0] last; T[i] depends on T[i-1].
    let mut handles = Vec::new();
    for i in (0..10i64).rev() {
        let l = log.clone();
        let mut b = rt.task(format!("t{i}")).key(&ts, i);
        if i > 0 {
            b = b.after_key(&ts, i - 1);
        }
        handles.push(b.cpu(move |_| l.lock().unwrap().push(i)).spawn());
    }
    ts.wait(9).unwrap();
    assert_eq!(*log.lock().unwrap(), (0..10).collect::<Vec<_>>());
    // ANCHOR_END: task_space
    // Tuple keys work the same way.
    let grid = TaskSpace::new("G");
    let later = rt
        .task("g11")
        .key(&grid, (1, 1))
        .after_key(&grid, (0, 1))
        .cpu(|_| 11)
        .spawn();
    let first = rt.task("g01").key(&grid, (0, 1)).cpu(|_| 1).spawn();
    assert_eq!(later.wait().unwrap(), 11);
    assert_eq!(first.wait().unwrap(), 1);
    // A key can be spawned once.
    let dup = rt.task("again").key(&grid, (0, 1)).cpu(|_| 0).spawn();
    assert!(matches!(dup.wait(), Err(TaskError::DuplicateKey { .. })));
}

#[test]
fn nested_spawns_and_waits_inside_tasks_do_not_deadlock() {
    let rt = rt();
    // Every worker blocks in wait() on children it spawned: the pool must keep running them.
    fn fib(rt: &hetflow::RuntimeHandle, n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (r1, r2) = (rt.clone(), rt.clone());
        let a = rt
            .task("fib")
            .cpu(move |cx| fib(cx.runtime(), n - 1))
            .spawn();
        let b = rt
            .task("fib")
            .cpu(move |cx| fib(cx.runtime(), n - 2))
            .spawn();
        drop((r1, r2));
        a.wait().unwrap() + b.wait().unwrap()
    }
    let h = rt.task("root").cpu(|cx| fib(cx.runtime(), 15)).spawn();
    assert_eq!(h.wait().unwrap(), 610);
}

#[test]
fn hundred_thousand_tasks_complete() {
    let rt = rt();
    let count = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..100_000)
        .map(|_| {
            let c = count.clone();
            rt.task("tiny")
                .cpu(move |_| {
                    c.fetch_add(1, Ordering::Relaxed);
                })
                .spawn()
        })
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 100_000);
}

#[test]
fn panicking_task_fails_its_dependents_and_nothing_else() {
    let rt = rt();
    let ok1 = rt.task("ok1").cpu(|_| 1).spawn();
    let bad = rt
        .task("bad")
        .after(&ok1)
        .cpu(|_| -> i32 { panic!("boom at step 3") })
        .spawn();
    let child = rt.task("child").after(&bad).cpu(|_| 2).spawn();
    let grandchild = rt.task("grandchild").after(&child).cpu(|_| 3).spawn();
    let unrelated = rt.task("unrelated").after(&ok1).cpu(|_| 4).spawn();
    match bad.wait() {
        Err(TaskError::Panicked { task, message }) => {
            assert_eq!(task, "bad");
            assert!(message.contains("boom at step 3"));
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    for (h, name) in [(child, "child"), (grandchild, "grandchild")] {
        match h.wait() {
            Err(TaskError::DependencyFailed { task, root, cause }) => {
                assert_eq!(task, name);
                assert_eq!(root, "bad");
                assert!(matches!(*cause, TaskError::Panicked { .. }));
            }
            other => panic!("expected dependency failure, got {other:?}"),
        }
    }
    assert_eq!(unrelated.wait().unwrap(), 4);
    assert_eq!(ok1.wait().unwrap(), 1);
    // The runtime keeps serving.
    assert_eq!(rt.task("after").cpu(|_| 5).spawn().wait().unwrap(), 5);
    // A dependency that failed before the dependent was spawned counts too.
    let late = rt.task("late").after(&bad_again(&rt)).cpu(|_| 6).spawn();
    assert!(matches!(
        late.wait(),
        Err(TaskError::DependencyFailed { .. })
    ));
}

fn bad_again(rt: &Runtime) -> hetflow::TaskRef {
    let h = rt.task("bad2").cpu(|_| -> () { panic!("again") }).spawn();
    let r = h.task_ref();
    let _ = r.wait();
    r
}

#[derive(Debug, thiserror::Error)]
#[error("input was {0}, expected a positive number")]
struct Negative(i32);

#[test]
fn fallible_body_returns_typed_error() {
    let rt = rt();
    let h = rt
        .task("check")
        .cpu_try(|_| if -3 > 0 { Ok(1) } else { Err(Negative(-3)) })
        .spawn();
    let err = h.wait().unwrap_err();
    assert_eq!(
        err.to_string(),
        "task `check` failed: input was -3, expected a positive number"
    );
}

#[test]
fn handles_are_futures() {
    let rt = rt();
    let hs: Vec<_> = (0..10)
        .map(|i| rt.task("f").cpu(move |_| i * i).spawn())
        .collect();
    let results = pollster::block_on(futures::future::join_all(hs));
    let v: Vec<i32> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(v, (0..10).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn gpu_only_task_without_gpu_is_a_typed_error() {
    let rt = rt();
    let h = rt
        .task("needs-gpu")
        .on(Placement::AnyGpu)
        .cpu(|_| 1)
        .spawn();
    match h.wait() {
        Err(TaskError::NoDevice { task, reason }) => {
            assert_eq!(task, "needs-gpu");
            assert!(reason.contains("0 GPU"), "{reason}");
        }
        other => panic!("expected NoDevice, got {other:?}"),
    }
}

#[test]
fn inferred_dependencies_from_accesses() {
    let rt = rt();
    let a = rt.array_from(vec![0u32; 4]);
    // 100 read-modify-write tasks on one array serialise; readers in between see each step.
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..100u32 {
        let a2 = a.clone();
        rt.task("inc")
            .read_write(&a)
            .cpu(move |cx| cx.write(&a2).iter_mut().for_each(|v| *v += 1))
            .spawn();
        let (a3, s) = (a.clone(), seen.clone());
        rt.task("look")
            .reads(&a)
            .cpu(move |cx| s.lock().unwrap().push((i, cx.read(&a3)[0])))
            .spawn();
    }
    assert_eq!(a.to_vec().unwrap(), vec![100; 4]);
    rt.wait_idle();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 100);
    assert!(seen.iter().all(|(i, v)| *v == i + 1));
}

#[test]
fn undeclared_array_use_fails_the_task() {
    let rt = rt();
    let a = rt.array_from(vec![1.0f32; 3]);
    let a2 = a.clone();
    let h = rt.task("sneaky").cpu(move |cx| cx.read(&a2)[0]).spawn();
    let err = h.wait().unwrap_err();
    assert!(err.to_string().contains("declare it"), "{err}");
    let a3 = a.clone();
    let h = rt
        .task("ro")
        .reads(&a)
        .cpu(move |cx| cx.write(&a3)[0] = 2.0)
        .spawn();
    assert!(h.wait().unwrap_err().to_string().contains("declared read"));
    assert_eq!(a.to_vec().unwrap(), vec![1.0; 3]);
}

#[test]
fn barrier_task_without_body() {
    let rt = rt();
    let a = rt.task("a").cpu(|_| ()).spawn();
    let barrier = rt.task::<()>("barrier").after(&a).spawn();
    barrier.wait().unwrap();
    assert!(a.is_done());
}

#[test]
fn spawn_after_drop_and_zero_workers_are_errors() {
    assert!(Runtime::builder().cpu_workers(0).build().is_err());
    let rt = rt();
    let h = rt.handle();
    drop(rt);
    assert!(matches!(
        h.task("late").cpu(|_| 1).spawn().wait(),
        Err(TaskError::ShutDown { .. })
    ));
}

#[test]
fn placement_lists_and_policies() {
    use hetflow::{DeviceId, Policy};
    for policy in [Policy::Eager, Policy::PreferCpu, Policy::PreferGpu] {
        let rt = Runtime::builder()
            .cpu_workers(2)
            .no_gpu()
            .policy(policy)
            .build()
            .unwrap();
        assert_eq!(rt.policy(), policy);
        // A list that includes a GPU the runtime lacks still runs on the CPU it allows.
        let h = rt
            .task("listed")
            .on(Placement::OneOf(vec![DeviceId::Gpu(0), DeviceId::Cpu]))
            .cpu(|_| 3)
            .spawn();
        let r = h.task_ref();
        assert_eq!(h.wait().unwrap(), 3);
        assert_eq!(r.device(), Some(DeviceId::Cpu));
        // A list without any usable device is a typed error.
        let h = rt
            .task("nowhere")
            .on(Placement::OneOf(vec![DeviceId::Gpu(1)]))
            .cpu(|_| 0)
            .spawn();
        assert!(matches!(h.wait(), Err(TaskError::NoDevice { .. })));
    }
}

#[test]
fn readers_of_one_array_run_concurrently_and_a_writer_waits_for_them() {
    let rt = rt();
    let a = rt.array_from(vec![5u8; 16]);
    // Two readers meet at a barrier: they only finish if they run at the same time.
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let order = Log::default();
    for name in ["r1", "r2"] {
        let (a2, b, log) = (a.clone(), barrier.clone(), order.clone());
        rt.task(name)
            .reads(&a)
            .cpu(move |cx| {
                assert_eq!(cx.read(&a2)[0], 5);
                b.wait();
                log.push(name);
            })
            .spawn();
    }
    let (a3, log) = (a.clone(), order.clone());
    rt.task("w")
        .writes(&a)
        .cpu(move |cx| {
            cx.write(&a3).fill(9);
            log.push("w");
        })
        .spawn();
    assert_eq!(a.to_vec().unwrap(), vec![9; 16]);
    assert!(order.pos("w") > order.pos("r1") && order.pos("w") > order.pos("r2"));
}

#[test]
fn ready_tasks_run_by_priority_tier_and_fifo_among_equals() {
    // One worker, held by a gate task while every other task is queued, so that the order in
    // which it takes the ready tasks is the scheduler's alone.
    let rt = Runtime::builder().cpu_workers(1).no_gpu().build().unwrap();
    let ts = TaskSpace::new("P");
    let log = Log::default();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (open_tx, open_rx) = std::sync::mpsc::channel::<()>();
    let gate = rt
        .task("gate")
        .cpu(move |_| {
            started_tx.send(()).unwrap();
            open_rx.recv().unwrap();
        })
        .spawn();
    started_rx.recv().unwrap();
    let task = |name: &'static str, priority: i32| {
        let l = log.clone();
        rt.task(name)
            .on(Placement::Cpu)
            .priority(priority)
            .cpu(move |_| l.push(name))
    };
    let mut handles = vec![
        task("d", 10).spawn(),
        task("b", 5).spawn(),
        task("e", 5).spawn(),
    ];
    let a = task("a", 0).spawn();
    // Ready only when `a` has run: then it outranks everything still queued.
    handles.push(task("g", 20).after(&a).spawn());
    handles.push(a);
    handles.push(task("f", 0).spawn());
    handles.push(task("c", -3).spawn());
    // A key's task gets its priority when it is attached to the placeholder `i` created.
    handles.push(task("i", -5).after_key(&ts, 0).spawn());
    handles.push(task("h", 7).key(&ts, 0).spawn());
    open_tx.send(()).unwrap();
    gate.wait().unwrap();
    for h in handles {
        h.wait().unwrap();
    }
    assert_eq!(
        *log.0.lock().unwrap(),
        ["d", "h", "b", "e", "a", "g", "f", "c", "i"],
        "tier above 0 highest first (FIFO among equals), then 0 in queue order, then below 0"
    );
}

/// Dependents and waiters that register while their task completes (the node's lock-free
/// completion and first dependent, `task/node.rs` "Completion without a lock" and "The
/// first dependent"): every registration is either
/// seen by the completion or sees it done — no dependent is lost (it would never run) and
/// none runs before its dependency; every waiter returns. Failures propagate the same way.
#[test]
fn registrations_racing_completion_are_never_lost() {
    let rt = rt();
    for round in 0..20 {
        let n = 400;
        let ran = Arc::new(AtomicUsize::new(0));
        let early = Arc::new(AtomicUsize::new(0));
        let flags: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let deps: Vec<_> = (0..n)
            .map(|i| {
                let f = flags.clone();
                rt.task("dep")
                    .on(Placement::Cpu)
                    .cpu_try(move |_| {
                        f[i].store(1, Ordering::SeqCst);
                        if i % 7 == 3 {
                            Err(std::io::Error::other("planned"))
                        } else {
                            Ok(())
                        }
                    })
                    .spawn()
            })
            .collect();
        let refs: Vec<_> = deps.iter().map(|d| d.task_ref()).collect();
        // Another thread waits on every dependency while this one spawns dependents of them,
        // both racing the workers that complete them.
        let waiter = {
            let refs = refs.clone();
            std::thread::spawn(move || refs.iter().filter(|r| r.wait().is_err()).count())
        };
        // One dependent per dependency (the lock-free first dependent), a second for every
        // other one (registered under the lock beside the first).
        let dependents: Vec<_> = refs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| std::iter::repeat_n((i, r), 1 + i % 2))
            .map(|(i, r)| {
                let (ran, early, f) = (ran.clone(), early.clone(), flags.clone());
                rt.task("dependent")
                    .after(r)
                    .on(Placement::Cpu)
                    .cpu(move |_| {
                        if f[i].load(Ordering::SeqCst) == 0 {
                            early.fetch_add(1, Ordering::SeqCst);
                        }
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .spawn()
            })
            .collect();
        rt.wait_idle();
        let failed_deps = waiter.join().unwrap();
        let planned = (0..n).filter(|i| i % 7 == 3).count();
        assert_eq!(
            failed_deps, planned,
            "round {round}: waiters saw every outcome"
        );
        let per = |i: usize| 1 + i % 2;
        let (planned, n) = (
            (0..n).filter(|i| i % 7 == 3).map(per).sum::<usize>(),
            (0..n).map(per).sum::<usize>(),
        );
        let failed: usize = dependents
            .into_iter()
            .map(|h| match h.wait() {
                Ok(()) => 0,
                Err(TaskError::DependencyFailed { .. }) => 1,
                Err(e) => panic!("round {round}: unexpected {e}"),
            })
            .sum();
        assert_eq!(
            failed, planned,
            "round {round}: failures reached their dependents"
        );
        assert_eq!(
            ran.load(Ordering::SeqCst),
            n - planned,
            "round {round}: a dependent lost"
        );
        assert_eq!(
            early.load(Ordering::SeqCst),
            0,
            "round {round}: ran before its dependency"
        );
    }
}
