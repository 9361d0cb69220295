//! The distributed runtime: a [`Cluster`] of ranks, each with its own engine
//! ([`crate::Runtime`]), running one sequential task flow.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytemuck::Pod;
use parking_lot::Mutex;

use super::comm::{
    self, data_message, data_tag, receive_room, Cmd, CommThread, MsgInfo, Payload, Root, Shared,
};
use super::error::DistError;
use super::flow::{ArrayId, Flow, Mode, Transfer};
use super::transport::{BufferPool, ThreadTransport, Transport};
use crate::data::{ReduceOp, Reducible};
use crate::task::{
    ArgsTask, CpuContext, Event, GpuContext, ReadArg, ReadWriteArg, ReduceArg, TaskArg, TaskArgs,
    TaskHandle, TaskRef, WriteArg,
};
use crate::{Array, Placement, RuntimeHandle};

/// A rank's copy of one distributed array, type-erased for the transfers.
trait LocalCopy: Send + Sync {
    fn label(&self) -> String;
    fn bytes(&self) -> usize;
    fn spawn_send(
        &self,
        rt: &RuntimeHandle,
        name: String,
        info: MsgInfo,
        rank: usize,
        pool: Arc<BufferPool>,
        priority: i32,
    ) -> TaskHandle<Vec<u8>>;
    fn spawn_recv(
        &self,
        rt: &RuntimeHandle,
        name: String,
        after: &Event,
        slot: Payload,
        pool: Arc<BufferPool>,
        priority: i32,
    ) -> TaskRef;
}

impl<T: Pod> LocalCopy for Array<T> {
    fn label(&self) -> String {
        Array::label(self).to_string()
    }

    fn bytes(&self) -> usize {
        self.len() * std::mem::size_of::<T>()
    }

    fn spawn_send(
        &self,
        rt: &RuntimeHandle,
        name: String,
        info: MsgInfo,
        rank: usize,
        pool: Arc<BufferPool>,
        priority: i32,
    ) -> TaskHandle<Vec<u8>> {
        rt.task(name)
            .args(self.read())
            .on(Placement::Cpu)
            .priority(priority)
            .cpu(move |a| data_message(&pool, &info, rank, bytemuck::cast_slice(a)))
            .spawn()
    }

    fn spawn_recv(
        &self,
        rt: &RuntimeHandle,
        name: String,
        after: &Event,
        slot: Payload,
        pool: Arc<BufferPool>,
        priority: i32,
    ) -> TaskRef {
        rt.task(name)
            .args(self.write())
            .after(after)
            .on(Placement::Cpu)
            .priority(priority)
            .cpu_try(move |a| {
                let msg = slot.lock().take().unwrap_or_default();
                let dst: &mut [u8] = bytemuck::cast_slice_mut(a);
                let got = msg.len().saturating_sub(comm::HEADER);
                if got != dst.len() {
                    return Err(DistError::BadMessage {
                        rank: usize::MAX,
                        from: usize::MAX,
                        expected: format!("{} payload bytes", dst.len()),
                        got: format!("{got}"),
                    });
                }
                dst.copy_from_slice(&msg[comm::HEADER..]);
                pool.give(msg);
                Ok(())
            })
            .spawn()
            .task_ref()
    }
}

/// The local tasks `wait_all` still has to check, and the first failure among those it no
/// longer holds. Finished tasks are dropped whenever the list doubles, so a long flow between
/// two waits keeps only its unfinished tasks alive.
#[derive(Default)]
struct Pending {
    tasks: Vec<TaskRef>,
    failure: Option<Root>,
    prune_at: usize,
}

impl Pending {
    fn push(&mut self, tasks: Vec<TaskRef>, rank: usize) {
        self.tasks.extend(tasks);
        if self.tasks.len() < self.prune_at.max(1024) {
            return;
        }
        let failure = &mut self.failure;
        self.tasks.retain(|t| {
            if !t.is_done() {
                return true;
            }
            if let (None, Err(e)) = (&*failure, t.wait()) {
                *failure = Some(Root::of(&e, rank));
            }
            false
        });
        self.prune_at = 2 * self.tasks.len();
    }
}

/// What the ranks' threads share.
struct Inner {
    rt: RuntimeHandle,
    rank: usize,
    size: usize,
    timeout: Duration,
    flow: Mutex<Flow>,
    locals: Mutex<Vec<Arc<dyn LocalCopy>>>,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    shared: Arc<Shared>,
    /// Local tasks since the last `wait_all` not known to be done (the collective wait
    /// checks them), pruned as they finish.
    pending: Mutex<Pending>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Serializes collectives issued from several threads of one rank.
    collective: Mutex<()>,
    /// The idle hook installed on the engine's executors for pacing, removed at stop.
    idle_hook: Option<crate::sched::scheduler::IdleHookIds>,
}

