//! Scheduling layer: where and when ready work runs.
//!
//! Job: run CPU jobs on a work-stealing pool (`cpu`: a crossbeam deque per worker, a global
//! injector, stealing, parking — protocol in `SLEEP.md`), run GPU jobs through one driver
//! thread per device that batches them into few submissions (`gpu`), and decide where each
//! ready task runs: the `scheduler::Scheduler` owns the pool and the drivers and makes every
//! decision (the placement rule and the policies of [`placement`], dmda's backlog and
//! [`PerfModel`], heterogeneous stealing, fence-ordered dispatch).
//!
//! The default policy is dmda: its model predicts a task's run time per device from
//! measured, scaled or transferred evidence and pays for calibration from a bounded budget
//! ([`perfmodel`], "Calibration with bounded regret"), so a device much slower than the CPU
//! (a software adapter) costs a first run at most a tenth of its work; the model persists per
//! device identity between runs ([`store`]).
//!
//! Invariants:
//! - a job pushed to the pool is run exactly once, by some worker, even if every worker was
//!   asleep when it was pushed (no lost wake-up);
//! - ready CPU jobs run by priority tier (`ranked`: above 0, then the default 0 in the
//!   deques' order, then below 0); a priority never reorders dependencies;
//! - idle workers and idle drivers block; nothing spins;
//! - GPU jobs of one device are submitted in the order they were encoded, so a job may rely on
//!   every job encoded before it on the same device having executed first;
//! - a fence waiter registered for batch `s` runs exactly once, after batch `s` finished;
//! - `wait_idle` returns only when no task is ready or running, and does return then: the
//!   live-task count (`quiet`) is never below the true count, and a worker subtracts the
//!   finishes it defers before it idles (`quiet.rs`, "Protocol");
//! - a worker gives the job references it ran back through `CpuJob::retire`, in batches,
//!   outside its borrows (a job may keep its allocation: the task layer's node recycling);
//! - explorations (tasks placed to measure a device) cost at most `EXPLORE_FRACTION` of the
//!   timed work plus one task: each is debited at its predicted cost when placed, settled at
//!   its measured cost when it finishes, and allowed only while the budget covers it;
//! - heterogeneous stealing moves a ready job between the pool and a GPU queue under the
//!   source queue's lock, so it runs exactly once; a GPU job carrying a fence that has not
//!   passed is never moved (the task layer refuses), since only its own GPU's queue order
//!   makes it safe to start.
//!
//! This layer runs opaque jobs (`job::CpuJob`, `job::GpuJob`: one abstraction, so the pool
//! and the drivers do not import each other); what a task is, and its dependencies, belong
//! to the task layer above.

// In the browser the pool is the page's event loop (`cpu_web.rs`), with the same interface.
#[cfg_attr(target_arch = "wasm32", path = "cpu_web.rs")]
pub(crate) mod cpu;
pub(crate) mod gpu;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod hooks;
pub(crate) mod job;
pub mod perfmodel;
pub mod placement;
pub(crate) mod quiet;
pub(crate) mod ranked;
pub(crate) mod scheduler;
#[cfg(not(target_arch = "wasm32"))]
mod sleep;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub mod store;

pub use perfmodel::PerfModel;
pub use placement::{Placement, Policy};

/// Polls `cond` with `yield_now` between checks for up to `limit`; true if it became true.
/// In the browser it only checks once: spinning there would hold the page's one thread.
pub(crate) fn spin_until(limit: std::time::Duration, cond: impl Fn() -> bool) -> bool {
    if cfg!(target_arch = "wasm32") {
        return cond();
    }
    let start = crate::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
}
