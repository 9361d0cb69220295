//! The access trackers of a runtime's arrays: per family, the recent accesses by task node
//! (`data::family::RangeTracker` compares their ranges and modes). The runtime's core keeps
//! them under one mutex, which is also what orders spawns (see `task/mod.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::node::Node;
use crate::data::family::{Family, RangeTracker};

/// Families whose tracker is looked at again when the map grows past this.
const PRUNE_FROM: usize = 64;

/// Hashes a family id (distinct `u64`s from a counter) with one multiplication: the tracker
/// is looked up on every spawn that declares an array, under the spawn-ordering lock.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits the table probes.
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ById<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Every family's tracker, by family id.
pub(crate) struct Trackers {
    by_family: ById<(Weak<Family>, RangeTracker<Arc<Node>>)>,
    /// When the map reaches this size, trackers of dropped families are forgotten.
    prune_at: usize,
}

/// The trackers as the runtime's core holds them. The core holds nodes (here) and nodes hold
/// the core (their runtime handle): left to the compiler, proving `Runtime: Send + Sync`
/// walks that cycle through every wgpu type inside and overflows the default recursion
/// limit in *users'* crates (a `static OnceLock<Runtime>` stops compiling). This wrapper
/// states the two auto traits once, so the walk stops here.
pub(crate) struct SharedTrackers(pub(crate) parking_lot::Mutex<Trackers>);

// SAFETY: `Trackers` holds only `u64`s, `Weak<Family>`s, `Range`s, `Access`es and
// `Arc<Node>`s, each `Send + Sync` (checked below, in this crate, where the recursion limit
// allows it), so a mutex of it is `Send + Sync` as the compiler would derive it.
unsafe impl Send for SharedTrackers {}
// SAFETY: as above.
unsafe impl Sync for SharedTrackers {}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<parking_lot::Mutex<Trackers>>();
};

impl Default for SharedTrackers {
    fn default() -> Self {
        SharedTrackers(parking_lot::Mutex::new(Trackers::default()))
    }
}

impl Default for Trackers {
    fn default() -> Self {
        Trackers {
            by_family: ById::default(),
            prune_at: PRUNE_FROM,
        }
    }
}

impl Trackers {
    /// The tracker of `family`, made on its first access.
    pub(crate) fn of(&mut self, family: &Arc<Family>) -> &mut RangeTracker<Arc<Node>> {
        if self.by_family.len() >= self.prune_at {
            // A dropped family has no handle left, so no task can access it again.
            self.by_family.retain(|_, (f, _)| f.strong_count() > 0);
            self.prune_at = (self.by_family.len() * 2).max(PRUNE_FROM);
        }
        &mut self
            .by_family
            .entry(family.id)
            .or_insert_with(|| (Arc::downgrade(family), RangeTracker::default()))
            .1
    }

    /// How many families have a tracker (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_family.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackers_of_dropped_families_are_forgotten() {
        let mut t = Trackers::default();
        let keep = Family::new();
        t.of(&keep);
        for _ in 0..200 {
            let f = Family::new();
            t.of(&f);
        }
        // Pruned as it grew: far fewer than 201 trackers, the live family's among them.
        assert!(t.len() < PRUNE_FROM + 2, "{} trackers", t.len());
        let before = t.len();
        t.of(&keep);
        assert_eq!(t.len(), before, "the live family keeps its tracker");
    }
}