/// The engine's answer to [`comm::Pace`]: whether every CPU worker is busy.
struct EnginePace(Arc<crate::sched::cpu::CpuPool>);

impl comm::Pace for EnginePace {
    fn workers_busy(&self) -> bool {
        self.0.all_busy()
    }
}

/// One rank of a distributed runtime: every rank runs the same program, which creates the
/// same [`DistArray`]s and spawns the same tasks in the same order (StarPU-MPI's sequential
/// task flow). A task runs on the rank owning the array it writes (or [`DistTask::on_rank`]);
/// the ranks move its inputs there and cache received copies until the next write.
///
/// The flow is one sequence: create arrays and spawn tasks from one thread per rank (several
/// threads spawning at once would give the ranks different orders, reported as
/// [`DistError::FlowMismatch`]). Task bodies may spawn plain engine tasks on
/// [`Cluster::runtime`], not flow tasks.
///
/// ```
/// use hetflow::dist::LocalCluster;
/// // Two ranks as threads of this process (under mpirun: `Cluster::mpi(&rt)`).
/// let sums = LocalCluster::new(2).run(|c| {
///     let x = c.array_from(0, vec![1u32, 2, 3]).unwrap();   // owned by rank 0
///     let y = c.array::<u32>(1, 3).unwrap();                  // owned by rank 1
///     c.task("double")
///         .args((x.read(), y.write()))                         // runs on rank 1
///         .cpu(|(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y = 2 * x))
///         .spawn()
///         .unwrap();
///     c.wait_all().unwrap();
///     y.to_vec().unwrap().iter().sum::<u32>()                  // gathered on every rank
/// }).unwrap();
/// assert_eq!(sums, vec![12, 12]);
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// Options of a [`Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    timeout: Duration,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            timeout: Duration::from_secs(120),
        }
    }
}

impl ClusterBuilder {
    /// How long a collective wait ([`Cluster::wait_all`], [`DistArray::to_vec`]) waits with
    /// no message arriving before it fails with [`DistError::Timeout`] (default 120 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// This process as one rank of the job `mpirun` started, on the engine `rt`. MPI is
    /// initialised (thread level FUNNELED) by the cluster's communication thread.
    #[cfg(feature = "mpi")]
    pub fn mpi(self, rt: &RuntimeHandle) -> Result<Cluster, DistError> {
        if !crate::comm::MpiInstances::launched_by_mpirun() {
            return Err(DistError::NotUnderMpirun {
                program: std::env::args().next().unwrap_or_default(),
            });
        }
        self.start(rt, |pool| {
            super::mpi::MpiTransport::init(pool).map(|t| Box::new(t) as Box<dyn Transport>)
        })
    }

    /// The communication thread's pacing (`comm.rs`, "Pacing"): it may nap while every CPU
    /// worker of `rt` is busy; a worker running out of work, or a GPU driver going idle
    /// (a GPU that may wait for a tile), ends the nap.
    fn pace(rt: &RuntimeHandle) -> Option<Arc<crate::sched::cpu::CpuPool>> {
        let pool = rt.core.sched.pool.clone();
        (pool.workers() > 0).then_some(pool)
    }

    fn start(
        self,
        rt: &RuntimeHandle,
        make: impl FnOnce(Arc<BufferPool>) -> Result<Box<dyn Transport>, DistError> + Send + 'static,
    ) -> Result<Cluster, DistError> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::new(Shared::new());
        let (sh, tx2, pool) = (shared.clone(), tx.clone(), shared.pool.clone());
        let paced = Self::pace(rt);
        let pace = paced
            .clone()
            .map(|p| Box::new(EnginePace(p)) as Box<dyn comm::Pace>);
        let thread = std::thread::Builder::new()
            .name("hetflow-dist".into())
            .spawn(move || match make(pool) {
                Ok(t) => {
                    let _ = ready_tx.send(Ok((t.rank(), t.size())));
                    CommThread::new(t, pace, tx2, sh).run(rx);
                }
                Err(e) => drop(ready_tx.send(Err(e))),
            })
            .map_err(|e| {
                DistError::Layout(format!("could not start the communication thread: {e}"))
            })?;
        let (rank, size) = ready_rx
            .recv()
            .map_err(|_| DistError::Stopped { rank: 0 })??;
        // The executors' idle hook ends a nap of the communication thread.
        let idle_hook = paced.map(|_| {
            let (sh, tx) = (shared.clone(), tx.clone());
            rt.core.sched.add_idle_hook(Arc::new(move || {
                if sh.napping.swap(false, Ordering::SeqCst) {
                    let _ = tx.send(Cmd::Poke);
                }
            }))
        });
        tracing::info!(rank, size, "distributed runtime started");
        Ok(Cluster {
            inner: Arc::new(Inner {
                rt: rt.clone(),
                rank,
                size,
                timeout: self.timeout,
                flow: Mutex::new(Flow::new(size)),
                locals: Mutex::new(Vec::new()),
                tx: Mutex::new(Some(tx)),
                shared,
                pending: Mutex::new(Pending::default()),
                thread: Mutex::new(Some(thread)),
                collective: Mutex::new(()),
                idle_hook,
            }),
        })
    }
}

