//! The [`Scheduler`]: one owner for every scheduling decision of a runtime.
//!
//! It owns the executors (the CPU pool and one driver per GPU) and decides, for each ready
//! task, where it runs: the placement rule ([`placement::candidates`], written once), the
//! memory-budget filter, the policy ([`placement::choose`]), dmda's backlog of predicted
//! work and its performance model, and heterogeneous stealing (an idle device taking a
//! queued task that finishes sooner there). It sends a placed job to its executor once the
//! GPU fences it must respect have passed.
//!
//! The task layer describes a task by a [`TaskShape`] (name, placement, bodies, accesses) and
//! keeps the scheduler's [`Booking`] for it; jobs are the opaque [`super::job`] traits.
//!
//! Invariants:
//! - a task's predicted work is on exactly one backlog from placement until it finishes or is
//!   stolen (then it moves, under the source queue's lock, to the thief's backlog);
//! - a job goes to one executor once: `dispatch` either pushes it or registers one fence
//!   waiter that dispatches it again, never both.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::cpu::CpuPool;
use super::gpu::GpuDriver;
use super::job::{CpuJob, Fence, GpuJob};
use super::perfmodel::PerfModel;
use super::placement::{self, Loads, Placement, Policy, TaskFacts, DEFAULT_BANDWIDTH};
use crate::data::array::RawArray;
use crate::data::residency::Residency;
use crate::data::transfer::padded;
use crate::data::{Access, MemorySpace, TransferCounters};
use crate::device::DeviceId;

/// The smallest exploration budget worth waking an idle GPU for (100 µs).
const EXPLORE_NUDGE_MIN_NS: f64 = 100_000.0;

/// What the scheduler needs to know about a task.
pub(crate) struct TaskShape<'a> {
    /// The task's name (dmda's model key).
    pub name: &'a str,
    /// Where the user allows it to run.
    pub placement: &'a Placement,
    /// Whether it has a CPU body.
    pub has_cpu: bool,
    /// Whether it has a GPU body.
    pub has_gpu: bool,
    /// The arrays it declared.
    pub accesses: &'a [(Arc<RawArray>, Access)],
}

/// The scheduler's bookkeeping for one placed task, kept with the task.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Booking {
    /// dmda's prediction: (backlog slot, nanoseconds), on that backlog until it finishes.
    pub predicted: Option<(u32, u64)>,
    /// The exploration's debit (nanoseconds) when dmda placed the task to learn; 0 if not.
    pub explore_ns: u64,
    /// Set by dmda when, at placement, the task would already finish sooner on another
    /// device once that device is idle: worth waking an idle device to steal it.
    pub steal_hint: bool,
    /// dmda chose among several devices: the run is timed for its model.
    pub timed: bool,
}

/// Tasks moved by heterogeneous stealing.
#[derive(Debug, Default)]
pub(crate) struct StealCounts {
    /// Ready tasks an idle CPU worker took from a GPU's queue.
    pub to_cpu: AtomicU64,
    /// Ready tasks an idle GPU took from the CPU pool's queues.
    pub to_gpu: AtomicU64,
}

/// The data-layer state a decision reads: memory budgets and measured link bandwidths.
#[derive(Clone, Copy)]
pub(crate) struct DataView<'a> {
    pub residency: &'a Residency,
    pub counters: &'a TransferCounters,
}

/// What [`Scheduler::add_idle_hook`] installed, per executor.
#[derive(Debug)]
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct IdleHookIds {
    cpu: u64,
    gpus: Vec<u64>,
}

/// Where a task runs, and its booking.
#[derive(Debug)]
pub(crate) struct Decision {
    pub target: DeviceId,
    pub booking: Booking,
}

