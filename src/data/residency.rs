//! Which arrays occupy each GPU's memory, against a budget, and which to evict.
//!
//! ## Policy
//! Each GPU has a byte budget. Before a copy is allocated on a GPU, [`Residency::reserve`]
//! makes room by evicting other arrays' copies there, in the order an [`EvictionPolicy`]
//! picks; the default, [`Lru`], takes the least recently used first, in this order of
//! preference: buffers whose copy is Invalid (pure waste), then Shared copies (dropping them
//! loses nothing), then Modified/Exclusive copies. Whatever the policy, a copy that is the
//! only valid one is written back to the host before it is dropped (so no data is ever
//! lost).
//!
//! A copy is *pinned* while a task that uses it is between its preparation and its completion
//! (its commands may be queued on the GPU); pinned copies are never evicted.
//!
//! ## Why it cannot livelock or lose data
//! - A task whose own working set is larger than the budget can never run: it fails at once
//!   with [`DataError::OverBudget`].
//! - A task's whole working set is checked against the budget before it is prepared; if it can
//!   never fit, the task fails at once.
//! - When the budget is held by copies pinned by tasks already encoded on the same GPU,
//!   `reserve` returns [`DataError::GpuMemoryBusy`]; the GPU driver then submits what it has,
//!   waits for its in-flight batches to finish (which unpins their copies) and retries the task
//!   with `may_overcommit`. With nothing in flight, the only pins left are the task's own, so a
//!   retry either finds victims or, as a last resort, goes over budget (counted in
//!   `overcommits`) — it never waits on itself and never spins.
//! - Eviction locks one victim's state at a time and never while the caller holds its own
//!   array's state lock, so two threads making room cannot deadlock on each other's arrays.
//! - A write-back happens under the victim's state lock, so no task can read or write the
//!   victim while its only valid copy moves to the host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::array::Member;
use super::coherence::{Coherence, MemorySpace};
use super::error::DataError;
use super::transfer::{self, TransferCounters};
use crate::device::GpuDevice;

/// A resident copy that eviction may drop (not pinned): its coherence state on the GPU and
/// when it was last used (a per-GPU tick, larger is more recent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvictionCandidate {
    pub state: Coherence,
    pub last_use: u64,
    pub bytes: u64,
}

/// Which resident copy to evict first when a GPU needs room. Residency calls it with the
/// unpinned resident copies; whatever it picks, a sole valid copy is written back before it
/// is dropped, so a policy decides cost, never correctness.
pub(crate) trait EvictionPolicy: Send + Sync {
    /// The index in `candidates` of the copy to evict, or `None` to evict nothing.
    fn victim(&self, candidates: &[EvictionCandidate]) -> Option<usize>;
}

/// The default policy: cheapest copies first — Invalid (pure waste), then Shared (dropping
/// loses nothing), then Modified/Exclusive (written back) — and among equals the least
/// recently used.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Lru;

impl EvictionPolicy for Lru {
    fn victim(&self, candidates: &[EvictionCandidate]) -> Option<usize> {
        let rank = |s: Coherence| match s {
            Coherence::Invalid => 0u8,
            Coherence::Shared => 1,
            _ => 2,
        };
        candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (rank(c.state), c.last_use))
            .map(|(i, _)| i)
    }
}

#[derive(Default)]
struct GpuTable {
    used: u64,
    tick: u64,
    /// array id -> (array, bytes held, last use)
    arrays: HashMap<u64, (Weak<Member>, u64, u64)>,
}

impl GpuTable {
    /// Records `array` as resident, using `bytes`, just used.
    fn admit(&mut self, array: &Arc<Member>, bytes: u64) {
        self.used += bytes;
        self.tick += 1;
        self.arrays
            .insert(array.id, (Arc::downgrade(array), bytes, self.tick));
    }
}

/// Bytes charged to a GPU's budget outside the table (reduction partials), released when the
/// charge is dropped.
pub(crate) struct Charge {
    counter: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Residency of every GPU of a runtime.
pub(crate) struct Residency {
    budgets: Vec<u64>,
    /// Which copy goes first when a GPU needs room.
    policy: Box<dyn EvictionPolicy>,
    tables: Vec<Mutex<GpuTable>>,
    /// Per GPU: bytes of reduction partials alive there (they count against the budget but
    /// cannot be evicted; the data layer spills them to the host under pressure).
    partials: Vec<Arc<AtomicU64>>,
    pub(crate) evictions: AtomicU64,
    pub(crate) write_backs: AtomicU64,
    pub(crate) overcommits: AtomicU64,
}

/// Eviction counters and per-GPU usage, for [`crate::Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Copies dropped from a GPU to make room.
    pub evictions: u64,
    /// Of those, copies that were the only valid one and were written back to the host first.
    pub write_backs: u64,
    /// Allocations that exceeded the budget because every other copy was pinned.
    pub overcommits: u64,
    /// (bytes in use, budget) per GPU.
    pub gpus: Vec<(u64, u64)>,
}

