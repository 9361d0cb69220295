//! The state every handle of one runtime shares: pools, drivers, policy, counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};

use super::error::TaskError;
use super::node::{Node, Work};
use crate::data::array::RawArray;
use crate::data::residency::Residency;
use crate::data::transfer::padded;
use crate::data::MemorySpace;
use crate::data::{Access, TransferCounters};
use crate::device::{DeviceId, GpuDevice, Kernel, Topology};
use crate::sched::cpu::CpuPool;
use crate::sched::gpu::GpuDriver;
use crate::sched::placement::{self, Loads, TaskFacts, DEFAULT_BANDWIDTH};
use crate::sched::PerfModel;
use crate::sched::{Placement, Policy};
use std::sync::atomic::AtomicU64;

pub(crate) struct Core {
    pub(crate) pool: Arc<CpuPool>,
    pub(crate) drivers: Vec<Arc<GpuDriver>>,
    gpus: Vec<Arc<GpuDevice>>,
    pub(crate) policy: Policy,
    counters: TransferCounters,
    pub(crate) residency: Residency,
    /// dmda's performance model.
    pub(crate) model: PerfModel,
    /// Predicted nanoseconds of placed, unfinished work, indexed by `MemorySpace::slot`.
    backlog: Vec<AtomicU64>,
    /// Whether a trace is recording (checked without the lock on every task).
    tracing: AtomicBool,
    /// Task events while a trace records (None when not recording).
    trace: Mutex<Option<(std::time::Instant, Vec<super::trace::TaskEvent>)>>,
    pub(crate) upload: crate::data::UploadPath,
    /// Tasks ready (queued or waiting on a fence) or running.
    live: AtomicUsize,
    quiet: Mutex<()>,
    quiet_cv: Condvar,
    /// Serialises the access-tracking part of spawns, so that every array sees tasks in one
    /// global order (no cycle can come from two threads spawning at once).
    pub(crate) spawn_lock: Mutex<()>,
    pub(crate) kernels: Mutex<HashMap<(u64, String), Kernel>>,
    /// TaskSpace key nodes that tasks of this runtime wait for and that had no task spawned
    /// under them yet, by address (spawned ones are pruned as it grows).
    key_waits: Mutex<HashMap<usize, Arc<Node>>>,
    pub(crate) shut_down: AtomicBool,
    pub(crate) topology: Topology,
    pub(crate) this: Weak<Core>,
    /// Whether idle devices take ready tasks queued on busy ones (see [`Core::steal_pays`]).
    stealing: bool,
    /// Tasks moved by heterogeneous stealing: (GPU queue → CPU, CPU queue → GPU).
    pub(crate) steals: (AtomicU64, AtomicU64),
}

/// The tunables a runtime is built with.
pub(crate) struct CoreConfig {
    pub policy: Policy,
    pub budgets: Vec<u64>,
    pub upload: crate::data::UploadPath,
    pub model: PerfModel,
    pub stealing: bool,
}

impl Core {
    pub(crate) fn new(
        pool: Arc<CpuPool>,
        drivers: Vec<Arc<GpuDriver>>,
        gpus: Vec<Arc<GpuDevice>>,
        topology: Topology,
        config: CoreConfig,
    ) -> Arc<Core> {
        let gpu_count = drivers.len();
        let CoreConfig {
            policy,
            budgets,
            upload,
            model,
            stealing,
        } = config;
        let stealing = stealing && policy == Policy::Dmda && gpu_count > 0;
        let core = Arc::new_cyclic(|this| Core {
            pool,
            drivers,
            gpus,
            policy,
            counters: TransferCounters::default(),
            residency: Residency::new(budgets),
            model,
            backlog: (0..=gpu_count).map(|_| AtomicU64::new(0)).collect(),
            trace: Mutex::new(None),
            tracing: AtomicBool::new(false),
            upload,
            live: AtomicUsize::new(0),
            quiet: Mutex::new(()),
            quiet_cv: Condvar::new(),
            spawn_lock: Mutex::new(()),
            kernels: Mutex::new(HashMap::new()),
            key_waits: Mutex::new(HashMap::new()),
            shut_down: AtomicBool::new(false),
            topology,
            this: this.clone(),
            stealing,
            steals: (AtomicU64::new(0), AtomicU64::new(0)),
        });
        if stealing {
            core.install_stealing();
        }
        core
    }

