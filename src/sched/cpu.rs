//! The CPU pool: one crossbeam deque per worker, a global injector, stealing, parking.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::JoinHandle;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use parking_lot::Mutex;

use super::job::{CpuJobRef, CpuStealHook};
use super::quiet::{Quiet, DEFER_MAX};
use super::ranked::Ranked;
use super::sleep::Sleep;

/// How many queued CPU jobs an idle GPU driver looks at per steal attempt.
const GPU_STEAL_LOOKS: usize = 8;

pub(crate) struct CpuPool {
    injector: Injector<CpuJobRef>,
    /// Jobs with a priority other than 0 (`ranked.rs`: the tiers workers take them in).
    ranked: Ranked<CpuJobRef>,
    stealers: Vec<Stealer<CpuJobRef>>,
    sleep: Sleep,
    shutdown: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    steal: std::sync::OnceLock<CpuStealHook>,
    idle: IdleHooks,
    /// The runtime's count of ready or running tasks (`quiet.rs`); its workers defer their
    /// finishes (`WorkerLocal::deferred`).
    pub(crate) quiet: Quiet,
}

/// Called by a worker each time it runs out of work, once it counts as idle (searching, or
/// registered to sleep) (`hooks.rs`).
pub(crate) use super::hooks::IdleHook;
use super::hooks::IdleHooks;

struct WorkerLocal {
    pool: Arc<CpuPool>,
    index: usize,
    deque: Worker<CpuJobRef>,
    parker: Parker,
    /// Tasks finished here and not yet subtracted from the pool's `quiet` (`quiet.rs`).
    deferred: Cell<usize>,
    /// References to jobs this worker ran, dropped together (see [`CpuPool::run`]).
    ran: RefCell<Vec<CpuJobRef>>,
    /// The emptied vector of the previous batch, kept for its capacity (no allocation per
    /// batch).
    spare: Cell<Vec<CpuJobRef>>,
}

impl WorkerLocal {
    /// Drops the kept job references. They are dropped outside the borrow: a drop may run
    /// a user's code (a task's value), which may run jobs here again.
    fn drop_ran(&self) {
        let mut batch = self.spare.take();
        std::mem::swap(&mut batch, &mut *self.ran.borrow_mut());
        for job in batch.drain(..) {
            job.retire();
        }
        self.spare.set(batch);
    }
}

thread_local! {
    static WORKER: RefCell<Option<Rc<WorkerLocal>>> = const { RefCell::new(None) };
    /// Local pushes that may skip waking a sleeper (see [`quiet_next_push`]).
    static QUIET_PUSHES: Cell<u32> = const { Cell::new(0) };
}

struct UnparkWaker(Unparker);

impl Wake for UnparkWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn current() -> Option<Rc<WorkerLocal>> {
    WORKER.with(|w| w.borrow().clone())
}

