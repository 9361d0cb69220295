//! The thread backend: N instances as N threads of this process. A put or get is a direct
//! copy into or out of the owner's slot (through staging for GPU slots), complete on return;
//! a fence is a barrier.
//!
//! Every wait of this backend ends: the rendezvous behind the collective calls knows which
//! instances still run, which returned and which panicked, and which collective call each
//! waiting instance is in. A collective call fails once an instance has left (it can never
//! arrive) or when two instances are in different collective calls (`fence(10)` against
//! `fence(20)`); a global lock whose holder left, or waits in a collective for the instance
//! that wants the lock, fails the acquire; a per-slot fence fails once no other instance
//! can send. The states and transitions are in `PROTOCOL.md`, section "Thread backend:
//! why no wait is forever".

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::backend::CommBackend;
use super::error::{Collective, CommError};
use super::manager::CommunicationManager;
use super::slot::{copy_bytes, GlobalSlot, LocalSlot, MessageCounts, Remote};
use super::{InstanceId, SlotKey, Tag};

/// Whether an instance's body still runs.
#[derive(Debug, Clone)]
enum Life {
    /// The body runs (it may be waiting in a call of this backend).
    Running,
    /// The body returned; the instance makes no further call.
    Returned,
    /// The body panicked, with this message.
    Panicked(String),
}

/// The first two collective calls found not to match; kept so every later call fails alike.
#[derive(Debug, Clone, Copy)]
struct Mismatch {
    first: InstanceId,
    first_call: Collective,
    second: InstanceId,
    second_call: Collective,
}

impl Mismatch {
    fn error(&self) -> CommError {
        CommError::CollectiveMismatch {
            first: self.first,
            first_call: self.first_call,
            second: self.second,
            second_call: self.second_call,
        }
    }
}

/// The rendezvous's state, all under one mutex.
struct State {
    /// Instances waiting in the current generation's collective call.
    arrived: usize,
    /// Completed collective calls so far.
    generation: u64,
    /// The current generation's call and the instance that arrived first with it.
    call: Option<(Collective, InstanceId)>,
    /// Per instance: waiting in the current generation.
    waiting: Vec<bool>,
    /// Per instance: running, returned or panicked.
    life: Vec<Life>,
    /// Instances that left, in the order they left (the first is the root cause).
    departed: Vec<usize>,
    /// Set once two instances were in different collective calls; never cleared.
    mismatch: Option<Mismatch>,
}

impl State {
    /// Why `call` can never complete, if that is already certain: a mismatch earlier, or an
    /// instance that left (the first one to leave is named: the others may have left
    /// because of it).
    fn doomed(&self, call: Collective) -> Result<(), CommError> {
        if let Some(m) = &self.mismatch {
            return Err(m.error());
        }
        let Some(&i) = self.departed.first() else {
            return Ok(());
        };
        Err(match &self.life[i] {
            Life::Panicked(message) => CommError::InstancePanicked {
                instance: InstanceId(i),
                message: format!("{message} (so it can never join {call})"),
            },
            _ => CommError::InstanceFinished {
                instance: InstanceId(i),
                call,
            },
        })
    }

    fn anyone_left(&self) -> bool {
        !self.departed.is_empty()
    }

    /// Takes `me`'s arrival back (a timeout or a failure while waiting).
    fn withdraw(&mut self, me: InstanceId) {
        if self.waiting[me.0] {
            self.waiting[me.0] = false;
            self.arrived -= 1;
            if self.arrived == 0 {
                self.call = None;
            }
        }
    }

    fn not_arrived(&self, me: InstanceId) -> Vec<usize> {
        (0..self.waiting.len())
            .filter(|&i| i != me.0 && !self.waiting[i])
            .collect()
    }
}

/// A barrier for the collective calls that fails instead of hanging: once an instance has
/// left (returned or panicked), when the instances are in different collective calls, or
/// (with a deadline) when time is up.
struct Rendezvous {
    n: usize,
    state: Mutex<State>,
    cv: Condvar,
}

impl Rendezvous {
    fn new(n: usize) -> Self {
        Rendezvous {
            n,
            state: Mutex::new(State {
                arrived: 0,
                generation: 0,
                call: None,
                waiting: vec![false; n],
                life: vec![Life::Running; n],
                departed: Vec::new(),
                mismatch: None,
            }),
            cv: Condvar::new(),
        }
    }

