//! Idle hooks: callbacks an executor (a CPU worker, a GPU driver) runs when it runs out of
//! work, so a layer above can react to the device going idle. The distributed runtime's
//! communication thread naps while every CPU worker is busy and is woken by these
//! (`dist/PROTOCOL.md`, "Pacing"). A hook must be cheap and must not block.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One idle hook.
pub(crate) type IdleHook = Box<dyn Fn() + Send + Sync>;

/// The installed idle hooks; `any` keeps an executor without hooks at one relaxed load.
#[derive(Default)]
pub(crate) struct IdleHooks {
    any: AtomicBool,
    next: AtomicU64,
    hooks: parking_lot::RwLock<Vec<(u64, IdleHook)>>,
}

impl IdleHooks {
    /// Adds a hook; returns its id for [`IdleHooks::remove`].
    pub(crate) fn add(&self, hook: IdleHook) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut hooks = self.hooks.write();
        hooks.push((id, hook));
        self.any.store(true, Ordering::SeqCst);
        id
    }

    /// Removes hook `id` (no effect if it is gone).
    pub(crate) fn remove(&self, id: u64) {
        let mut hooks = self.hooks.write();
        hooks.retain(|(i, _)| *i != id);
        self.any.store(!hooks.is_empty(), Ordering::SeqCst);
    }

    /// Runs every hook.
    pub(crate) fn call(&self) {
        if self.any.load(Ordering::Relaxed) {
            for (_, h) in self.hooks.read().iter() {
                h();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn added_hooks_run_until_removed() {
        let hooks = IdleHooks::default();
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let id = hooks.add(Box::new(move || {
            n2.fetch_add(1, Ordering::Relaxed);
        }));
        hooks.call();
        hooks.call();
        hooks.remove(id);
        hooks.call();
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }
}
