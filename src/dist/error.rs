//! Errors of the distributed layer.

use crate::task::TaskError;

/// Why a distributed operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// A rank number outside `0..size`.
    #[error("{what} is rank {rank}, but the cluster has {size} rank(s) (0..{size})")]
    NoSuchRank {
        /// What named the rank (`array owner`, `on_rank`).
        what: &'static str,
        /// The rank given.
        rank: usize,
        /// The number of ranks.
        size: usize,
    },
    /// The ranks did not run the same sequential task flow: a different number of steps,
    /// or different tasks, arrays or accesses in them.
    #[error("rank {rank} and rank {other} ran different task flows ({detail}); every rank must create the same arrays and spawn the same tasks in the same order")]
    FlowMismatch {
        /// This rank.
        rank: usize,
        /// A rank whose flow differs.
        other: usize,
        /// Where they differ.
        detail: String,
    },
    /// A tiled layout that does not fit: sizes that do not divide, a process grid whose
    /// product is not the number of ranks.
    #[error("bad layout: {0}")]
    Layout(String),
    /// A task declared an array of another cluster.
    #[error("task `{task}` declares distributed array `{array}` of another cluster")]
    ForeignArray {
        /// The task.
        task: String,
        /// The array's label.
        array: String,
    },
    /// The program was not started by an MPI launcher.
    #[error("not started by mpirun: run it as `mpirun -n <ranks> {program}` (OpenMPI here also needs `--allow-run-as-root --oversubscribe`)")]
    NotUnderMpirun {
        /// The program's path.
        program: String,
    },
    /// MPI was already initialised in this process (by [`crate::comm`]'s MPI backend or a
    /// second cluster).
    #[error("MPI is already initialised in this process; one process holds one cluster (and not together with comm's MPI backend)")]
    AlreadyInitialised,
    /// An MPI call failed (the error of comm's MPI wrapper, which names the call).
    #[error("MPI transport: {0}")]
    Mpi(#[source] std::sync::Arc<crate::comm::CommError>),
    /// A message over what one MPI call can carry.
    #[error(
        "a message of {bytes} bytes is over MPI's 2 GiB count limit; use smaller arrays (tiles)"
    )]
    TooLarge {
        /// The message's size.
        bytes: usize,
    },
    /// A message arrived that is not the one the flow expected (corrupt, or a program that
    /// spawned a different flow on the sending rank).
    #[error("rank {rank} expected {expected} from rank {from} but got {got}")]
    BadMessage {
        /// This rank.
        rank: usize,
        /// The sender.
        from: usize,
        /// What the flow expected.
        expected: String,
        /// What came.
        got: String,
    },
    /// No progress for the cluster's timeout while waiting for other ranks.
    #[error("rank {rank}: waited {secs} s for {waiting_for} without any message; another rank died, hangs, or runs a different flow")]
    Timeout {
        /// This rank.
        rank: usize,
        /// What it waited for.
        waiting_for: String,
        /// The timeout in seconds.
        secs: u64,
    },
    /// The communication thread is gone (the cluster shut down or its thread failed).
    #[error("rank {rank}: the cluster's communication thread has stopped")]
    Stopped {
        /// This rank.
        rank: usize,
    },
    /// A task failed (here or on another rank: see [`TaskError::Remote`]).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A task failed (on this rank or another); every rank's collective wait reports the
    /// root task and the rank it failed on.
    #[error("task `{task}` failed on rank {rank}: {message}")]
    RemoteTask {
        /// The root task.
        task: String,
        /// The rank it failed on.
        rank: usize,
        /// Its error.
        message: String,
    },
}
