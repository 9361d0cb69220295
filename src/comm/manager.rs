//! The communication manager: global slots by (tag, key), `memcpy` in three forms with both
//! sides checked, message counters, fences and global locks, over any [`CommBackend`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::backend::CommBackend;
use super::error::{CommError, Side};
use super::slot::{copy_bytes, GlobalSlot, LocalSlot, MessageCounts};
use super::{InstanceId, SlotKey, Tag};

/// One side of a `memcpy`: a local slot or a global one.
#[derive(Debug, Clone, Copy)]
pub enum SlotRef<'a> {
    /// A slot of this instance.
    Local(&'a LocalSlot),
    /// A slot of any instance, from an exchange.
    Global(&'a GlobalSlot),
}

impl<'a> From<&'a LocalSlot> for SlotRef<'a> {
    fn from(s: &'a LocalSlot) -> Self {
        SlotRef::Local(s)
    }
}

impl<'a> From<&'a GlobalSlot> for SlotRef<'a> {
    fn from(s: &'a GlobalSlot) -> Self {
        SlotRef::Global(s)
    }
}

#[derive(Default)]
struct TagSlots {
    /// Usable (fenced) global slots.
    ready: BTreeMap<SlotKey, GlobalSlot>,
    /// Exchanged, usable after the next `fence(tag)`.
    pending: BTreeMap<SlotKey, GlobalSlot>,
    /// Every slot of the tag in exchange order (what `destroy` hands the backend).
    order: Vec<GlobalSlot>,
}

/// HiCR's communication manager (and instance manager) for one instance.
///
/// Made by a backend: [`super::ThreadInstances::run`] (N instances as threads of this
/// process) or, with the `mpi` feature, `MpiInstances::init` (one instance per MPI rank).
///
/// ```
/// use hetflow::comm::{MemoryManager, ThreadInstances};
/// use hetflow::MemorySpace;
///
/// // Two instances; instance 1 exchanges a buffer, instance 0 puts into it.
/// let out = ThreadInstances::run(2, |mut comm| {
///     let mm = MemoryManager::new();
///     let buf = mm.allocate(MemorySpace::Host, 5).unwrap();
///     let mine = if comm.instance_id().0 == 1 { vec![(1, &buf)] } else { vec![] };
///     comm.exchange_global_slots(7, &mine).unwrap();
///     comm.fence(7).unwrap();
///     let target = comm.global_slot(7, 1).unwrap();
///     if comm.instance_id().0 == 0 {
///         let src = mm.register(MemorySpace::Host, b"hello".to_vec()).unwrap();
///         comm.memcpy(&target, 0, &src, 0, 5).unwrap();
///     }
///     comm.fence(7).unwrap();
///     (buf.to_vec().unwrap(), comm.messages(&buf).unwrap().received)
/// })
/// .unwrap();
/// assert_eq!(out[1], (b"hello".to_vec(), 1));
/// ```
pub struct CommunicationManager<B: CommBackend> {
    backend: B,
    tags: HashMap<Tag, TagSlots>,
}

impl<B: CommBackend> CommunicationManager<B> {
    /// A manager over `backend`.
    pub fn new(backend: B) -> Self {
        CommunicationManager {
            backend,
            tags: HashMap::new(),
        }
    }

    /// The backend (for backend-specific calls).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// This instance.
    pub fn instance_id(&self) -> InstanceId {
        self.backend.instance_id()
    }

    /// Every instance, in order.
    pub fn instances(&self) -> Vec<InstanceId> {
        (0..self.backend.instance_count()).map(InstanceId).collect()
    }

    /// The root instance.
    pub fn root_instance(&self) -> InstanceId {
        self.backend.root_instance()
    }

    /// Fails with [`CommError::WrongInstanceCount`] unless exactly `n` instances run.
    pub fn require_instances(&self, n: usize) -> Result<(), CommError> {
        let found = self.backend.instance_count();
        if found == n {
            Ok(())
        } else {
            Err(CommError::WrongInstanceCount { expected: n, found })
        }
    }