/// Every scheduling decision of one runtime (see the module docs).
pub(crate) struct Scheduler {
    pub(crate) pool: Arc<CpuPool>,
    pub(crate) drivers: Vec<Arc<GpuDriver>>,
    pub(crate) policy: Policy,
    /// dmda's performance model.
    pub(crate) model: PerfModel,
    /// Predicted nanoseconds of placed, unfinished work, indexed by `MemorySpace::slot`.
    backlog: Vec<AtomicU64>,
    /// Whether idle devices take ready tasks queued on busy ones.
    stealing: bool,
    /// The exploration budget (ns) at which idle GPUs are next nudged (`nudge_explorers`).
    explore_nudge_at: AtomicU64,
    pub(crate) steals: StealCounts,
}

impl Scheduler {
    /// A scheduler over `pool` and `drivers`. Stealing applies under dmda with a GPU only.
    pub(crate) fn new(
        pool: Arc<CpuPool>,
        drivers: Vec<Arc<GpuDriver>>,
        policy: Policy,
        model: PerfModel,
        stealing: bool,
    ) -> Arc<Scheduler> {
        let stealing = stealing && policy == Policy::Dmda && !drivers.is_empty();
        let sched = Arc::new(Scheduler {
            backlog: (0..=drivers.len()).map(|_| AtomicU64::new(0)).collect(),
            pool,
            drivers,
            policy,
            model,
            stealing,
            explore_nudge_at: AtomicU64::new(0),
            steals: StealCounts::default(),
        });
        if stealing {
            sched.install_stealing();
        }
        sched
    }

    /// Gives the CPU pool and every GPU driver their steal hooks. The hooks hold the
    /// scheduler weakly: the pool and drivers must not keep it alive.
    fn install_stealing(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.pool.set_steal_hook(Box::new(move || {
            let s = weak.upgrade()?;
            s.drivers
                .iter()
                .filter(|d| d.queued() > 0)
                .find_map(|d| d.steal_for_cpu())
                .inspect(|_| {
                    s.steals.to_cpu.fetch_add(1, Ordering::Relaxed);
                })
        }));
        for d in &self.drivers {
            let weak = Arc::downgrade(self);
            d.set_steal_hook(Box::new(move |gpu| {
                let s = weak.upgrade()?;
                // Only a saturated pool has work worth taking: with a worker idle, a queued
                // job starts on the CPU at once.
                if s.pool.idle_workers() > 0 || s.pool.queued_anywhere() == 0 {
                    return None;
                }
                s.pool.steal_for_gpu(gpu).map(|job| {
                    s.steals.to_gpu.fetch_add(1, Ordering::Relaxed);
                    job.into_gpu_job()
                })
            }));
        }
    }

