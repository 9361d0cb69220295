//! Parallel work of a neural time step on the runtime's CPU workers: the processes of one
//! wave of the spike order, and the data-parallel parts of one process (see `PROTOCOL.md`,
//! "Parallel processes").
//!
//! The parts borrow the network's state for the length of one call: [`Par::run`] spawns
//! each part but the last as a runtime task, runs the last on the calling thread and waits
//! for every task before it returns, like `std::thread::scope`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Placement, RuntimeHandle};

use super::NeuroError;

/// One part of a step: borrows a disjoint piece of the network's state.
pub(crate) type Job<'s> = Box<dyn FnOnce() -> Result<(), NeuroError> + Send + 's>;

/// Smallest population (elements) worth a part of its own: below it, a task costs more
/// than it saves.
pub(crate) const MIN_PART: usize = 4096;

/// The runtime's CPU pool as a neural run sees it.
pub(crate) struct Par {
    rt: RuntimeHandle,
    workers: usize,
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
        })
    }

    /// Parts for a population of `n` elements: one per worker, none under [`MIN_PART`].
    pub(crate) fn parts(&self, n: usize) -> usize {
        (n / MIN_PART).clamp(1, self.workers)
    }

    /// Runs every job, all but the last as CPU tasks of the runtime, the last here, and
    /// returns once all have finished: the first error (in job order) or Ok. A panic in the
    /// job run here is resumed after the tasks have finished.
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
        let mut spawned = Vec::with_capacity(jobs.len());
        for job in jobs {
            // SAFETY: only the lifetime changes (same layout). The job borrows data that
            // outlives this call, and it is run or dropped before this call returns: it
            // sits in `slot` until either the task or this thread takes it out (under the
            // lock, so exactly one does). If this thread takes it, it runs it here (below,
            // also after the inline job panicked) and the task only ever sees `None`. If
            // the task takes it, the task consumes it before it is complete, and this
            // thread waits for that task before returning. So no borrow is used after we
            // return.
            let job: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(job) };
            let slot = Arc::new(Mutex::new(Some(job)));
            let taken = slot.clone();
            let h = self
                .rt
                .task("neuro part")
                .on(Placement::Cpu)
                .cpu(move |_| {
                    let job = taken.lock().take();
                    job.map_or(Ok(()), |job| job())
                })
                .spawn();
            spawned.push((h, slot));
        }
        let here = std::panic::catch_unwind(AssertUnwindSafe(last));
        // Jobs no worker has started yet run here instead (the workers may be busy or
        // preempted): then their task finds the slot empty and holds no borrow, so there
        // is nothing to wait for. The last spawned are the least likely to have started.
        let mut errors: Vec<Option<NeuroError>> = (0..spawned.len()).map(|_| None).collect();
        let mut pending = vec![false; spawned.len()];
        for (k, (_, slot)) in spawned.iter().enumerate().rev() {
            let mine = slot.lock().take();
            match mine {
                Some(job) => {
                    errors[k] = match std::panic::catch_unwind(AssertUnwindSafe(job)) {
                        Ok(r) => r.err(),
                        Err(_) => Some(NeuroError::Panicked("a parallel part panicked".into())),
                    }
                }
                None => pending[k] = true,
            }
        }
        for (k, (h, _)) in spawned.into_iter().enumerate() {
            if pending[k] {
                errors[k] = match h.wait() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(NeuroError::Task(e)),
                };
            }
        }
        let first = errors.into_iter().flatten().next();
        match here {
            Err(p) => std::panic::resume_unwind(p),
            Ok(r) => match first {
                Some(e) => Err(e),
                None => r,
            },
        }
    }
}
