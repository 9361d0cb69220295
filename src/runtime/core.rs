//! The state every handle of one runtime shares: the scheduler, the GPUs and their
//! residency, the transfer counters, the access trackers, the kernel cache and the trace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::data::array::{OwnerId, RawArray};
use crate::data::residency::Residency;
use crate::data::{Access, TransferCounters};
use crate::device::{DeviceId, GpuDevice, Kernel, Topology};
use crate::sched::cpu::CpuPool;
use crate::sched::gpu::GpuDriver;
use crate::sched::scheduler::{DataView, Scheduler};
use crate::sched::PerfModel;
use crate::sched::Policy;
use crate::task::node::Node;
use crate::task::tracking::SharedTrackers;
use crate::task::TaskError;
use std::sync::atomic::AtomicU64;

/// Gives every runtime of the process a distinct id, never reused.
static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);

/// Every live runtime by id: how an array finds the runtime that made it. Entries are
/// removed when their core drops.
static REGISTRY: RwLock<std::collections::BTreeMap<u64, Weak<Core>>> =
    RwLock::new(std::collections::BTreeMap::new());

impl OwnerId {
    /// The runtime with this id, if it is alive.
    fn resolve(self) -> Option<Arc<Core>> {
        REGISTRY.read().get(&self.0).and_then(Weak::upgrade)
    }
}