    /// Collective: waits for every instance.
    pub fn barrier(&mut self) -> Result<(), CommError> {
        self.backend.barrier()
    }

    /// Collective: publishes this instance's `(key, slot)` pairs under `tag`. Every instance
    /// calls it (with an empty list if it publishes nothing); the slots are usable through
    /// [`Self::global_slot`] after the next [`Self::fence`] of the tag. A key published twice
    /// under one tag fails on every instance.
    pub fn exchange_global_slots(
        &mut self,
        tag: Tag,
        slots: &[(SlotKey, &LocalSlot)],
    ) -> Result<(), CommError> {
        let entries: Vec<(SlotKey, LocalSlot)> =
            slots.iter().map(|(k, s)| (*k, (*s).clone())).collect();
        let all = self.backend.exchange(tag, &entries)?;
        let t = self.tags.entry(tag).or_default();
        // Every instance got the same list, so every instance finds the same duplicate.
        let mut seen: BTreeMap<SlotKey, InstanceId> = t
            .ready
            .iter()
            .chain(t.pending.iter())
            .map(|(k, g)| (*k, g.owner))
            .collect();
        for g in &all {
            if let Some(first) = seen.insert(g.key, g.owner) {
                return Err(CommError::DuplicateKey {
                    tag,
                    key: g.key,
                    first,
                    second: g.owner,
                });
            }
        }
        for g in all {
            t.order.push(g.clone());
            t.pending.insert(g.key, g);
        }
        tracing::debug!(tag, instance = %self.instance_id(), "global slots exchanged");
        Ok(())
    }

    /// Collective: completes every transfer of `tag` on every instance and makes the slots
    /// exchanged under it usable.
    ///
    /// # Errors
    /// On the thread backend, when an instance left before joining
    /// ([`CommError::InstanceFinished`], [`CommError::InstancePanicked`]) or another instance
    /// is in a different collective call, e.g. a fence of another tag
    /// ([`CommError::CollectiveMismatch`]).
    pub fn fence(&mut self, tag: Tag) -> Result<(), CommError> {
        self.backend.fence(tag)?;
        self.fenced(tag);
        Ok(())
    }

    /// [`Self::fence`] that gives up after `timeout` with [`CommError::Timeout`] (naming the
    /// instances that have not arrived). A timed-out fence took nothing: this instance may
    /// call the fence again. Backends that cannot leave a barrier once entered (MPI) refuse
    /// with [`CommError::Unsupported`] without entering it.
    pub fn fence_timeout(&mut self, tag: Tag, timeout: Duration) -> Result<(), CommError> {
        self.backend.fence_timeout(tag, timeout)?;
        self.fenced(tag);
        Ok(())
    }

    fn fenced(&mut self, tag: Tag) {
        if let Some(t) = self.tags.get_mut(&tag) {
            let pending = std::mem::take(&mut t.pending);
            t.ready.extend(pending);
        }
    }

    /// The global slot exchanged under `(tag, key)`.
    pub fn global_slot(&self, tag: Tag, key: SlotKey) -> Result<GlobalSlot, CommError> {
        let t = self.tags.get(&tag).ok_or(CommError::UnknownTag { tag })?;
        if let Some(g) = t.ready.get(&key) {
            return Ok(g.clone());
        }
        let hint = if t.pending.contains_key(&key) {
            " (exchanged but not yet fenced: call fence(tag) first)".to_string()
        } else {
            String::new()
        };
        Err(CommError::UnknownKey {
            tag,
            key,
            known: t.ready.keys().copied().collect(),
            hint,
        })
    }

