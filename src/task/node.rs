//! A task in the dependency graph: its counters, its dependents, its completion.
//!
//! ## Life of a node
//! `spawn` creates the node with `remaining = 1` (a guard), adds one to `remaining` for every
//! dependency that has not finished, then drops the guard. When `remaining` reaches 0 the node
//! is *ready* and [`Core::schedule`] places it. A dependency releases its dependents either at
//! completion, or — for a GPU task — as soon as it is *encoded* ("released early"): the
//! dependent then carries the fence `(gpu, batch)`; on the same GPU queue order is enough, and
//! anywhere else it waits for the fence before it runs.
//!
//! Locks are never nested: a node's state lock is held only to read or edit that node.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;

use parking_lot::{Condvar, Mutex};

use super::context::{CpuContext, GpuContext};
use super::error::TaskError;
use super::space::TaskKey;
use crate::data::array::{GpuPin, Memory, RawArray};
use crate::data::reduce::{GpuPartial, HostPartial};
use crate::data::transfer::{padded, BatchTransfers, UploadCtx};
use crate::data::{Access, DataError, Reduction};
use crate::device::DeviceId;
use crate::runtime::core::Core;
use crate::runtime::RuntimeHandle;
use crate::sched::cpu::{help_while_waiting, quiet_next_push};
use crate::sched::gpu::{on_driver_thread, GpuDriver};
use crate::sched::job::{BatchFailure, CpuJob, CpuJobRef, Encoded, Fence, GpuJob, GpuJobRef};
use crate::sched::scheduler::{Booking, TaskShape};
use crate::sched::spin_until;
use crate::sched::Placement;

/// A task's name: free for `&'static str` names.
pub(crate) type TaskName = Cow<'static, str>;

pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// A task's value, type-erased (a `()` value costs no allocation).
pub(crate) type Value = Box<dyn std::any::Any + Send>;
pub(crate) type CpuBody = Box<dyn FnOnce(&mut CpuContext<'_>) -> Result<Value, BodyError> + Send>;
pub(crate) type GpuBody = Box<dyn FnOnce(&mut GpuContext<'_>) -> Result<Value, BodyError> + Send>;

/// What a spawned task will do, taken when it runs.
pub(crate) struct Work {
    pub cpu: Option<CpuBody>,
    pub gpu: Option<GpuBody>,
    pub placement: Placement,
    pub accesses: Vec<(Arc<RawArray>, Access)>,
    /// The scheduler's bookkeeping, set when the task is placed.
    pub booking: Booking,
    /// The one device the task can run on, when there is exactly one (decided at spawn by
    /// the scheduler's rule; then placement needs no decision).
    pub only: Option<DeviceId>,
}

impl Work {
    /// The task as the scheduler sees it, and its booking, which the scheduler may update
    /// while it reads the rest (a split borrow).
    pub(crate) fn shape<'a>(&'a mut self, name: &'a str) -> (TaskShape<'a>, &'a mut Booking) {
        let Work {
            cpu,
            gpu,
            placement,
            accesses,
            booking,
            only: _,
        } = self;
        let shape = TaskShape {
            name,
            placement,
            has_cpu: cpu.is_some(),
            has_gpu: gpu.is_some(),
            accesses,
        };
        (shape, booking)
    }
}

#[derive(Default)]
struct NodeState {
    /// The result, once finished (a failure boxed: most tasks succeed, and the node stays
    /// small).
    done: Option<Result<(), Box<TaskError>>>,
    released: Option<Fence>,
    /// Tasks waiting for this one, each with whether this task's failure fails it (false
    /// for an edge that only orders: see [`Node::add_order_dependency`]).
    dependents: Vec<(Arc<Node>, bool)>,
    /// Dependents released early (at encoding), kept until completion: if the task's batch
    /// fails, those its failure fails must fail too, and they do before its fence passes.
    released_to: Vec<(Arc<Node>, bool)>,
    wakers: Vec<Waker>,
    /// The error this task completes with instead of running (a failed dependency, no device).
    fail_with: Option<Box<TaskError>>,
    fences: Vec<Fence>,
    ran_on: Option<DeviceId>,
    /// Bodies and data of a spawned task, taken when it runs.
    work: Option<Work>,
    /// The body's value, until a handle takes it.
    value: Option<Value>,
    /// GPU copies this task uses, kept from eviction until it completes.
    pins: Vec<GpuPin>,
    /// When the task started running (body start, or GPU encoding), and on which CPU worker.
    started: Option<(std::time::Instant, Option<usize>)>,
    /// Bytes of the arrays it accesses, and dmda's prediction (for the model and backlog).
    data_bytes: u64,
    predicted: Option<(usize, u64)>,
    /// A GPU reducer's partials, handed to their arrays when its batch finishes.
    gpu_partials: Vec<(Arc<RawArray>, Reduction, GpuPartial)>,
}

pub(crate) struct Node {
    name: Mutex<TaskName>,
    remaining: AtomicUsize,
    st: Mutex<NodeState>,
    cv: Condvar,
    /// The runtime this node was spawned on (set by `attach`).
    runtime: OnceLock<RuntimeHandle>,
    /// For a node of a [`super::TaskSpace`]: the space's name and the key.
    key: Option<(String, TaskKey)>,
    /// [`KEY_PLACEHOLDER`], [`KEY_SPAWNED`] or [`KEY_ABANDONED`]; plain tasks are spawned
    /// from the start.
    key_state: AtomicU8,
    /// Mirrors `st.done.is_some()` for lock-free polling by spinning waiters.
    done_flag: AtomicBool,
}

/// A TaskSpace key's node that no task was spawned under yet (others may wait for it).
const KEY_PLACEHOLDER: u8 = 0;
/// A task was spawned under the key (or the node is a plain task's).
const KEY_SPAWNED: u8 = 1;
/// A runtime whose tasks waited for the key shut down first: the node failed with
/// [`TaskError::NeverSpawned`], and a later spawn under the key gets a fresh node.
const KEY_ABANDONED: u8 = 2;

/// Serialises the dependency phase of spawns under a TaskSpace key, across runtimes, so that
/// two such spawns cannot each close half of a cycle unseen (see [`Node::path_to`]).
pub(crate) static KEY_GRAPH: Mutex<()> = Mutex::new(());

/// How long a thread outside the pool spins (yielding) for a task before it blocks: GPU round
/// trips are tens of microseconds, and waking a blocked thread on a VM costs about as much.
const SPIN_WAIT: std::time::Duration = std::time::Duration::from_micros(100);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("done", &self.is_done())
            .finish()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl Node {
    pub(crate) fn new(name: TaskName) -> Arc<Node> {
        Node::make(name, None)
    }

    /// The node of `space[key]` before a task is spawned under it.
    pub(crate) fn placeholder(space: &str, key: &TaskKey) -> Arc<Node> {
        Node::make(
            format!("{space}{key}").into(),
            Some((space.to_string(), key.clone())),
        )
    }

    fn make(name: TaskName, key: Option<(String, TaskKey)>) -> Arc<Node> {
        let state = if key.is_some() {
            KEY_PLACEHOLDER
        } else {
            KEY_SPAWNED
        };
        Arc::new(Node {
            name: Mutex::new(name),
            remaining: AtomicUsize::new(1),
            st: Mutex::new(NodeState::default()),
            cv: Condvar::new(),
            runtime: OnceLock::new(),
            key,
            key_state: AtomicU8::new(state),
            done_flag: AtomicBool::new(false),
        })
    }

    /// Claims a key's node for the task being spawned: `Err(true)` if it was abandoned
    /// (the caller makes a fresh one), `Err(false)` if a task was spawned under it already.
    pub(crate) fn try_claim(&self) -> Result<(), bool> {
        match self.key_state.compare_exchange(
            KEY_PLACEHOLDER,
            KEY_SPAWNED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(state) => Err(state == KEY_ABANDONED),
        }
    }

    /// Whether a task was spawned under this key's node (always true for a plain task).
    pub(crate) fn is_spawned(&self) -> bool {
        self.key_state.load(Ordering::Acquire) == KEY_SPAWNED
    }

    /// Whether this is a key's node that no task was spawned under (nor abandoned).
    pub(crate) fn is_unspawned_key(&self) -> bool {
        self.key_state.load(Ordering::Acquire) == KEY_PLACEHOLDER
    }

    /// Fails a key's node that no task was spawned under with [`TaskError::NeverSpawned`]
    /// (its waiters fail naming it); nothing if a task was spawned under it meanwhile.
    pub(crate) fn abandon(self: &Arc<Self>) {
        let Some((space, key)) = &self.key else {
            return;
        };
        if self
            .key_state
            .compare_exchange(
                KEY_PLACEHOLDER,
                KEY_ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            tracing::warn!(space = %space, key = %key, "no task was spawned under a key that tasks wait for");
            self.complete(Err(TaskError::NeverSpawned {
                space: space.clone(),
                key: key.to_string(),
            }));
        }
    }

    /// How the node is named in cycles and reports: `space[key]` for a key's node, else the
    /// task's name.
    pub(crate) fn label(&self) -> String {
        match &self.key {
            Some((space, key)) => format!("{space}{key}"),
            None => self.name().to_string(),
        }
    }

    /// Names of the tasks waiting for this one.
    pub(crate) fn dependent_names(&self) -> Vec<String> {
        let st = self.st.lock();
        st.dependents
            .iter()
            .map(|(d, _)| d.name().to_string())
            .collect()
    }

    /// A chain of waiting tasks from `self` to `target` (`[self, .., target]`), if there is
    /// one: then `self` waiting for `target` would close a cycle.
    ///
    /// Only a key's node can have waiters before its own dependencies are added, so only
    /// spawns under a key look (under [`KEY_GRAPH`]): the edge that closes a cycle always
    /// ends at such a node. Finished nodes have no waiters left, so the search covers only
    /// pending tasks downstream of `self`.
    pub(crate) fn path_to(self: &Arc<Self>, target: &Arc<Node>) -> Option<Vec<Arc<Node>>> {
        let mut seen = std::collections::HashSet::new();
        // (node, index of the node it was reached from)
        let mut found: Vec<(Arc<Node>, usize)> = vec![(self.clone(), usize::MAX)];
        let mut next = 0;
        seen.insert(Arc::as_ptr(self));
        while next < found.len() {
            let dependents: Vec<Arc<Node>> = {
                let st = found[next].0.st.lock();
                st.dependents.iter().map(|(d, _)| d.clone()).collect()
            };
            for d in dependents {
                if !seen.insert(Arc::as_ptr(&d)) {
                    continue;
                }
                let hit = Arc::ptr_eq(&d, target);
                found.push((d, next));
                if hit {
                    let mut path = Vec::new();
                    let mut i = found.len() - 1;
                    while i != usize::MAX {
                        path.push(found[i].0.clone());
                        i = found[i].1;
                    }
                    path.reverse();
                    return Some(path);
                }
            }
            next += 1;
        }
        None
    }

    /// A node that is already finished with `result` (spawn errors).
    pub(crate) fn finished(name: TaskName, result: Result<(), TaskError>) -> Arc<Node> {
        let n = Node::new(name);
        n.st.lock().done = Some(result.map_err(Box::new));
        n.done_flag.store(true, Ordering::Release);
        n
    }

    pub(crate) fn name(&self) -> TaskName {
        self.name.lock().clone()
    }

    pub(crate) fn set_name(&self, name: TaskName) {
        *self.name.lock() = name;
    }

    /// The shared state of the runtime this node was spawned on, once attached.
    fn core(&self) -> Option<&Arc<Core>> {
        self.runtime.get().map(|r| &r.core)
    }

    pub(crate) fn attach(&self, core: Arc<Core>, work: Work) {
        let _ = self.runtime.set(RuntimeHandle { core });
        self.st.lock().work = Some(work);
    }

    /// Runs `f` on the task's work (None for barriers and placeholders) under the node's lock,
    /// and returns the fences the node must respect, read under the same lock.
    pub(crate) fn with_work_and_fences<R>(
        &self,
        f: impl FnOnce(Option<&mut Work>) -> R,
    ) -> (R, Vec<Fence>) {
        let mut st = self.st.lock();
        let r = f(st.work.as_mut());
        (r, st.fences.clone())
    }

    /// Puts back work taken by [`Node::begin`] (the GPU driver retries the task later).
    fn restore(&self, work: Work) {
        let mut st = self.st.lock();
        st.work = Some(work);
        st.ran_on = None;
    }

    /// Takes the work and any pending failure in one lock; records `device` as where the task
    /// runs when it will run its body there.
    fn begin(&self, device: DeviceId) -> (Option<Work>, Option<TaskError>) {
        let mut st = self.st.lock();
        let work = st.work.take();
        let failure = st.fail_with.take().map(|b| *b);
        if failure.is_none() && work.is_some() {
            st.ran_on = Some(device);
            if let (Some(w), Some(core)) = (&work, self.core()) {
                if core.wants_timing() {
                    st.predicted = w.booking.predicted;
                    st.data_bytes = w.accesses.iter().map(|(r, _)| r.bytes as u64).sum();
                    st.started =
                        Some((std::time::Instant::now(), crate::sched::cpu::worker_index()));
                }
            }
        }
        (work, failure)
    }

    /// Whether the node still waits for a dependency (beyond its spawn guard).
    pub(crate) fn waits(&self) -> bool {
        self.remaining.load(Ordering::Acquire) > 1
    }

    pub(crate) fn is_done(&self) -> bool {
        self.st.lock().done.is_some()
    }

    pub(crate) fn result(&self) -> Option<Result<(), TaskError>> {
        self.st.lock().done.clone().map(|r| r.map_err(|e| *e))
    }

    pub(crate) fn ran_on(&self) -> Option<DeviceId> {
        self.st.lock().ran_on
    }

    /// Marks the task to complete with `err` instead of running (first error wins).
    pub(crate) fn fail_with(&self, err: TaskError) {
        self.st
            .lock()
            .fail_with
            .get_or_insert_with(|| Box::new(err));
    }

    fn dependency_failed(&self, dep_err: &TaskError, dep_name: &str) -> TaskError {
        let (root, cause) = match dep_err {
            TaskError::DependencyFailed { root, cause, .. } => (root.clone(), cause.clone()),
            other => (dep_name.to_string(), Arc::new(other.clone())),
        };
        TaskError::DependencyFailed {
            task: self.name().to_string(),
            root,
            cause,
        }
    }

    /// Makes `self` wait for `dep`, and fail naming it if it fails. Call before the spawn
    /// guard is dropped.
    pub(crate) fn add_dependency(self: &Arc<Self>, dep: &Arc<Node>) {
        self.add_edge(dep, true);
    }

    /// Makes `self` wait for `dep` without taking on its failure: for a task that overwrites
    /// everything `dep` left in an array (`Access::Write`), which therefore reads nothing of
    /// what `dep` did or failed to do.
    pub(crate) fn add_order_dependency(self: &Arc<Self>, dep: &Arc<Node>) {
        self.add_edge(dep, false);
    }

    fn add_edge(self: &Arc<Self>, dep: &Arc<Node>, propagate: bool) {
        if Arc::ptr_eq(self, dep) {
            self.fail_with(TaskError::SelfDependency {
                task: self.name().to_string(),
            });
            return;
        }
        enum Seen {
            Pending,
            Failed(TaskError),
            Released(Fence),
            Ok,
        }
        let seen = {
            let mut ds = dep.st.lock();
            match (&ds.done, ds.released) {
                (Some(Err(e)), _) => Seen::Failed((**e).clone()),
                (Some(Ok(())), _) => Seen::Ok,
                (None, Some(f)) => Seen::Released(f),
                (None, None) => {
                    self.remaining.fetch_add(1, Ordering::AcqRel);
                    ds.dependents.push((self.clone(), propagate));
                    Seen::Pending
                }
            }
        };
        match seen {
            Seen::Failed(e) if propagate => {
                let err = self.dependency_failed(&e, &dep.name());
                self.fail_with(err);
            }
            Seen::Released(f) => self.st.lock().fences.push(f),
            Seen::Failed(_) | Seen::Pending | Seen::Ok => {}
        }
    }

    /// Drops one count of `remaining`; schedules the node when it reaches zero.
    pub(crate) fn release_one(self: Arc<Self>) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            match self.core() {
                Some(core) => core.schedule(self.clone()),
                None => tracing::error!(task = %self.name(), "ready task without a runtime"),
            }
        }
    }

    fn dep_done(self: Arc<Self>, failure: Option<(&TaskError, &str)>, fence: Option<Fence>) {
        if let Some((e, dep_name)) = failure {
            let err = self.dependency_failed(e, dep_name);
            self.fail_with(err);
        }
        if let Some(f) = fence {
            self.st.lock().fences.push(f);
        }
        self.release_one();
    }

    /// Releases dependents before completion: the task is encoded in GPU batch `fence`. They
    /// are remembered, so that a failure of the batch reaches them (see `complete`).
    fn release_early(&self, fence: Fence) {
        let dependents = {
            let mut st = self.st.lock();
            st.released = Some(fence);
            std::mem::take(&mut st.dependents)
        };
        for (d, _) in &dependents {
            d.clone().dep_done(None, Some(fence));
        }
        self.st.lock().released_to = dependents;
    }

    /// Finishes the task: records the result, wakes waiters, releases dependents.
    pub(crate) fn complete(self: &Arc<Self>, result: Result<(), TaskError>) {
        let failure = result.as_ref().err().cloned();
        let name = if failure.is_some() {
            self.name()
        } else {
            TaskName::Borrowed("")
        };
        if let Some(e) = &failure {
            tracing::debug!(task = %name, error = %e, "task failed");
        }
        let (dependents, released_to, wakers, pins, started, ran_on, data_bytes, predicted) = {
            let mut st = self.st.lock();
            let ok = result.is_ok();
            st.done = Some(result.map_err(Box::new));
            let started = st.started.take().map(|s| (s, ok));
            self.done_flag.store(true, Ordering::Release);
            (
                std::mem::take(&mut st.dependents),
                std::mem::take(&mut st.released_to),
                std::mem::take(&mut st.wakers),
                std::mem::take(&mut st.pins),
                started,
                st.ran_on,
                st.data_bytes,
                st.predicted.take(),
            )
        };
        if let Some(core) = self.core() {
            core.sched.task_ran(
                || self.name(),
                started.map(|(s, ok)| (s.0, ok)),
                ran_on,
                data_bytes,
                predicted,
            );
        }
        drop(pins);
        if let (Some(((start, worker), ok)), Some(device), Some(core)) =
            (started, ran_on, self.core())
        {
            core.trace_task(|| super::trace::TaskEvent {
                name: self.name().to_string(),
                device,
                worker,
                start,
                end: std::time::Instant::now(),
                ok,
            });
        }
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
        if let Some(e) = &failure {
            // Released early, they wait for this task's fence (elsewhere) or are queued behind
            // it (same GPU): neither has run, and neither may run on what this task did not
            // produce. (On success the list is simply dropped.)
            for (d, propagate) in released_to {
                if propagate {
                    let err = d.dependency_failed(e, &name);
                    d.fail_with(err);
                }
            }
        }
        for (d, propagate) in dependents {
            let failure = failure.as_ref().filter(|_| propagate);
            d.dep_done(failure.map(|e| (e, &*name)), None);
        }
        if let Some(core) = self.core() {
            core.task_finished();
        }
    }

    /// Registers `w` to be woken at completion (at once if already complete).
    pub(crate) fn register_waker(&self, w: &Waker) -> bool {
        let mut st = self.st.lock();
        if st.done.is_some() {
            return true;
        }
        if !st.wakers.iter().any(|x| x.will_wake(w)) {
            st.wakers.push(w.clone());
        }
        false
    }

    /// Blocks until the task is complete. On a CPU worker, runs other tasks meanwhile.
    pub(crate) fn wait_done(self: &Arc<Self>) -> Result<(), TaskError> {
        if let Some(r) = self.result() {
            return r;
        }
        if on_driver_thread() {
            return Err(TaskError::WaitInGpuBody {
                task: self.name().to_string(),
            });
        }
        let helped = help_while_waiting(&|| self.is_done(), &|w| {
            if self.register_waker(&w) {
                w.wake();
            }
        });
        if !helped && !spin_until(SPIN_WAIT, || self.done_flag.load(Ordering::Acquire)) {
            let mut st = self.st.lock();
            while st.done.is_none() {
                self.cv.wait(&mut st);
            }
        }
        self.result().unwrap_or_else(|| {
            Err(TaskError::ShutDown {
                task: self.name().to_string(),
            })
        })
    }

    /// Turns a body's outcome into the task's result, storing its value.
    fn body_result(
        &self,
        r: std::thread::Result<Result<Value, BodyError>>,
    ) -> Result<(), TaskError> {
        match r {
            Ok(Ok(v)) => {
                self.st.lock().value = Some(v);
                Ok(())
            }
            Ok(Err(e)) => Err(TaskError::Failed {
                task: self.name().to_string(),
                error: Arc::from(e),
            }),
            Err(p) => Err(TaskError::Panicked {
                task: self.name().to_string(),
                message: panic_message(&*p),
            }),
        }
    }

    /// Takes the stored value (None if already taken, or the task produced none).
    pub(crate) fn take_value(&self) -> Option<Value> {
        self.st.lock().value.take()
    }

    /// Stores a value directly (barriers produce `()`).
    pub(crate) fn set_value(&self, v: Value) {
        self.st.lock().value = Some(v);
    }
}

