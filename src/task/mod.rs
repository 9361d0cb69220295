//! Task layer: spawning tasks, their dependency graph, handles and task spaces.
//!
//! Job: turn `rt.task(name)…spawn()` into a node of the dependency graph (`node`), infer
//! dependencies from declared array accesses (readers after the last writer; a writer after
//! the last writer and every reader since), add explicit ones (handles, [`TaskSpace`] keys,
//! possibly spawned later), and hand ready nodes to the scheduler (`core::Core::schedule`).
//!
//! Invariants:
//! - a node is scheduled exactly once, when its last dependency is released;
//! - a task whose dependency failed does not run its body; it completes with
//!   [`TaskError::DependencyFailed`] naming the root task, and so do its own dependents;
//! - a panic in a body is caught and becomes [`TaskError::Panicked`]; workers survive it;
//! - spawns that declare array accesses are ordered by one lock, so every array sees the
//!   same order of tasks and inferred dependencies cannot form a cycle.

mod builder;
mod context;
pub(crate) mod core;
mod error;
mod handle;
pub(crate) mod node;
mod prefetch;
mod space;
mod trace;

pub use builder::TaskBuilder;
pub use context::{CpuContext, GpuContext, KernelArg, Uniform};
pub use error::{BuildError, TaskError};
pub use handle::{Dependency, TaskHandle, TaskRef};
pub use space::{Key, TaskSpace};
pub use trace::{TaskEvent, Trace};