    /// Copies `size` bytes from `src` at `src_offset` to `dst` at `dst_offset`: local→local,
    /// local→global (put) or global→local (get). Both ranges are checked against their
    /// slots' sizes (a global slot's size is known from the exchange). Complete on return;
    /// counts one message sent on the source slot and one received on the destination slot.
    pub fn memcpy<'a, 'b>(
        &self,
        dst: impl Into<SlotRef<'a>>,
        dst_offset: usize,
        src: impl Into<SlotRef<'b>>,
        src_offset: usize,
        size: usize,
    ) -> Result<(), CommError> {
        match (dst.into(), src.into()) {
            (SlotRef::Local(d), SlotRef::Local(s)) => {
                d.check(Side::Destination, dst_offset, size)?;
                s.check(Side::Source, src_offset, size)?;
                copy_bytes(d, dst_offset, s, src_offset, size)?;
                self.backend.add_counts(s, 1, 0)?;
                self.backend.add_counts(d, 0, 1)
            }
            (SlotRef::Global(d), SlotRef::Local(s)) => {
                d.check(Side::Destination, dst_offset, size)?;
                s.check(Side::Source, src_offset, size)?;
                self.backend.put(d, dst_offset, s, src_offset, size)
            }
            (SlotRef::Local(d), SlotRef::Global(s)) => {
                d.check(Side::Destination, dst_offset, size)?;
                s.check(Side::Source, src_offset, size)?;
                self.backend.get(d, dst_offset, s, src_offset, size)
            }
            (SlotRef::Global(_), SlotRef::Global(_)) => Err(CommError::GlobalToGlobal),
        }
    }

    /// The slot's message counters, including messages other instances counted into it
    /// (HiCR's `queryMemorySlotUpdates` + `getMessagesSent/Recv`).
    pub fn messages(&self, slot: &LocalSlot) -> Result<MessageCounts, CommError> {
        self.backend.counts(slot)
    }

    /// Per-slot fence: waits until `sent` further messages were sent from and `received`
    /// further messages received into `slot`, counting from where the previous per-slot fence
    /// of this slot stopped (so no message is counted twice or missed between two calls).
    /// Then the slot's bytes are visible locally.
    ///
    /// # Errors
    /// [`CommError::MessagesCannotArrive`] when the backend can tell that no message can
    /// come any more (thread backend: every other instance has left, or waits in a
    /// collective call that needs this one). Without that knowledge (MPI) it waits as long
    /// as the program does not send; bound it with [`Self::fence_slot_timeout`].
    pub fn fence_slot(&self, slot: &LocalSlot, sent: u64, received: u64) -> Result<(), CommError> {
        self.wait_counts(slot, sent, received, None)
    }

    /// [`Self::fence_slot`] that gives up after `timeout` with [`CommError::Timeout`]. A
    /// timed-out fence consumed nothing: the next per-slot fence still counts from where the
    /// previous successful one stopped.
    pub fn fence_slot_timeout(
        &self,
        slot: &LocalSlot,
        sent: u64,
        received: u64,
        timeout: Duration,
    ) -> Result<(), CommError> {
        self.wait_counts(slot, sent, received, Some(timeout))
    }

    fn wait_counts(
        &self,
        slot: &LocalSlot,
        sent: u64,
        received: u64,
        timeout: Option<Duration>,
    ) -> Result<(), CommError> {
        let start = Instant::now();
        let (base_sent, base_recv) = *slot.inner.fenced.lock();
        let expected = MessageCounts {
            sent: base_sent.saturating_add(sent),
            received: base_recv.saturating_add(received),
        };
        let reached =
            |c: &MessageCounts| c.sent >= expected.sent && c.received >= expected.received;
        let mut spins = 0u32;
        loop {
            let c = self.backend.counts(slot)?;
            if reached(&c) {
                break;
            }
            if spins > 64 {
                if let Some(reason) = self.backend.senders_gone() {
                    // Whatever was sent before the others stopped is counted by now.
                    let found = self.backend.counts(slot)?;
                    if reached(&found) {
                        break;
                    }
                    return Err(CommError::MessagesCannotArrive {
                        slot: slot.describe(),
                        expected,
                        found,
                        reason,
                    });
                }
            }
            if let Some(t) = timeout {
                if start.elapsed() >= t {
                    return Err(CommError::Timeout {
                        operation: format!(
                            "fence_slot on {} (instance {})",
                            slot.describe(),
                            self.instance_id()
                        ),
                        waited: t,
                        detail: format!(
                            "waited for the counters to reach sent {}, received {}; they are at sent {}, received {}",
                            expected.sent, expected.received, c.sent, c.received
                        ),
                    });
                }
            }
            backoff(&mut spins);
        }
        *slot.inner.fenced.lock() = (expected.sent, expected.received);
        self.backend.sync_slot(slot)
    }

