//! Quiescence: how many tasks are ready or running, and waiting for none to be.
//!
//! ## Protocol
//! `live` counts tasks from the moment they are ready (queued, or waiting on a fence) until
//! they finish. [`Quiet::started`] adds one when a task becomes ready; a finish subtracts one
//! with [`Quiet::finished`], either at once or, on a CPU worker, later: a worker adds its
//! finishes to a count of its own (a plain cell, no shared write) and subtracts them from
//! `live` in one step when it has `DEFER_MAX` of them, when it runs out of work (before it
//! searches or parks: `cpu.rs`, `went_idle`) and when it stops. So `live` is never below the
//! true number of ready or running tasks, and a worker touches the shared line only every
//! `DEFER_MAX` tasks or when it idles, instead of at every task (the line is written by the
//! spawning thread at every task; sharing it at every finish made each spawn wait for the
//! line to come back from the finishing worker).
//!
//! Why a waiter is never released early: `live` ≥ the true count at every instant (a
//! started task is counted before it can run; a finish is subtracted only after it
//! happened), so `live == 0` means nothing is ready or running.
//!
//! Why a waiter is never left waiting: the finish that makes the true count 0 is either
//! subtracted at once (the count reaches 0 in that `fetch_sub`) or deferred on a worker. A
//! worker with deferred finishes either keeps running jobs — then a task is ready or running
//! and the runtime is not quiet — or finds none and subtracts them before it searches or
//! parks; the subtraction that brings `live` to 0 wakes the waiters. Every job a pool
//! worker runs is a task (tasks are the only jobs the runtime pushes), so a worker does not
//! hold deferred finishes while it runs something that could wait for quiet forever.
//!
//! Waking: the subtraction that reaches 0 takes `lock`, notifies the condition variable and
//! takes the registered wakers. A blocking waiter checks `live` under `lock` before waiting;
//! an async waiter registers under `wakers`' lock and checks again there: either it is
//! registered before the wakers are taken, or it sees 0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use parking_lot::{Condvar, Mutex};

/// Finishes a worker defers before it subtracts them anyway (bounds how long `live` lags).
pub(crate) const DEFER_MAX: usize = 64;

/// The count of ready or running tasks of one runtime, and its waiters.
#[derive(Default)]
pub(crate) struct Quiet {
    live: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    wakers: Mutex<Vec<Waker>>,
}

impl Quiet {
    /// A task became ready.
    pub(crate) fn started(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` tasks finished; wakes the waiters when none is left.
    pub(crate) fn finished(&self, n: usize) {
        if n == 0 {
            return;
        }
        if self.live.fetch_sub(n, Ordering::AcqRel) == n {
            {
                let _g = self.lock.lock();
                self.cv.notify_all();
            }
            let wakers = std::mem::take(&mut *self.wakers.lock());
            for w in wakers {
                w.wake();
            }
        }
    }

    /// Whether no task is ready or running (finishes a worker still defers count as
    /// running).
    pub(crate) fn is_quiet(&self) -> bool {
        self.live.load(Ordering::Acquire) == 0
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until no task is ready or running.
    pub(crate) fn wait(&self) {
        let mut g = self.lock.lock();
        while !self.is_quiet() {
            self.cv.wait(&mut g);
        }
    }

    /// Resolves once no task is ready or running (the async form of [`Quiet::wait`]).
    pub(crate) fn until_quiet(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_quiet() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.lock();
            if self.is_quiet() {
                return Poll::Ready(());
            }
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_waiter_returns_only_once_every_started_task_finished() {
        let q = Arc::new(Quiet::default());
        q.started();
        q.started();
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || {
            q2.wait();
            tx.send(()).expect("receiver alive");
        });
        q.finished(1);
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(50))
            .is_err());
        assert!(!q.is_quiet());
        q.finished(1);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("woken at zero");
        waiter.join().expect("waiter");
        // A batch that brings the count to zero wakes too; an empty batch changes nothing.
        q.started();
        q.started();
        q.finished(0);
        assert!(!q.is_quiet());
        q.finished(2);
        assert!(q.is_quiet());
    }
}
