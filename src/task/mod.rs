//! Task layer: spawning tasks, their dependency graph, handles and task spaces.
//!
//! Job: turn `rt.task(name)…spawn()` into a node of the dependency graph (`node`), with its
//! arrays declared as typed arguments (`args`: `.args((x.read(), y.read_write()))`) or one by
//! one (`builder`: `.reads(&x)`), infer dependencies from the declared accesses (readers
//! after the last writer; a writer after the last writer and every reader since; `tracking`),
//! add explicit ones (handles, [`TaskSpace`] keys, possibly spawned later), and hand ready
//! nodes to the runtime's core, which asks the scheduler where they run.
//!
//! Invariants:
//! - a node is scheduled exactly once, when its last dependency is released;
//! - a task whose dependency failed does not run its body; it completes with
//!   [`TaskError::DependencyFailed`] naming the root task, and so do its own dependents
//!   (except through an edge that only orders, below);
//! - a panic in a body is caught and becomes [`TaskError::Panicked`]; workers survive it;
//! - spawns that declare array accesses are ordered by one lock, so every array sees the
//!   same order of tasks and inferred dependencies cannot form a cycle;
//! - a plain task (no arrays, one possible device, nobody waiting) takes no lock from spawn
//!   to completion (`node`, "Completion without a lock"); a node nothing else holds when
//!   its worker drops it is reused by a later spawn (`recycle`) instead of freed.
//!
//! ## Failure semantics
//! A failed task *poisons* the arrays it declared: its entry stays in the array's access
//! tracker (`tracking::Trackers`, over `data::family::RangeTracker`; successful tasks are
//! forgotten), so every later
//! task that reads, updates or reduces an overlapping range depends on it and fails with
//! [`TaskError::DependencyFailed`] naming it, and so does `to_vec`. The poison lasts until:
//! - a task declares [`crate::Access::Write`] of a range covering the failed access: a write
//!   reads nothing, so its edges to earlier accesses only order it (they never fail it); it
//!   runs, and its entry replaces the entries it covers. Writing the whole array clears it;
//!   writing a slice clears failures inside the slice, while a failure on a wider range still
//!   fails readers of the slice and of the rest;
//! - [`crate::Array::clear_error`], a body-less whole write: it clears without changing the
//!   contents.
//!
//! An explicit dependency (`after`, `after_key`) on a failed task always fails. Nothing waits
//! forever on keys: a spawn that would close a cycle of dependencies through TaskSpace keys
//! fails with [`TaskError::KeyCycle`]; dropping a runtime fails the keys its tasks wait for
//! that no task was spawned under with [`TaskError::NeverSpawned`] (their waiters, and a
//! `to_vec` behind them, fail naming `space[key]`), and
//! [`crate::RuntimeHandle::wait_idle_checked`] reports them before that.

mod args;
mod builder;
mod context;
mod error;
mod event;
mod handle;
pub(crate) mod node;
mod prefetch;
pub(crate) mod recycle;
mod space;
pub(crate) mod trace;
pub(crate) mod tracking;

pub use args::{
    ArgsTask, Bind, Binding, Bindings, ReadArg, ReadWriteArg, ReduceArg, TaskArg, TaskArgs,
    WriteArg,
};
pub use builder::TaskBuilder;
pub use context::{CpuContext, GpuContext, KernelArg, Uniform};
pub use error::{BuildError, TaskError};
pub use event::{Event, EventTrigger};
pub use handle::{Dependency, TaskHandle, TaskRef};
pub use space::{TaskKey, TaskSpace};
pub use trace::{TaskEvent, Trace};