    /// Takes the global lock of `slot` if it is free; `true` if this instance now holds it.
    /// On the thread backend, a holder that panicked or returned without releasing is
    /// [`CommError::LockUnavailable`] rather than `false`.
    pub fn try_acquire_lock(&self, slot: &GlobalSlot) -> Result<bool, CommError> {
        self.backend.try_lock(slot)
    }

    /// Takes the global lock of `slot`, waiting while another instance holds it.
    ///
    /// # Errors
    /// [`CommError::LockUnavailable`] when the backend can tell the holder will never
    /// release it (thread backend: it panicked, returned, or waits in a collective call that
    /// needs this instance; or it is this instance: the lock is not re-entrant).
    pub fn acquire_lock(&self, slot: &GlobalSlot) -> Result<(), CommError> {
        self.lock_within(slot, None)
    }

    /// [`Self::acquire_lock`] that gives up after `timeout` with [`CommError::Timeout`].
    pub fn acquire_lock_timeout(
        &self,
        slot: &GlobalSlot,
        timeout: Duration,
    ) -> Result<(), CommError> {
        self.lock_within(slot, Some(timeout))
    }

    fn lock_within(&self, slot: &GlobalSlot, timeout: Option<Duration>) -> Result<(), CommError> {
        let start = Instant::now();
        let mut spins = 0u32;
        while !self.backend.try_lock(slot)? {
            if spins > 64 {
                if let Some((holder, reason)) = self.backend.lock_stuck(slot)? {
                    return Err(CommError::LockUnavailable {
                        tag: slot.tag,
                        key: slot.key,
                        holder,
                        reason,
                    });
                }
            }
            if let Some(t) = timeout {
                if start.elapsed() >= t {
                    return Err(CommError::Timeout {
                        operation: format!(
                            "acquire_lock on {} (instance {})",
                            slot.describe(),
                            self.instance_id()
                        ),
                        waited: t,
                        detail: "another instance held the lock the whole time".into(),
                    });
                }
            }
            backoff(&mut spins);
        }
        Ok(())
    }

    /// Releases the global lock of `slot`; an error if this instance does not hold it.
    pub fn release_lock(&self, slot: &GlobalSlot) -> Result<(), CommError> {
        if self.backend.unlock(slot)? {
            Ok(())
        } else {
            Err(CommError::LockNotHeld {
                tag: slot.tag,
                key: slot.key,
                instance: self.instance_id(),
            })
        }
    }

    /// Collective: forgets every global slot of `tag` (after completing its transfers), so
    /// their memory can be freed or deregistered.
    pub fn destroy_global_slots(&mut self, tag: Tag) -> Result<(), CommError> {
        self.backend.fence(tag)?;
        let slots = self.tags.remove(&tag).map(|t| t.order).unwrap_or_default();
        self.backend.destroy(tag, slots)
    }
}

/// Spin a little, then yield, then sleep briefly: waiting for another instance must not
/// starve it of the core (instances may share cores).
fn backoff(spins: &mut u32) {
    *spins += 1;
    match *spins {
        0..=64 => std::hint::spin_loop(),
        65..=256 => std::thread::yield_now(),
        _ => std::thread::sleep(std::time::Duration::from_micros(50)),
    }
}