impl Residency {
    pub(crate) fn new(budgets: Vec<u64>) -> Self {
        Self::with_policy(budgets, Box::new(Lru))
    }

    /// Budgets per GPU, evicting by `policy`.
    pub(crate) fn with_policy(budgets: Vec<u64>, policy: Box<dyn EvictionPolicy>) -> Self {
        Residency {
            policy,
            tables: budgets
                .iter()
                .map(|_| Mutex::new(GpuTable::default()))
                .collect(),
            partials: budgets.iter().map(|_| Arc::default()).collect(),
            budgets,
            evictions: AtomicU64::new(0),
            write_backs: AtomicU64::new(0),
            overcommits: AtomicU64::new(0),
        }
    }

    /// The byte budget of `gpu`.
    pub(crate) fn budget(&self, gpu: usize) -> u64 {
        self.budgets[gpu]
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        MemoryStats {
            evictions: self.evictions.load(Ordering::Relaxed),
            write_backs: self.write_backs.load(Ordering::Relaxed),
            overcommits: self.overcommits.load(Ordering::Relaxed),
            gpus: self
                .tables
                .iter()
                .zip(&self.budgets)
                .zip(&self.partials)
                .map(|((t, b), p)| (t.lock().used + p.load(Ordering::Acquire), *b))
                .collect(),
        }
    }

    /// Marks `array` as just used on `gpu` (it must be resident).
    pub(crate) fn touch(&self, gpu: usize, array: &Member) {
        let mut t = self.tables[gpu].lock();
        t.tick += 1;
        let tick = t.tick;
        if let Some(e) = t.arrays.get_mut(&array.id) {
            e.2 = tick;
        }
    }

    /// Makes room for `array` (not yet resident) on `gpu` and records it as resident. Call
    /// without holding `array`'s state lock.
    pub(crate) fn reserve(
        &self,
        gpu: usize,
        array: &Arc<Member>,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
        may_overcommit: bool,
    ) -> Result<(), DataError> {
        let bytes = transfer::padded(array.bytes);
        if self.tables[gpu].lock().arrays.contains_key(&array.id) {
            return Ok(());
        }
        self.make_room(
            gpu,
            bytes,
            &array.label,
            gpus,
            counters,
            may_overcommit,
            |t| {
                if !t.arrays.contains_key(&array.id) {
                    t.admit(array, bytes);
                }
            },
        )
    }

    /// Makes room for a reduction partial of `array` on `gpu` and charges it to the budget
    /// until the returned charge is dropped.
    pub(crate) fn reserve_partial(
        &self,
        gpu: usize,
        array: &Member,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
        may_overcommit: bool,
    ) -> Result<Charge, DataError> {
        let bytes = transfer::padded(array.bytes);
        let counter = self.partials[gpu].clone();
        self.make_room(
            gpu,
            bytes,
            &array.label,
            gpus,
            counters,
            may_overcommit,
            |_| {
                counter.fetch_add(bytes, Ordering::AcqRel);
            },
        )?;
        Ok(Charge {
            counter: self.partials[gpu].clone(),
            bytes,
        })
    }

    /// Whether `gpu` holds more than its budget less `room` (arrays and partials together).
    pub(crate) fn lacks_room(&self, gpu: usize, room: u64) -> bool {
        let used = self.tables[gpu].lock().used + self.partials[gpu].load(Ordering::Acquire);
        used + room > self.budgets[gpu]
    }

