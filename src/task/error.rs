//! Errors of the task layer (and of the runtime as a whole).

use std::sync::Arc;

use crate::data::DataError;
use crate::device::DeviceError;

/// Why a task did not produce its value.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The body panicked; `message` is the panic payload.
    #[error("task `{task}` panicked: {message}")]
    Panicked {
        /// The task's name.
        task: String,
        /// The panic message.
        message: String,
    },
    /// A fallible body (`cpu_try`, `gpu_try`) returned `Err`.
    #[error("task `{task}` failed: {error}")]
    Failed {
        /// The task's name.
        task: String,
        /// The body's error.
        error: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The task did not run because a task it depends on failed.
    #[error("task `{task}` did not run: dependency `{root}` failed ({cause})")]
    DependencyFailed {
        /// The task that did not run.
        task: String,
        /// The task whose failure started the chain.
        root: String,
        /// The root task's own error.
        cause: Arc<TaskError>,
    },
    /// No device can run the task (e.g. GPU-only body and no GPU).
    #[error("task `{task}` cannot be placed: {reason}")]
    NoDevice {
        /// The task's name.
        task: String,
        /// What was allowed and what exists.
        reason: String,
    },
    /// A dispatch of the task's GPU body was refused before reaching wgpu (wrong number or
    /// kind of arguments, too many workgroups, a kernel of another runtime).
    #[error("task `{task}`: GPU error: {message}")]
    Gpu {
        /// The task's name.
        task: String,
        /// What was wrong, and what was expected.
        message: String,
    },
    /// wgpu rejected the task's commands (validation of its passes and bindings).
    #[error("task `{task}`: GPU error: {source}")]
    Wgpu {
        /// The task's name.
        task: String,
        /// wgpu's error.
        #[source]
        source: Arc<wgpu::Error>,
    },
    /// The task was encoded into a GPU batch that failed as a whole: `queue.submit` rejected
    /// it (one task's commands were invalid at submit time, e.g. they use a destroyed buffer),
    /// or the device failed while running it. None of the batch's commands can be trusted, so
    /// every task in it fails with this error, the innocent ones too.
    #[error("task `{task}`: GPU batch {batch} on GPU {gpu} ({tasks} task(s)) failed: {cause}")]
    GpuBatchFailed {
        /// The task's name.
        task: String,
        /// The GPU's index.
        gpu: usize,
        /// The batch's sequence number on that GPU.
        batch: u64,
        /// How many tasks the batch held.
        tasks: usize,
        /// wgpu's error.
        #[source]
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// An array passed to a kernel binding does not match the binding's WGSL type: another
    /// element type (an `Array<f32>` bound to `array<u32>`), or a size that is not a whole
    /// number of elements (6 floats bound to `array<vec4<f32>>`).
    #[error("task `{task}`: kernel `{kernel}` binding {binding} expects {expected}; array `{array}` has {found}")]
    BindingMismatch {
        /// The task's name.
        task: String,
        /// The kernel's label.
        kernel: Box<str>,
        /// The binding index.
        binding: u32,
        /// The array's label.
        array: Box<str>,
        /// What the binding holds (element type and size).
        expected: Box<str>,
        /// What the array has.
        found: Box<str>,
    },
    /// Moving or borrowing the task's data failed.
    #[error("task `{task}`: {error}")]
    TaskData {
        /// The task's name.
        task: String,
        /// What went wrong.
        error: DataError,
    },
    /// A data error outside any task (e.g. `to_vec` after the runtime is gone).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A device error (kernel compilation).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A task was spawned under a TaskSpace key that already has one.
    #[error("task space `{space}`: key {key} was already spawned")]
    DuplicateKey {
        /// The space's name.
        space: String,
        /// The key.
        key: String,
    },
    /// No task was spawned under a TaskSpace key that tasks waited for, and the runtime of
    /// those tasks shut down. The waiting tasks fail with [`TaskError::DependencyFailed`]
    /// whose root is the key (`space[key]`).
    #[error("task space `{space}`: no task was spawned under key {key}, which tasks waited for when their runtime shut down")]
    NeverSpawned {
        /// The space's name.
        space: String,
        /// The key.
        key: String,
    },
    /// Waiting for the task would close a cycle of dependencies (through TaskSpace keys): the
    /// task fails at spawn instead, and the tasks of the cycle that wait for it fail naming it.
    #[error("task `{task}` would close a dependency cycle {}; a task may not wait for a key whose task waits for it", cycle.join(" -> "))]
    KeyCycle {
        /// The task being spawned.
        task: String,
        /// The cycle, from the task's key back to it: `space[key]` for keyed tasks, else
        /// task names.
        cycle: Vec<String>,
    },
    /// The runtime is idle but tasks still wait for TaskSpace keys that no task was spawned
    /// under ([`crate::RuntimeHandle::wait_idle_checked`]).
    #[error("the runtime is idle but tasks {tasks:?} wait for TaskSpace keys {keys:?} that no task was spawned under; spawn tasks under them, or drop the runtime to fail the waiting tasks with NeverSpawned")]
    Stalled {
        /// The keys (`space[key]`), sorted.
        keys: Vec<String>,
        /// The tasks that wait for them directly, sorted.
        tasks: Vec<String>,
    },
    /// A task was declared to depend on itself.
    #[error("task `{task}` depends on itself")]
    SelfDependency {
        /// The task's name.
        task: String,
    },
    /// The runtime shut down before the task could run.
    #[error("the runtime has shut down; task `{task}` did not run")]
    ShutDown {
        /// The task's name.
        task: String,
    },
    /// A GPU body tried to wait on a task, which would stall the GPU driver.
    #[error("a GPU body waited on task `{task}`; GPU bodies only encode work and must not block")]
    WaitInGpuBody {
        /// The awaited task.
        task: String,
    },
    /// A task declared an array made by another runtime: its copies and device buffers belong
    /// to that runtime's devices.
    #[error("task `{task}` declares array `{array}`, which was made by another runtime; a task may only use arrays of the runtime it is spawned on (copy the data into an array of this runtime)")]
    ForeignArray {
        /// The task's name.
        task: String,
        /// The array's label.
        array: String,
    },
    /// A task of another process (an MPI rank of a [`crate::dist::Cluster`]) failed, and its
    /// failure reached this process instead of the data it would have produced. Tasks here
    /// that depend on that data fail with [`TaskError::DependencyFailed`] whose root is
    /// `task`.
    #[error("task `{task}` failed on rank {rank}: {message}")]
    Remote {
        /// The root task's name, as spawned on every rank.
        task: String,
        /// The rank it ran (and failed) on.
        rank: usize,
        /// Its error, as text (errors do not cross processes as values).
        message: String,
    },
    /// The handle's value was already taken (a future polled after completion).
    #[error("the value of task `{task}` was already taken")]
    ValueTaken {
        /// The task's name.
        task: String,
    },
}

impl TaskError {
    /// The task whose failure is at the root of this error (itself unless it is a
    /// [`TaskError::DependencyFailed`]).
    pub fn root_task(&self) -> Option<&str> {
        match self {
            TaskError::DependencyFailed { root, .. } => Some(root),
            TaskError::Panicked { task, .. }
            | TaskError::Failed { task, .. }
            | TaskError::NoDevice { task, .. }
            | TaskError::Gpu { task, .. }
            | TaskError::Wgpu { task, .. }
            | TaskError::GpuBatchFailed { task, .. }
            | TaskError::BindingMismatch { task, .. }
            | TaskError::TaskData { task, .. }
            | TaskError::SelfDependency { task }
            | TaskError::ForeignArray { task, .. }
            | TaskError::KeyCycle { task, .. }
            | TaskError::Remote { task, .. }
            | TaskError::ShutDown { task } => Some(task),
            _ => None,
        }
    }
}

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A configuration value is out of range.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// A requested GPU does not exist.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A thread could not be started.
    #[error("could not start a runtime thread: {0}")]
    Thread(#[from] std::io::Error),
}