/// `ranks` ranks as threads of this process, each with its own engine: for tests, and to try
/// a distributed program without MPI. The same program runs on every rank.
pub struct LocalCluster {
    ranks: usize,
    builder: ClusterBuilder,
    runtime: Arc<dyn Fn(usize) -> crate::RuntimeBuilder + Send + Sync>,
}

impl LocalCluster {
    /// `ranks` ranks, each with a CPU-only runtime of one worker.
    pub fn new(ranks: usize) -> LocalCluster {
        LocalCluster {
            ranks,
            builder: ClusterBuilder::default(),
            runtime: Arc::new(|_| crate::Runtime::builder().cpu_workers(1).no_gpu()),
        }
    }

    /// Each rank's runtime (rank → builder). Runtimes are built one after the other (a
    /// process should not create Vulkan devices concurrently).
    pub fn runtime(
        mut self,
        f: impl Fn(usize) -> crate::RuntimeBuilder + Send + Sync + 'static,
    ) -> Self {
        self.runtime = Arc::new(f);
        self
    }

    /// The clusters' options.
    pub fn options(mut self, b: ClusterBuilder) -> Self {
        self.builder = b;
        self
    }

    /// Runs `program` on every rank; the ranks' results in rank order.
    pub fn run<R: Send>(self, program: impl Fn(&Cluster) -> R + Sync) -> Result<Vec<R>, DistError> {
        let mut runtimes = Vec::with_capacity(self.ranks);
        for r in 0..self.ranks {
            runtimes.push(
                (self.runtime)(r)
                    .build()
                    .map_err(|e| DistError::Layout(format!("rank {r}'s runtime: {e}")))?,
            );
        }
        let transports = ThreadTransport::cluster(self.ranks);
        let program = &program;
        std::thread::scope(|s| {
            let joins: Vec<_> = runtimes
                .iter()
                .zip(transports)
                .map(|(rt, t)| {
                    let b = self.builder.clone();
                    s.spawn(move || {
                        let c =
                            b.start(&rt.handle(), move |_| Ok(Box::new(t) as Box<dyn Transport>))?;
                        let out = program(&c);
                        c.shutdown();
                        Ok(out)
                    })
                })
                .collect();
            joins
                .into_iter()
                .map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

/// Per-rank message counters ([`Cluster::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistStats {
    /// The rank.
    pub rank: usize,
    /// Data messages sent (array versions; collectives not counted), counted when the flow
    /// plans them.
    pub messages_sent: u64,
    /// Payload bytes of those messages.
    pub bytes_sent: u64,
    /// Data messages received so far.
    pub messages_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Task inputs found in the rank's cache of a received version (no message needed).
    pub cache_hits: u64,
    /// Messages of collectives (waits, gathers of statistics and traces).
    pub control_messages: u64,
    /// Times the communication thread drove the transport (`MPI_Testsome` calls): each one
    /// takes a core from a worker for a moment.
    pub polls: u64,
    /// Naps the communication thread took while every CPU worker was busy (pacing).
    pub naps: u64,
    /// Naps ended early by a worker running out of work.
    pub nap_pokes: u64,
}

impl Cluster {
    /// Options: `Cluster::builder().timeout(..).mpi(&rt)`.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// This process as one rank of the job `mpirun` started (default options).
    #[cfg(feature = "mpi")]
    pub fn mpi(rt: &RuntimeHandle) -> Result<Cluster, DistError> {
        ClusterBuilder::default().mpi(rt)
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// This rank's engine.
    pub fn runtime(&self) -> &RuntimeHandle {
        &self.inner.rt
    }

    fn send(&self, cmd: Cmd) -> Result<(), DistError> {
        let tx = self.inner.tx.lock();
        let stopped = DistError::Stopped { rank: self.rank() };
        tx.as_ref()
            .ok_or(stopped.clone())?
            .send(cmd)
            .map_err(|_| stopped)
    }

    /// A distributed array of `len` zeros owned by `owner` (other ranks hold an unfilled
    /// placeholder until they need a version).
    pub fn array<T: Pod>(&self, owner: usize, len: usize) -> Result<DistArray<T>, DistError> {
        self.create(None, owner, len, || vec![T::zeroed(); len])
    }

    /// A distributed array whose initial contents are `data` on `owner` (ignored elsewhere:
    /// see [`Cluster::array_with`] to build it on the owner only).
    pub fn array_from<T: Pod>(
        &self,
        owner: usize,
        data: Vec<T>,
    ) -> Result<DistArray<T>, DistError> {
        let len = data.len();
        self.create(None, owner, len, move || data)
    }

    /// A distributed array of `len` elements; `init` runs on `owner` only and gives its
    /// initial contents.
    pub fn array_with<T: Pod>(
        &self,
        owner: usize,
        len: usize,
        init: impl FnOnce() -> Vec<T>,
    ) -> Result<DistArray<T>, DistError> {
        self.create(None, owner, len, init)
    }

    /// Like [`Cluster::array_with`], labelled `label` (in errors, overviews and the trace).
    pub fn array_named<T: Pod>(
        &self,
        label: impl Into<String>,
        owner: usize,
        len: usize,
        init: impl FnOnce() -> Vec<T>,
    ) -> Result<DistArray<T>, DistError> {
        self.create(Some(label.into()), owner, len, init)
    }

    /// Adds an array to the flow and makes this rank's copy: `init`'s contents on the owner,
    /// zeros elsewhere; labelled `label`, else `d<id>`.
    fn create<T: Pod>(
        &self,
        label: Option<String>,
        owner: usize,
        len: usize,
        init: impl FnOnce() -> Vec<T>,
    ) -> Result<DistArray<T>, DistError> {
        let data = (owner == self.rank()).then(init);
        if let Some(d) = data.as_ref().filter(|d| d.len() != len) {
            return Err(DistError::Layout(format!(
                "the initial contents have {} elements, expected {len}",
                d.len()
            )));
        }
        let mut flow = self.inner.flow.lock();
        let id = flow.add_array(owner, len * std::mem::size_of::<T>())?;
        let label = label.unwrap_or_else(|| format!("d{id}"));
        let data = data.unwrap_or_else(|| vec![T::zeroed(); len]);
        let local = self.inner.rt.array_named(label, data);
        self.inner.locals.lock().push(Arc::new(local.clone()));
        Ok(DistArray {
            id,
            owner,
            local,
            cluster: self.clone(),
        })
    }

    /// Starts a task of the flow (every rank calls this, in the same order).
    pub fn task<T: Send + 'static>(&self, name: impl Into<String>) -> DistTaskBuilder<T> {
        DistTaskBuilder {
            cluster: self.clone(),
            name: name.into(),
            _t: PhantomData,
        }
    }

    /// Posts this rank's part of `t`: a send task if it holds the version, a receive (and the
    /// task that lands it in the local copy) if it needs it; both with the priority of the
    /// task that needs the data.
    fn transfer(
        &self,
        t: &Transfer,
        flow: u64,
        priority: i32,
    ) -> Result<Option<TaskRef>, DistError> {
        let (rank, rt) = (self.rank(), &self.inner.rt);
        if t.src != rank && t.dst != rank {
            return Ok(None);
        }
        let local = self.inner.locals.lock()[t.array as usize].clone();
        let info = MsgInfo {
            array: t.array,
            version: t.version,
            flow,
            label: format!("{} v{}", local.label(), t.version),
        };
        let tag = data_tag(t.seq);
        if t.src == rank {
            let c = &self.inner.shared.counters;
            c.messages_sent.fetch_add(1, Ordering::Relaxed);
            c.bytes_sent
                .fetch_add(local.bytes() as u64, Ordering::Relaxed);
            let name = format!("send {} -> {}", info.label, t.dst);
            let pool = self.inner.shared.pool.clone();
            let data = local.spawn_send(rt, name, info.clone(), rank, pool, priority);
            self.send(Cmd::Send {
                dst: t.dst,
                tag,
                info,
                data,
            })?;
            return Ok(None);
        }
        let name = format!("recv {} <- {}", info.label, t.src);
        let (ev, trigger) = Event::new(name.clone());
        let slot: Payload = Arc::default();
        let bytes = local.bytes();
        let pool = self.inner.shared.pool.clone();
        let done = local.spawn_recv(rt, name, &ev, slot.clone(), pool, priority);
        self.send(Cmd::Recv {
            src: t.src,
            tag,
            max: receive_room(bytes),
            info,
            slot,
            trigger,
        })?;
        Ok(Some(done))
    }

    /// This rank's message counters.
    pub fn stats(&self) -> DistStats {
        let c = &self.inner.shared.counters;
        DistStats {
            rank: self.rank(),
            messages_sent: c.messages_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            messages_received: c.messages_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            control_messages: c.control_messages.load(Ordering::Relaxed),
            polls: c.polls.load(Ordering::Relaxed),
            naps: c.naps.load(Ordering::Relaxed),
            nap_pokes: c.nap_pokes.load(Ordering::Relaxed),
        }
    }

    /// Collective: every rank's counters, in rank order.
    pub fn all_stats(&self) -> Result<Vec<DistStats>, DistError> {
        let s = self.stats();
        let words = [
            s.messages_sent,
            s.bytes_sent,
            s.messages_received,
            s.bytes_received,
            s.cache_hits,
            s.control_messages,
            s.polls,
            s.naps,
            s.nap_pokes,
        ];
        let blob: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let parts = self.allgather(blob, "a statistics exchange")?;
        Ok(parts
            .iter()
            .enumerate()
            .map(|(rank, p)| {
                let w = |i: usize| {
                    p.get(i * 8..i * 8 + 8)
                        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8")))
                };
                DistStats {
                    rank,
                    messages_sent: w(0),
                    bytes_sent: w(1),
                    messages_received: w(2),
                    bytes_received: w(3),
                    cache_hits: w(4),
                    control_messages: w(5),
                    polls: w(6),
                    naps: w(7),
                    nap_pokes: w(8),
                }
            })
            .collect())
    }

    /// Collective all-gather of `blob` through the communication thread, bounded by the
    /// timeout.
    fn allgather(&self, blob: Vec<u8>, what: &str) -> Result<Vec<Vec<u8>>, DistError> {
        let _one = self.inner.collective.lock();
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Allgather { blob, reply })?;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => return r,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(DistError::Stopped { rank: self.rank() })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.check_progress(what)?,
            }
        }
    }

