//! Parallel work of a neural time step on the runtime's CPU workers: the processes of one
//! wave of the spike order, and the data-parallel parts of one process (see `PROTOCOL.md`,
//! "Parallel processes").
//!
//! The parts borrow the network's state for the length of one call: [`Par::run`] queues
//! each part but the last for the run's *helpers*, runs the last on the calling thread,
//! then takes back whatever no helper has started, and returns once every part has
//! finished, like `std::thread::scope`.
//!
//! Helpers are runtime tasks (at most one fewer than the CPU workers) that stay on their
//! worker between the parts of consecutive calls, waiting for the next part for up to
//! [`HELPER_IDLE`], then end; the next call spawns them again. A step calls `run` a few
//! times, some tens of µs apart: a worker that went to sleep in between takes some 30 µs to
//! wake on this repository's VM (measured: the mean delay from spawn to start of a part at
//! 100k neurons was 31 µs with a task per part), which is as long as the part itself.
//!
//! Invariants (why no part is lost, run twice, or outlives its borrow):
//! - a part sits in `Team::queue` until exactly one thread pops it under the queue's lock
//!   (a helper, or the call that queued it); whoever pops it counts it in its call's
//!   `running` before the lock is let go, and uncounts it only after the part has run
//!   and been dropped;
//! - a call pops its own parts that are left after its last one and then waits until its
//!   `running` is 0, so all of its parts have been run and dropped before it returns; a
//!   helper that ends while parts are queued leaves them to their calls, so a call never
//!   waits for a part that nobody is running;
//! - calls may nest (a process of a parallel wave splits its own work) and run at once
//!   (two processes of a wave): each waits only for its own parts, and only for parts
//!   another thread is running at that moment, so the waits follow the nesting and end.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Placement, RuntimeHandle};

use super::NeuroError;

/// One part of a step: borrows a disjoint piece of the network's state.
pub(crate) type Job<'s> = Box<dyn FnOnce() -> Result<(), NeuroError> + Send + 's>;

/// Smallest population (elements) worth a part of its own: below it, handing it to a
/// helper costs more than it saves.
pub(crate) const MIN_PART: usize = 4096;

/// How long a helper waits for the next part before its task ends (it looks again and
/// again, yielding the core between looks). Longer than the serial stretches of a step at 100k neurons
/// (compaction, the counter, the run loop: some 100 µs), short enough that a finished
/// run gives its workers back at once for other tasks.
pub(crate) const HELPER_IDLE: std::time::Duration = std::time::Duration::from_millis(1);

/// One `Par::run` in progress.
#[derive(Default)]
struct Call {
    /// Its parts popped from the queue and not yet finished (incremented under the
    /// queue's lock).
    running: AtomicUsize,
    /// Its parts that failed: (index in the call, error).
    failed: Mutex<Vec<(usize, NeuroError)>>,
}

/// A queued part: its call, its index there, the work.
struct Queued {
    call: Arc<Call>,
    k: usize,
    job: Job<'static>,
}

/// The queued parts and the helpers' bookkeeping.
#[derive(Default)]
struct Team {
    queue: Mutex<VecDeque<Queued>>,
    /// `queue.len()`, for helpers to look at without the lock.
    queued: AtomicUsize,
    /// Helper tasks spawned and not yet ended.
    helpers: AtomicUsize,
    /// Set when the network is dropped: helpers end at their next look.
    stop: AtomicBool,
}

impl Team {
    /// Pops the first queued part, or the first of `call`'s; counts it as running.
    fn pop(&self, call: Option<&Arc<Call>>) -> Option<Queued> {
        let mut q = self.queue.lock();
        let at = match call {
            None => 0,
            Some(c) => q.iter().position(|p| Arc::ptr_eq(&p.call, c))?,
        };
        let part = q.remove(at)?;
        self.queued.store(q.len(), Ordering::Release);
        part.call.running.fetch_add(1, Ordering::AcqRel);
        Some(part)
    }

