//! Errors of the remote layer: remote buffers, remote variables, replication and collectives.

use crate::data::DataError;
use crate::task::TaskError;

use super::element::ElementType;

/// What went wrong with a remote buffer, a remote or RTS variable, or a collective.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// A remote buffer was asked for with no slots.
    #[error("remote buffer `{buffer}` needs at least 1 entry, got 0")]
    ZeroEntries {
        /// The buffer's name.
        buffer: String,
    },
    /// A buffer whose element or byte count does not fit in `usize` (the product of the
    /// shape, times entries and replicas, times the element size).
    #[error("remote buffer `{buffer}` of shape {shape:?} x {entries} entries x {replicas} replica(s) of {element_bytes}-byte elements is too large: its size overflows usize")]
    SizeOverflow {
        /// The buffer's name.
        buffer: String,
        /// The entry shape asked for.
        shape: Vec<usize>,
        /// Entries asked for.
        entries: usize,
        /// Replicas.
        replicas: usize,
        /// Bytes per element.
        element_bytes: usize,
    },
    /// The host could not allocate a buffer's memory.
    #[error("remote buffer `{buffer}`: cannot allocate {elements} elements ({bytes} bytes) in host memory")]
    Allocation {
        /// The buffer's name.
        buffer: String,
        /// Elements asked for.
        elements: usize,
        /// Bytes asked for.
        bytes: usize,
        /// The allocator's refusal.
        #[source]
        source: std::collections::TryReserveError,
    },
    /// A tensor's shape is not the buffer's entry shape.
    #[error("remote buffer `{buffer}` holds tensors of shape {expected:?}, got shape {got:?}")]
    ShapeMismatch {
        /// The buffer's name.
        buffer: String,
        /// The buffer's entry shape.
        expected: Vec<usize>,
        /// The shape supplied.
        got: Vec<usize>,
    },
    /// A tensor's element type is not the buffer's.
    #[error("remote buffer `{buffer}` holds {expected} elements, got {got}")]
    DTypeMismatch {
        /// The buffer's name.
        buffer: String,
        /// The buffer's element type.
        expected: ElementType,
        /// The element type supplied.
        got: ElementType,
    },
    /// An offset outside `0..entries` (PopXL leaves this unchecked; hetflow checks it, on the
    /// host for host offsets and before the access for offsets held in an array).
    #[error("offset {offset} is out of range for remote buffer `{buffer}`: expected 0..{entries}")]
    OffsetOutOfRange {
        /// The buffer's name.
        buffer: String,
        /// The offset asked for.
        offset: usize,
        /// The buffer's number of entries.
        entries: usize,
    },
    /// An offset array that does not hold exactly one element.
    #[error("offset array `{array}` for remote buffer `{buffer}` must hold exactly 1 element, it holds {len}")]
    OffsetArrayLength {
        /// The buffer's name.
        buffer: String,
        /// The offset array's label.
        array: String,
        /// Its length.
        len: usize,
    },
    /// A replication factor of 0.
    #[error("a replication factor must be at least 1, got 0")]
    ZeroReplicas,
    /// A replica placed on a GPU the runtime does not have.
    #[error("replica {replica} is placed on GPU {gpu}, but the runtime has {available} GPU(s)")]
    NoSuchGpu {
        /// The replica.
        replica: usize,
        /// The GPU asked for.
        gpu: usize,
        /// How many GPUs the runtime uses.
        available: usize,
    },
    /// Two operands with different replication factors (or a per-replica list of the wrong
    /// length).
    #[error("{what}: expected {expected} replica(s), got {got}")]
    ReplicaMismatch {
        /// Which operation and operand.
        what: String,
        /// The replication factor expected.
        expected: usize,
        /// The number supplied.
        got: usize,
    },
    /// Two operands of an element-wise operation, or a tensor and the size it must have,
    /// differ in length.
    #[error("{what}: expected {expected} element(s), got {got}")]
    LengthMismatch {
        /// Which operation and operand.
        what: String,
        /// The length expected.
        expected: usize,
        /// The length supplied.
        got: usize,
    },
    /// One array passed as both the source and the destination of an in-place operation.
    #[error("{what}: source and destination are the same array; copy one first")]
    Aliased {
        /// Which operation and array.
        what: String,
    },
    /// A benchmark's result check failed (the measured operation computed a wrong value).
    #[error("{what}: expected {expected}, got {got}")]
    WrongResult {
        /// What was checked.
        what: String,
        /// The expected value.
        expected: String,
        /// The value found.
        got: String,
    },
    /// A task of the remote layer failed (or a read of its result did).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A managed-array operation failed (slice, reshape).
    #[error(transparent)]
    Data(#[from] DataError),
    /// Compiling a collective's kernel failed.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
}

impl RemoteError {
    /// The remote-layer error at the root of a task failure, if there is one: a failed
    /// offset check surfaces as [`TaskError::DependencyFailed`] on the load or store and on
    /// whatever reads its result.
    pub fn root_cause(e: &TaskError) -> Option<&RemoteError> {
        match e {
            TaskError::DependencyFailed { cause, .. } => Self::root_cause(cause),
            TaskError::Failed { error, .. } => error.downcast_ref::<RemoteError>(),
            _ => None,
        }
    }

    /// The remote-layer error at the root of this one: for [`RemoteError::Task`], the
    /// [`RemoteError::root_cause`] of the task failure if it has one; else `self`.
    pub fn root(&self) -> &RemoteError {
        match self {
            RemoteError::Task(t) => Self::root_cause(t).map_or(self, RemoteError::root),
            _ => self,
        }
    }
}
