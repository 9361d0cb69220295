//! One driver thread per GPU: batches ready GPU tasks into one submission, retires
//! submissions in order, and releases tasks waiting on GPU fences.
//!
//! ## Protocol
//! - Ready GPU jobs arrive in the inbox. The driver takes them one by one, oldest first, and
//!   encodes each: kernel dispatches, which hetflow validates before recording, go into the
//!   batch's one shared command buffer; a body that records raw commands gets a command
//!   buffer of its own, finished inside the task's error scope, so that a wgpu validation
//!   error there fails that task, not the batch (`job::BatchEncoder`). It keeps taking jobs
//!   that become ready *while* it encodes — a job's same-GPU dependents are released at
//!   encode time because the queue executes in order — until the inbox is empty or the batch
//!   holds `MAX_BATCH` jobs. The batch goes to the GPU as one `queue.submit`.
//! - Heterogeneous stealing. A job stays in the inbox until the driver takes it, so an idle CPU
//!   worker may take it instead ([`GpuDriver::steal_for_cpu`], under the inbox lock: a job is
//!   taken by exactly one side). The task layer agrees only when every fence the job carries
//!   has passed — a job released early by a same-GPU predecessor that is encoded but not
//!   finished must stay on this queue. The other way, a driver that finds nothing to do asks
//!   its steal hook for a job queued on the CPU pool before it blocks; `nudge` wakes it to
//!   ask again. Stealing only moves ready jobs between queues, and every queue is drained by
//!   its own side anyway, so a refused or missed steal delays nothing that would otherwise run.
//! - Every batch has a sequence number `seq` (1, 2, ...). A task encoded in batch `s` carries the
//!   fence `(gpu, s)`; a dependent that runs elsewhere (CPU, another GPU) waits until
//!   `completed_seq >= s` ([`GpuDriver::on_fence`]).
//! - At most `MAX_IN_FLIGHT` batches are submitted and not retired; the driver encodes batch
//!   `s + 1` while batch `s` runs, then waits for the oldest: it polls without blocking for up
//!   to `COMPLETION_SPIN` (a short batch finishes before a blocked thread would wake up), then
//!   blocks in `device.poll(Wait)`. An idle driver likewise polls its inbox for `IDLE_SPIN`
//!   before it blocks on the condition variable.
//! - Memory: when a job cannot get GPU memory because every resident copy is pinned by jobs
//!   already encoded, the driver submits the batch so far, retires every in-flight batch
//!   (unpinning their copies), then encodes the job again, now allowed to overcommit if it
//!   still does not fit (see `data/residency.rs`).
//! - Failure. `queue.submit` runs inside a validation error scope: a rejected submission (e.g.
//!   a body recorded a copy from a buffer it then destroyed) executes none of its command
//!   buffers, so every job of the batch fails at once with a [`BatchFailure`] — before the
//!   driver encodes anything else, so no same-GPU dependent released early from the batch is
//!   encoded on its missing results. A batch whose completion cannot be awaited (device lost)
//!   fails the same way when it is retired, and so does every batch submitted after it that is
//!   still in flight (it may have been encoded on the failed batch's results). A failed batch
//!   still passes its fence (`completed_seq` is ordered, not a success flag): jobs fail *before*
//!   the fence passes, so a dependent released early — which waits for that fence when it runs
//!   elsewhere — finds its failure recorded by then (the task layer's `Node::complete`).
//! - Shutdown: the runtime sets `shutdown` once no task is ready or running; the driver exits
//!   when its queue is empty and nothing is in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::job::{
    BatchEncoder, BatchFailure, CpuJobRef, Encoded, Encoding, GpuJobRef, GpuStealHook,
};
use crate::data::transfer::{recycle_staging, BatchTransfers};
use crate::device::GpuDevice;