    /// Waits until every instance has made `call`; `timeout` bounds the wait (on a timeout
    /// this instance's arrival is taken back, so the call can be made again).
    fn wait(
        &self,
        me: InstanceId,
        call: Collective,
        timeout: Option<Duration>,
    ) -> Result<(), CommError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = self.state.lock();
        s.doomed(call)?;
        match s.call {
            None => s.call = Some((call, me)),
            Some((first_call, first)) if first_call != call => {
                let m = Mismatch {
                    first,
                    first_call,
                    second: me,
                    second_call: call,
                };
                tracing::error!(%first, %first_call, second = %me, second_call = %call, "collective calls do not match");
                s.mismatch = Some(m);
                self.cv.notify_all();
                return Err(m.error());
            }
            Some(_) => {}
        }
        s.arrived += 1;
        s.waiting[me.0] = true;
        if s.arrived == self.n {
            s.arrived = 0;
            s.generation += 1;
            s.call = None;
            s.waiting.fill(false);
            self.cv.notify_all();
            return Ok(());
        }
        let generation = s.generation;
        loop {
            if s.generation != generation {
                return Ok(());
            }
            if let Err(e) = s.doomed(call) {
                s.withdraw(me);
                return Err(e);
            }
            match deadline {
                None => self.cv.wait(&mut s),
                Some(d) => {
                    if self.cv.wait_until(&mut s, d).timed_out() && s.generation == generation {
                        let missing = s.not_arrived(me);
                        s.withdraw(me);
                        return Err(CommError::Timeout {
                            operation: format!("{call} on instance {me}"),
                            waited: timeout.unwrap_or_default(),
                            detail: format!(
                                "instances {missing:?} have not arrived; this instance's arrival was taken back, so the call can be retried"
                            ),
                        });
                    }
                }
            }
        }
    }

    /// Records that `me`'s body ended and wakes every waiter (their call can no longer
    /// complete).
    fn depart(&self, me: InstanceId, how: Life) {
        let mut s = self.state.lock();
        tracing::debug!(instance = %me, ?how, "instance left");
        if matches!(s.life[me.0], Life::Running) {
            s.departed.push(me.0);
        }
        s.life[me.0] = how;
        self.cv.notify_all();
    }

    /// Why no instance other than `me` can send a message any more, if that is certain.
    /// Called by `me` while it waits outside any collective call.
    fn senders_gone(&self, me: InstanceId) -> Option<String> {
        let s = self.state.lock();
        let others: Vec<usize> = (0..self.n).filter(|&i| i != me.0).collect();
        if others.is_empty() {
            return Some("it is the only instance, and it is waiting".into());
        }
        let left: Vec<String> = others
            .iter()
            .filter_map(|&i| match &s.life[i] {
                Life::Running => None,
                Life::Returned => Some(format!("{i} returned")),
                Life::Panicked(_) => Some(format!("{i} panicked")),
            })
            .collect();
        if left.len() == others.len() {
            return Some(format!(
                "every other instance has left ({})",
                left.join(", ")
            ));
        }
        // Instances waiting in a collective call stay there until `me` joins it, unless it
        // fails because someone left or the calls mismatched (then they run on).
        if !s.anyone_left() && s.mismatch.is_none() && others.iter().all(|&i| s.waiting[i]) {
            let call = s
                .call
                .map_or("a collective call".to_string(), |(c, _)| c.to_string());
            return Some(format!(
                "every other instance waits in {call}, which cannot complete before instance {me} joins it"
            ));
        }
        None
    }

    /// The holder of the lock word `word` and why it will never release the lock, if that
    /// is certain, for instance `me` that wants it. `blocking`: `me` waits for the lock (in
    /// `acquire_lock`) rather than asking once, so a holder waiting in a collective call is
    /// stuck (the call needs `me`), and so is `me` itself (the lock is not re-entrant).
    ///
    /// The word is read under the rendezvous mutex, after the holder's state: a release made
    /// before the holder arrived in a collective or left is seen here, so a holder found
    /// waiting or gone that still holds the word cannot release it any more.
    fn holder_stuck(
        &self,
        word: &std::sync::atomic::AtomicU64,
        me: InstanceId,
        blocking: bool,
    ) -> Option<(InstanceId, String)> {
        let s = self.state.lock();
        let holder = usize::try_from(word.load(Ordering::Acquire).checked_sub(1)?).ok()?;
        let reason = match s.life.get(holder)? {
            Life::Panicked(message) => format!("panicked ({message})"),
            Life::Returned => "returned from its body without releasing it".into(),
            Life::Running if holder == me.0 && blocking => {
                "is this instance itself: the lock is not re-entrant".into()
            }
            Life::Running
                if blocking && s.waiting[holder] && !s.anyone_left() && s.mismatch.is_none() =>
            {
                let call = s
                    .call
                    .map_or("a collective call".to_string(), |(c, _)| c.to_string());
                format!(
                    "waits in {call}, which cannot complete before instance {me}, waiting for the lock, joins it"
                )
            }
            Life::Running => return None,
        };
        Some((InstanceId(holder), reason))
    }
}

