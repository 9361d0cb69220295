//! Families: an array and the sub-arrays sliced from it, which share its host memory.
//!
//! ## Dependencies ([`RangeTracker`])
//! Every access to a member is recorded on the family with the member's byte range. A new
//! access waits for the earlier ones whose ranges overlap its own and that conflict with it:
//! anything involving a write, and reductions with different operations (readers run
//! together; reducers with the same operation run together). So disjoint slices are
//! independent, and a parent waits for the slices written before it and vice versa.
//!
//! ## Coherence between members
//! Each member has its own MESI states and GPU buffers; the host memory is shared, and it is
//! where members meet. Every write to a member takes a new family *epoch*
//! (`written_epoch`); every access records the epoch it is in sync with (`synced_epoch`).
//! Before any access to member X, under the family's sync lock:
//! 1. every overlapping member whose newest data is not on the host (host copy Invalid, or
//!    reduction partials pending), and X itself if it is stale, is flushed to the host, in
//!    increasing `written_epoch` — older writes land first, newer ones overwrite them;
//! 2. if an overlapping member was written after X's `synced_epoch`, or has reduction
//!    partials pending (folding them is a write), X's device copies are stale: X becomes valid
//!    on the host only (the host now holds every newer write).
//!
//! ## Members outlive their handles while they hold data
//! The family keeps every member's record ([`Member`]: range, states, GPU copies, partials),
//! not only a weak link to its handle. When the last handle of a member goes (a slice taken as
//! a temporary: `a.slice(r)` written by a GPU task and dropped) while it holds the newest data
//! of its range — host copy Invalid, or reduction partials pending — its record stays in the
//! family as an *orphan* and takes part in step 1 like any live member: the next overlapping
//! access flushes it. An orphan is forgotten once it holds nothing unflushed and every
//! overlapping member has synced past its last write (so step 2 no longer needs its epoch).
//! No cycle keeps a family alive: records hold no link back to it.
//!
//! Why no write is lost: a member's host copy is Invalid only when it was written on a device
//! since its last flush, i.e. it holds the newest data of its range; flushing in epoch order
//! gives every byte the value of its latest writer. Why it is race-free: flushes write only the
//! host ranges of members whose host copy is Invalid, and any task that reads an overlapping
//! range flushed them first (step 1) under the same lock, while tasks that write overlapping
//! ranges are ordered by the range tracker.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::array::{Access, Member, RawArray};

/// One member of a family: its handle (gone for an orphan) and its record.
struct Entry {
    handle: Weak<RawArray>,
    member: Arc<Member>,
}

/// Gives every family a distinct id (the key of its access tracker, kept by the runtime).
static NEXT_FAMILY: AtomicU64 = AtomicU64::new(1);

/// The shared part of a family.
pub(crate) struct Family {
    /// Distinct among all families of the process, never reused.
    pub id: u64,
    members: Mutex<Vec<Entry>>,
    pub epoch: AtomicU64,
    /// Serialises the flush steps of accesses to members.
    pub sync: Mutex<()>,
}

impl Family {
    pub(crate) fn new() -> Arc<Family> {
        Arc::new(Family {
            id: NEXT_FAMILY.fetch_add(1, Ordering::Relaxed),
            members: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            sync: Mutex::new(()),
        })
    }

    /// A fresh epoch for a write.
    pub(crate) fn next_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Adds a new member.
    pub(crate) fn admit(&self, a: &Arc<RawArray>) {
        self.members.lock().push(Entry {
            handle: Arc::downgrade(a),
            member: a.member().clone(),
        });
    }

    /// Members other than `id` whose ranges overlap `range`, live or orphaned (their handles
    /// gone while they held unflushed data). Forgets orphans that no longer matter.
    pub(crate) fn overlapping(&self, id: u64, range: &Range<usize>) -> Vec<Arc<Member>> {
        let entries: Vec<(bool, Arc<Member>)> = self
            .members
            .lock()
            .iter()
            .map(|e| (e.handle.strong_count() > 0, e.member.clone()))
            .collect();
        // Without holding the list's lock (member states are locked one at a time).
        let forget: Vec<u64> = entries
            .iter()
            .filter(|(live, m)| !live && self.forgettable(m, &entries))
            .map(|(_, m)| m.id)
            .collect();
        if !forget.is_empty() {
            self.members
                .lock()
                .retain(|e| !forget.contains(&e.member.id));
        }
        entries
            .into_iter()
            .filter(|(_, m)| m.id != id && !forget.contains(&m.id) && overlaps(&m.range, range))
            .map(|(_, m)| m)
            .collect()
    }