    /// Gives the CPU pool and every GPU driver their steal hooks. The hooks hold the core
    /// weakly: the pool and drivers must not keep it alive.
    fn install_stealing(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.pool.set_steal_hook(Box::new(move || {
            let core = weak.upgrade()?;
            core.drivers
                .iter()
                .filter(|d| d.queued() > 0)
                .find_map(|d| d.steal_for_cpu())
                .inspect(|_| {
                    core.steals.0.fetch_add(1, Ordering::Relaxed);
                })
        }));
        for d in &self.drivers {
            let weak = Arc::downgrade(self);
            d.set_steal_hook(Box::new(move |gpu| {
                let core = weak.upgrade()?;
                // Only a saturated pool has work worth taking: with a worker idle, a queued
                // job starts on the CPU at once.
                if core.pool.idle_workers() > 0 || core.pool.queued_anywhere() == 0 {
                    return None;
                }
                core.pool.steal_for_gpu(gpu).map(|job| {
                    core.steals.1.fetch_add(1, Ordering::Relaxed);
                    job.into_gpu_job()
                })
            }));
        }
    }

    /// Whether a task dmda just placed on `target` (predicted `run_ns` there) would finish
    /// sooner on another candidate with nothing ahead of it there: then an idle device should
    /// be woken to look at it. Without this hint, dispatches wake nobody, so a saturated
    /// device's queue is not shuffled for tasks that belong where they are.
    fn steal_hint(
        &self,
        facts: &TaskFacts<'_>,
        cands: &[DeviceId],
        target: DeviceId,
        run_ns: u64,
    ) -> bool {
        let finish_here = self.queue_wait_ns(target).max(run_ns as f64);
        cands.iter().filter(|d| **d != target).any(|d| {
            self.model
                .estimate(&facts.name, facts.bytes, *d)
                .is_some_and(|e| e.as_nanos() as f64 * 1.1 < finish_here)
        })
    }

    /// Predicted nanoseconds before work queued now on `d` starts: its backlog, spread over
    /// the workers for the CPU pool.
    fn queue_wait_ns(&self, d: DeviceId) -> f64 {
        let b = self.backlog[MemorySpace::of(d).slot()].load(Ordering::Acquire) as f64;
        match d {
            DeviceId::Cpu => b / self.pool.workers().max(1) as f64,
            DeviceId::Gpu(_) => b,
        }
    }