const MAX_BATCH: usize = 1024;
/// The most jobs an idle driver steals before encoding them as one batch.
const STEAL_BATCH: usize = 64;
const MAX_IN_FLIGHT: usize = 2;
/// How many jobs at the back of the inbox an idle CPU worker considers per steal attempt.
const CPU_STEAL_LOOKS: usize = 8;
/// How long the driver polls for a submission's completion before blocking on it.
const COMPLETION_SPIN: std::time::Duration = std::time::Duration::from_micros(100);
/// How long an idle driver polls its inbox before blocking.
const IDLE_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// A batch submitted after one that failed while both were in flight.
#[derive(Debug, thiserror::Error)]
#[error("it was submitted while batch {earlier} on the same GPU, whose results it may use, failed: {cause}")]
struct AfterFailedBatch {
    earlier: u64,
    #[source]
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

type FenceWaiter = Box<dyn FnOnce() + Send>;

/// A submitted batch, from `queue.submit` until it is retired.
struct InFlight {
    index: wgpu::SubmissionIndex,
    seq: u64,
    /// Its jobs (empty when the submit was rejected: they failed at once).
    jobs: Vec<GpuJobRef>,
    /// The staging buffers it reads, recycled once it is done.
    staging: Vec<wgpu::Buffer>,
    /// Set by the queue's completion callback.
    done: Arc<DoneFlag>,
    /// Set when the batch failed at submit: nothing to wait for.
    rejected: bool,
    /// When its encoding began.
    started: crate::time::Instant,
}

struct Inbox {
    jobs: VecDeque<GpuJobRef>,
    shutdown: bool,
    /// A nudge (look for work to steal) not yet seen by the driver: set under this lock, so
    /// a nudge that arrives while the driver is between its steal attempt and its wait is
    /// seen at the wait instead of lost (a condition variable keeps no notification).
    nudged: bool,
    /// The driver's task while it waits for work (in the browser, where it is a future of
    /// the page's event loop rather than a thread on a condition variable).
    #[cfg(target_arch = "wasm32")]
    waiting: Option<std::task::Waker>,
}

/// A submission's completion: set by the queue's callback, which wakes the driver if it
/// awaits it (the browser's path; native drivers poll the device instead).
#[derive(Default)]
struct DoneFlag {
    done: AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
}

impl DoneFlag {
    fn set(&self) {
        self.done.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }

    fn is_set(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Resolves once the flag is set.
    #[cfg(target_arch = "wasm32")]
    fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_set() {
                return std::task::Poll::Ready(());
            }
            *self.waker.lock() = Some(cx.waker().clone());
            if self.is_set() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }
}

pub(crate) struct GpuDriver {
    pub(crate) index: usize,
    pub(crate) gpu: Arc<GpuDevice>,
    inbox: Mutex<Inbox>,
    wake: Condvar,
    completed_seq: AtomicU64,
    fence_waiters: Mutex<Vec<(u64, FenceWaiter)>>,
    busy: AtomicBool,
    queued: AtomicUsize,
    submits: AtomicU64,
    #[cfg(not(target_arch = "wasm32"))]
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    steal: std::sync::OnceLock<GpuStealHook>,
    /// Run when the driver goes from busy to idle (`hooks.rs`).
    idle_hooks: super::hooks::IdleHooks,
}

thread_local! {
    static IN_DRIVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a GPU driver (where blocking on a task would stall the GPU).
pub(crate) fn on_driver_thread() -> bool {
    IN_DRIVER.with(|c| c.get())
}

impl GpuDriver {
    pub(crate) fn start(index: usize, gpu: Arc<GpuDevice>) -> std::io::Result<Arc<GpuDriver>> {
        let d = Arc::new(GpuDriver {
            index,
            gpu,
            inbox: Mutex::new(Inbox {
                jobs: VecDeque::new(),
                shutdown: false,
                nudged: false,
                #[cfg(target_arch = "wasm32")]
                waiting: None,
            }),
            wake: Condvar::new(),
            completed_seq: AtomicU64::new(0),
            fence_waiters: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            submits: AtomicU64::new(0),
            #[cfg(not(target_arch = "wasm32"))]
            thread: Mutex::new(None),
            steal: std::sync::OnceLock::new(),
            idle_hooks: Default::default(),
        });
        let me = d.clone();
        // The driver loop is one async function on every target: on a thread of its own
        // here, where its waits block the thread; in the browser, a future of the page's
        // event loop, where they yield to it.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let h = std::thread::Builder::new()
                .name(format!("hetflow-gpu-{index}"))
                .spawn(move || {
                    IN_DRIVER.with(|c| c.set(true));
                    pollster::block_on(me.main())
                })?;
            *d.thread.lock() = Some(h);
        }
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_futures::spawn_local(me.main());
        Ok(d)
    }

    /// Queues a ready job.
    pub(crate) fn push(&self, job: GpuJobRef) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.inbox.lock().jobs.push_back(job);
        self.notify();
    }