    /// Whether orphan `o` can be forgotten: it holds nothing unflushed and every overlapping
    /// member has synced past its last write.
    fn forgettable(&self, o: &Member, entries: &[(bool, Arc<Member>)]) -> bool {
        if o.holds_unflushed_data() {
            return false;
        }
        let written = o.state.lock().written_epoch;
        entries
            .iter()
            .filter(|(_, m)| m.id != o.id && overlaps(&m.range, &o.range))
            .all(|(_, m)| m.state.lock().synced_epoch >= written)
    }

    /// Whether the family has members besides its root.
    pub(crate) fn has_slices(&self) -> bool {
        self.members.lock().len() > 1
    }
}

pub(crate) fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end || (a.is_empty() && b.contains(&a.start))
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn conflict(a: Access, b: Access) -> bool {
    match (a, b) {
        (Access::Read, Access::Read) => false,
        (Access::Reduce(x), Access::Reduce(y)) => x.op != y.op || x != y,
        _ => true,
    }
}

/// Recent accesses of a family, with their byte ranges, each by a task token `T` (the task
/// layer's node; this layer only compares ranges and access modes).
pub(crate) struct RangeTracker<T> {
    entries: Vec<(T, Range<usize>, Access)>,
}

impl<T> Default for RangeTracker<T> {
    fn default() -> Self {
        RangeTracker {
            entries: Vec::new(),
        }
    }
}

impl<T> RangeTracker<T> {
    /// Records an access by `task` to `range` and calls `depend` with each earlier task it
    /// must wait for. `finished` tells which earlier tasks completed successfully (they are
    /// forgotten).
    pub(crate) fn record(
        &mut self,
        task: T,
        range: Range<usize>,
        access: Access,
        finished: impl Fn(&T) -> bool,
        mut depend: impl FnMut(&T),
    ) {
        if self.entries.len() >= 64 {
            self.entries.retain(|(t, _, _)| !finished(t));
        }
        for (t, r, a) in &self.entries {
            if overlaps(r, &range) && conflict(*a, access) {
                depend(t);
            }
        }
        if access.writes() {
            // Entries inside a new write's range are reached through it from now on.
            self.entries.retain(|(_, r, _)| !covers(&range, r));
        }
        self.entries.push((task, range, access));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ReduceOp, Reduction};

    fn tok(n: u32) -> u32 {
        n
    }

    /// Records an access and returns the tasks it waits for.
    fn rec(t: &mut RangeTracker<u32>, task: u32, range: Range<usize>, access: Access) -> Vec<u32> {
        let mut deps = Vec::new();
        t.record(task, range, access, |_| false, |d| deps.push(*d));
        deps
    }

    fn ids(v: &[u32]) -> Vec<u32> {
        let mut out = v.to_vec();
        out.sort();
        out
    }

    #[test]
    fn ranges_decide_conflicts() {
        let mut t = RangeTracker::<u32>::default();
        assert!(rec(&mut t, tok(1), 0..40, Access::Write).is_empty());
        // Disjoint slice writes both wait for the parent write, not for each other.
        assert_eq!(ids(&rec(&mut t, tok(2), 0..20, Access::Write)), vec![1]);
        assert_eq!(ids(&rec(&mut t, tok(3), 20..40, Access::Write)), vec![1]);
        // A parent read waits for both slice writes (and, redundantly, the first write).
        assert_eq!(
            ids(&rec(&mut t, tok(4), 0..40, Access::Read)),
            vec![1, 2, 3]
        );
        assert_eq!(
            ids(&rec(&mut t, tok(5), 10..30, Access::Read)),
            vec![1, 2, 3]
        );
        // Same-op reducers run together, after the readers.
        let add = Access::Reduce(Reduction::of::<f32>(ReduceOp::Add));
        assert_eq!(ids(&rec(&mut t, tok(6), 0..40, add)), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&rec(&mut t, tok(7), 0..40, add)), vec![1, 2, 3, 4, 5]);
        let mul = Access::Reduce(Reduction::of::<f32>(ReduceOp::Mul));
        assert_eq!(ids(&rec(&mut t, tok(8), 0..8, mul)), vec![1, 2, 4, 6, 7]);
        // A write covering everything forgets what it covers.
        assert_eq!(ids(&rec(&mut t, tok(9), 0..40, Access::Write)).len(), 8);
        assert_eq!(ids(&rec(&mut t, tok(10), 0..4, Access::Read)), vec![9]);
    }
}