    /// Fails with the fatal error if there is one, or a timeout if nothing arrived for the
    /// cluster's timeout.
    fn check_progress(&self, what: &str) -> Result<(), DistError> {
        if let Some(e) = self.inner.shared.fatal.lock().clone() {
            return Err(e);
        }
        if self.inner.shared.last_arrival().elapsed() > self.inner.timeout {
            return Err(DistError::Timeout {
                rank: self.rank(),
                waiting_for: what.to_string(),
                secs: self.inner.timeout.as_secs(),
            });
        }
        Ok(())
    }

    /// Waits for `t` (a local task), bounded as [`Cluster::check_progress`] says: the task's
    /// completion wakes this thread; the bound is checked every 5 ms meanwhile (not a poll
    /// that takes a core from the workers each time).
    fn wait_bounded(&self, t: &TaskRef, what: &str) -> Result<(), DistError> {
        t.node
            .wait_done_checking(Duration::from_millis(5), || self.check_progress(what))
    }

    /// Collective: waits until every rank has run its part of the flow so far. Fails on
    /// every rank if the ranks' flows differ ([`DistError::FlowMismatch`]) or if a task
    /// failed on any rank ([`DistError::RemoteTask`], naming the root task and its rank).
    pub fn wait_all(&self) -> Result<(), DistError> {
        let (hash, steps) = {
            let mut f = self.inner.flow.lock();
            f.step(1);
            f.signature()
        };
        let blob: Vec<u8> = [hash, steps].iter().flat_map(|w| w.to_le_bytes()).collect();
        let parts = self.allgather(blob, "the other ranks to reach wait_all")?;
        for (r, p) in parts.iter().enumerate() {
            let w = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().expect("8"));
            if p.len() != 16 || (w(0), w(1)) != (hash, steps) {
                return Err(DistError::FlowMismatch {
                    rank: self.rank(),
                    other: r,
                    detail: format!(
                        "at wait_all rank {} is at step {steps} with hash {hash:016x}, rank {r} at step {} with hash {:016x}",
                        self.rank(),
                        if p.len() == 16 { w(1) } else { 0 },
                        if p.len() == 16 { w(0) } else { 0 }
                    ),
                });
            }
        }
        let Pending {
            tasks: pending,
            mut failure,
            ..
        } = std::mem::take(&mut *self.inner.pending.lock());
        // The last spawned first: tasks mostly finish in flow order, so this thread is woken
        // about once, not at every task's end (a wake-up per task takes a core from the
        // workers and the communication thread: it doubled a chain's cost across ranks).
        for t in pending.iter().rev() {
            self.wait_bounded(t, "this rank's tasks")?;
        }
        for t in &pending {
            if let (None, Err(e)) = (&failure, t.wait()) {
                failure = Some(Root::of(&e, self.rank()));
            }
        }
        let blob = failure
            .map(|f| format!("{}\0{}\0{}", f.task, f.rank, f.message).into_bytes())
            .unwrap_or_default();
        let parts = self.allgather(blob, "the other ranks to finish their tasks")?;
        if let Some(p) = parts.iter().find(|p| !p.is_empty()) {
            let text = String::from_utf8_lossy(p);
            let mut it = text.splitn(3, '\0');
            let (task, rank, message) = (
                it.next().unwrap_or_default().to_string(),
                it.next().and_then(|r| r.parse().ok()).unwrap_or(usize::MAX),
                it.next().unwrap_or_default().to_string(),
            );
            return Err(DistError::RemoteTask {
                task,
                rank,
                message,
            });
        }
        Ok(())
    }

    /// Starts recording this rank's tasks, moves and messages for [`Cluster::write_trace`].
    pub fn start_trace(&self) {
        self.inner.rt.start_trace();
        self.inner.shared.events.lock().clear();
        self.inner
            .shared
            .counters
            .tracing
            .store(true, Ordering::Relaxed);
    }

    /// Collective: merges every rank's trace into one Chrome trace JSON file written by rank
    /// 0 at `path` (one process per rank: its tasks, moves and messages). Returns whether
    /// this rank wrote it.
    pub fn write_trace(&self, path: impl AsRef<std::path::Path>) -> Result<bool, DistError> {
        self.inner
            .shared
            .counters
            .tracing
            .store(false, Ordering::Relaxed);
        let trace = self.inner.rt.take_trace();
        let comm = std::mem::take(&mut *self.inner.shared.events.lock());
        let mine = super::trace::rank_events(self.rank(), &trace, &comm);
        let parts = self.allgather(mine.into_bytes(), "a trace exchange")?;
        if self.rank() != 0 {
            return Ok(false);
        }
        let events: Vec<String> = parts
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .filter(|s| !s.is_empty())
            .collect();
        std::fs::write(path, format!("{{\"traceEvents\":[{}]}}", events.join(",")))
            .map_err(|e| DistError::Layout(format!("writing the trace: {e}")))?;
        Ok(true)
    }

    fn shutdown(&self) {
        self.inner.stop();
    }
}

