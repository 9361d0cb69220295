//! Task graphs across processes: StarPU-MPI's sequential task flow on hetflow's engine.
//!
//! Job: let every rank of an MPI job (or every thread of a [`LocalCluster`]) run the same
//! program, creating the same [`DistArray`]s and spawning the same [`DistTask`]s in the same
//! order, and make that one task graph spread over the ranks:
//! - each array has an owner rank; only the owner holds its data at first;
//! - a task runs on the rank owning the array it writes (read-write, write, reduce), or on
//!   [`DistTask::on_rank`]; inside that rank it is an ordinary engine task (CPU or GPU
//!   placement, MESI between host and GPUs, eviction);
//! - a rank that runs a task with an input it does not hold receives the latest version
//!   from a rank holding it, which posts the send; received copies stay cached until the
//!   next write anywhere (`PROTOCOL.md`: cross-rank coherence);
//! - [`DistArray::to_vec`] and [`Cluster::wait_all`] are collective.
//!
//! Invariants:
//! - every rank keeps the same table of owners, versions and holders (`flow.rs`), changed
//!   only by flow steps, so the ranks agree on where each task runs and on every message
//!   without talking about it;
//! - every MPI call is made by the rank's communication thread (`comm.rs`; MPI thread
//!   level FUNNELED);
//! - a local task that consumes a message is spawned in flow order and waits on an
//!   [`crate::task::Event`] fired by the message, so the engine orders it against the
//!   rank's other tasks by their accesses, as any task;
//! - nothing waits forever: a failure travels instead of the data it stops, a message of
//!   another flow or a silent peer ends collective waits with a typed error.

mod cluster;
mod comm;
mod error;
mod flow;
#[cfg(feature = "linalg")]
mod matrix;
#[cfg(feature = "mpi")]
mod mpi;
mod trace;
mod transport;

pub use cluster::{
    Cluster, ClusterBuilder, DistArg, DistArgs, DistArray, DistHandle, DistRead, DistReadWrite,
    DistReduce, DistStats, DistTask, DistTaskBuilder, DistWrite, LocalCluster,
};
pub use error::DistError;
pub use flow::Mode;
#[cfg(feature = "linalg")]
pub use matrix::{cholesky, cholesky_messages, gemm, gemm_messages, BlockCyclic, DistMatrix};
