//! `rt.task(name)…spawn()`: declaring a task's bodies, data, dependencies and placement.

use std::sync::Arc;

use bytemuck::Pod;
use std::marker::PhantomData;

use super::context::{CpuContext, GpuContext};
use super::error::TaskError;
use super::handle::{Dependency, TaskHandle};
use super::node::{
    AccessList, CpuBody, Decl, GpuBody, Node, OneOrMany, Spawned, TaskName, Value, KEY_GRAPH,
};
use super::prefetch::Prefetch;
use super::space::{TaskKey, TaskSpace};
use crate::data::array::RawArray;
use crate::data::{Access, Array, ReduceOp, Reducible, Reduction};
use crate::device::DeviceId;
use crate::runtime::core::Core;
use crate::runtime::RuntimeHandle;
use crate::sched::scheduler::{Booking, TaskShape};
use crate::sched::Placement;

/// Builds one task. Made by [`crate::RuntimeHandle::task`]; nothing runs until
/// [`TaskBuilder::spawn`].
///
/// `T` is the task's value, the return type of its bodies (both bodies return the same type).
#[must_use = "a task does nothing until spawn() is called"]
pub struct TaskBuilder<T> {
    core: Arc<Core>,
    name: TaskName,
    cpu: Option<CpuBody>,
    gpu: Option<GpuBody>,
    _value: PhantomData<fn() -> T>,
    deps: OneOrMany<Arc<Node>>,
    key: Option<(TaskSpace, TaskKey)>,
    key_deps: Vec<(TaskSpace, TaskKey)>,
    placement: Placement,
    accesses: AccessList,
    priority: i32,
}