impl CpuJob for Node {
    fn move_to_gpu(&self, gpu: usize) -> bool {
        self.steal_to(DeviceId::Cpu, DeviceId::Gpu(gpu), 0)
    }

    fn into_gpu_job(self: Arc<Self>) -> GpuJobRef {
        self
    }

    fn run_on_cpu(self: Arc<Self>) {
        let (work, failure) = self.begin(DeviceId::Cpu);
        if let Some(err) = failure {
            return self.complete(Err(err));
        }
        let Some(work) = work else {
            return self.complete(Ok(()));
        };
        let Some(body) = work.cpu else {
            // A task with no body at all (a barrier) completes as soon as it is ready.
            return self.complete(Ok(()));
        };
        let Some(runtime) = self.runtime.get() else {
            return self.complete(Ok(()));
        };
        let core = &runtime.core;
        let name = self.name();
        for (raw, access) in &work.accesses {
            if let Err(error) = raw.prepare_host(*access, core.gpus(), core.counters()) {
                return self.complete(Err(TaskError::TaskData {
                    task: name.to_string(),
                    error,
                }));
            }
        }
        let partials: Vec<HostPartial> = work
            .accesses
            .iter()
            .filter_map(|(raw, a)| {
                a.reduction()
                    .map(|r| HostPartial::new(raw.id, raw.bytes, r))
            })
            .collect();
        let mut cx = CpuContext::new(&name, &work.accesses, runtime, &partials);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut cx)));
        if matches!(r, Ok(Ok(_))) {
            cx.commit();
        } else {
            drop(cx);
        }
        let result = self.body_result(r);
        if result.is_ok() {
            let mut partials = partials;
            for (raw, a) in &work.accesses {
                if let Some(r) = a.reduction() {
                    if let Some(i) = partials.iter().position(|p| p.array_id == raw.id) {
                        raw.deposit_host_partial(r, partials.swap_remove(i).into_bytes());
                    }
                }
            }
        }
        quiet_next_push(|| self.complete(result));
    }
}

