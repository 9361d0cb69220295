//! Ready CPU jobs that carry a priority other than 0 ([`crate::TaskBuilder::priority`]).
//!
//! ## Order
//! The CPU queues form three tiers, taken in this order by every worker (and by the
//! browser's pump):
//! 1. ranked jobs with a priority above 0, highest first;
//! 2. priority-0 jobs (the default): the worker's own deque (newest first), the injector,
//!    stealing from peers — the order of an unranked program is unchanged;
//! 3. ranked jobs with a priority below 0, highest first.
//!
//! Among ranked jobs of equal priority the one queued first runs first. A priority orders
//! *ready* jobs only: it never lets a task run before its dependencies, and a job already
//! running is not preempted.
//!
//! ## Invariants
//! - `top` is the highest priority queued, or [`EMPTY`] when none is; it is written only
//!   under the heap's lock, after the heap changed, so a reader that sees [`EMPTY`] after a
//!   push's `SeqCst` store cannot exist (the sleep protocol's re-check, `SLEEP.md`, reads it
//!   after its own fence: a push then `notify_one` is the same `W(job); fence; R(sleepers)`
//!   shape as a deque push).
//! - A reader that sees a stale `top` only looks under the lock in vain, or skips tier 1 for
//!   one round and finds the job in tier 3 or on its next search: nothing is lost, since
//!   `is_empty` (the sleep re-check) reads the same word.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

/// `top` when nothing is queued (below every `i32` priority).
const EMPTY: i64 = i64::MIN;

struct Entry<T> {
    priority: i32,
    /// Queue order, for first-in first-out among equal priorities.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// The max-heap's greatest is the highest priority, then the earliest queued.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct Heap<T> {
    entries: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

/// A priority queue of jobs with a lock-free "anything above p?" test (see the module docs).
pub(crate) struct Ranked<T> {
    heap: Mutex<Heap<T>>,
    top: AtomicI64,
}

impl<T> Default for Ranked<T> {
    fn default() -> Self {
        Ranked {
            heap: Mutex::new(Heap {
                entries: BinaryHeap::new(),
                next_seq: 0,
            }),
            top: AtomicI64::new(EMPTY),
        }
    }
}

impl<T> Ranked<T> {
    /// Queues `item` with `priority`.
    pub(crate) fn push(&self, item: T, priority: i32) {
        let mut h = self.heap.lock();
        let seq = h.next_seq;
        h.next_seq += 1;
        h.entries.push(Entry {
            priority,
            seq,
            item,
        });
        let top = h.entries.peek().map_or(EMPTY, |e| i64::from(e.priority));
        self.top.store(top, Ordering::SeqCst);
    }

    /// Takes the highest-priority item if its priority is above `floor` (`None` takes any).
    pub(crate) fn pop_above(&self, floor: Option<i32>) -> Option<T> {
        let floor = floor.map_or(EMPTY, i64::from);
        // The common case — nothing ranked, or nothing above the floor — costs one load.
        if self.top.load(Ordering::Acquire) <= floor {
            return None;
        }
        let mut h = self.heap.lock();
        if h.entries
            .peek()
            .is_none_or(|e| i64::from(e.priority) <= floor)
        {
            return None;
        }
        let e = h.entries.pop()?;
        let top = h.entries.peek().map_or(EMPTY, |e| i64::from(e.priority));
        self.top.store(top, Ordering::SeqCst);
        Some(e.item)
    }

    /// Whether nothing is queued (read without the lock; see the module docs).
    pub(crate) fn is_empty(&self) -> bool {
        self.top.load(Ordering::SeqCst) == EMPTY
    }

    /// How many items are queued (a hint).
    pub(crate) fn len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            self.heap.lock().entries.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_first_then_first_queued() {
        let r = Ranked::default();
        for (item, p) in [("a", 1), ("b", 5), ("c", -2), ("d", 5), ("e", 9), ("f", -2)] {
            r.push(item, p);
        }
        assert_eq!(r.len(), 6);
        let mut out = Vec::new();
        while let Some(x) = r.pop_above(None) {
            out.push(x);
        }
        assert_eq!(out, ["e", "b", "d", "a", "c", "f"]);
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn floor_keeps_lower_tiers_queued() {
        let r = Ranked::default();
        r.push(1, -1);
        r.push(2, 3);
        assert_eq!(r.pop_above(Some(0)), Some(2));
        assert_eq!(
            r.pop_above(Some(0)),
            None,
            "a negative priority waits for tier 3"
        );
        assert!(!r.is_empty());
        assert_eq!(r.pop_above(Some(i32::MIN)), Some(1));
        assert_eq!(r.pop_above(None), None);
        // Extreme priorities are ordered too (EMPTY is below i32::MIN).
        r.push(3, i32::MIN);
        r.push(4, i32::MAX);
        assert_eq!(r.pop_above(None), Some(4));
        assert_eq!(r.pop_above(Some(i32::MIN)), None);
        assert_eq!(r.pop_above(None), Some(3));
    }
}