    /// Takes `ns` of predicted work off backlog `slot` (finished or moved).
    fn unbook(&self, slot: usize, ns: u64) {
        let _ = self.backlog[slot].fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
            Some(b.saturating_sub(ns))
        });
    }

    /// Measured bytes per nanosecond into each memory space (by `MemorySpace::slot`); the
    /// default where a link was never used or the policy is not dmda.
    fn bandwidths(&self) -> Vec<f64> {
        let mut bandwidth = vec![DEFAULT_BANDWIDTH; 1 + self.drivers.len()];
        if self.policy == Policy::Dmda {
            for ((_, to), l) in self.counters.snapshot() {
                if let (Some(bw), Some(b)) = (l.bandwidth(), bandwidth.get_mut(to.slot())) {
                    *b = bw;
                }
            }
        }
        bandwidth
    }

    /// Heterogeneous stealing's rule (StarPU's dmda estimate, applied when a device is idle):
    /// move a queued task from `from` to the idle device `to` when it is allowed there and the
    /// performance model says it finishes sooner there — its run time on `to` plus moving its
    /// missing inputs at the measured bandwidth, against `from_finish_ns`, when it would
    /// finish where it is queued (ahead of it: `ahead_ns` of predicted work). A 10% margin
    /// keeps near-ties where they are. On yes, the task's predicted work moves from one
    /// device's backlog to the other's.
    pub(crate) fn steal_pays(
        &self,
        name: &str,
        work: &mut Work,
        from: DeviceId,
        to: DeviceId,
        ahead_ns: u64,
    ) -> bool {
        let allowed = self.candidates(work).is_ok_and(|c| c.contains(&to));
        if !allowed {
            return false;
        }
        let facts = self.facts(std::borrow::Cow::Borrowed(name), work, &[to]);
        let (Some(run_from), Some(run_to)) = (
            self.model.estimate(name, facts.bytes, from),
            self.model.estimate(name, facts.bytes, to),
        ) else {
            return false;
        };
        let (run_from, run_to) = (run_from.as_nanos() as f64, run_to.as_nanos() as f64);
        let from_finish = match from {
            // Queued on a GPU: the work ahead of it in that queue, then its own run.
            DeviceId::Gpu(_) => ahead_ns as f64 + run_from,
            // Queued on the saturated pool: the pool's backlog (this task included) spread
            // over its workers.
            DeviceId::Cpu => self.queue_wait_ns(DeviceId::Cpu).max(run_from),
        };
        let slot_to = MemorySpace::of(to).slot();
        let bw = self
            .bandwidths()
            .get(slot_to)
            .copied()
            .unwrap_or(DEFAULT_BANDWIDTH);
        let to_finish = facts.missing[0] as f64 / bw + run_to;
        if to_finish * 1.1 >= from_finish {
            return false;
        }
        if let Some((slot, ns)) = work.predicted.take() {
            self.unbook(slot, ns);
        }
        let ns = run_to as u64;
        self.backlog[slot_to].fetch_add(ns, Ordering::AcqRel);
        work.predicted = Some((slot_to, ns));
        tracing::debug!(task = name, ?from, ?to, to_finish, from_finish, "stolen");
        true
    }

    pub(crate) fn gpus(&self) -> &[Arc<GpuDevice>] {
        &self.gpus
    }

    pub(crate) fn counters(&self) -> &TransferCounters {
        &self.counters
    }

    /// This runtime as an array's opaque owner.
    pub(crate) fn as_owner(&self) -> Weak<dyn std::any::Any + Send + Sync> {
        self.this.clone()
    }

    /// The devices `work` may run on: what its placement and bodies allow, less the GPUs whose
    /// memory budget its working set exceeds when another device can run it (there it could
    /// only fail with `OverBudget`).
    fn candidates(&self, work: &Work) -> Result<Vec<DeviceId>, String> {
        let mut c = placement::candidates(
            &work.placement,
            work.cpu.is_some(),
            work.gpu.is_some(),
            self.drivers.len(),
        )?;
        if c.len() > 1 && c.iter().any(|d| matches!(d, DeviceId::Gpu(_))) {
            let working_set: u64 = work.accesses.iter().map(|(r, _)| padded(r.bytes)).sum();
            let fits = |d: &DeviceId| match d {
                DeviceId::Gpu(i) => working_set <= self.residency.budget(*i),
                DeviceId::Cpu => true,
            };
            if c.iter().any(fits) {
                c.retain(fits);
            }
        }
        Ok(c)
    }

    /// Called once per node, when its last dependency is released.
    pub(crate) fn schedule(self: &Arc<Self>, node: Arc<Node>) {
        self.live.fetch_add(1, Ordering::AcqRel);
        let gpus = self.drivers.len();
        let decision = node.with_work(|work| match work {
            Some(work) if let Some(t) = fast_target(work, gpus) => Ok(Some(t)),
            Some(work) if work.cpu.is_some() || work.gpu.is_some() => {
                match self.candidates(work) {
                    Ok(c) => {
                        let policy = self.policy;
                        // Only locality and dmda look at the task's name and data.
                        let facts = if matches!(policy, Policy::Locality | Policy::Dmda) {
                            self.facts(node.name(), work, &c)
                        } else {
                            TaskFacts {
                                name: std::borrow::Cow::Borrowed(""),
                                bytes: 0,
                                missing: Vec::new(),
                            }
                        };
                        let t = placement::choose(policy, &c, &self.loads(), &facts, &self.model);
                        if policy == Policy::Dmda {
                            let slot = MemorySpace::of(t).slot();
                            if let Some(e) = self.model.estimate(&facts.name, facts.bytes, t) {
                                let ns = e.as_nanos() as u64;
                                self.backlog[slot].fetch_add(ns, Ordering::AcqRel);
                                work.predicted = Some((slot, ns));
                                if self.stealing {
                                    work.steal_hint = self.steal_hint(&facts, &c, t, ns);
                                }
                            }
                        }
                        Ok(Some(t))
                    }
                    Err(reason) => Err(reason),
                }
            }
            // Barriers finish on the CPU pool (cheap, and never recursive).
            _ => Ok(None),
        });
        let target = decision.unwrap_or_else(|reason| {
            node.fail_with(TaskError::NoDevice {
                task: node.name().to_string(),
                reason,
            });
            None
        });
        self.dispatch(node, target.unwrap_or(DeviceId::Cpu));
    }

    /// Sends a placed node to its device once every fence it must respect has passed.
    fn dispatch(self: &Arc<Self>, node: Arc<Node>, target: DeviceId) {
        let pending = node
            .fences()
            .into_iter()
            .find(|f| target != DeviceId::Gpu(f.gpu) && !self.drivers[f.gpu].fence_passed(f.seq));
        if let Some(f) = pending {
            let core = self.clone();
            self.drivers[f.gpu].on_fence(f.seq, Box::new(move || core.dispatch(node, target)));
            return;
        }
        let hint = self.stealing && node.with_work(|w| w.is_some_and(|w| w.steal_hint));
        match target {
            DeviceId::Gpu(i) => {
                let behind = hint && !self.drivers[i].is_idle();
                self.drivers[i].push(node);
                // A sleeping worker may want this job: the GPU is behind.
                if behind && self.pool.idle_workers() > 0 {
                    self.pool.nudge();
                }
            }
            DeviceId::Cpu => {
                self.pool.push(node);
                // An idle GPU may want this job: every worker is busy.
                if hint && self.pool.idle_workers() == 0 {
                    if let Some(d) = self.drivers.iter().find(|d| d.is_idle()) {
                        d.nudge();
                    }
                }
            }
        }
    }

    fn loads(&self) -> Loads {
        Loads {
            cpu_idle_workers: self.pool.idle_workers(),
            cpu_workers: self.pool.workers(),
            cpu_queued: self.pool.queued(),
            gpus: self
                .drivers
                .iter()
                .map(|d| (d.is_idle(), d.queued()))
                .collect(),
            backlog_ns: self
                .backlog
                .iter()
                .map(|b| b.load(Ordering::Acquire))
                .collect(),
            bandwidth: self.bandwidths(),
        }
    }

    /// What the locality and dmda policies need to know about a task: its name and size, and
    /// per candidate the bytes of its inputs not valid there.
    fn facts<'a>(
        &self,
        name: std::borrow::Cow<'a, str>,
        work: &Work,
        cands: &[DeviceId],
    ) -> TaskFacts<'a> {
        let mut missing = vec![0u64; cands.len()];
        for (raw, _) in work.accesses.iter().filter(|(_, a)| a.reads()) {
            let st = raw.state.lock();
            for (m, d) in missing.iter_mut().zip(cands) {
                if !st.copies.get(MemorySpace::of(*d)).is_valid() {
                    *m += raw.bytes as u64;
                }
            }
        }
        TaskFacts {
            name,
            bytes: work.accesses.iter().map(|(r, _)| r.bytes as u64).sum(),
            missing,
        }
    }

    /// Bookkeeping when a task finishes: its predicted work leaves the backlog, and under
    /// dmda its run time feeds the performance model.
    pub(crate) fn task_ran<'n>(
        &self,
        name: impl FnOnce() -> std::borrow::Cow<'n, str>,
        started: Option<(std::time::Instant, bool)>,
        ran_on: Option<DeviceId>,
        bytes: u64,
        predicted: Option<(usize, u64)>,
    ) {
        if let Some((slot, ns)) = predicted {
            self.unbook(slot, ns);
        }
        if self.policy == Policy::Dmda {
            if let (Some((start, true)), Some(device)) = (started, ran_on) {
                self.model.record(&name(), bytes, device, start.elapsed());
            }
        }
    }

    /// Starts recording tasks and moves (clearing an earlier recording).
    pub(crate) fn start_trace(&self) {
        *self.trace.lock() = Some((std::time::Instant::now(), Vec::new()));
        self.counters.start_trace();
        self.tracing.store(true, Ordering::Release);
    }

    /// Stops recording and returns what was recorded.
    pub(crate) fn take_trace(&self) -> super::trace::Trace {
        self.tracing.store(false, Ordering::Release);
        let (origin, tasks) = self
            .trace
            .lock()
            .take()
            .unwrap_or_else(|| (std::time::Instant::now(), Vec::new()));
        super::trace::Trace {
            origin,
            tasks,
            moves: self.counters.take_trace(),
        }
    }

    /// Whether tasks must be timed: a trace is recording, or dmda learns from run times.
    pub(crate) fn wants_timing(&self) -> bool {
        self.policy == Policy::Dmda || self.tracing.load(Ordering::Relaxed)
    }

    /// Records a finished task, if a trace is recording.
    pub(crate) fn trace_task(&self, event: impl FnOnce() -> super::trace::TaskEvent) {
        if !self.tracing.load(Ordering::Acquire) {
            return;
        }
        if let Some((_, events)) = self.trace.lock().as_mut() {
            events.push(event());
        }
    }

    /// Remembers that a task of this runtime waits for `key_node`, a key no task was spawned
    /// under yet, so that [`Core::unspawned_keys`] can find it.
    pub(crate) fn note_key_wait(&self, key_node: &Arc<Node>) {
        let mut waits = self.key_waits.lock();
        if waits.len() >= 64 && waits.len().is_power_of_two() {
            waits.retain(|_, n| n.is_unspawned_key());
        }
        waits
            .entry(Arc::as_ptr(key_node) as usize)
            .or_insert_with(|| key_node.clone());
    }

    /// The key nodes that tasks of this runtime wait for and that still have no task.
    pub(crate) fn unspawned_keys(&self) -> Vec<Arc<Node>> {
        let mut waits = self.key_waits.lock();
        waits.retain(|_, n| n.is_unspawned_key());
        waits.values().cloned().collect()
    }

    /// Fails, until none is left, every key that tasks of this runtime wait for and that no
    /// task was spawned under, once the runtime is otherwise idle ([`Node::abandon`]).
    pub(crate) fn abandon_unspawned_keys(&self) {
        loop {
            self.wait_quiet();
            let stuck = self.unspawned_keys();
            if stuck.is_empty() {
                return;
            }
            for n in stuck {
                n.abandon();
            }
        }
    }

    pub(crate) fn task_finished(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.quiet.lock();
            self.quiet_cv.notify_all();
        }
    }

    /// Blocks until no task is ready or running.
    pub(crate) fn wait_quiet(&self) {
        let mut g = self.quiet.lock();
        while self.live.load(Ordering::Acquire) != 0 {
            self.quiet_cv.wait(&mut g);
        }
    }
}