impl CpuPool {
    /// Starts `n` workers named `hetflow-cpu-<i>`.
    pub(crate) fn start(n: usize) -> std::io::Result<Arc<CpuPool>> {
        let deques: Vec<Worker<CpuJobRef>> = (0..n).map(|_| Worker::new_lifo()).collect();
        let parkers: Vec<Parker> = (0..n).map(|_| Parker::new()).collect();
        let pool = Arc::new(CpuPool {
            injector: Injector::new(),
            ranked: Ranked::default(),
            stealers: deques.iter().map(|d| d.stealer()).collect(),
            sleep: Sleep::new(parkers.iter().map(|p| p.unparker().clone()).collect()),
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::with_capacity(n)),
            steal: std::sync::OnceLock::new(),
            idle: IdleHooks::default(),
            quiet: Quiet::default(),
        });
        for (index, (deque, parker)) in deques.into_iter().zip(parkers).enumerate() {
            let pool2 = pool.clone();
            let handle = std::thread::Builder::new()
                .name(format!("hetflow-cpu-{index}"))
                .spawn(move || {
                    worker_main(Rc::new(WorkerLocal {
                        pool: pool2,
                        index,
                        deque,
                        parker,
                        deferred: Cell::new(0),
                        ran: RefCell::new(Vec::with_capacity(DEFER_MAX)),
                        spare: Cell::new(Vec::with_capacity(DEFER_MAX)),
                    }))
                })?;
            pool.threads.lock().push(handle);
        }
        Ok(pool)
    }

    pub(crate) fn workers(&self) -> usize {
        self.stealers.len()
    }

    /// Workers asleep right now (a hint for placement).
    pub(crate) fn idle_workers(&self) -> usize {
        self.sleep.sleepers()
    }

    /// Jobs waiting in the global queues (a hint for placement).
    pub(crate) fn queued(&self) -> usize {
        self.injector.len() + self.ranked.len()
    }

    /// Queues a job: on the current worker's own deque when called from one of this pool's
    /// workers (locality, no contention), else on the injector. Then wakes a sleeper.
    pub(crate) fn push(self: &Arc<Self>, job: CpuJobRef) {
        match current() {
            Some(w) if Arc::ptr_eq(&w.pool, self) => {
                w.deque.push(job);
                let quiet = QUIET_PUSHES.with(|q| {
                    let n = q.get();
                    q.set(n.saturating_sub(1));
                    n > 0
                });
                if quiet {
                    // This worker's job has finished its body; it pops this job next.
                    return;
                }
            }
            _ => self.injector.push(job),
        }
        self.sleep.notify_one();
    }

    /// Queues a job with a priority other than 0 (`ranked.rs`), then wakes a sleeper.
    pub(crate) fn push_ranked(&self, job: CpuJobRef, priority: i32) {
        self.ranked.push(job, priority);
        self.sleep.notify_one();
    }

    /// Whether every worker is running a job (none searching, none asleep). A worker that
    /// becomes idle after this returned true calls the idle hooks once it counts as idle, so a
    /// caller that set a flag before asking sees either the idle worker here or its hook call
    /// (both sides are `SeqCst`).
    pub(crate) fn all_busy(&self) -> bool {
        self.sleep.all_busy()
    }

    /// Adds a hook that workers call when they run out of work ([`IdleHook`]); returns its
    /// id for [`CpuPool::remove_idle_hook`].
    pub(crate) fn add_idle_hook(&self, hook: IdleHook) -> u64 {
        self.idle.add(hook)
    }

    /// Removes the idle hook `id` (no effect if it is gone).
    pub(crate) fn remove_idle_hook(&self, id: u64) {
        self.idle.remove(id)
    }

    /// A task of this pool's runtime finished: on one of its workers the finish is deferred
    /// (`quiet.rs`), elsewhere it is subtracted now.
    pub(crate) fn task_finished(self: &Arc<Self>) {
        WORKER.with(|w| match &*w.borrow() {
            Some(w) if Arc::ptr_eq(&w.pool, self) => {
                let n = w.deferred.get() + 1;
                if n >= DEFER_MAX {
                    w.deferred.set(0);
                    self.quiet.finished(n);
                } else {
                    w.deferred.set(n);
                }
            }
            _ => self.quiet.finished(1),
        });
    }

    /// Drops the job references worker `w` kept, then subtracts the finishes it deferred.
    fn flush_finished(&self, w: &WorkerLocal) {
        w.drop_ran();
        self.quiet.finished(w.deferred.replace(0));
    }

    /// Worker `w` ran out of work and counts as idle: it subtracts its deferred finishes,
    /// then runs the idle hooks.
    fn went_idle(&self, w: &WorkerLocal) {
        self.flush_finished(w);
        self.idle.call();
    }

    /// Installs the hook idle workers call to take work queued on GPUs (once).
    pub(crate) fn set_steal_hook(&self, hook: CpuStealHook) {
        let _ = self.steal.set(hook);
    }

    /// Wakes one sleeping worker (a hint that it may find work to steal).
    pub(crate) fn nudge(&self) {
        self.sleep.notify_one();
    }

    /// Heterogeneous stealing, the GPU side: looks at up to `GPU_STEAL_LOOKS` queued jobs
    /// (injector first, then the oldest job of each worker) and takes the first that
    /// `CpuJob::move_to_gpu` agrees to move. The others go back to the injector, with a
    /// wake-up, so that none is stranded while a worker sleeps. Ranked jobs (a priority
    /// other than 0) are not offered: putting one back would cost it its tier, and a job a
    /// user ranked is one they want where its placement put it.
    pub(crate) fn steal_for_gpu(&self, gpu: usize) -> Option<CpuJobRef> {
        let mut looked = Vec::new();
        let mut found = None;
        let sources = std::iter::once(None).chain((0..self.stealers.len()).map(Some));
        'outer: for source in sources {
            while looked.len() < GPU_STEAL_LOOKS {
                let got = match source {
                    None => self.injector.steal(),
                    Some(i) => self.stealers[i].steal(),
                };
                match got {
                    Steal::Success(job) if job.move_to_gpu(gpu) => {
                        found = Some(job);
                        break 'outer;
                    }
                    Steal::Success(job) => looked.push(job),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
                if source.is_some() {
                    // One job per worker: its oldest, the one it would run last.
                    break;
                }
            }
        }
        if !looked.is_empty() {
            for job in looked {
                self.injector.push(job);
            }
            self.sleep.notify_one();
        }
        found
    }

    /// Jobs queued in the injector and the workers' deques (a hint).
    pub(crate) fn queued_anywhere(&self) -> usize {
        self.queued() + self.stealers.iter().map(|s| s.len()).sum::<usize>()
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || !self.ranked.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// The next job for worker `w`, in the tiers of `ranked.rs`: ranked above 0, then the
    /// default priority (own deque, injector, peers), then ranked below 0; then the GPUs'.
    fn find_work(&self, w: &WorkerLocal) -> Option<CpuJobRef> {
        if let Some(j) = self.ranked.pop_above(Some(0)) {
            return Some(j);
        }
        if let Some(j) = w.deque.pop() {
            return Some(j);
        }
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(&w.deque) {
                Steal::Success(j) => return Some(j),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            // From a peer, take half its queue at once (its oldest jobs): one steal then serves
            // many pops here, instead of a contended steal per job.
            let n = self.stealers.len();
            for k in 1..n {
                match self.stealers[(w.index + k) % n].steal_batch_and_pop(&w.deque) {
                    Steal::Success(j) => return Some(j),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                if let Some(j) = self.ranked.pop_above(None) {
                    return Some(j);
                }
                // Every CPU queue is empty: maybe a GPU's queue has work that finishes sooner
                // here.
                return self.steal.get().and_then(|h| h());
            }
        }
    }

    /// Runs `job` on worker `w`, which keeps its reference and drops it with the next
    /// `DEFER_MAX - 1` (or when it idles or stops). The reference is often the last one (the
    /// spawner dropped its handle): dropping it frees the job and releases what it holds —
    /// for a task, its runtime's reference count, which the spawning thread writes at every
    /// spawn. Dropped one by one, each drop took that line from the spawner; dropped
    /// together, the line moves once per batch. A job's own state (its body and captures)
    /// is gone once it has run; what waits is its allocation, and the value of a task
    /// nobody holds a handle to.
    fn run(&self, w: &WorkerLocal, job: CpuJobRef) {
        job.run_on_cpu();
        let full = {
            let mut ran = w.ran.borrow_mut();
            ran.push(job);
            ran.len() >= DEFER_MAX
        };
        if full {
            w.drop_ran();
        }
    }

    /// A few rounds of searching with `yield_now` between them before parking: a job that
    /// arrives within microseconds is taken without a futex wake (as rayon-core does). One
    /// worker at a time searches; the others park at once.
    fn search_briefly(&self, w: &WorkerLocal, done: &dyn Fn() -> bool) -> Option<CpuJobRef> {
        let Some(searching) = self.sleep.searching() else {
            // Another worker searches: this one sleeps (a post wakes it when nobody searches).
            return None;
        };
        self.went_idle(w);
        let start = crate::time::Instant::now();
        while start.elapsed() < SEARCH_TIME {
            if done() {
                return None;
            }
            std::thread::yield_now();
            if let Some(j) = self.find_work(w) {
                // The posts made while this worker searched woke nobody, and they may have
                // been for more jobs than the one it takes (the rest of a stolen batch sits
                // in its own deque): hand them on before running this one, which may block
                // (`SLEEP.md`, "Searching").
                drop(searching);
                if self.has_work() {
                    self.sleep.notify_one();
                }
                return Some(j);
            }
        }
        None
    }

    /// Stops the workers once their queues are empty and joins them. Must not be called from
    /// a worker of this pool.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.sleep.notify_all();
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a CPU worker thread panicked outside a task");
            }
        }
    }

    /// Whether the calling thread is one of this pool's workers.
    pub(crate) fn is_worker_thread(self: &Arc<Self>) -> bool {
        current().is_some_and(|w| Arc::ptr_eq(&w.pool, self))
    }
}

