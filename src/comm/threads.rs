//! The thread backend: N instances as N threads of this process. A put or get is a direct
//! copy into or out of the owner's slot (through staging for GPU slots), complete on return;
//! a fence is a barrier.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::backend::Backend;
use super::error::CommError;
use super::manager::CommunicationManager;
use super::slot::{copy_bytes, GlobalSlot, LocalSlot, MessageCounts, Remote};
use super::{InstanceId, Key, Tag};

/// A barrier that fails instead of hanging once an instance has panicked.
struct Rendezvous {
    n: usize,
    state: Mutex<(usize, u64, Option<InstanceId>)>, // (arrived, generation, panicked)
    cv: Condvar,
}

impl Rendezvous {
    fn wait(&self) -> Result<(), CommError> {
        let mut s = self.state.lock();
        if let Some(instance) = s.2 {
            return Err(panicked(instance));
        }
        s.0 += 1;
        if s.0 == self.n {
            s.0 = 0;
            s.1 += 1;
            self.cv.notify_all();
            return Ok(());
        }
        let generation = s.1;
        while s.1 == generation {
            if let Some(instance) = s.2 {
                return Err(panicked(instance));
            }
            self.cv.wait(&mut s);
        }
        Ok(())
    }

    fn poison(&self, instance: InstanceId) {
        let mut s = self.state.lock();
        s.2.get_or_insert(instance);
        self.cv.notify_all();
    }
}

fn panicked(instance: InstanceId) -> CommError {
    CommError::InstancePanicked {
        instance,
        message: "another instance panicked while this one waited for it".into(),
    }
}

struct Shared {
    n: usize,
    rendezvous: Rendezvous,
    /// Each instance's entries of the exchange in progress.
    board: Mutex<Vec<Vec<(Key, LocalSlot)>>>,
}

/// One instance of the thread backend.
pub struct ThreadBackend {
    me: InstanceId,
    shared: Arc<Shared>,
}

/// Poisons the rendezvous if the instance's closure unwinds, so the others stop waiting.
struct PoisonOnPanic<'a>(&'a Shared, InstanceId);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.rendezvous.poison(self.1);
        }
    }
}

/// Starts N instances as threads (HiCR's instance manager for the thread backend).
pub struct ThreadInstances;

