//! The seam between the checks every backend shares ([`super::CommunicationManager`]) and
//! the moves each backend makes its own way (threads in one process, MPI across processes).

use std::time::Duration;

use super::error::CommError;
use super::slot::{GlobalSlot, LocalSlot, MessageCounts};
use super::{InstanceId, SlotKey, Tag};

/// What a communication backend provides. Ranges, keys and tags are checked before these
/// are called; each method documents the one thing it must do.
///
/// Collective methods (`barrier`, `exchange`, `fence`, `destroy`) must be called by every
/// instance in the same order.
pub trait CommBackend {
    /// Name used in errors and printouts (`threads`, `mpi`).
    const NAME: &'static str;

    /// This instance.
    fn instance_id(&self) -> InstanceId;

    /// How many instances take part.
    fn instance_count(&self) -> usize;

    /// The root instance (the one that starts things, like MPI rank 0).
    fn root_instance(&self) -> InstanceId;

    /// Waits until every instance has called it.
    fn barrier(&mut self) -> Result<(), CommError>;

    /// Collective: publishes `entries` and returns every instance's entries, each as a global
    /// slot, in the same order (by owner, then as given) on every instance.
    fn exchange(
        &mut self,
        tag: Tag,
        entries: &[(SlotKey, LocalSlot)],
    ) -> Result<Vec<GlobalSlot>, CommError>;

    /// Collective: completes every transfer of `tag` started by any instance, then returns on
    /// all instances (a barrier with completion).
    fn fence(&mut self, tag: Tag) -> Result<(), CommError>;

    /// Collective: [`CommBackend::fence`] that gives up after `timeout` with
    /// [`CommError::Timeout`], taking this instance's arrival back so the fence can be
    /// called again. A backend that cannot leave a barrier it has entered (MPI: a started
    /// `MPI_Ibarrier` cannot be cancelled) keeps this default, which refuses with
    /// [`CommError::Unsupported`] before entering anything.
    fn fence_timeout(&mut self, tag: Tag, timeout: Duration) -> Result<(), CommError> {
        Err(CommError::Unsupported {
            backend: Self::NAME,
            what: format!(
                "fence(tag {tag}) with a timeout of {timeout:?}: this backend cannot leave a barrier it has entered; use fence(tag), or bound point-to-point waits with fence_slot_timeout"
            ),
        })
    }

    /// Why no other instance can send a message any more, if that is certain (every other
    /// instance has left, or waits in a collective call that needs this one). Polled by
    /// waits on message counters (`fence_slot`), which re-read the counters before they
    /// fail. The default, for backends that cannot know, is `None`.
    fn senders_gone(&self) -> Option<String> {
        None
    }

    /// One-sided put: `n` bytes from `src` at `src_off` into `dst` at `dst_off`, complete on
    /// return; counts one message sent on `src` and one received on `dst`'s owner slot.
    fn put(
        &self,
        dst: &GlobalSlot,
        dst_off: usize,
        src: &LocalSlot,
        src_off: usize,
        n: usize,
    ) -> Result<(), CommError>;

    /// One-sided get: `n` bytes from `src` at `src_off` into `dst` at `dst_off`, complete on
    /// return; counts one message received on `dst` and one sent on `src`'s owner slot.
    fn get(
        &self,
        dst: &LocalSlot,
        dst_off: usize,
        src: &GlobalSlot,
        src_off: usize,
        n: usize,
    ) -> Result<(), CommError>;

    /// Adds to a local slot's counters (a local copy's message).
    fn add_counts(&self, slot: &LocalSlot, sent: u64, received: u64) -> Result<(), CommError>;

    /// Reads a local slot's counters, including messages remote instances counted into it.
    fn counts(&self, slot: &LocalSlot) -> Result<MessageCounts, CommError>;

    /// Makes bytes that remote instances wrote into `slot` visible to local reads.
    fn sync_slot(&self, _slot: &LocalSlot) -> Result<(), CommError> {
        Ok(())
    }

    /// Tries once to take the global lock of `slot` for this instance: `Ok(false)` while
    /// another instance holds it, an error when the holder can never release it (if the
    /// backend can tell).
    fn try_lock(&self, slot: &GlobalSlot) -> Result<bool, CommError>;

    /// Called by a blocking acquire after a failed attempt: the holder of `slot`'s lock and
    /// why it can never release it, if that is certain (it left; it waits in a collective
    /// call that needs this instance; it is this instance). The default, for backends that
    /// cannot know, is `None`.
    fn lock_stuck(&self, _slot: &GlobalSlot) -> Result<Option<(InstanceId, String)>, CommError> {
        Ok(None)
    }

    /// Releases the global lock of `slot`; `false` if this instance did not hold it.
    fn unlock(&self, slot: &GlobalSlot) -> Result<bool, CommError>;

    /// Collective: forgets the global slots of `tag` (given in exchange order) and releases
    /// what the backend holds for them.
    fn destroy(&mut self, tag: Tag, slots: Vec<GlobalSlot>) -> Result<(), CommError>;
}