impl<T: Send + 'static> TaskBuilder<T> {
    pub(crate) fn new(core: Arc<Core>, name: TaskName) -> Self {
        TaskBuilder {
            core,
            name,
            cpu: None,
            gpu: None,
            _value: PhantomData,
            deps: OneOrMany::Empty,
            key: None,
            key_deps: Vec::new(),
            placement: Placement::Any,
            accesses: OneOrMany::Empty,
            priority: 0,
        }
    }

    /// Runs after `dep` has finished (or, for a GPU task on the same GPU, after it is
    /// queued ahead of this one).
    pub fn after(mut self, dep: &impl Dependency) -> Self {
        self.deps.push(dep.task_ref().node);
        self
    }

    /// Runs after every task in `deps`.
    pub fn after_all<'d, D: Dependency + 'd>(
        mut self,
        deps: impl IntoIterator<Item = &'d D>,
    ) -> Self {
        self.deps
            .extend(deps.into_iter().map(|d| d.task_ref().node));
        self
    }

    /// Runs after the task spawned under `key` in `space`, even if it is spawned later.
    pub fn after_key(mut self, space: &TaskSpace, key: impl Into<TaskKey>) -> Self {
        self.key_deps.push((space.clone(), key.into()));
        self
    }

    /// Names this task `space[key]`, so that other tasks can depend on the key.
    pub fn key(mut self, space: &TaskSpace, key: impl Into<TaskKey>) -> Self {
        self.key = Some((space.clone(), key.into()));
        self
    }

    /// Where the task may run (default [`Placement::Any`]: wherever it has a body).
    pub fn on(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Its priority among ready CPU tasks (default 0; StarPU's `starpu_task::priority`):
    /// a worker looking for work takes ready tasks above 0 first, highest first, then
    /// those at 0 in the pool's usual order (its own newest first, then stealing), then
    /// those below 0. Equal priorities run in the order they became ready. A priority
    /// orders only tasks that are ready — never before their dependencies — and does not
    /// preempt a running task; GPU tasks keep their queue's order (the driver batches them
    /// as they come).
    ///
    /// Give the critical path a higher priority (in a tiled factorisation: the panel tasks
    /// of the next step before the trailing updates, as `linalg::cholesky` does).
    ///
    /// ```
    /// use hetflow::{Placement, Runtime};
    ///
    /// let rt = Runtime::builder().no_gpu().cpu_workers(1).build().unwrap();
    /// let urgent = rt.task("urgent").on(Placement::Cpu).priority(10).cpu(|_| 1).spawn();
    /// assert_eq!(urgent.wait().unwrap(), 1);
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub(crate) fn access(mut self, raw: Arc<RawArray>, access: Access) -> Self {
        if let Some(e) = self
            .accesses
            .as_mut_slice()
            .iter_mut()
            .find(|(r, _)| r.id == raw.id)
        {
            e.1 = e.1.merge(access);
        } else {
            self.accesses.push((raw, access));
        }
        self
    }

    /// The task reads `a`: it waits for earlier writers, runs alongside other readers.
    pub fn reads<U: Pod>(self, a: &Array<U>) -> Self {
        self.access(a.raw.clone(), Access::Read)
    }

    /// The task overwrites `a` entirely (old contents are not fetched).
    pub fn writes<U: Pod>(self, a: &Array<U>) -> Self {
        self.access(a.raw.clone(), Access::Write)
    }

    /// The task reads and updates `a`.
    pub fn read_write<U: Pod>(self, a: &Array<U>) -> Self {
        self.access(a.raw.clone(), Access::ReadWrite)
    }

    /// The task combines into `a` with `op`: its body writes a private partial that starts at
    /// `op`'s identity (`cx.write(&a)` on the CPU, the array's binding on a GPU). Reducers with
    /// the same `op` run concurrently; their partials are folded into `a` before its next
    /// read, write, or reduction with another op.
    pub fn reduces<U: Reducible>(self, a: &Array<U>, op: ReduceOp) -> Self {
        self.access(a.raw.clone(), Access::Reduce(Reduction::of::<U>(op)))
    }

    /// Sets the CPU body as the engine stores it (typed arguments, `args.rs`).
    pub(super) fn cpu_body(mut self, body: CpuBody) -> Self {
        self.cpu = Some(body);
        self
    }

    /// The CPU body. Its return value is the task's value.
    pub fn cpu(mut self, f: impl FnOnce(&mut CpuContext<'_>) -> T + Send + 'static) -> Self {
        self.cpu = Some(Box::new(move |cx| Ok(Box::new(f(cx)) as Value)));
        self
    }

    /// A fallible CPU body: `Err` fails the task with [`TaskError::Failed`].
    pub fn cpu_try<E>(
        mut self,
        f: impl FnOnce(&mut CpuContext<'_>) -> Result<T, E> + Send + 'static,
    ) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.cpu = Some(Box::new(move |cx| Ok(Box::new(f(cx)?) as Value)));
        self
    }

    /// The GPU body: records dispatches with [`GpuContext::dispatch`]. Its return value is the
    /// task's value, delivered once the GPU work has finished.
    pub fn gpu(mut self, f: impl FnOnce(&mut GpuContext<'_>) -> T + Send + 'static) -> Self {
        self.gpu = Some(Box::new(move |cx| Ok(Box::new(f(cx)) as Value)));
        self
    }

    /// A fallible GPU body.
    pub fn gpu_try<E>(
        mut self,
        f: impl FnOnce(&mut GpuContext<'_>) -> Result<T, E> + Send + 'static,
    ) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.gpu = Some(Box::new(move |cx| Ok(Box::new(f(cx)?) as Value)));
        self
    }

    /// Submits the task. It runs once its dependencies have finished; the handle yields its
    /// value. Errors in the declaration (duplicate key, runtime shut down) come back through
    /// the handle.
    pub fn spawn(self) -> TaskHandle<T> {
        let TaskBuilder {
            core,
            name,
            cpu,
            gpu,
            _value,
            deps,
            key,
            key_deps,
            placement,
            accesses,
            priority,
        } = self;
        let fail = |name: TaskName, e: TaskError| TaskHandle {
            node: Node::finished(name, Err(e)),
            _value: PhantomData,
        };
        if core.shut_down.load(std::sync::atomic::Ordering::Acquire) {
            let task = name.to_string();
            return fail(name, TaskError::ShutDown { task });
        }
        // Known before the node exists, so that the common task's node is made complete, in
        // one allocation and without a lock.
        let mut accesses = accesses;
        let mut failure = None;
        // An array of another runtime has copy slots for that runtime's GPUs and may be valid
        // only there: the task fails before touching it (nothing is recorded on the array).
        // Runtimes are compared by id, never reused within the process.
        if let Some((raw, _)) = accesses.iter().find(|(raw, _)| raw.owner != core.id) {
            failure = Some(TaskError::ForeignArray {
                task: name.to_string(),
                array: raw.label.clone(),
            });
            accesses = OneOrMany::Empty;
        }
        let mut value: Option<Value> = None;
        if cpu.is_none() && gpu.is_none() {
            // A task without a body is a barrier: it completes when its dependencies do. Only
            // a `()` task can produce its value without a body.
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<()>() {
                value = Some(Box::new(()));
            } else {
                failure.get_or_insert(TaskError::NoDevice {
                    task: name.to_string(),
                    reason: "the task has no CPU or GPU body and its value is not ()".into(),
                });
            }
        }
        let only = core.sched.only_device(&TaskShape {
            name: &name,
            placement: &placement,
            has_cpu: cpu.is_some(),
            has_gpu: gpu.is_some(),
            accesses: &accesses,
        });
        // Placement needs the declaration only when there is a choice to make; arrays always
        // do. One without arrays goes into the node now; one with arrays once they are
        // tracked (below), while nothing can schedule the node yet.
        let decl = (only.is_none() || !accesses.is_empty()).then(|| {
            super::recycle::decl_box(
                &core.decls,
                Decl {
                    placement,
                    accesses,
                    booking: Booking::default(),
                },
            )
        });
        let (decl_now, decl_tracked) = match decl {
            Some(d) if !d.accesses.is_empty() => (None, Some(d)),
            d => (d, None),
        };
        let accesses = decl_tracked.as_ref().map_or(&[][..], |d| &d.accesses[..]);
        // The builder's reference to the core moves into the node (no count traffic on the
        // core, which every spawning thread shares); the node lends it back below.
        let spawned = |name| Spawned {
            name,
            runtime: RuntimeHandle { core },
            cpu,
            gpu,
            value,
            only,
            decl: decl_now,
            priority,
        };
        let node = match &key {
            Some((space, k)) => match space.claim(k) {
                Ok(n) => {
                    // A key's node was made (maybe by a waiter) before its task had a name.
                    n.attach(spawned(name));
                    n
                }
                Err(e) => return fail(name, e),
            },
            None => Node::task(spawned(name)),
        };
        let Some(core) = node.core() else {
            // Unreachable: the node was just given its runtime.
            return TaskHandle {
                node,
                _value: PhantomData,
            };
        };
        let name = node.name();
        if let Some(e) = failure {
            node.fail_with(e);
        }
        // A key's node may already have waiters: each new dependency is checked for closing a
        // cycle (`Node::path_to`), under one lock for all key spawns.
        let graph = key.as_ref().map(|_| KEY_GRAPH.lock());
        let add = |d: &Arc<Node>, order_only: bool| {
            if graph.is_some() {
                if let Some(path) = node.path_to(d) {
                    let mut cycle: Vec<String> = path.iter().map(|n| n.label()).collect();
                    cycle.push(node.label());
                    tracing::debug!(task = %name, ?cycle, "spawn would close a dependency cycle");
                    node.fail_with(TaskError::KeyCycle {
                        task: node.name().to_string(),
                        cycle,
                    });
                    return;
                }
            }
            if order_only {
                node.add_order_dependency(d);
            } else {
                node.add_dependency(d);
            }
            if d.is_unspawned_key() {
                core.note_key_wait(d);
            }
        };
        for d in deps.iter() {
            add(d, false);
        }
        for (space, k) in &key_deps {
            add(&space.node(k), false);
        }
        // Inputs already final, for a task fixed on a GPU to prefetch (`prefetch.rs`).
        let prefetch_to = match only {
            Some(DeviceId::Gpu(g)) => Some(g),
            _ => None,
        };
        let mut ready_inputs = Vec::new();
        if !accesses.is_empty() {
            let mut trackers = core.trackers.0.lock();
            // Finished (successful) tasks constrain nothing any more; failed ones still poison.
            let finished = |n: &Arc<Node>| matches!(n.result(), Some(Ok(())));
            for (raw, access) in accesses.iter() {
                let reads = access.reads() && access.reduction().is_none();
                let mut all_final = true;
                trackers.of(&raw.family).record(
                    node.clone(),
                    raw.range.clone(),
                    *access,
                    finished,
                    |d| {
                        all_final &= finished(d);
                        // A whole overwrite reads nothing: an earlier failure orders it but
                        // does not fail it (see "Failure semantics" in `task/mod.rs`).
                        add(d, *access == Access::Write);
                    },
                );
                if reads && all_final && prefetch_to.is_some() {
                    ready_inputs.push(raw.clone());
                }
            }
            drop(trackers);
        }
        drop(graph);
        // Placed now (its GPU is fixed) but waiting on something: prefetch the inputs that
        // are already final (`prefetch.rs`).
        if let Some(g) = prefetch_to.filter(|_| node.waits()) {
            for array in ready_inputs {
                core.sched.drivers[g].push(Arc::new(Prefetch {
                    array,
                    core: core.clone(),
                }));
            }
        }
        if let Some(d) = decl_tracked {
            node.set_decl(d);
        }
        // Nothing can schedule the node before the guard is dropped. `core` is borrowed
        // from the handle's reference, which outlives the call.
        node.clone().release_guard(core);
        TaskHandle {
            node,
            _value: PhantomData,
        }
    }
}
