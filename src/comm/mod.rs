//! Communication layer: HiCR-style memory slots and one-sided `memcpy` between instances.
//!
//! Job: give a program running as several *instances* (threads of one process, or MPI
//! ranks) the HiCR model of communication:
//! - the topology ([`crate::Topology::devices`]: devices → memory spaces, compute resources);
//! - a [`MemoryManager`] that allocates, registers (wraps existing bytes), frees and memsets
//!   [`LocalSlot`]s in the host or in any GPU ([`crate::MemorySpace`]);
//! - a [`CommunicationManager`] per instance: `exchange_global_slots(tag, [(key, slot)])`
//!   (collective) publishes slots that every instance can look up as [`GlobalSlot`]s after
//!   `fence(tag)`; `memcpy` copies local→local, local→global (put) or global→local (get);
//!   each slot counts the messages it sent and received; `fence(tag)` completes every
//!   transfer; `fence_slot` waits for a number of further messages on one slot; a global lock
//!   per slot; every wait has a `_timeout` form ([`CommError::Timeout`]);
//! - an instance manager per backend: [`ThreadInstances`] (N threads) and, with the cargo
//!   feature `mpi`, `MpiInstances` (one instance per MPI rank, one-sided through MPI windows).
//!
//! Invariants:
//! - every `memcpy` checks both ranges (offset + size within the slot) before any byte
//!   moves, on both sides — a global slot's size travels with the exchange (HiCR checks only
//!   the local side);
//! - a `memcpy` is complete when it returns: the bytes are in the destination and both
//!   counters are counted (source: +1 sent, destination: +1 received), so after a
//!   `fence(tag)` every instance sees every transfer issued before it;
//! - every instance gets the same list of global slots from an exchange, so a bad exchange
//!   (a duplicate key) fails on every instance alike and no instance is left waiting;
//! - a local slot's bytes live as long as any handle to them (a global slot of a live
//!   exchange included), so a remote write never lands in freed memory;
//! - on the thread backend no wait is forever: an instance that returned or panicked fails
//!   the others' collective calls ([`CommError::InstanceFinished`],
//!   [`CommError::InstancePanicked`]), a lock it held ([`CommError::LockUnavailable`]) and
//!   per-slot fences only it could satisfy ([`CommError::MessagesCannotArrive`]); instances
//!   in different collective calls (`fence(10)` against `fence(20)`) fail with
//!   [`CommError::CollectiveMismatch`] instead of matching.
//!
//! GPU slots move through staging (`data::transfer`'s range copies). The MPI backend cannot
//! expose a GPU slot in a window (MPI needs host memory): exchange a host slot and copy it to
//! the GPU locally; GPU slots still serve as the local side of puts and gets.
//!
//! The protocols (exchange, fence, counters, lock) and why they cannot deadlock or lose a
//! message are in `src/comm/PROTOCOL.md`. This layer sits above `device/` and `data/` and
//! uses nothing of the task engine.

mod backend;
mod error;
mod manager;
mod memory;
#[cfg(feature = "mpi")]
pub mod mpi;
mod slot;
mod threads;

pub use backend::CommBackend;
pub use error::{Collective, CommError, Side};
pub use manager::{CommunicationManager, SlotRef};
pub use memory::MemoryManager;
#[cfg(feature = "mpi")]
pub use mpi::{MpiBackend, MpiInstances};
pub use slot::{GlobalSlot, LocalSlot, MessageCounts};
pub use threads::{ThreadBackend, ThreadInstances};

/// Names a group of global slots exchanged together (HiCR's tag).
pub type Tag = u64;

/// Names one global slot within a tag (unique per tag across all instances).
pub type SlotKey = u64;

/// One instance (thread or MPI rank) of a distributed program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub usize);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The communication manager of the thread backend.
pub type ThreadCommunicator = CommunicationManager<ThreadBackend>;
