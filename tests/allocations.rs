//! The common task costs one allocation: a task with a `'static` name, one body, no arrays
//! and one possible device is one node; a task declaring one array adds its declaration,
//! except when a finished task's spare declaration is there to reuse.
//! Counted by a global allocator over thousands of tasks (the queues' own growth amortises
//! to nothing), so the test fails if the hot path starts allocating again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use hetflow::{Placement, Runtime};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per task of `n` tasks made by `spawn_all` (after one warm-up round).
fn per_task(rt: &Runtime, n: usize, spawn_all: impl Fn(&Runtime, usize)) -> f64 {
    spawn_all(rt, n);
    rt.wait_idle();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    spawn_all(rt, n);
    rt.wait_idle();
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

#[test]
fn the_common_task_is_one_allocation_and_one_array_adds_one() {
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    let n = 20_000;
    let empty = per_task(&rt, n, |rt, n| {
        for _ in 0..n {
            drop(rt.task("empty").on(Placement::Cpu).cpu(|_| ()).spawn());
        }
    });
    assert!(empty <= 1.05, "{empty:.3} allocations per empty task");
    let a = rt.array::<u32>(1);
    let with_array = per_task(&rt, n, |rt, n| {
        for _ in 0..n {
            drop(
                rt.task("link")
                    .read_write(&a)
                    .on(Placement::Cpu)
                    .cpu(|_| ())
                    .spawn(),
            );
        }
    });
    assert!(
        with_array <= 2.05,
        "{with_array:.3} allocations per task declaring one array"
    );
    // A task that waits for the previous one finds its declaration's box among the spares
    // (a finished task gives it back before its dependents and waiters are released).
    let one_by_one = per_task(&rt, n, |rt, n| {
        for _ in 0..n {
            rt.task("link")
                .read_write(&a)
                .on(Placement::Cpu)
                .cpu(|_| ())
                .spawn()
                .wait()
                .unwrap();
        }
    });
    assert!(
        one_by_one <= 1.05,
        "{one_by_one:.3} allocations per task declaring one array, spawned one by one"
    );
    let chained = per_task(&rt, n, |rt, n| {
        let mut prev = rt.task("link").on(Placement::Cpu).cpu(|_| ()).spawn();
        for _ in 1..n {
            prev = rt
                .task("link")
                .after(&prev)
                .on(Placement::Cpu)
                .cpu(|_| ())
                .spawn();
        }
        prev.wait().unwrap();
    });
    assert!(chained <= 1.05, "{chained:.3} allocations per chained task");
}
