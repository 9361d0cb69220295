//! Errors of the data layer.

/// What went wrong with a managed array or a transfer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The array does not fit in one buffer binding of the GPU it must move to.
    #[error("array `{array}` is {bytes} bytes, larger than GPU {gpu}'s limit of {limit} bytes per storage binding")]
    TooLarge {
        /// The array's label.
        array: String,
        /// Its size.
        bytes: u64,
        /// The GPU it had to move to.
        gpu: usize,
        /// The device's storage-binding limit.
        limit: u64,
    },
    /// The array alone is larger than the GPU's memory budget: the task can never run there.
    #[error("array `{array}` needs {bytes} bytes on GPU {gpu}, more than its memory budget of {budget} bytes")]
    OverBudget {
        /// The array's label.
        array: String,
        /// Bytes it needs.
        bytes: u64,
        /// The GPU.
        gpu: usize,
        /// The GPU's budget.
        budget: u64,
    },
    /// Every copy on the GPU is pinned by queued tasks, so nothing can be evicted now. The
    /// GPU driver handles this itself (it submits, waits for its queued work and retries); it
    /// does not reach users.
    #[error("GPU {gpu}'s memory budget is held by copies of queued tasks")]
    GpuMemoryBusy {
        /// The GPU.
        gpu: usize,
    },
    /// Mapping a staging buffer or polling the device failed.
    #[error("transfer {link} of array `{array}` failed: {message}")]
    Transfer {
        /// The array's label.
        array: String,
        /// The link, e.g. `gpu0->host`.
        link: String,
        /// wgpu's message.
        message: String,
    },
    /// A task body used an array it did not declare, or in a mode it did not declare.
    #[error("task `{task}` used array `{array}` for {used}, but declared {declared}; declare it with .reads/.writes/.read_write on the task")]
    Undeclared {
        /// The task.
        task: String,
        /// The array.
        array: String,
        /// What the body asked for (`reading`, `writing`).
        used: &'static str,
        /// What the task declared (`nothing`, `read`, ...).
        declared: &'static str,
    },
    /// The body borrowed an array mutably while another borrow of it was alive.
    #[error("task `{task}` borrowed array `{array}` {what}; a body may take any number of `read`s of an array and then one `write`, but no `read` after the `write` and no second `write`")]
    BorrowConflict {
        /// The task.
        task: String,
        /// The array.
        array: String,
        /// What was attempted.
        what: &'static str,
    },
    /// The runtime that owns the array has been dropped.
    #[error("the runtime owning array `{array}` has shut down")]
    RuntimeGone {
        /// The array.
        array: String,
    },
    /// A shape whose element count is not the array's length.
    #[error("shape {shape:?} of array `{array}` holds a different number of elements than its length {len}")]
    ShapeMismatch {
        /// The array.
        array: String,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The array's length.
        len: usize,
    },
    /// A slice range outside the array.
    #[error(
        "slice {start}..{end} of array `{array}` is out of range: the array has {len} elements"
    )]
    SliceOutOfRange {
        /// The array.
        array: String,
        /// Requested start.
        start: usize,
        /// Requested end (exclusive).
        end: usize,
        /// The array's length.
        len: usize,
    },
    /// A copy between a slice and an array of another length.
    #[error("length mismatch for array `{array}`: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// The array.
        array: String,
        /// Its length.
        expected: usize,
        /// The length supplied.
        got: usize,
    },
}