/// How long an idle worker keeps searching (yielding between rounds) before it parks. A
/// producer spawning tasks one by one keeps workers awake instead of paying a futex wake per
/// task; an idle pool parks within this time.
const SEARCH_TIME: std::time::Duration = std::time::Duration::from_micros(50);

/// Runs `f` (a job's completion) letting its first push to this worker's own deque skip the
/// wake-up: the worker pops that job itself as soon as `f` returns, so waking a sleeper
/// would only make it race for the job. Further pushes wake sleepers as usual.
pub(crate) fn quiet_next_push<R>(f: impl FnOnce() -> R) -> R {
    QUIET_PUSHES.with(|q| q.set(1));
    let r = f();
    QUIET_PUSHES.with(|q| q.set(0));
    r
}

/// If the calling thread is a CPU worker (of any runtime), runs other jobs until `done()`
/// holds and returns true. `register` receives a waker that wakes this worker; the caller
/// arranges for it to be called when `done()` becomes true. Returns false, doing nothing, on
/// other threads.
pub(crate) fn help_while_waiting(done: &dyn Fn() -> bool, register: &dyn Fn(Waker)) -> bool {
    let Some(w) = current() else { return false };
    register(Waker::from(Arc::new(UnparkWaker(
        w.parker.unparker().clone(),
    ))));
    let pool = &w.pool;
    loop {
        if done() {
            return true;
        }
        if let Some(job) = pool.find_work(&w).or_else(|| pool.search_briefly(&w, done)) {
            pool.run(&w, job);
            if done() && !w.deque.is_empty() {
                // Going back to the waiting body: let a sleeper take what we queued quietly.
                pool.sleep.notify_one();
            }
            continue;
        }
        if done() {
            return true;
        }
        pool.sleep.sleep(w.index, &w.parker, || {
            pool.went_idle(&w);
            done() || pool.has_work() || pool.shutdown.load(Ordering::SeqCst)
        });
    }
}

