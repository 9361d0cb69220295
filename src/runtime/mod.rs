//! The runtime: what one `Runtime` owns and how a task travels through it.
//!
//! Job: build the engine from its tunables ([`RuntimeBuilder`]: CPU workers, GPUs, policy,
//! memory budgets, upload path, performance model), hand out the handles users spawn tasks
//! and create arrays with ([`Runtime`], [`RuntimeHandle`]), and own the state every handle
//! shares (`core::Core`): the [`crate::sched`] scheduler (CPU pool, GPU drivers, placement,
//! backlog, stealing), the per-GPU residency, the transfer counters, the kernel cache, the
//! access trackers of the arrays, and the trace.
//!
//! The path of a task: `rt.task(..)…spawn()` (the task layer builds a node and records its
//! accesses in the trackers here) → its last dependency is released → `Core::schedule` asks
//! the scheduler where it runs → the pool or a driver runs the node (the task layer's job:
//! prepare data through [`crate::data`], run or encode the body) → the node reports back
//! (`Core::task_ran`: backlog, performance model, trace) and releases its dependents.
//!
//! Invariants:
//! - every array of a runtime names it by an [`OwnerId`](crate::data) the core resolves
//!   through this module's registry (no type-erased back pointer into the core): an array of
//!   another runtime, or of one that is gone, is refused with a typed error;
//! - the access-tracking part of every spawn runs under one lock (the trackers' mutex), so
//!   all arrays see one order of tasks and inferred dependencies cannot form a cycle;
//! - dropping the [`Runtime`] waits for every ready or running task, fails tasks that wait on
//!   never-spawned keys, then stops the pool and the drivers; handles outliving it get
//!   `ShutDown` / `RuntimeGone` errors, never a hang.

mod builder;
pub(crate) mod core;
mod handle;

pub use builder::{GpuSelection, ModelPersistence, RuntimeBuilder};
pub use handle::{Runtime, RuntimeHandle, Stats};