impl Inner {
    /// Tells the communication thread to finish its sends and stop, and joins it (once).
    fn stop(&self) {
        if let Some(ids) = &self.idle_hook {
            self.rt.core.sched.remove_idle_hook(ids);
        }
        let tx = self.tx.lock().take();
        if let Some(tx) = tx {
            let _ = tx.send(Cmd::Shutdown(self.timeout));
        }
        if let Some(j) = self.thread.lock().take() {
            let _ = j.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An array of the flow: one copy per rank; the owner holds the data at first, the others
/// a placeholder until a task there needs a version. Clone shares it.
pub struct DistArray<T: Pod> {
    id: ArrayId,
    owner: usize,
    local: Array<T>,
    cluster: Cluster,
}

impl<T: Pod> Clone for DistArray<T> {
    fn clone(&self) -> Self {
        DistArray {
            id: self.id,
            owner: self.owner,
            local: self.local.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

impl<T: Pod> DistArray<T> {
    /// The rank owning it (where tasks writing it run by default).
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }

    /// Its label.
    pub fn label(&self) -> &str {
        self.local.label()
    }

    /// This rank's copy in the engine: valid only while this rank holds the latest version
    /// (use it for overviews; read the data with [`DistArray::to_vec`]).
    pub fn local(&self) -> &Array<T> {
        &self.local
    }

    /// The version of the flow (how many tasks have written it so far).
    pub fn version(&self) -> u64 {
        self.cluster.inner.flow.lock().meta(self.id).version
    }

    /// As a read argument of a [`DistTask`].
    pub fn read(&self) -> DistRead<T> {
        DistRead(self.clone())
    }

    /// As a read-write argument.
    pub fn read_write(&self) -> DistReadWrite<T> {
        DistReadWrite(self.clone())
    }

    /// As a write-only argument (the task overwrites all of it).
    pub fn write(&self) -> DistWrite<T> {
        DistWrite(self.clone())
    }

    /// Collective (every rank calls it at the same point of the flow): the latest version,
    /// on every rank. Ranks that lack it receive it from a holder and keep it cached.
    pub fn to_vec(&self) -> Result<Vec<T>, DistError> {
        let c = &self.cluster;
        let recv = {
            let mut flow = c.inner.flow.lock();
            let (transfers, hash) = flow.gather(self.id);
            let mut recv = None;
            for t in &transfers {
                if let Some(r) = c.transfer(t, hash, 0)? {
                    recv = Some(r);
                }
            }
            recv
        };
        if let Some(r) = &recv {
            c.wait_bounded(r, &format!("{} from its holder", self.label()))?;
            r.wait()?;
        }
        Ok(self.local.to_vec()?)
    }
}

impl<T: Reducible> DistArray<T> {
    /// As a reduction argument (runs where the array's latest version is combined: its
    /// owner by default).
    pub fn reduce(&self, op: ReduceOp) -> DistReduce<T> {
        DistReduce(self.clone(), op)
    }
}

/// `array.read()` of a [`DistArray`].
pub struct DistRead<T: Pod>(DistArray<T>);
/// `array.read_write()` of a [`DistArray`].
pub struct DistReadWrite<T: Pod>(DistArray<T>);
/// `array.write()` of a [`DistArray`].
pub struct DistWrite<T: Pod>(DistArray<T>);
/// `array.reduce(op)` of a [`DistArray`].
pub struct DistReduce<T: Reducible>(DistArray<T>, ReduceOp);

mod sealed {
    pub trait Sealed {}
}

/// One argument of a distributed task. Sealed.
pub trait DistArg: sealed::Sealed + Send + Sync + 'static {
    /// The engine argument it becomes on the rank that runs the task.
    type Local: TaskArg;
    #[doc(hidden)]
    fn local(&self) -> Self::Local;
    #[doc(hidden)]
    fn access(&self) -> (u64, Mode);
    #[doc(hidden)]
    fn of(&self, c: &Cluster) -> Result<(), String>;
}

macro_rules! dist_arg {
    ($ty:ident, $bound:path, $mode:expr, $local:ident, $conv:expr) => {
        impl<T: $bound> sealed::Sealed for $ty<T> {}
        impl<T: $bound> DistArg for $ty<T> {
            type Local = $local<T>;
            fn local(&self) -> $local<T> {
                #[allow(clippy::redundant_closure_call)]
                ($conv)(self)
            }
            fn access(&self) -> (u64, Mode) {
                (self.0.id, $mode)
            }
            fn of(&self, c: &Cluster) -> Result<(), String> {
                if Arc::ptr_eq(&self.0.cluster.inner, &c.inner) {
                    Ok(())
                } else {
                    Err(self.0.label().to_string())
                }
            }
        }
    };
}

dist_arg!(DistRead, Pod, Mode::Read, ReadArg, |s: &DistRead<T>| s
    .0
    .local
    .read());
dist_arg!(
    DistReadWrite,
    Pod,
    Mode::ReadWrite,
    ReadWriteArg,
    |s: &DistReadWrite<T>| s.0.local.read_write()
);
dist_arg!(DistWrite, Pod, Mode::Write, WriteArg, |s: &DistWrite<T>| s
    .0
    .local
    .write());
dist_arg!(
    DistReduce,
    Reducible,
    Mode::Reduce,
    ReduceArg,
    |s: &DistReduce<T>| s.0.local.reduce(s.1)
);

/// A distributed task's arguments: one [`DistArg`] or a tuple of up to 8.
pub trait DistArgs: Send + Sync + 'static {
    /// The engine arguments they become.
    type Local: TaskArgs;
    #[doc(hidden)]
    fn local(&self) -> Self::Local;
    #[doc(hidden)]
    fn accesses(&self, c: &Cluster, out: &mut Vec<(u64, Mode)>) -> Result<(), String>;
}

impl<A: DistArg> DistArgs for A {
    type Local = A::Local;
    fn local(&self) -> A::Local {
        DistArg::local(self)
    }
    fn accesses(&self, c: &Cluster, out: &mut Vec<(u64, Mode)>) -> Result<(), String> {
        self.of(c)?;
        out.push(self.access());
        Ok(())
    }
}

macro_rules! dist_args_tuple {
    ($($a:ident $i:tt),+) => {
        impl<$($a: DistArg),+> DistArgs for ($($a,)+) {
            type Local = ($($a::Local,)+);
            fn local(&self) -> Self::Local {
                ($(self.$i.local(),)+)
            }
            fn accesses(&self, c: &Cluster, out: &mut Vec<(u64, Mode)>) -> Result<(), String> {
                $(self.$i.of(c)?; out.push(self.$i.access());)+
                Ok(())
            }
        }
    };
}

dist_args_tuple!(A 0);
dist_args_tuple!(A 0, B 1);
dist_args_tuple!(A 0, B 1, C 2);
dist_args_tuple!(A 0, B 1, C 2, D 3);
dist_args_tuple!(A 0, B 1, C 2, D 3, E 4);
dist_args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
dist_args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
dist_args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// A task of the flow being built: [`Cluster::task`], then `.args(..)`.
#[must_use = "a task does nothing until .args(..)...spawn() is called"]
pub struct DistTaskBuilder<T> {
    cluster: Cluster,
    name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T: Send + 'static> DistTaskBuilder<T> {
    /// Declares the task's distributed arrays, with how it uses each (as
    /// [`crate::TaskBuilder::args`]).
    pub fn args<A: DistArgs>(self, args: A) -> DistTask<T, A> {
        let mut accesses = Vec::new();
        let foreign = args.accesses(&self.cluster, &mut accesses).err();
        let inner = self
            .cluster
            .inner
            .rt
            .task(self.name.clone())
            .args(args.local());
        DistTask {
            cluster: self.cluster,
            name: self.name,
            accesses,
            foreign,
            on_rank: None,
            priority: 0,
            inner,
        }
    }
}

/// A distributed task with its arguments: add bodies, then [`DistTask::spawn`] on every
/// rank. The bodies run only on the rank that runs the task.
#[must_use = "a task does nothing until spawn() is called"]
pub struct DistTask<T, A: DistArgs> {
    cluster: Cluster,
    name: String,
    accesses: Vec<(u64, Mode)>,
    foreign: Option<String>,
    on_rank: Option<usize>,
    priority: i32,
    inner: ArgsTask<T, A::Local>,
}

impl<T: Send + 'static, A: DistArgs> DistTask<T, A> {
    /// Runs the task on rank `r` instead of the owner of what it writes.
    pub fn on_rank(mut self, r: usize) -> Self {
        self.on_rank = Some(r);
        self
    }

    /// Where the task may run inside its rank (CPU, a GPU, any).
    pub fn on(mut self, placement: Placement) -> Self {
        self.inner = self.inner.on(placement);
        self
    }

    /// Its priority among the ready CPU tasks of the rank that runs it (see
    /// [`crate::TaskBuilder::priority`]). The transfers of its inputs get the same
    /// priority: the holder's send task and the receiver's landing task, so that data a
    /// critical task waits for leaves as soon as it exists.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self.inner = self.inner.priority(priority);
        self
    }

    /// The CPU body (as [`ArgsTask::cpu`]).
    pub fn cpu(
        mut self,
        f: impl for<'a> FnOnce(<A::Local as TaskArgs>::Cpu<'a>) -> T + Send + 'static,
    ) -> Self {
        self.inner = self.inner.cpu(f);
        self
    }