    /// Runs a popped part and records its outcome in its call.
    fn finish(part: Queued) {
        let Queued { call, k, job } = part;
        if let Some(e) = run_caught(job) {
            call.failed.lock().push((k, e));
        }
        call.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// A helper's task: runs queued parts until none came for [`HELPER_IDLE`].
    fn serve(&self) {
        let stop = || self.stop.load(Ordering::Acquire);
        // Each wait for the next part is `spin_until`'s: looks, yielding the core between.
        while crate::sched::spin_until(HELPER_IDLE, || {
            stop() || self.queued.load(Ordering::Acquire) > 0
        }) && !stop()
        {
            if let Some(part) = self.pop(None) {
                Team::finish(part);
            }
        }
        self.helpers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a part, turning a panic into an error; `None` when it succeeded.
fn run_caught(job: Job<'_>) -> Option<NeuroError> {
    match std::panic::catch_unwind(AssertUnwindSafe(job)) {
        Ok(r) => r.err(),
        Err(_) => Some(NeuroError::Panicked("a parallel part panicked".into())),
    }
}

/// The runtime's CPU pool as a neural run sees it.
pub(crate) struct Par {
    rt: RuntimeHandle,
    workers: usize,
    team: Arc<Team>,
}

impl Drop for Par {
    fn drop(&mut self) {
        self.team.stop.store(true, Ordering::Release);
    }
}

impl Par {
    /// `rt`'s CPU workers; `None` when it has one worker or fewer (nothing to split for).
    /// In the browser the page's one thread runs every CPU task, so there is never a pool.
    pub(crate) fn new(rt: &RuntimeHandle) -> Option<Par> {
        if cfg!(target_arch = "wasm32") {
            return None;
        }
        let workers = rt.topology().cpu.workers;
        (workers > 1).then(|| Par {
            rt: rt.clone(),
            workers,
            team: Arc::default(),
        })
    }

    /// Parts for a population of `n` elements: one per worker, none under [`MIN_PART`].
    pub(crate) fn parts(&self, n: usize) -> usize {
        (n / MIN_PART).clamp(1, self.workers)
    }

    /// Runs every job, all but the last on the helpers, the last here, and returns once
    /// all have finished: the first error (in job order) or Ok. A panic in the job run
    /// here is resumed after the others have finished.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn run(&self, jobs: Vec<Job<'_>>) -> Result<(), NeuroError> {
        // No worker can take a part while this thread runs (see `Par::new`): run them here.
        jobs.into_iter().try_for_each(|job| job())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn run(&self, mut jobs: Vec<Job<'_>>) -> Result<(), NeuroError> {
        let Some(last) = jobs.pop() else {
            return Ok(());
        };
        let others = jobs.len();
        let team = &self.team;
        let call = Arc::new(Call::default());
        {
            let mut q = team.queue.lock();
            for (k, job) in jobs.into_iter().enumerate() {
                // SAFETY: only the lifetime changes (same layout). The job borrows data
                // that outlives this call, and it is run and dropped before this call
                // returns: it is popped exactly once (under the queue's lock) and counted
                // in `call.running` until it has run; this call pops its own parts that
                // are still queued and then waits for `call.running` to be 0 before it
                // returns (module doc). So no borrow is used after we return.
                let job: Job<'static> =
                    unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(job) };
                q.push_back(Queued {
                    call: call.clone(),
                    k,
                    job,
                });
            }
            team.queued.store(q.len(), Ordering::Release);
        }
        let want = others.min(self.workers - 1);
        while team.helpers.load(Ordering::Acquire) < want {
            team.helpers.fetch_add(1, Ordering::AcqRel);
            let t = team.clone();
            let helper = self
                .rt
                .task("neuro helper")
                .on(Placement::Cpu)
                .cpu(move |_| {
                    t.serve();
                    Ok::<(), NeuroError>(())
                })
                .spawn();
            // Detached: the task ends by itself (idle, or the network dropped).
            drop(helper);
        }
        let here = std::panic::catch_unwind(AssertUnwindSafe(last));
        // Parts no helper has started yet run here (the helpers may be busy elsewhere,
        // preempted, or not started yet).
        while let Some(part) = team.pop(Some(&call)) {
            Team::finish(part);
        }
        crate::sched::spin_until(std::time::Duration::MAX, || {
            call.running.load(Ordering::Acquire) == 0
        });
        let first = std::mem::take(&mut *call.failed.lock())
            .into_iter()
            .min_by_key(|(k, _)| *k)
            .map(|(_, e)| e);
        match here {
            Err(p) => std::panic::resume_unwind(p),
            Ok(r) => match first {
                Some(e) => Err(e),
                None => r,
            },
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    fn two_workers() -> crate::Runtime {
        crate::Runtime::builder()
            .no_gpu()
            .cpu_workers(2)
            .build()
            .unwrap()
    }

    #[test]
    fn every_part_runs_once_helpers_take_some_and_the_first_error_is_in_part_order() {
        let rt = two_workers();
        let par = Par::new(&rt.handle()).unwrap();
        let me = std::thread::current().id();
        let runs: Vec<AtomicU32> = (0..5).map(|_| AtomicU32::new(0)).collect();
        let elsewhere = AtomicU32::new(0);
        for round in 0..20 {
            let jobs: Vec<Job<'_>> = (0..5)
                .map(|k| {
                    let (runs, elsewhere) = (&runs, &elsewhere);
                    Box::new(move || {
                        runs[k].fetch_add(1, Ordering::Relaxed);
                        if std::thread::current().id() != me {
                            elsewhere.fetch_add(1, Ordering::Relaxed);
                        }
                        // The last part (run here) is long enough for a helper to start.
                        std::thread::sleep(Duration::from_millis(if k == 4 { 5 } else { 1 }));
                        match k {
                            1 | 3 => Err(NeuroError::Panicked(format!("part {k}"))),
                            _ => Ok(()),
                        }
                    }) as Job<'_>
                })
                .collect();
            match par.run(jobs) {
                Err(NeuroError::Panicked(m)) => assert_eq!(m, "part 1", "round {round}"),
                other => panic!("round {round}: {other:?}"),
            }
            for (k, r) in runs.iter().enumerate() {
                assert_eq!(
                    r.load(Ordering::Relaxed),
                    round + 1,
                    "part {k}, round {round}"
                );
            }
        }
        assert!(
            elsewhere.load(Ordering::Relaxed) > 0,
            "no part ran on a helper"
        );
    }

    #[test]
    fn nested_calls_and_a_panicking_part_finish_with_every_part_run() {
        let rt = two_workers();
        let par = Par::new(&rt.handle()).unwrap();
        let count = AtomicU32::new(0);
        let (par_ref, count_ref) = (&par, &count);
        let outer: Vec<Job<'_>> = (0..3)
            .map(|_| {
                Box::new(move || {
                    let inner: Vec<Job<'_>> = (0..4)
                        .map(|_| {
                            Box::new(move || {
                                count_ref.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_micros(200));
                                Ok(())
                            }) as Job<'_>
                        })
                        .collect();
                    par_ref.run(inner)
                }) as Job<'_>
            })
            .collect();
        par.run(outer).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 12);
        // A part that panics (on a helper or here) fails the call; the others still run.
        let ran = AtomicU32::new(0);
        let jobs: Vec<Job<'_>> = (0..3)
            .map(|k| {
                let ran = &ran;
                Box::new(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                    if k == 0 {
                        panic!("boom");
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    Ok(())
                }) as Job<'_>
            })
            .collect();
        assert!(matches!(par.run(jobs), Err(NeuroError::Panicked(_))));
        assert_eq!(ran.load(Ordering::Relaxed), 3);
    }
}