impl Node {
    /// Heterogeneous stealing: asks the runtime whether this queued task should move from
    /// `from` to the idle device `to`, and retargets it if so. A task that will fail anyway,
    /// or that carries a fence not yet passed (a same-GPU predecessor still running), stays.
    fn steal_to(&self, from: DeviceId, to: DeviceId, ahead_ns: u64) -> bool {
        let Some(core) = self.core() else {
            return false;
        };
        let name = self.name();
        let mut st = self.st.lock();
        if st.fail_with.is_some()
            || !st
                .fences
                .iter()
                .all(|f| core.sched.drivers[f.gpu].fence_passed(f.seq))
        {
            return false;
        }
        match st.work.as_mut() {
            Some(work) => {
                let (shape, booking) = work.shape(&name);
                core.sched
                    .steal_pays(&shape, booking, core.data_view(), (from, to), ahead_ns)
            }
            None => false,
        }
    }
}

impl GpuJob for Node {
    fn predicted_ns(&self) -> u64 {
        self.st
            .lock()
            .work
            .as_ref()
            .and_then(|w| w.booking.predicted)
            .map_or(0, |(_, ns)| ns)
    }

    fn move_to_cpu(&self, gpu: usize, ahead_ns: u64) -> bool {
        self.steal_to(DeviceId::Gpu(gpu), DeviceId::Cpu, ahead_ns)
    }