impl ThreadInstances {
    /// Runs `body` on `n` instances, each a thread with its own [`CommunicationManager`];
    /// returns their results in instance order. Instance 0 is the root. A panicking
    /// instance makes the others' collective calls fail and is reported as
    /// [`CommError::InstancePanicked`].
    pub fn run<R, F>(n: usize, body: F) -> Result<Vec<R>, CommError>
    where
        R: Send,
        F: Fn(CommunicationManager<ThreadBackend>) -> R + Sync,
    {
        if n == 0 {
            return Err(CommError::InvalidInstanceCount { count: n });
        }
        let shared = Arc::new(Shared {
            n,
            rendezvous: Rendezvous {
                n,
                state: Mutex::new((0, 0, None)),
                cv: Condvar::new(),
            },
            board: Mutex::new(vec![Vec::new(); n]),
        });
        let body = &body;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let shared = shared.clone();
                    std::thread::Builder::new()
                        .name(format!("hetflow-instance-{i}"))
                        .spawn_scoped(scope, move || {
                            let me = InstanceId(i);
                            let _guard = PoisonOnPanic(&shared, me);
                            body(CommunicationManager::new(ThreadBackend {
                                me,
                                shared: shared.clone(),
                            }))
                        })
                })
                .collect();
            let mut out = Vec::with_capacity(n);
            let mut first_err = None;
            for (i, h) in handles.into_iter().enumerate() {
                let joined = h
                    .map_err(|e| CommError::InstancePanicked {
                        instance: InstanceId(i),
                        message: format!("could not start its thread: {e}"),
                    })
                    .and_then(|h| {
                        h.join().map_err(|p| CommError::InstancePanicked {
                            instance: InstanceId(i),
                            message: panic_message(&p),
                        })
                    });
                match joined {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

impl ThreadBackend {
    fn owner_slot(slot: &GlobalSlot) -> Result<&LocalSlot, CommError> {
        match &slot.remote {
            Remote::Shared(s) => Ok(s),
            #[cfg(feature = "mpi")]
            Remote::Window(_) => Err(CommError::Unsupported {
                backend: Self::NAME,
                what: "a global slot of the MPI backend".into(),
            }),
        }
    }
}

impl Backend for ThreadBackend {
    const NAME: &'static str = "threads";

    fn instance_id(&self) -> InstanceId {
        self.me
    }

    fn instance_count(&self) -> usize {
        self.shared.n
    }

    fn root_instance(&self) -> InstanceId {
        InstanceId(0)
    }

    fn barrier(&mut self) -> Result<(), CommError> {
        self.shared.rendezvous.wait()
    }

    fn exchange(
        &mut self,
        tag: Tag,
        entries: &[(Key, LocalSlot)],
    ) -> Result<Vec<GlobalSlot>, CommError> {
        self.shared.board.lock()[self.me.0] = entries.to_vec();
        self.shared.rendezvous.wait()?;
        let all: Vec<GlobalSlot> = {
            let board = self.shared.board.lock();
            board
                .iter()
                .enumerate()
                .flat_map(|(owner, list)| {
                    list.iter().map(move |(key, slot)| GlobalSlot {
                        tag,
                        key: *key,
                        owner: InstanceId(owner),
                        size: slot.size(),
                        space: slot.space(),
                        remote: Remote::Shared(slot.clone()),
                    })
                })
                .collect()
        };
        // Nobody may clear or overwrite the board before everyone has read it.
        self.shared.rendezvous.wait()?;
        self.shared.board.lock()[self.me.0].clear();
        Ok(all)
    }

    fn fence(&mut self, _tag: Tag) -> Result<(), CommError> {
        // Every put and get completed before it returned; the barrier orders them before
        // everything any instance does after the fence.
        self.shared.rendezvous.wait()
    }

    fn put(
        &self,
        dst: &GlobalSlot,
        dst_off: usize,
        src: &LocalSlot,
        src_off: usize,
        n: usize,
    ) -> Result<(), CommError> {
        let target = Self::owner_slot(dst)?;
        copy_bytes(target, dst_off, src, src_off, n)?;
        src.add_local_counts(1, 0);
        target.add_local_counts(0, 1);
        Ok(())
    }

    fn get(
        &self,
        dst: &LocalSlot,
        dst_off: usize,
        src: &GlobalSlot,
        src_off: usize,
        n: usize,
    ) -> Result<(), CommError> {
        let source = Self::owner_slot(src)?;
        copy_bytes(dst, dst_off, source, src_off, n)?;
        source.add_local_counts(1, 0);
        dst.add_local_counts(0, 1);
        Ok(())
    }

    fn add_counts(&self, slot: &LocalSlot, sent: u64, received: u64) -> Result<(), CommError> {
        slot.add_local_counts(sent, received);
        Ok(())
    }

    fn counts(&self, slot: &LocalSlot) -> Result<MessageCounts, CommError> {
        Ok(slot.local_counts())
    }

    fn try_lock(&self, slot: &GlobalSlot) -> Result<bool, CommError> {
        let owner = Self::owner_slot(slot)?;
        let me = self.me.0 as u64 + 1;
        Ok(owner
            .inner
            .counters
            .lock
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }

    fn unlock(&self, slot: &GlobalSlot) -> Result<bool, CommError> {
        let owner = Self::owner_slot(slot)?;
        let me = self.me.0 as u64 + 1;
        Ok(owner
            .inner
            .counters
            .lock
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }

    fn destroy(&mut self, _tag: Tag, slots: Vec<GlobalSlot>) -> Result<(), CommError> {
        // Drop this instance's handles, then wait until every instance has, so an owner may
        // deregister its slot right after this returns.
        drop(slots);
        self.shared.rendezvous.wait()
    }
}