    /// Wakes the driver if it waits for work.
    fn notify(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        self.wake.notify_one();
        #[cfg(target_arch = "wasm32")]
        {
            let w = self.inbox.lock().waiting.take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Waits until a job arrives or the driver shuts down: a condition variable on native
    /// targets, a waker in the browser.
    #[cfg(not(target_arch = "wasm32"))]
    async fn wait_for_work(&self) {
        let mut inbox = self.inbox.lock();
        if inbox.jobs.is_empty() && !inbox.shutdown && !std::mem::take(&mut inbox.nudged) {
            self.wake.wait(&mut inbox);
        }
        inbox.nudged = false;
    }

    #[cfg(target_arch = "wasm32")]
    async fn wait_for_work(&self) {
        std::future::poll_fn(|cx| {
            let mut inbox = self.inbox.lock();
            if inbox.jobs.is_empty() && !inbox.shutdown && !std::mem::take(&mut inbox.nudged) {
                inbox.waiting = Some(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                inbox.nudged = false;
                std::task::Poll::Ready(())
            }
        })
        .await
    }

    /// Installs the hook an idle driver calls to take work queued elsewhere (once).
    pub(crate) fn set_steal_hook(&self, hook: GpuStealHook) {
        let _ = self.steal.set(hook);
    }

    /// Wakes an idle driver so that it looks for work to steal, now or, if it is between its
    /// last look and its wait, at its wait (`Inbox::nudged`).
    pub(crate) fn nudge(&self) {
        self.inbox.lock().nudged = true;
        self.notify();
    }

    /// Heterogeneous stealing, the CPU side: takes the job nearest the back of the queue (the
    /// one that would start last) that `GpuJob::move_to_cpu` agrees to move, given the
    /// predicted work queued ahead of it. Jobs the driver has started encoding are not here.
    pub(crate) fn steal_for_cpu(&self) -> Option<CpuJobRef> {
        let mut inbox = self.inbox.lock();
        if inbox.jobs.is_empty() {
            return None;
        }
        let predicted: Vec<u64> = inbox.jobs.iter().map(|j| j.predicted_ns()).collect();
        let mut ahead: u64 = predicted.iter().sum();
        // Only the last few: they start last, and the lock is the driver's too.
        let first = inbox.jobs.len().saturating_sub(CPU_STEAL_LOOKS);
        for k in (first..inbox.jobs.len()).rev() {
            ahead -= predicted[k];
            if inbox.jobs[k].move_to_cpu(self.index, ahead) {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return inbox.jobs.remove(k).and_then(|j| j.into_cpu_job());
            }
        }
        None
    }

    /// Whether the driver has nothing queued and nothing running (a hint for placement).
    pub(crate) fn is_idle(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0 && !self.busy.load(Ordering::Relaxed)
    }

    /// Adds a hook the driver calls each time it goes from busy to idle; returns its id.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn add_idle_hook(&self, hook: super::hooks::IdleHook) -> u64 {
        self.idle_hooks.add(hook)
    }

    /// Removes idle hook `id`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn remove_idle_hook(&self, id: u64) {
        self.idle_hooks.remove(id)
    }

    /// Jobs queued and not yet encoded.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Number of `queue.submit` calls so far (each carries a batch of tasks).
    pub(crate) fn submits(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }

    /// Whether batch `seq` has finished on the device.
    pub(crate) fn fence_passed(&self, seq: u64) -> bool {
        self.completed_seq.load(Ordering::Acquire) >= seq
    }

    /// Runs `f` once batch `seq` has finished (at once if it has).
    pub(crate) fn on_fence(&self, seq: u64, f: FenceWaiter) {
        {
            let mut w = self.fence_waiters.lock();
            if self.completed_seq.load(Ordering::Acquire) < seq {
                w.push((seq, f));
                return;
            }
        }
        f();
    }

    pub(crate) fn shutdown(&self) {
        self.inbox.lock().shutdown = true;
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.wake.notify_all();
            if let Some(h) = self.thread.lock().take() {
                if h.join().is_err() {
                    tracing::error!(gpu = self.index, "GPU driver thread panicked");
                }
            }
        }
        // In the browser the driver's future sees `shutdown` when it next runs, and ends.
        #[cfg(target_arch = "wasm32")]
        self.notify();
    }

    /// Fails every job of batch `seq` with `cause`.
    fn fail_jobs(
        &self,
        jobs: Vec<GpuJobRef>,
        seq: u64,
        cause: Arc<dyn std::error::Error + Send + Sync>,
    ) {
        let failure = BatchFailure {
            gpu: self.index,
            seq,
            jobs: jobs.len(),
            cause,
        };
        for j in jobs {
            j.gpu_done(self, Err(failure.clone()));
        }
    }

