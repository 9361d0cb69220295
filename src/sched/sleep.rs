//! Parking idle workers without losing wake-ups. Protocol and proof sketch: `SLEEP.md`.

use std::sync::atomic::{fence, AtomicUsize, Ordering};

use crossbeam_utils::sync::{Parker, Unparker};
use parking_lot::Mutex;

pub(crate) struct Sleep {
    idle: Mutex<Vec<usize>>,
    sleepers: AtomicUsize,
    /// Workers awake and looking for work; while one is, posting wakes nobody.
    searching: AtomicUsize,
    unparkers: Vec<Unparker>,
}

impl Sleep {
    pub(crate) fn new(unparkers: Vec<Unparker>) -> Self {
        Sleep {
            idle: Mutex::new(Vec::with_capacity(unparkers.len())),
            sleepers: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            unparkers,
        }
    }

    /// Number of workers asleep or about to be.
    pub(crate) fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::Relaxed)
    }

    /// Whether every worker is running a job: none asleep (or about to be) and none searching.
    /// Read with the same order as the counts are written (see `CpuPool::all_busy`).
    pub(crate) fn all_busy(&self) -> bool {
        self.sleepers.load(Ordering::SeqCst) == 0 && self.searching.load(Ordering::SeqCst) == 0
    }

    /// Wakes one sleeping worker, if any. Call after publishing a job.
    pub(crate) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.searching.load(Ordering::SeqCst) > 0 || self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut idle = self.idle.lock();
            let w = idle.pop();
            if w.is_some() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            w
        };
        if let Some(i) = woken {
            self.unparkers[i].unpark();
        }
    }

    /// Marks the calling worker as searching (awake, looking for work) until the guard drops;
    /// `None` if another worker is searching already: one searcher is enough to take jobs as
    /// they come, and a second would only take a core from the thread producing them.
    pub(crate) fn searching(&self) -> Option<SearchingGuard<'_>> {
        self.searching
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| SearchingGuard(self))
    }

    /// Wakes every sleeping worker (shutdown).
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        let woken: Vec<usize> = {
            let mut idle = self.idle.lock();
            self.sleepers.fetch_sub(idle.len(), Ordering::SeqCst);
            idle.drain(..).collect()
        };
        for i in woken {
            self.unparkers[i].unpark();
        }
        for u in &self.unparkers {
            u.unpark();
        }
    }

    /// Parks worker `index` unless `wake` becomes true after it announced itself.
    pub(crate) fn sleep(&self, index: usize, parker: &Parker, wake: impl Fn() -> bool) {
        {
            let mut idle = self.idle.lock();
            idle.push(index);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if !wake() {
            parker.park();
        }
        self.deregister(index);
    }

    fn deregister(&self, index: usize) {
        let mut idle = self.idle.lock();
        if let Some(pos) = idle.iter().position(|&i| i == index) {
            idle.swap_remove(pos);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Counts a worker as searching while alive. Dropping it decrements the count *before* the
/// worker registers to sleep, and the sleep path re-checks the queues after registering, so a
/// job posted while the count was non-zero is still found (`SLEEP.md`).
pub(crate) struct SearchingGuard<'a>(&'a Sleep);

impl Drop for SearchingGuard<'_> {
    fn drop(&mut self) {
        self.0.searching.fetch_sub(1, Ordering::SeqCst);
    }
}
