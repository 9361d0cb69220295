//! Dropping a runtime finishes its running tasks and joins every thread it started.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn hetflow_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s.starts_with("hetflow-"))
        .collect()
}

/// The hetflow threads still listed after a deadline. `join` returns when the kernel clears
/// the exiting thread's id (its `exit_mm`), a moment before the thread leaves the group's
/// list that `/proc/self/task` reads; on a loaded VM that moment can be milliseconds. A
/// thread that was never joined stays listed whatever the wait.
fn hetflow_threads_after_exit() -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let left = hetflow_threads();
        if left.is_empty() || start.elapsed() > std::time::Duration::from_secs(5) {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn no_threads_left_after_drop_and_running_tasks_finish() {
    let _ = hetflow::device::gpus(); // device discovery's own threads are process-wide
    assert!(hetflow_threads().is_empty());
    let done = Arc::new(AtomicUsize::new(0));
    {
        let rt = hetflow::Runtime::builder().cpu_workers(3).build().unwrap();
        let expected = 3 + rt.gpu_count();
        // A thread names itself when it starts running: give the new ones a moment.
        let start = std::time::Instant::now();
        while hetflow_threads().len() < expected && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(hetflow_threads().len(), expected, "{:?}", hetflow_threads());
        for _ in 0..20 {
            let d = done.clone();
            rt.task("slow")
                .cpu(move |_| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    d.fetch_add(1, Ordering::SeqCst);
                })
                .spawn();
        }
        if rt.gpu_count() > 0 {
            rt.task("gpu").gpu(|_| ()).spawn();
        }
        // Dropped here with tasks queued and running.
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        20,
        "drop must finish queued tasks"
    );
    let left = hetflow_threads_after_exit();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Many runtimes in a row leave nothing behind either.
    for _ in 0..10 {
        let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
        rt.task("x").cpu(|_| ()).spawn().wait().unwrap();
    }
    let left = hetflow_threads_after_exit();
    assert!(left.is_empty(), "left behind by 10 runtimes: {left:?}");
}