    /// Waits for a submission: polls without blocking for up to `COMPLETION_SPIN` (a short
    /// batch finishes sooner than a blocked thread wakes up on a VM), then blocks.
    #[cfg(not(target_arch = "wasm32"))]
    async fn wait_for(
        &self,
        index: wgpu::SubmissionIndex,
        done: &DoneFlag,
    ) -> Result<(), wgpu::PollError> {
        let device = &self.gpu.device;
        let spun = super::spin_until(COMPLETION_SPIN, || {
            device.poll(wgpu::PollType::Poll).is_ok() && done.is_set()
        });
        if spun {
            return Ok(());
        }
        device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map(|_| ())
    }

    /// In the browser the queue's callback arrives through the event loop: await it.
    #[cfg(target_arch = "wasm32")]
    async fn wait_for(
        &self,
        _index: wgpu::SubmissionIndex,
        done: &DoneFlag,
    ) -> Result<(), wgpu::PollError> {
        done.wait().await;
        Ok(())
    }

    /// The next job to encode: a job put back for retry first, then the inbox's oldest. Jobs
    /// stay in the inbox until taken here, where idle CPU workers may steal them.
    fn take_job(&self, pending: &mut VecDeque<GpuJobRef>) -> Option<GpuJobRef> {
        let j = pending
            .pop_front()
            .or_else(|| self.inbox.lock().jobs.pop_front());
        if j.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        j
    }

