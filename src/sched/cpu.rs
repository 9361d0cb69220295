//! The CPU pool: one crossbeam deque per worker, a global injector, stealing, parking.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::JoinHandle;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use parking_lot::Mutex;

use super::sleep::Sleep;

/// A unit of CPU work.
pub(crate) trait CpuJob: Send + Sync {
    fn run_on_cpu(self: Arc<Self>);
}

pub(crate) type CpuJobRef = Arc<dyn CpuJob>;

pub(crate) struct CpuPool {
    injector: Injector<CpuJobRef>,
    stealers: Vec<Stealer<CpuJobRef>>,
    sleep: Sleep,
    shutdown: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Jobs pushed and not yet taken (approximate, for placement).
    queued: AtomicUsize,
}

struct WorkerLocal {
    pool: Arc<CpuPool>,
    index: usize,
    deque: Worker<CpuJobRef>,
    parker: Parker,
}

thread_local! {
    static WORKER: RefCell<Option<Rc<WorkerLocal>>> = const { RefCell::new(None) };
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
            stealers: deques.iter().map(|d| d.stealer()).collect(),
            sleep: Sleep::new(parkers.iter().map(|p| p.unparker().clone()).collect()),
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::with_capacity(n)),
            queued: AtomicUsize::new(0),
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

    /// Jobs queued and not yet started (a hint for placement).
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues a job: on the current worker's own deque when called from one of this pool's
    /// workers (locality, no contention), else on the injector. Then wakes a sleeper.
    pub(crate) fn push(self: &Arc<Self>, job: CpuJobRef) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        match current() {
            Some(w) if Arc::ptr_eq(&w.pool, self) => w.deque.push(job),
            _ => self.injector.push(job),
        }
        self.sleep.notify_one();
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn find_work(&self, w: &WorkerLocal) -> Option<CpuJobRef> {
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
            let n = self.stealers.len();
            for k in 1..n {
                match self.stealers[(w.index + k) % n].steal() {
                    Steal::Success(j) => return Some(j),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn run(&self, job: CpuJobRef) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        job.run_on_cpu();
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
        if let Some(job) = pool.find_work(&w) {
            pool.run(job);
            continue;
        }
        pool.sleep.sleep(w.index, &w.parker, || {
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
            pool.run(job);
            continue;
        }
        if pool.shutdown.load(Ordering::SeqCst) && !pool.has_work() {
            break;
        }
        pool.sleep.sleep(local.index, &local.parker, || {
            pool.has_work() || pool.shutdown.load(Ordering::SeqCst)
        });
    }
    WORKER.with(|w| *w.borrow_mut() = None);
    tracing::trace!(worker = local.index, "CPU worker stopped");
}