    /// Installs `hook` on every executor (native only: the distributed runtime's pacing): CPU workers call it when they run out of work, GPU
    /// drivers when they go from busy to idle (`hooks.rs`). Returns the ids to remove it by.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn add_idle_hook(&self, hook: Arc<dyn Fn() + Send + Sync>) -> IdleHookIds {
        let h = hook.clone();
        let cpu = self.pool.add_idle_hook(Box::new(move || h()));
        let gpus = self
            .drivers
            .iter()
            .map(|d| {
                let h = hook.clone();
                d.add_idle_hook(Box::new(move || h()))
            })
            .collect();
        IdleHookIds { cpu, gpus }
    }

    /// Removes a hook [`Scheduler::add_idle_hook`] installed.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn remove_idle_hook(&self, ids: &IdleHookIds) {
        self.pool.remove_idle_hook(ids.cpu);
        for (d, id) in self.drivers.iter().zip(&ids.gpus) {
            d.remove_idle_hook(*id);
        }
    }

    /// The one device a task can run on, when there is exactly one (no allocation, no load
    /// query): decided at spawn, so placing such a task needs no decision, and where the task
    /// layer prefetches.
    #[inline]
    pub(crate) fn only_device(&self, shape: &TaskShape<'_>) -> Option<DeviceId> {
        placement::only_device(
            shape.placement,
            shape.has_cpu,
            shape.has_gpu,
            self.drivers.len(),
        )
    }

    /// The devices a task may run on: what its placement and bodies allow, less the GPUs
    /// whose memory budget its working set exceeds when another device can run it (there it
    /// could only fail with `OverBudget`).
    fn candidates(
        &self,
        shape: &TaskShape<'_>,
        data: DataView<'_>,
    ) -> Result<Vec<DeviceId>, String> {
        let mut c = placement::candidates(
            shape.placement,
            shape.has_cpu,
            shape.has_gpu,
            self.drivers.len(),
        )?;
        if c.len() > 1 && c.iter().any(|d| matches!(d, DeviceId::Gpu(_))) {
            let working_set: u64 = shape.accesses.iter().map(|(r, _)| padded(r.bytes)).sum();
            let fits = |d: &DeviceId| match d {
                DeviceId::Gpu(i) => working_set <= data.residency.budget(*i),
                DeviceId::Cpu => true,
            };
            if c.iter().any(fits) {
                c.retain(fits);
            }
        }
        Ok(c)
    }

    /// Where a ready task runs, booking dmda's prediction on the chosen device's backlog.
    /// `Err` says why no device can run it.
    pub(crate) fn place(
        &self,
        shape: &TaskShape<'_>,
        data: DataView<'_>,
    ) -> Result<Decision, String> {
        let mut booking = Booking::default();
        let c = self.candidates(shape, data)?;
        if let [target] = c[..] {
            // One device: nothing to decide, nothing to book.
            return Ok(Decision { target, booking });
        }
        let policy = self.policy;
        // Only locality and dmda look at the task's name and data.
        let facts = if matches!(policy, Policy::Locality | Policy::Dmda) {
            self.facts(shape, &c)
        } else {
            TaskFacts {
                name: Cow::Borrowed(""),
                bytes: 0,
                missing: Vec::new(),
            }
        };
        let choice = placement::choose(policy, &c, &self.loads(data), &facts, &self.model);
        let t = choice.device;
        if policy == Policy::Dmda {
            booking.timed = true;
            // Never 0 for an exploration: `try_explore` debits at least 1 ns.
            booking.explore_ns = choice.explore.map_or(0, |x| x.debited_ns);
            if let Some(ns) = choice.predicted_ns {
                let slot = MemorySpace::of(t).slot();
                self.book(slot, ns);
                booking.predicted = Some((slot as u32, ns));
                if self.stealing && booking.explore_ns == 0 {
                    booking.steal_hint = self.steal_hint(&facts, &c, t, ns);
                }
            }
        }
        Ok(Decision { target: t, booking })
    }

    /// Sends a placed job to its device once every fence it must respect has passed (a GPU
    /// job on the fence's own GPU is ordered by that GPU's queue and goes at once).
    pub(crate) fn dispatch<J>(
        self: &Arc<Self>,
        job: Arc<J>,
        target: DeviceId,
        fences: &[Fence],
        steal_hint: bool,
    ) where
        J: CpuJob + GpuJob + 'static,
    {
        let pending = fences
            .iter()
            .find(|f| target != DeviceId::Gpu(f.gpu) && !self.drivers[f.gpu].fence_passed(f.seq));
        if let Some(f) = pending {
            let sched = self.clone();
            let rest: Vec<Fence> = fences.to_vec();
            self.drivers[f.gpu].on_fence(
                f.seq,
                Box::new(move || sched.dispatch(job, target, &rest, steal_hint)),
            );
            return;
        }
        let hint = self.stealing && steal_hint;
        match target {
            DeviceId::Gpu(i) => {
                let behind = hint && !self.drivers[i].is_idle();
                self.drivers[i].push(job);
                // A sleeping worker may want this job: the GPU is behind.
                if behind && self.pool.idle_workers() > 0 {
                    self.pool.nudge();
                }
            }
            DeviceId::Cpu => {
                match job.priority() {
                    0 => self.pool.push(job),
                    p => self.pool.push_ranked(job, p),
                }
                // An idle GPU may want this job: every worker is busy.
                if hint && self.pool.idle_workers() == 0 {
                    if let Some(d) = self.drivers.iter().find(|d| d.is_idle()) {
                        d.nudge();
                    }
                }
            }
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

    /// Whether backlog `slot` is a GPU whose kernels run on the CPU workers' cores.
    fn shares_cpu(&self, slot: usize) -> bool {
        slot > 0 && self.model.shares_cpu_cores(DeviceId::Gpu(slot - 1))
    }

    /// Puts `ns` of predicted work on backlog `slot`; work on a software adapter is on the
    /// CPU's backlog too, since it runs on the same cores.
    fn book(&self, slot: usize, ns: u64) {
        self.backlog[slot].fetch_add(ns, Ordering::AcqRel);
        if self.shares_cpu(slot) {
            self.backlog[0].fetch_add(ns, Ordering::AcqRel);
        }
    }

    /// Takes `ns` of predicted work off backlog `slot` (finished or moved), as booked.
    fn unbook(&self, slot: usize, ns: u64) {
        let take = |b: &AtomicU64| {
            let _ = b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(ns))
            });
        };
        take(&self.backlog[slot]);
        if self.shares_cpu(slot) {
            take(&self.backlog[0]);
        }
    }

    /// Measured bytes per nanosecond into each memory space (by `MemorySpace::slot`); the
    /// default where a link was never used or the policy is not dmda.
    fn bandwidths(&self, counters: &TransferCounters) -> Vec<f64> {
        let mut bandwidth = vec![DEFAULT_BANDWIDTH; 1 + self.drivers.len()];
        if self.policy == Policy::Dmda {
            for ((_, to), l) in counters.snapshot() {
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
        shape: &TaskShape<'_>,
        booking: &mut Booking,
        data: DataView<'_>,
        (from, to): (DeviceId, DeviceId),
        ahead_ns: u64,
    ) -> bool {
        let allowed = self.candidates(shape, data).is_ok_and(|c| c.contains(&to));
        if !allowed {
            return false;
        }
        let name = shape.name;
        let facts = self.facts(shape, &[to]);
        let Some(run_to) = self.model.estimate(name, facts.bytes, to) else {
            // The idle device is not calibrated for this kind: measuring it here costs no
            // latency where the task waits behind others (the source is saturated), and is
            // paid from the exploration budget like any exploration.
            return self.explore_by_steal(name, facts.bytes, booking, to);
        };
        let Some(run_from) = self.model.estimate(name, facts.bytes, from) else {
            return false;
        };
        let (run_from, run_to) = (run_from.as_nanos() as f64, run_to.as_nanos() as f64);
        // A software adapter runs on the cores of the saturated pool it would steal from: it
        // frees no capacity, so it only pays if it does the work in less time.
        if self.model.shares_cpu_cores(to) && from == DeviceId::Cpu && run_to * 1.1 >= run_from {
            return false;
        }
        let from_finish = match from {
            // Queued on a GPU: the work ahead of it in that queue, then its own run.
            DeviceId::Gpu(_) => ahead_ns as f64 + run_from,
            // Queued on the saturated pool: the pool's backlog (this task included) spread
            // over its workers.
            DeviceId::Cpu => self.queue_wait_ns(DeviceId::Cpu).max(run_from),
        };
        let slot_to = MemorySpace::of(to).slot();
        let bw = self
            .bandwidths(data.counters)
            .get(slot_to)
            .copied()
            .unwrap_or(DEFAULT_BANDWIDTH);
        let to_finish = facts.missing[0] as f64 / bw + run_to;
        if to_finish * 1.1 >= from_finish {
            return false;
        }
        self.rebook(booking, to, run_to as u64);
        tracing::debug!(task = name, ?from, ?to, to_finish, from_finish, "stolen");
        true
    }

    /// Heterogeneous stealing as calibration: the idle device `to` takes a queued task of a
    /// kind it has fewer than `MIN_SAMPLES` measurements of, when the exploration budget pays
    /// for its predicted cost there (`perfmodel.rs`, "Calibration with bounded regret"). The
    /// booking moves to `to` and is marked as an exploration, settled when the task finishes.
    fn explore_by_steal(
        &self,
        name: &str,
        bytes: u64,
        booking: &mut Booking,
        to: DeviceId,
    ) -> bool {
        if booking.explore_ns > 0 {
            return false;
        }
        let Some(p) = self.model.predict(name, bytes, to) else {
            return false;
        };
        // Against where the task is queued (no prediction there: nothing to compare with).
        let here = booking.predicted.map_or(f64::INFINITY, |(_, ns)| ns as f64);
        if !p.worth_probing(p.ns, here) {
            return false;
        }
        let Some(x) = self.model.try_explore(name, bytes, to, p.ns, false) else {
            return false;
        };
        self.rebook(booking, to, p.ns as u64);
        booking.explore_ns = x.debited_ns;
        booking.timed = true;
        tracing::debug!(task = name, ?to, predicted_ns = p.ns, "stolen to explore");
        true
    }

    /// Moves a task's predicted work from the backlog it is booked on to `to`'s (`ns` there).
    fn rebook(&self, booking: &mut Booking, to: DeviceId, ns: u64) {
        if let Some((slot, ns)) = booking.predicted.take() {
            self.unbook(slot as usize, ns);
        }
        let slot_to = MemorySpace::of(to).slot();
        self.book(slot_to, ns);
        booking.predicted = Some((slot_to as u32, ns));
    }

    /// After a timed task: when the exploration budget has grown to twice what it was at the
    /// last nudge, wake the idle GPUs while the pool has queued work, so that one may take a
    /// task of a kind it was never measured on (`explore_by_steal`). Idle CPU workers look by
    /// themselves.
    fn nudge_explorers(&self) {
        if !self.stealing || self.pool.queued_anywhere() == 0 {
            return;
        }
        let budget = self.model.exploration_budget_ns();
        let at = self.explore_nudge_at.load(Ordering::Relaxed) as f64;
        if budget < at.max(EXPLORE_NUDGE_MIN_NS) {
            return;
        }
        let next = (2.0 * budget) as u64;
        if self
            .explore_nudge_at
            .compare_exchange(at as u64, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        for d in self.drivers.iter().filter(|d| d.is_idle()) {
            d.nudge();
        }
    }

    fn loads(&self, data: DataView<'_>) -> Loads {
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
            bandwidth: self.bandwidths(data.counters),
        }
    }

    /// What the locality and dmda policies need to know about a task: its name and size, and
    /// per candidate the bytes of its inputs not valid there.
    fn facts<'a>(&self, shape: &TaskShape<'a>, cands: &[DeviceId]) -> TaskFacts<'a> {
        let mut missing = vec![0u64; cands.len()];
        for (raw, _) in shape.accesses.iter().filter(|(_, a)| a.reads()) {
            let st = raw.state.lock();
            for (m, d) in missing.iter_mut().zip(cands) {
                if !st.copies.get(MemorySpace::of(*d)).is_valid() {
                    *m += raw.bytes as u64;
                }
            }
        }
        TaskFacts {
            name: Cow::Borrowed(shape.name),
            bytes: shape.accesses.iter().map(|(r, _)| r.bytes as u64).sum(),
            missing,
        }
    }

    /// Bookkeeping when a task finishes: its predicted work leaves the backlog, and under
    /// dmda its run time (`ran`: how long, and whether it is a clean sample) feeds the
    /// performance model, and an exploration's debit becomes its real cost.
    pub(crate) fn task_ran<'n>(
        &self,
        name: impl FnOnce() -> Cow<'n, str>,
        ran: Option<(std::time::Duration, bool)>,
        ran_on: Option<DeviceId>,
        bytes: u64,
        booked: (Option<(u32, u64)>, u64),
    ) {
        let (predicted, explore_ns) = booked;
        if let Some((slot, ns)) = predicted {
            self.unbook(slot as usize, ns);
        }
        if self.policy != Policy::Dmda {
            return;
        }
        let took = ran.map(|(t, _)| t);
        if explore_ns > 0 {
            self.model.explored(
                super::perfmodel::Exploration {
                    debited_ns: explore_ns,
                },
                took,
            );
        }
        if let (Some((_, true)), Some(device), Some(took)) = (ran, ran_on, took) {
            self.model.record(&name(), bytes, device, took);
            self.nudge_explorers();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::job::FnJob;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    fn cpu_only(policy: Policy) -> Arc<Scheduler> {
        let pool = CpuPool::start(2).expect("pool");
        Scheduler::new(pool, Vec::new(), policy, PerfModel::default(), true)
    }

    fn shape<'a>(placement: &'a Placement, cpu: bool, gpu: bool) -> TaskShape<'a> {
        TaskShape {
            name: "t",
            placement,
            has_cpu: cpu,
            has_gpu: gpu,
            accesses: &[],
        }
    }

    #[test]
    fn places_on_the_only_device_and_refuses_what_cannot_run() {
        let s = cpu_only(Policy::Eager);
        let (residency, counters) = (Residency::new(Vec::new()), TransferCounters::default());
        let data = DataView {
            residency: &residency,
            counters: &counters,
        };
        let any = Placement::Any;
        let d = s.place(&shape(&any, true, true), data).unwrap();
        assert_eq!(d.target, DeviceId::Cpu);
        assert!(d.booking.predicted.is_none() && !d.booking.steal_hint);
        // A GPU-only task on a runtime without GPUs: the reason names what was asked.
        let err = s.place(&shape(&any, false, true), data).unwrap_err();
        assert!(
            err.contains("a GPU body only") && err.contains("0 GPU"),
            "{err}"
        );
        let gpu1 = Placement::Gpu(1);
        assert!(s.place(&shape(&gpu1, true, true), data).is_err());
        s.pool.shutdown();
    }

    #[test]
    fn dispatch_runs_a_job_once_on_its_device() {
        let s = cpu_only(Policy::Eager);
        let (tx, rx) = mpsc::channel();
        // Counts its runs and reports each on the channel.
        let runs = Arc::new(AtomicUsize::new(0));
        let (r2, done) = (runs.clone(), parking_lot::Mutex::new(tx));
        let job = Arc::new(FnJob(Box::new(move || {
            let n = r2.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = done.lock().send(n);
        })));
        s.dispatch(job, DeviceId::Cpu, &[], false);
        let n = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the job ran");
        assert_eq!(n, 1);
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(50))
            .is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        s.pool.shutdown();
    }

    #[test]
    fn finished_work_leaves_the_backlog() {
        let s = cpu_only(Policy::Dmda);
        s.backlog[0].fetch_add(500, Ordering::AcqRel);
        s.task_ran(|| Cow::Borrowed("t"), None, None, 0, (Some((0, 200)), 0));
        assert_eq!(s.backlog[0].load(Ordering::Acquire), 300);
        // More than is booked never wraps around.
        s.task_ran(|| Cow::Borrowed("t"), None, None, 0, (Some((0, 1000)), 0));
        assert_eq!(s.backlog[0].load(Ordering::Acquire), 0);
        // Clean timed runs teach dmda's model; a run marked unclean does not.
        assert!(s.model.estimate("t", 64, DeviceId::Cpu).is_none());
        for _ in 0..crate::sched::perfmodel::MIN_SAMPLES {
            s.task_ran(
                || Cow::Borrowed("t"),
                Some((std::time::Duration::from_micros(5), false)),
                Some(DeviceId::Cpu),
                64,
                (None, 0),
            );
        }
        assert!(s.model.estimate("t", 64, DeviceId::Cpu).is_none());
        for _ in 0..crate::sched::perfmodel::MIN_SAMPLES {
            s.task_ran(
                || Cow::Borrowed("t"),
                Some((std::time::Duration::from_micros(5), true)),
                Some(DeviceId::Cpu),
                64,
                (None, 0),
            );
        }
        assert!(s.model.estimate("t", 64, DeviceId::Cpu).is_some());
        s.pool.shutdown();
    }
}