    /// A CPU body with its context (as [`ArgsTask::cpu_with`]).
    pub fn cpu_with(
        mut self,
        f: impl for<'a, 'c> FnOnce(&'a CpuContext<'c>, <A::Local as TaskArgs>::Cpu<'a>) -> T
            + Send
            + 'static,
    ) -> Self {
        self.inner = self.inner.cpu_with(f);
        self
    }

    /// A fallible CPU body (as [`ArgsTask::cpu_try`]).
    pub fn cpu_try<E>(
        mut self,
        f: impl for<'a> FnOnce(<A::Local as TaskArgs>::Cpu<'a>) -> Result<T, E> + Send + 'static,
    ) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.inner = self.inner.cpu_try(f);
        self
    }

    /// The GPU body (as [`ArgsTask::gpu`]).
    pub fn gpu(
        mut self,
        f: impl for<'a, 'c> FnOnce(&mut GpuContext<'c>, <A::Local as TaskArgs>::Gpu<'a>) -> T
            + Send
            + 'static,
    ) -> Self {
        self.inner = self.inner.gpu(f);
        self
    }

    /// Plans the task on this rank's copy of the flow, posts this rank's transfers for it,
    /// and spawns it here if this rank runs it. Fails (the same way on every rank, leaving
    /// the flow unchanged) for an `on_rank` outside the cluster or an array of another
    /// cluster.
    pub fn spawn(self) -> Result<DistHandle<T>, DistError> {
        let c = self.cluster;
        if let Some(array) = self.foreign {
            return Err(DistError::ForeignArray {
                task: self.name,
                array,
            });
        }
        let mut flow = c.inner.flow.lock();
        let plan = flow.plan(&self.name, &self.accesses, self.on_rank)?;
        let mut local = Vec::new();
        for t in &plan.transfers {
            if let Some(r) = c.transfer(t, plan.hash, self.priority)? {
                local.push(r);
            }
        }
        let handle = if plan.exec == c.rank() {
            c.inner
                .shared
                .counters
                .cache_hits
                .fetch_add(plan.cache_hits, Ordering::Relaxed);
            let h = self.inner.spawn();
            local.push(h.task_ref());
            Some(h)
        } else {
            None
        };
        drop(flow);
        c.inner.pending.lock().push(local, c.rank());
        Ok(DistHandle {
            name: self.name,
            rank: plan.exec,
            index: plan.index,
            local: handle,
            cluster: c,
        })
    }
}

/// A spawned task of the flow, on every rank: the rank that runs it can wait for its value.
pub struct DistHandle<T> {
    name: String,
    rank: usize,
    index: u64,
    local: Option<TaskHandle<T>>,
    cluster: Cluster,
}

impl<T: 'static> DistHandle<T> {
    /// The rank that runs the task.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task's step in the flow.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Whether it runs on this rank.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The engine task, on the rank that runs it.
    pub fn local(&self) -> Option<&TaskHandle<T>> {
        self.local.as_ref()
    }

    /// On the rank that runs it: waits and returns `Some(value)` or its error. Elsewhere
    /// `Ok(None)` at once (collect failures everywhere with [`Cluster::wait_all`]).
    pub fn wait(self) -> Result<Option<T>, DistError> {
        match self.local {
            None => Ok(None),
            Some(h) => {
                self.cluster
                    .wait_bounded(&h.task_ref(), &format!("task `{}`", self.name))?;
                Ok(Some(h.wait()?))
            }
        }
    }
}