/// The device of a task that can run in exactly one place (no allocation, no load query).
fn fast_target(work: &Work, gpus: usize) -> Option<DeviceId> {
    match (&work.placement, work.cpu.is_some(), work.gpu.is_some()) {
        (Placement::Cpu, true, _) | (Placement::Any, true, false) => Some(DeviceId::Cpu),
        (Placement::Gpu(i), _, true) if *i < gpus => Some(DeviceId::Gpu(*i)),
        (Placement::Any | Placement::AnyGpu, false, true) if gpus == 1 => Some(DeviceId::Gpu(0)),
        _ => None,
    }
}

impl Core {
    /// Runs `f` on `array`'s host copy as a CPU task that reads it, ordered after every
    /// earlier writer, and waits for it.
    fn read_on_host(
        &self,
        array: &Arc<RawArray>,
        f: impl FnOnce(&[u8]) + Send + 'static,
    ) -> Result<(), TaskError> {
        let Some(core) = self.this.upgrade() else {
            return Err(TaskError::ShutDown {
                task: format!("to_vec({})", array.label),
            });
        };
        let raw = array.clone();
        super::builder::TaskBuilder::<()>::new(core, format!("to_vec({})", array.label).into())
            .access(array.clone(), Access::Read)
            .on(crate::sched::Placement::Cpu)
            .cpu(move |_cx| {
                // SAFETY: this task declared a read of `raw`, so no writer runs concurrently
                // and the host copy was made valid before the body started.
                f(unsafe { raw.host_bytes() })
            })
            .spawn()
            .wait()
    }
}