struct Shared {
    n: usize,
    rendezvous: Rendezvous,
    /// Each instance's entries of the exchange in progress.
    board: Mutex<Vec<Vec<(SlotKey, LocalSlot)>>>,
}

/// One instance of the thread backend.
pub struct ThreadBackend {
    me: InstanceId,
    shared: Arc<Shared>,
}

impl ThreadBackend {
    fn wait(&self, call: Collective) -> Result<(), CommError> {
        self.shared.rendezvous.wait(self.me, call, None)
    }
}

/// Starts N instances as threads (HiCR's instance manager for the thread backend).
pub struct ThreadInstances;

impl ThreadInstances {
    /// Runs `body` on `n` instances, each a thread with its own [`CommunicationManager`];
    /// returns their results in instance order. Instance 0 is the root.
    ///
    /// An instance whose body returns or panics can take part in no further call, so the
    /// others' calls that need it fail instead of waiting: a collective call with
    /// [`CommError::InstanceFinished`] or [`CommError::InstancePanicked`], an acquire of a
    /// lock it held with [`CommError::LockUnavailable`], a per-slot fence that only it could
    /// satisfy with [`CommError::MessagesCannotArrive`]. A panic is reported here as
    /// [`CommError::InstancePanicked`] with its message.
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
            rendezvous: Rendezvous::new(n),
            board: Mutex::new(vec![Vec::new(); n]),
        });
        let body = &body;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let (shared, mine) = (shared.clone(), shared.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("hetflow-instance-{i}"))
                        .spawn_scoped(scope, move || {
                            let me = InstanceId(i);
                            let manager = CommunicationManager::new(ThreadBackend {
                                me,
                                shared: shared.clone(),
                            });
                            let outcome =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    body(manager)
                                }));
                            match outcome {
                                Ok(r) => {
                                    shared.rendezvous.depart(me, Life::Returned);
                                    r
                                }
                                Err(p) => {
                                    let message = panic_message(&p);
                                    shared.rendezvous.depart(me, Life::Panicked(message));
                                    std::panic::resume_unwind(p)
                                }
                            }
                        });
                    if let Err(e) = &spawned {
                        // It will never arrive anywhere: the others must not wait for it.
                        mine.rendezvous.depart(
                            InstanceId(i),
                            Life::Panicked(format!("could not start its thread: {e}")),
                        );
                    }
                    spawned
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

impl CommBackend for ThreadBackend {
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
        self.wait(Collective::Barrier)
    }

    fn exchange(
        &mut self,
        tag: Tag,
        entries: &[(SlotKey, LocalSlot)],
    ) -> Result<Vec<GlobalSlot>, CommError> {
        self.shared.board.lock()[self.me.0] = entries.to_vec();
        if let Err(e) = self.wait(Collective::Exchange(tag)) {
            self.shared.board.lock()[self.me.0].clear();
            return Err(e);
        }
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
        let read = self.wait(Collective::Exchange(tag));
        self.shared.board.lock()[self.me.0].clear();
        read.map(|()| all)
    }

    fn fence(&mut self, tag: Tag) -> Result<(), CommError> {
        // Every put and get completed before it returned; the barrier orders them before
        // everything any instance does after the fence.
        self.wait(Collective::Fence(tag))
    }

    fn fence_timeout(&mut self, tag: Tag, timeout: Duration) -> Result<(), CommError> {
        self.shared
            .rendezvous
            .wait(self.me, Collective::Fence(tag), Some(timeout))
    }

    fn senders_gone(&self) -> Option<String> {
        self.shared.rendezvous.senders_gone(self.me)
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
        let word = &owner.inner.counters.lock;
        let me = self.me.0 as u64 + 1;
        if word
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok(true);
        }
        // A holder that left can never release: say so even to a single attempt.
        match self.shared.rendezvous.holder_stuck(word, self.me, false) {
            Some((holder, reason)) => Err(CommError::LockUnavailable {
                tag: slot.tag,
                key: slot.key,
                holder,
                reason,
            }),
            None => Ok(false),
        }
    }

    fn lock_stuck(&self, slot: &GlobalSlot) -> Result<Option<(InstanceId, String)>, CommError> {
        let owner = Self::owner_slot(slot)?;
        Ok(self
            .shared
            .rendezvous
            .holder_stuck(&owner.inner.counters.lock, self.me, true))
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

    fn destroy(&mut self, tag: Tag, slots: Vec<GlobalSlot>) -> Result<(), CommError> {
        // Drop this instance's handles, then wait until every instance has, so an owner may
        // deregister its slot right after this returns.
        drop(slots);
        self.wait(Collective::Destroy(tag))
    }
}
