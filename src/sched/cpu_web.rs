//! The CPU "pool" in the browser (wasm32): the page's one thread, driven by its event loop.
//!
//! There are no threads to start, so CPU jobs go to one queue and a *pump* runs them: a
//! future spawned on the page's event loop (`wasm_bindgen_futures::spawn_local`) when the
//! queue stops being empty. The pump pops jobs oldest first and runs each to completion.
//!
//! ## Protocol
//! - `push` appends the job and, when no pump is scheduled, schedules one (`pumping` is set
//!   under the queue's lock, so exactly one pump exists while jobs wait: none is lost, none
//!   runs twice).
//! - Before a job runs, the pump awaits its host fetch ([`CpuJob::host_fetch`]): the copies
//!   from WebGPU buffers its body will read, made with an awaited `map_async` (the browser
//!   cannot block on a GPU). The job then runs synchronously and its preparation finds the
//!   fetched bytes (`data::transfer::with_fetched`, which drops them when it returns). Between
//!   the fetch and the run nothing else runs on the page's thread, and every task that could
//!   write those arrays depends on this one, so the fetched bytes are the latest.
//! - The pump yields to the event loop (a zero-delay timer) after `SLICE` of work, so WebGPU's
//!   callbacks (submissions done, buffers mapped) and the page stay live while a long graph
//!   runs. It ends when the queue is empty, clearing `pumping` under the lock.
//! - Jobs with a priority other than 0 wait in a [`Ranked`] queue beside the FIFO, and the
//!   pump takes the tiers of `ranked.rs` in order (above 0, the FIFO, below 0). A ranked push
//!   schedules a pump under the same lock as a plain one.
//! - There is one "worker": the pump. Heterogeneous stealing is not offered (nothing idles).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use super::job::{CpuJobRef, CpuStealHook};
use super::quiet::Quiet;
use super::ranked::Ranked;

/// How long the pump runs jobs before it lets the event loop run.
const SLICE: std::time::Duration = std::time::Duration::from_millis(4);

struct Queue {
    jobs: VecDeque<CpuJobRef>,
    ranked: Ranked<CpuJobRef>,
    pumping: bool,
    shutdown: bool,
}

pub(crate) struct CpuPool {
    queue: Mutex<Queue>,
    /// The runtime's count of ready or running tasks (`quiet.rs`; nothing is deferred here).
    pub(crate) quiet: Quiet,
}

impl CpuPool {
    /// The page's executor; `n` is ignored beyond being at least one (one thread exists).
    pub(crate) fn start(_n: usize) -> std::io::Result<Arc<CpuPool>> {
        Ok(Arc::new(CpuPool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                ranked: Ranked::default(),
                pumping: false,
                shutdown: false,
            }),
            quiet: Quiet::default(),
        }))
    }

    pub(crate) fn workers(&self) -> usize {
        1
    }

    /// The pump is idle when nothing is queued.
    pub(crate) fn idle_workers(&self) -> usize {
        usize::from(!self.queue.lock().pumping)
    }

    pub(crate) fn queued(&self) -> usize {
        let q = self.queue.lock();
        q.jobs.len() + q.ranked.len()
    }

    pub(crate) fn queued_anywhere(&self) -> usize {
        self.queued()
    }

    /// Queues a job and makes sure a pump will run it.
    pub(crate) fn push(self: &Arc<Self>, job: CpuJobRef) {
        self.enqueue(|q| q.jobs.push_back(job));
    }

    /// Queues a job with a priority other than 0 (`ranked.rs`).
    pub(crate) fn push_ranked(self: &Arc<Self>, job: CpuJobRef, priority: i32) {
        self.enqueue(|q| q.ranked.push(job, priority));
    }

    fn enqueue(self: &Arc<Self>, add: impl FnOnce(&mut Queue)) {
        let start = {
            let mut q = self.queue.lock();
            add(&mut q);
            !std::mem::replace(&mut q.pumping, true)
        };
        if start {
            wasm_bindgen_futures::spawn_local(pump(self.clone()));
        }
    }

    /// A task of this pool's runtime finished.
    pub(crate) fn task_finished(self: &Arc<Self>) {
        self.quiet.finished(1);
    }

    /// Stealing is not offered in the browser: the hook is kept unused.
    pub(crate) fn set_steal_hook(&self, _hook: CpuStealHook) {}

    pub(crate) fn nudge(&self) {}

    pub(crate) fn steal_for_gpu(&self, _gpu: usize) -> Option<CpuJobRef> {
        None
    }

    /// Queued jobs still run (the pump drains the queue); nothing to join.
    pub(crate) fn shutdown(&self) {
        self.queue.lock().shutdown = true;
    }

    /// Whether the caller is the pump running a job (where a job is never waited on).
    pub(crate) fn is_worker_thread(self: &Arc<Self>) -> bool {
        self.queue.lock().pumping
    }

    fn pop(&self) -> Option<CpuJobRef> {
        let mut q = self.queue.lock();
        let j = q
            .ranked
            .pop_above(Some(0))
            .or_else(|| q.jobs.pop_front())
            .or_else(|| q.ranked.pop_above(None));
        if j.is_none() {
            q.pumping = false;
            if q.shutdown {
                tracing::trace!("CPU pump stopped");
            }
        }
        j
    }
}

async fn pump(pool: Arc<CpuPool>) {
    let mut slice = crate::time::Instant::now();
    while let Some(job) = pool.pop() {
        let fetched = match job.host_fetch() {
            Some(fetch) => fetch.await,
            None => Default::default(),
        };
        crate::data::transfer::with_fetched(fetched, || job.run_on_cpu());
        if slice.elapsed() >= SLICE {
            crate::web::yield_to_event_loop().await;
            slice = crate::time::Instant::now();
        }
    }
}

/// No job can skip a wake-up here: there is nothing to wake.
pub(crate) fn quiet_next_push<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Never helps: in the browser nothing blocks waiting for a task (waits are `async`).
pub(crate) fn help_while_waiting(_done: &dyn Fn() -> bool, _register: &dyn Fn(Waker)) -> bool {
    false
}

/// The pump counts as worker 0 (for traces).
pub(crate) fn worker_index() -> Option<usize> {
    Some(0)
}