fn worker_main(local: Rc<WorkerLocal>) {
    WORKER.with(|w| *w.borrow_mut() = Some(local.clone()));
    let pool = &local.pool;
    tracing::trace!(worker = local.index, "CPU worker started");
    loop {
        if let Some(job) = pool.find_work(&local) {
            pool.run(&local, job);
            continue;
        }
        if pool.shutdown.load(Ordering::SeqCst) && !pool.has_work() {
            break;
        }
        if let Some(job) = pool.search_briefly(&local, &|| pool.shutdown.load(Ordering::Relaxed)) {
            pool.run(&local, job);
            continue;
        }
        pool.sleep.sleep(local.index, &local.parker, || {
            pool.went_idle(&local);
            pool.has_work() || pool.shutdown.load(Ordering::SeqCst)
        });
    }
    pool.flush_finished(&local);
    WORKER.with(|w| *w.borrow_mut() = None);
    tracing::trace!(worker = local.index, "CPU worker stopped");
}

/// Index of the CPU worker running the calling thread, if it is one.
pub(crate) fn worker_index() -> Option<usize> {
    current().map(|w| w.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::job::FnJob;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Queues a job that holds its worker until the returned sender says go, and waits until
    /// it runs.
    fn hold(pool: &Arc<CpuPool>) -> mpsc::Sender<()> {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (started_tx, release_rx) = (
            parking_lot::Mutex::new(started_tx),
            parking_lot::Mutex::new(release_rx),
        );
        pool.push(Arc::new(FnJob(Box::new(move || {
            let _ = started_tx.lock().send(());
            let _ = release_rx.lock().recv_timeout(Duration::from_secs(10));
        }))));
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("the job started");
        release
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn all_busy_while_every_worker_runs_and_the_idle_hook_runs_when_one_stops() {
        let pool = CpuPool::start(1).expect("pool");
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let id = pool.add_idle_hook(Box::new(move || {
            c2.fetch_add(1, Ordering::SeqCst);
        }));
        // The worker finds nothing at start: it goes idle (the hook runs) and is not busy.
        wait_for("the idle worker to count as not busy", || !pool.all_busy());
        let release = hold(&pool);
        wait_for("the running worker to count as busy", || pool.all_busy());
        let before = calls.load(Ordering::SeqCst);
        release.send(()).expect("job waiting");
        // The job ends, the worker finds nothing: it runs the hook once it counts as idle.
        wait_for("the hook after the job", || {
            calls.load(Ordering::SeqCst) > before
        });
        wait_for("the idle worker to count as not busy again", || {
            !pool.all_busy()
        });
        // Removed: no more calls, whatever the worker does.
        pool.remove_idle_hook(id);
        let after = calls.load(Ordering::SeqCst);
        let release = hold(&pool);
        release.send(()).expect("job waiting");
        wait_for("the idle worker", || !pool.all_busy());
        assert_eq!(calls.load(Ordering::SeqCst), after);
        pool.shutdown();
    }
}
