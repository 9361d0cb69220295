//! Which arrays occupy each GPU's memory, against a budget, and which to evict.
//!
//! ## Policy
//! Each GPU has a byte budget. Before a copy is allocated on a GPU, [`Residency::reserve`]
//! makes room by evicting other arrays' copies there, least recently used first, in this
//! order of preference: buffers whose copy is Invalid (pure waste), then Shared copies
//! (dropping them loses nothing), then Modified/Exclusive copies, which are written back to the
//! host first (so no data is ever lost).
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
        Residency {
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
                let mut candidates: Vec<(u8, u64, Arc<Member>)> = t
                    .arrays
                    .values()
                    .filter_map(|(w, _, tick)| w.upgrade().map(|a| (a, *tick)))
                    .filter_map(|(a, tick)| {
                        let st = a.state.try_lock()?;
                        if st.pins.get(gpu).copied().unwrap_or(0) > 0 {
                            return None;
                        }
                        let rank = match st.copies.get(MemorySpace::Gpu(gpu)) {
                            Coherence::Invalid => 0,
                            Coherence::Shared => 1,
                            _ => 2,
                        };
                        drop(st);
                        Some((rank, tick, a))
                    })
                    .collect();
                candidates.sort_by_key(|(rank, tick, _)| (*rank, *tick));
                candidates.into_iter().next().map(|(_, _, a)| a)
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