    async fn main(self: Arc<Self>) {
        let mut pending: VecDeque<GpuJobRef> = VecDeque::new();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut seq = 0u64;
        // Set when a job found the memory budget held by in-flight work: retire everything
        // in flight before encoding again.
        let mut drain = false;
        // When the last batch finished: a batch occupies the device from the later of its own
        // start and that moment until it finishes.
        let mut last_done: Option<crate::time::Instant> = None;
        loop {
            let (idle, shutdown) = {
                let inbox = self.inbox.lock();
                let idle = pending.is_empty() && inbox.jobs.is_empty() && in_flight.is_empty();
                (idle, inbox.shutdown)
            };
            {
                if idle {
                    if shutdown {
                        break;
                    }
                    if self.busy.swap(false, Ordering::SeqCst) {
                        self.idle_hooks.call();
                    }
                    // Idle: take work queued elsewhere that finishes sooner here, if any — as
                    // many as keep paying (each steal moves its predicted work here, so the
                    // rule stops by itself), so that they share one batch.
                    if let Some(hook) = self.steal.get() {
                        while pending.len() < STEAL_BATCH {
                            let Some(job) = hook(self.index) else { break };
                            self.queued.fetch_add(1, Ordering::Relaxed);
                            pending.push_back(job);
                        }
                        if !pending.is_empty() {
                            continue;
                        }
                    }
                    // Spin briefly before blocking: the next task of a dependent sequence
                    // usually arrives within microseconds, and a wake-up costs more.
                    let queued = || self.queued.load(Ordering::Acquire) > 0;
                    if !super::spin_until(IDLE_SPIN, queued) {
                        self.wait_for_work().await;
                    }
                    continue;
                }
            }
            self.busy.store(true, Ordering::Relaxed);
            let has_jobs = !pending.is_empty() || self.queued.load(Ordering::Acquire) > 0;
            if has_jobs && in_flight.len() < MAX_IN_FLIGHT && !drain {
                seq += 1;
                let batch_started = crate::time::Instant::now();
                let mut batch = BatchEncoder::new(&self.gpu.device, &self.gpu.queue);
                let mut jobs = Vec::new();
                let mut transfers = BatchTransfers::new(&self.gpu);
                while jobs.len() < MAX_BATCH {
                    let Some(job) = self.take_job(&mut pending) else {
                        break;
                    };
                    let may_overcommit = jobs.is_empty() && in_flight.is_empty();
                    // In the browser a job that folds reduction partials first fetches them
                    // (WebGPU maps buffers only through the event loop). Every job they come
                    // from has finished, so nothing in this open batch writes them.
                    #[cfg(target_arch = "wasm32")]
                    let fetched = match job.host_fetch() {
                        Some(f) => f.await,
                        None => Default::default(),
                    };
                    let encode = || {
                        job.clone()
                            .encode(&self, seq, may_overcommit, &mut transfers, &mut batch)
                    };
                    #[cfg(target_arch = "wasm32")]
                    let encoding = crate::data::transfer::with_fetched(fetched, encode);
                    #[cfg(not(target_arch = "wasm32"))]
                    let encoding = { encode }();
                    let encoded = match encoding {
                        Encoding::Done(e) => e,
                        // The job's error scope: resolved at once by native wgpu, through the
                        // event loop by WebGPU.
                        Encoding::Check(scope, rest) => rest.finish(scope.pop().await),
                    };
                    match encoded {
                        Encoded::Recorded => jobs.push(job),
                        Encoded::Commands(cb) => {
                            batch.push(cb);
                            jobs.push(job);
                        }
                        Encoded::Finished => {}
                        Encoded::Retry => {
                            // Put it back; submit what we have and drain before retrying.
                            self.queued.fetch_add(1, Ordering::Relaxed);
                            pending.push_front(job);
                            drain = true;
                            break;
                        }
                    }
                }
                let staging = std::mem::take(&mut transfers.staging);
                if jobs.is_empty() && staging.is_empty() && batch.is_empty() {
                    seq -= 1;
                    continue;
                }
                // The shared command buffer is finished inside the submit's scope: an error
                // wgpu finds there (none that hetflow's checks let through, short of a lost
                // device) fails the batch like a rejected submit.
                let scope = self
                    .gpu
                    .device
                    .push_error_scope(wgpu::ErrorFilter::Validation);
                let mut buffers = batch.finish();
                if !staging.is_empty() {
                    buffers.insert(0, transfers.encoder.finish());
                }
                let index = self.gpu.queue.submit(buffers);
                let rejected = scope.pop().await;
                self.submits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(gpu = self.index, seq, tasks = jobs.len(), "submitted batch");
                let done = Arc::new(DoneFlag::default());
                let rejected = match rejected {
                    None => {
                        let flag = done.clone();
                        self.gpu.queue.on_submitted_work_done(move || flag.set());
                        false
                    }
                    Some(e) => {
                        tracing::error!(gpu = self.index, seq, error = %e, "GPU batch rejected at submit");
                        // Fail its jobs now, before anything else is encoded on their results.
                        self.fail_jobs(std::mem::take(&mut jobs), seq, Arc::new(e));
                        true
                    }
                };
                in_flight.push_back(InFlight {
                    index,
                    seq,
                    jobs,
                    staging,
                    done,
                    rejected,
                    started: batch_started,
                });
            } else if let Some(batch) = in_flight.pop_front() {
                if in_flight.is_empty() {
                    drain = false;
                }
                let done_seq = batch.seq;
                let result = if batch.rejected {
                    Ok(())
                } else {
                    self.wait_for(batch.index, &batch.done).await
                };
                recycle_staging(&self.gpu, batch.staging);
                let now = crate::time::Instant::now();
                let from = match last_done {
                    Some(t) if t > batch.started => t,
                    _ => batch.started,
                };
                last_done = Some(now);
                // Each job's share of the batch's device time (`GpuJob::gpu_done`).
                let share = now.duration_since(from) / batch.jobs.len().max(1) as u32;
                match result {
                    Ok(()) => {
                        for j in batch.jobs {
                            j.gpu_done(&self, Ok(share));
                        }
                    }
                    Err(e) => {
                        tracing::error!(gpu = self.index, seq = done_seq, error = %e, "GPU batch failed");
                        let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::new(e);
                        self.fail_jobs(batch.jobs, done_seq, cause.clone());
                        // Later batches in flight may have been encoded on this one's results.
                        for later in &mut in_flight {
                            let jobs = std::mem::take(&mut later.jobs);
                            let after = AfterFailedBatch {
                                earlier: done_seq,
                                cause: cause.clone(),
                            };
                            self.fail_jobs(jobs, later.seq, Arc::new(after));
                        }
                    }
                }
                // Every job of the batch has completed (or failed): only now may dependents
                // that wait for its fence run.
                self.completed_seq.store(done_seq, Ordering::Release);
                let ready: Vec<FenceWaiter> = {
                    let mut w = self.fence_waiters.lock();
                    let (now, later): (Vec<_>, Vec<_>) =
                        w.drain(..).partition(|(s, _)| *s <= done_seq);
                    *w = later;
                    now.into_iter().map(|(_, f)| f).collect()
                };
                for f in ready {
                    f();
                }
            }
        }
        tracing::trace!(gpu = self.index, "GPU driver stopped");
    }
}