impl<T: bytemuck::Pod> crate::data::Array<T> {
    /// Forgets the failures of earlier tasks on this array, so that later tasks that read it
    /// run instead of failing with [`TaskError::DependencyFailed`]. The contents are whatever
    /// the failed tasks left (a task that failed before writing left the old contents).
    ///
    /// This is a task ordered like a body-less [`crate::Access::Write`] of the whole array:
    /// it runs after every earlier access, moves no data and changes no copy. Its handle
    /// fails only if the runtime is gone. A slice's `clear_error` clears failures recorded on
    /// ranges inside that slice.
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
    /// let a = rt.array_from(vec![1u32; 4]);
    /// rt.task("bad").read_write(&a).cpu(|_| panic!("boom")).spawn().wait().unwrap_err();
    /// assert!(a.to_vec().is_err());
    /// a.clear_error().wait().unwrap();
    /// assert_eq!(a.to_vec().unwrap(), vec![1; 4]);
    /// ```
    pub fn clear_error(&self) -> super::TaskHandle<()> {
        let name = format!("clear_error({})", self.raw.label);
        let Some(core) = self
            .raw
            .owner
            .upgrade()
            .and_then(|o| o.downcast::<Core>().ok())
        else {
            return super::TaskHandle {
                node: Node::finished(
                    name.into(),
                    Err(TaskError::Data(crate::data::DataError::RuntimeGone {
                        array: self.raw.label.clone(),
                    })),
                ),
                _value: std::marker::PhantomData,
            };
        };
        super::builder::TaskBuilder::<()>::new(core, name.into())
            .access(self.raw.clone(), Access::Write)
            .spawn()
    }

    /// Copies the current contents to a `Vec`, after every task spawned earlier that writes
    /// the array (the copy is itself a host read, ordered like any task). A failed earlier
    /// writer makes this fail with [`TaskError::DependencyFailed`] naming it.
    pub fn to_vec(&self) -> Result<Vec<T>, TaskError> {
        let core = self
            .raw
            .owner
            .upgrade()
            .and_then(|o| o.downcast::<Core>().ok())
            .ok_or_else(|| {
                TaskError::Data(crate::data::DataError::RuntimeGone {
                    array: self.raw.label.clone(),
                })
            })?;
        let out: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        core.read_on_host(&self.raw, move |bytes| *sink.lock() = bytes.to_vec())?;
        let bytes = std::mem::take(&mut *out.lock());
        let mut v = vec![T::zeroed(); self.raw.len];
        bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&bytes);
        Ok(v)
    }
}
