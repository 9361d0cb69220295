//! Errors of the communication layer.

use std::time::Duration;

use crate::data::{DataError, MemorySpace};

use super::slot::MessageCounts;
use super::{InstanceId, SlotKey, Tag};

/// Which side of a `memcpy` an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The slot bytes are copied from.
    Source,
    /// The slot bytes are copied to.
    Destination,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Side::Source => write!(f, "source"),
            Side::Destination => write!(f, "destination"),
        }
    }
}

/// A collective call, as named in errors about collective calls that cannot complete or do
/// not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Collective {
    /// `barrier()`.
    Barrier,
    /// `exchange_global_slots(tag, ..)`.
    Exchange(Tag),
    /// `fence(tag)` (also the first step of `destroy_global_slots(tag)`).
    Fence(Tag),
    /// `destroy_global_slots(tag)`.
    Destroy(Tag),
}

impl std::fmt::Display for Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collective::Barrier => write!(f, "barrier()"),
            Collective::Exchange(t) => write!(f, "exchange_global_slots(tag {t})"),
            Collective::Fence(t) => write!(f, "fence(tag {t})"),
            Collective::Destroy(t) => write!(f, "destroy_global_slots(tag {t})"),
        }
    }
}

/// Everything that can go wrong with memory slots and one-sided copies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// No slot was ever exchanged under this tag.
    #[error("unknown tag {tag}: no global memory slot was exchanged under it (exchange_global_slots, then fence)")]
    UnknownTag {
        /// The tag looked up.
        tag: Tag,
    },
    /// The tag exists but has no slot with this key.
    #[error("unknown key {key} under tag {tag}{hint}; keys known under this tag: {known:?}")]
    UnknownKey {
        /// The tag looked up.
        tag: Tag,
        /// The key looked up.
        key: SlotKey,
        /// Keys usable under the tag.
        known: Vec<SlotKey>,
        /// Extra advice (e.g. "exchanged but not yet fenced").
        hint: String,
    },
    /// Two instances (or one instance twice) exchanged the same key under one tag.
    #[error("key {key} under tag {tag} was exchanged twice (by instances {first} and {second}); keys must be unique per tag")]
    DuplicateKey {
        /// The tag.
        tag: Tag,
        /// The key.
        key: SlotKey,
        /// The instance of the first exchange.
        first: InstanceId,
        /// The instance of the second exchange.
        second: InstanceId,
    },
    /// A copy's range does not lie inside a slot.
    #[error("{side} range out of bounds: offset {offset} + size {size} exceeds the {side} slot's {slot_size} bytes ({slot})")]
    OutOfBounds {
        /// Source or destination.
        side: Side,
        /// The slot, described.
        slot: String,
        /// Offset asked for.
        offset: usize,
        /// Bytes asked for.
        size: usize,
        /// The slot's size.
        slot_size: usize,
    },
    /// The program needs a different number of instances.
    #[error("wrong number of instances: this needs exactly {expected}, found {found}")]
    WrongInstanceCount {
        /// Instances needed.
        expected: usize,
        /// Instances found.
        found: usize,
    },
    /// An instance count that no backend can run (zero).
    #[error("invalid instance count {count}: at least one instance is needed")]
    InvalidInstanceCount {
        /// The count asked for.
        count: usize,
    },
    /// A memory space that does not exist on this machine.
    #[error("no memory space {space:?}: this machine has the host and {gpus} GPU(s)")]
    NoSuchMemorySpace {
        /// The space asked for.
        space: MemorySpace,
        /// GPUs present.
        gpus: usize,
    },
    /// A topology memory-space name that is neither `host` nor `gpu<i>`.
    #[error("unknown memory space name {name:?}: expected \"host\" or \"gpu<index>\"")]
    UnknownMemorySpaceName {
        /// The name given.
        name: String,
    },
    /// An allocation larger than the space allows or than memory can hold.
    #[error("cannot allocate {size} bytes in {space:?}: {reason}")]
    Allocation {
        /// The space.
        space: MemorySpace,
        /// Bytes asked for.
        size: usize,
        /// Why not (limit, out of memory).
        reason: String,
    },
    /// A registered slot's bytes cannot be handed back while other handles share the slot.
    #[error("slot {slot} is still shared ({handles} handles, e.g. exchanged as a global slot); drop them (or destroy the tag) before deregistering")]
    SlotShared {
        /// The slot.
        slot: String,
        /// Live handles.
        handles: usize,
    },
    /// The slot was not created by `register` (it owns GPU memory).
    #[error("slot {slot} is in {space:?}: only host slots hand their bytes back")]
    NotHostSlot {
        /// The slot.
        slot: String,
        /// Its space.
        space: MemorySpace,
    },
    /// A memcpy form that does not exist.
    #[error("memcpy between two global slots is not supported: one side must be a local slot (put = local -> global, get = global -> local)")]
    GlobalToGlobal,
    /// Releasing a lock this instance does not hold.
    #[error("the global lock of slot (tag {tag}, key {key}) is not held by instance {instance}")]
    LockNotHeld {
        /// The tag.
        tag: Tag,
        /// The key.
        key: SlotKey,
        /// This instance.
        instance: InstanceId,
    },
    /// Something a backend cannot do.
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported {
        /// CommBackend name.
        backend: &'static str,
        /// What was asked.
        what: String,
    },
    /// An instance thread panicked (thread backend): reported by `ThreadInstances::run`, and
    /// by the others' calls that needed it.
    #[error("instance {instance} panicked: {message}")]
    InstancePanicked {
        /// The instance.
        instance: InstanceId,
        /// The panic message.
        message: String,
    },
    /// An instance left (its body returned) while others wait for it in a collective call.
    #[error("instance {instance} returned from its body, so it can never join {call}; every instance must make the same collective calls in the same order")]
    InstanceFinished {
        /// The instance that returned.
        instance: InstanceId,
        /// The collective call the others wait in.
        call: Collective,
    },
    /// Two instances made different collective calls at the same point (thread backend).
    /// Collective matching is broken from then on: every later collective call fails alike.
    #[error("collective calls do not match: instance {first} called {first_call} while instance {second} called {second_call}; every instance must make the same collective calls, with the same tags, in the same order (no later collective call can be matched)")]
    CollectiveMismatch {
        /// The instance that arrived first.
        first: InstanceId,
        /// Its call.
        first_call: Collective,
        /// The instance whose call differs.
        second: InstanceId,
        /// Its call.
        second_call: Collective,
    },
    /// A global lock whose holder can never release it (thread backend).
    #[error("the global lock of slot (tag {tag}, key {key}) can never be taken: its holder, instance {holder}, {reason}")]
    LockUnavailable {
        /// The tag.
        tag: Tag,
        /// The key.
        key: SlotKey,
        /// The instance holding the lock.
        holder: InstanceId,
        /// Why it will not release it (panicked, returned, waits for the caller).
        reason: String,
    },
    /// A per-slot fence that can never be satisfied: no other instance can send any more.
    #[error("fence_slot on {slot} can never finish: it needs the counters at sent {}, received {}, they are at sent {}, received {}, and no message can come any more: {reason}", expected.sent, expected.received, found.sent, found.received)]
    MessagesCannotArrive {
        /// The slot waited on.
        slot: String,
        /// The counters the fence waits for.
        expected: MessageCounts,
        /// The counters now.
        found: MessageCounts,
        /// Why nothing more can arrive.
        reason: String,
    },
    /// A wait with a time limit ran out (`fence_timeout`, `fence_slot_timeout`,
    /// `acquire_lock_timeout`); nothing was consumed, the call can be made again.
    #[error("{operation} timed out after {waited:?}: {detail}")]
    Timeout {
        /// The call and where.
        operation: String,
        /// The time limit.
        waited: Duration,
        /// What it was waiting for.
        detail: String,
    },
    /// A copy between host and GPU memory failed.
    #[error(transparent)]
    Transfer(#[from] DataError),
    /// An MPI call returned an error code.
    #[error("MPI call {call} failed with code {code}: {message}")]
    Mpi {
        /// The MPI function.
        call: &'static str,
        /// Its return code.
        code: i32,
        /// MPI's error string.
        message: String,
    },
}