pub(crate) struct Core {
    /// Every scheduling decision: the CPU pool, the GPU drivers, placement, dmda's backlog
    /// and model, heterogeneous stealing.
    pub(crate) sched: Arc<Scheduler>,
    gpus: Vec<Arc<GpuDevice>>,
    counters: TransferCounters,
    pub(crate) residency: Residency,
    /// Whether a trace is recording (checked without the lock on every task).
    tracing: AtomicBool,
    /// Task events while a trace records (None when not recording).
    trace: Mutex<Option<(crate::time::Instant, Vec<crate::task::trace::TaskEvent>)>>,
    pub(crate) upload: crate::data::UploadPath,
    /// The arrays' access trackers. Their one lock serialises the access-tracking part of
    /// spawns, so that every array sees tasks in one global order (no cycle can come from two
    /// threads spawning at once).
    pub(crate) trackers: SharedTrackers,
    /// This runtime's id, as its arrays name it (resolved through the registry above).
    pub(crate) id: OwnerId,
    pub(crate) kernels: Mutex<HashMap<(u64, String), Kernel>>,
    /// Declarations of finished tasks, emptied, in batches, for the next spawns to reuse: a
    /// task declaring arrays is spawned on one thread and finishes on another, and the
    /// allocator makes that box's round trip cost several hundred instructions
    /// (`task/recycle.rs`).
    pub(crate) decls: crate::task::recycle::DeclPool,
    /// Finished tasks' nodes, emptied, in batches, for the next spawns to reuse
    /// (`task/recycle.rs`).
    pub(crate) nodes: crate::task::recycle::NodePool,
    /// TaskSpace key nodes that tasks of this runtime wait for and that had no task spawned
    /// under them yet, by address (spawned ones are pruned as it grows).
    key_waits: Mutex<HashMap<usize, Arc<Node>>>,
    pub(crate) shut_down: AtomicBool,
    pub(crate) topology: Topology,
    pub(crate) this: Weak<Core>,
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
        let CoreConfig {
            policy,
            budgets,
            upload,
            model,
            stealing,
        } = config;
        let core = Arc::new_cyclic(|this| Core {
            sched: Scheduler::new(pool, drivers, policy, model, stealing),
            gpus,
            counters: TransferCounters::default(),
            residency: Residency::new(budgets),
            trace: Mutex::new(None),
            tracing: AtomicBool::new(false),
            upload,
            trackers: SharedTrackers::default(),
            id: OwnerId(NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed)),
            kernels: Mutex::new(HashMap::new()),
            decls: Default::default(),
            nodes: Default::default(),
            key_waits: Mutex::new(HashMap::new()),
            shut_down: AtomicBool::new(false),
            topology,
            this: this.clone(),
        });
        REGISTRY.write().insert(core.id.0, Arc::downgrade(&core));
        core
    }

    pub(crate) fn gpus(&self) -> &[Arc<GpuDevice>] {
        &self.gpus
    }

    pub(crate) fn counters(&self) -> &TransferCounters {
        &self.counters
    }

    /// The data-layer state the scheduler's decisions read.
    pub(crate) fn data_view(&self) -> DataView<'_> {
        DataView {
            residency: &self.residency,
            counters: &self.counters,
        }
    }

    /// Called once per node, when its last dependency is released: the scheduler places it
    /// and sends it to its device. A task no device can run fails with `NoDevice`; barriers
    /// (no body) finish on the CPU pool (cheap, and never recursive).
    pub(crate) fn schedule(self: &Arc<Self>, node: Arc<Node>) {
        self.sched.pool.quiet.started();
        // One possible device, known since spawn, and no fence: no decision, no lock.
        if let Some(target) = node.only_unfenced() {
            return self.sched.dispatch(node, target, &[], false);
        }
        let (decision, fences) = node.placement_and_fences(|shape, booking| {
            let d = self.sched.place(shape, self.data_view())?;
            *booking = d.booking;
            Ok((d.target, d.booking.steal_hint))
        });
        let (target, hint) = decision
            .unwrap_or_else(|reason| {
                node.fail_with(TaskError::NoDevice {
                    task: node.name().to_string(),
                    reason,
                });
                None
            })
            .unwrap_or((DeviceId::Cpu, false));
        self.sched.dispatch(node, target, &fences, hint);
    }

    /// Starts recording tasks and moves (clearing an earlier recording).
    pub(crate) fn start_trace(&self) {
        *self.trace.lock() = Some((crate::time::Instant::now(), Vec::new()));
        self.counters.start_trace();
        self.tracing.store(true, Ordering::Release);
    }

    /// Stops recording and returns what was recorded.
    pub(crate) fn take_trace(&self) -> crate::task::trace::Trace {
        self.tracing.store(false, Ordering::Release);
        let (origin, tasks) = self
            .trace
            .lock()
            .take()
            .unwrap_or_else(|| (crate::time::Instant::now(), Vec::new()));
        crate::task::trace::Trace {
            origin,
            tasks,
            moves: self.counters.take_trace(),
        }
    }

    /// Whether a trace is recording (every task is timed then; otherwise only the tasks
    /// dmda placed among several devices, `Booking::timed`).
    pub(crate) fn tracing(&self) -> bool {
        self.tracing.load(Ordering::Relaxed)
    }

    /// Records a finished task, if a trace is recording.
    pub(crate) fn trace_task(&self, event: impl FnOnce() -> crate::task::trace::TaskEvent) {
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

    #[cfg(not(target_arch = "wasm32"))]
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

    /// A task that was ready finished (counted by the pool, `sched/quiet.rs`).
    pub(crate) fn task_finished(&self) {
        self.sched.pool.task_finished();
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until no task is ready or running.
    pub(crate) fn wait_quiet(&self) {
        self.sched.pool.quiet.wait();
    }
}

impl Core {
    /// Spawns a CPU task that reads `array`'s host copy, ordered after every earlier writer,
    /// and runs `f` on it; the caller waits for the handle (blocking or awaiting).
    fn read_on_host(
        &self,
        array: &Arc<RawArray>,
        f: impl FnOnce(&[u8]) + Send + 'static,
    ) -> crate::task::TaskHandle<()> {
        let name = format!("to_vec({})", array.label);
        let Some(core) = self.this.upgrade() else {
            let task = name.clone();
            return crate::task::TaskHandle {
                node: Node::finished(name.into(), Err(TaskError::ShutDown { task })),
                _value: std::marker::PhantomData,
            };
        };
        let raw = array.clone();
        crate::task::TaskBuilder::<()>::new(core, name.into())
            .access(array.clone(), Access::Read)
            .on(crate::sched::Placement::Cpu)
            .cpu(move |_cx| {
                // SAFETY: this task declared a read of `raw`, so no writer runs concurrently
                // and the host copy was made valid before the body started.
                f(unsafe { raw.host_bytes() })
            })
            .spawn()
    }

    /// Resolves once no task is ready or running (the async form of `wait_quiet`).
    pub(crate) fn quiet(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.sched.pool.quiet.until_quiet()
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
    pub fn clear_error(&self) -> crate::task::TaskHandle<()> {
        let name = format!("clear_error({})", self.raw.label);
        let Some(core) = self.raw.owner.resolve() else {
            return crate::task::TaskHandle {
                node: Node::finished(
                    name.into(),
                    Err(TaskError::Data(crate::data::DataError::RuntimeGone {
                        array: self.raw.label.clone(),
                    })),
                ),
                _value: std::marker::PhantomData,
            };
        };
        crate::task::TaskBuilder::<()>::new(core, name.into())
            .access(self.raw.clone(), Access::Write)
            .spawn()
    }

    /// Copies the current contents to a `Vec`, after every task spawned earlier that writes
    /// the array (the copy is itself a host read, ordered like any task). A failed earlier
    /// writer makes this fail with [`TaskError::DependencyFailed`] naming it. Blocks; in the
    /// browser use [`crate::Array::to_vec_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec(&self) -> Result<Vec<T>, TaskError> {
        let (handle, out) = self.read_task()?;
        handle.wait()?;
        Ok(self.collect(&out))
    }

    /// [`crate::Array::to_vec`] awaited instead of blocking: the form to use in the browser
    /// (and from async code anywhere).
    pub async fn to_vec_async(&self) -> Result<Vec<T>, TaskError> {
        let (handle, out) = self.read_task()?;
        handle.await?;
        Ok(self.collect(&out))
    }

    /// The task that copies the host bytes out, and where they land.
    #[allow(clippy::type_complexity)]
    fn read_task(&self) -> Result<(crate::task::TaskHandle<()>, Arc<Mutex<Vec<u8>>>), TaskError> {
        let core = self.raw.owner.resolve().ok_or_else(|| {
            TaskError::Data(crate::data::DataError::RuntimeGone {
                array: self.raw.label.clone(),
            })
        })?;
        let out: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let handle = core.read_on_host(&self.raw, move |bytes| *sink.lock() = bytes.to_vec());
        Ok((handle, out))
    }

    fn collect(&self, out: &Mutex<Vec<u8>>) -> Vec<T> {
        let bytes = std::mem::take(&mut *out.lock());
        let mut v = vec![T::zeroed(); self.raw.len];
        bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&bytes);
        v
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        REGISTRY.write().remove(&self.id.0);
    }
}