    /// Evicts until `bytes` more fit on `gpu`, then calls `take` under the table's lock. An
    /// array already resident needs no room (`take` is not called again for it).
    #[allow(clippy::too_many_arguments)]
    fn make_room(
        &self,
        gpu: usize,
        bytes: u64,
        label: &str,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
        may_overcommit: bool,
        take: impl FnOnce(&mut GpuTable),
    ) -> Result<(), DataError> {
        let budget = self.budgets[gpu];
        if bytes > budget {
            return Err(DataError::OverBudget {
                array: label.to_string(),
                bytes,
                gpu,
                budget,
            });
        }
        let partials = &self.partials[gpu];
        let mut take = Some(take);
        loop {
            let victim = {
                let mut t = self.tables[gpu].lock();
                if t.used + partials.load(Ordering::Acquire) + bytes <= budget {
                    if let Some(take) = take.take() {
                        take(&mut t);
                    }
                    return Ok(());
                }
                let dead: u64 = t
                    .arrays
                    .values()
                    .filter(|(w, _, _)| w.strong_count() == 0)
                    .map(|(_, b, _)| *b)
                    .sum();
                t.used -= dead;
                t.arrays.retain(|_, (w, _, _)| w.strong_count() > 0);
                if t.used + partials.load(Ordering::Acquire) + bytes <= budget {
                    continue;
                }
                let (copies, candidates): (Vec<Arc<Member>>, Vec<EvictionCandidate>) = t
                    .arrays
                    .values()
                    .filter_map(|(w, bytes, tick)| w.upgrade().map(|a| (a, *bytes, *tick)))
                    .filter_map(|(a, bytes, last_use)| {
                        let st = a.state.try_lock()?;
                        if st.pins.get(gpu).copied().unwrap_or(0) > 0 {
                            return None;
                        }
                        let state = st.copies.get(MemorySpace::Gpu(gpu));
                        drop(st);
                        Some((
                            a,
                            EvictionCandidate {
                                state,
                                last_use,
                                bytes,
                            },
                        ))
                    })
                    .unzip();
                self.policy
                    .victim(&candidates)
                    .and_then(|i| copies.get(i).cloned())
            };
            match victim {
                Some(v) => self.evict(gpu, &v, gpus, counters)?,
                None if !may_overcommit => return Err(DataError::GpuMemoryBusy { gpu }),
                None => {
                    // Everything resident is pinned and nothing is queued that could unpin
                    // it: go over budget rather than wait forever.
                    self.overcommits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(gpu, array = %label, bytes, budget, "GPU budget overcommitted: every resident copy is pinned");
                    let mut t = self.tables[gpu].lock();
                    if let Some(take) = take.take() {
                        take(&mut t);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Drops `victim`'s copy on `gpu`, writing it back to the host first if it is the only
    /// valid copy. A no-op if it was pinned or evicted meanwhile.
    fn evict(
        &self,
        gpu: usize,
        victim: &Arc<Member>,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
    ) -> Result<(), DataError> {
        let mut st = victim.state.lock();
        if st.pins.get(gpu).copied().unwrap_or(0) > 0 {
            return Ok(());
        }
        let space = MemorySpace::Gpu(gpu);
        let sole = matches!(
            st.copies.get(space),
            Coherence::Modified | Coherence::Exclusive
        );
        if sole {
            if let Some(buf) = st.gpu_buffers.get(gpu).cloned().flatten() {
                // (download copies through staging, so mappable buffers need no special case)
                // SAFETY: the host copy is Invalid (the GPU copy is the only valid one), so no
                // task reads it; we hold the victim's state lock, so no transfer writes it.
                let host = unsafe { victim.host_bytes_mut() };
                transfer::download_counted(gpus, gpu, &buf, host, counters, &victim.label)?;
            }
            st.copies.apply_moves(&[super::coherence::Move {
                from: space,
                to: MemorySpace::Host,
            }]);
            self.write_backs.fetch_add(1, Ordering::Relaxed);
        }
        st.copies.invalidate(space);
        if let Some(slot) = st.gpu_buffers.get_mut(gpu) {
            *slot = None;
        }
        drop(st);
        let mut t = self.tables[gpu].lock();
        if let Some((_, bytes, _)) = t.arrays.remove(&victim.id) {
            t.used -= bytes;
        }
        self.evictions.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(gpu, array = %victim.label, sole, "evicted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: Coherence, last_use: u64) -> EvictionCandidate {
        EvictionCandidate {
            state,
            last_use,
            bytes: 64,
        }
    }

    #[test]
    fn lru_takes_cheap_copies_first_then_the_least_recently_used() {
        let lru = Lru;
        assert_eq!(lru.victim(&[]), None);
        let all = [
            c(Coherence::Modified, 1),
            c(Coherence::Shared, 9),
            c(Coherence::Invalid, 7),
            c(Coherence::Invalid, 3),
            c(Coherence::Shared, 2),
        ];
        assert_eq!(lru.victim(&all), Some(3), "the oldest stale buffer");
        assert_eq!(lru.victim(&all[..3]), Some(2), "stale before shared");
        assert_eq!(
            lru.victim(&[all[0], all[1], all[4]]),
            Some(2),
            "oldest shared"
        );
        let written = [c(Coherence::Exclusive, 5), c(Coherence::Modified, 4)];
        assert_eq!(lru.victim(&written), Some(1), "oldest written copy");
    }

    /// A policy that never evicts: a GPU that is full stays full, and residency says so.
    struct Never;
    impl EvictionPolicy for Never {
        fn victim(&self, _: &[EvictionCandidate]) -> Option<usize> {
            None
        }
    }

    #[test]
    fn a_policy_that_evicts_nothing_makes_a_full_gpu_busy() {
        let r = Residency::with_policy(vec![100], Box::new(Never));
        let raw = super::super::array::RawArray::new(
            None,
            16,
            4,
            None,
            2,
            super::super::array::OwnerId(0),
        );
        let a = raw.member().clone();
        r.tables[0].lock().admit(&a, 64);
        let err = r
            .make_room(0, 64, "b", &[], &TransferCounters::default(), false, |_| {})
            .unwrap_err();
        assert!(matches!(err, DataError::GpuMemoryBusy { gpu: 0 }), "{err}");
        // With overcommit allowed it goes over budget and counts it.
        r.make_room(0, 64, "b", &[], &TransferCounters::default(), true, |_| {})
            .unwrap();
        assert_eq!(r.overcommits.load(Ordering::Relaxed), 1);
    }
}