    fn into_cpu_job(self: Arc<Self>) -> Option<CpuJobRef> {
        Some(self)
    }

    fn encode(
        self: Arc<Self>,
        driver: &GpuDriver,
        seq: u64,
        may_overcommit: bool,
        transfers: &mut BatchTransfers,
    ) -> Encoded {
        let (work, failure) = self.begin(DeviceId::Gpu(driver.index));
        if let Some(err) = failure {
            self.complete(Err(err));
            return Encoded::Finished;
        }
        let (Some(mut work), Some(core)) = (work, self.core().cloned()) else {
            self.complete(Ok(()));
            return Encoded::Finished;
        };
        if work.gpu.is_none() {
            self.complete(Ok(()));
            return Encoded::Finished;
        }
        let name = self.name();
        let gpu = driver.index;
        let fail = |error: DataError| TaskError::TaskData {
            task: name.to_string(),
            error,
        };
        let working_set: u64 = work.accesses.iter().map(|(r, _)| padded(r.bytes)).sum();
        let budget = core.residency.budget(gpu);
        if working_set > budget {
            let names: Vec<&str> = work
                .accesses
                .iter()
                .map(|(r, _)| r.label.as_str())
                .collect();
            self.complete(Err(fail(DataError::OverBudget {
                array: names.join(" + "),
                bytes: working_set,
                gpu,
                budget,
            })));
            return Encoded::Finished;
        }
        let device = &driver.gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&name) });
        let mut up = UploadCtx {
            path: core.upload,
            batch: Some(transfers),
        };
        let mem = Memory {
            gpus: core.gpus(),
            counters: core.counters(),
            residency: &core.residency,
        };
        let mut buffers = Vec::with_capacity(work.accesses.len());
        let mut pins = Vec::with_capacity(work.accesses.len());
        let mut gpu_partials = Vec::new();
        for (raw, access) in &work.accesses {
            match raw.prepare_gpu(*access, gpu, &mem, may_overcommit, &mut up) {
                Ok(p) => {
                    if let (Some(r), Some(partial)) = (access.reduction(), p.partial) {
                        gpu_partials.push((raw.clone(), r, partial));
                    }
                    buffers.push((raw.id, *access, p.buffer));
                    pins.extend(p.pin);
                }
                Err(DataError::GpuMemoryBusy { .. }) => {
                    drop(pins);
                    self.restore(work);
                    return Encoded::Retry;
                }
                Err(error) => {
                    self.complete(Err(fail(error)));
                    return Encoded::Finished;
                }
            }
        }
        let Some(body) = work.gpu.take() else {
            self.complete(Ok(()));
            return Encoded::Finished;
        };
        let (r, cx_error) = {
            let mut cx = GpuContext::new(&name, &driver.gpu, gpu, &mut encoder, &buffers);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut cx)));
            (r, cx.take_error())
        };
        let commands = encoder.finish();
        let scope_error = pollster::block_on(scope.pop());
        let result = self.body_result(r).and(match (cx_error, scope_error) {
            (Some(e), _) => Err(e),
            (None, Some(e)) => Err(TaskError::Wgpu {
                task: name.to_string(),
                source: Arc::new(e),
            }),
            (None, None) => Ok(()),
        });
        if let Err(e) = result {
            self.complete(Err(e));
            return Encoded::Finished;
        }
        // Dependents are released at encode time only when nothing they do can need this
        // task's results on the host: a reducer's partial is folded there, and a member of a
        // sliced family may be flushed there for an overlapping relative.
        let early =
            gpu_partials.is_empty() && !work.accesses.iter().any(|(r, _)| r.family.has_slices());
        {
            let mut st = self.st.lock();
            st.pins = pins;
            st.gpu_partials = gpu_partials;
        }
        if early {
            self.release_early(Fence { gpu, seq });
        }
        Encoded::Commands(commands)
    }

    fn gpu_done(self: Arc<Self>, _driver: &GpuDriver, result: Result<(), BatchFailure>) {
        let partials = std::mem::take(&mut self.st.lock().gpu_partials);
        let name = self.name();
        let mut result = result.map_err(|f| TaskError::GpuBatchFailed {
            task: name.to_string(),
            gpu: f.gpu,
            batch: f.seq,
            tasks: f.jobs,
            cause: f.cause,
        });
        if result.is_ok() {
            if let Some(core) = self.core() {
                let mem = Memory {
                    gpus: core.gpus(),
                    counters: core.counters(),
                    residency: &core.residency,
                };
                for (raw, r, partial) in partials {
                    if let Err(error) = raw.deposit_gpu_partial(r, partial, &mem) {
                        result = Err(TaskError::TaskData {
                            task: name.to_string(),
                            error,
                        });
                    }
                }
            }
        }
        self.complete(result);
    }
}
