//! [`Runtime`] and [`RuntimeHandle`]: creating arrays and kernels, spawning tasks, counters,
//! shutting down.

use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytemuck::Pod;

use super::builder::RuntimeBuilder;
use super::core::Core;
use crate::data::array::RawArray;
use crate::data::{Array, LinkStats, MemorySpace};
use crate::device::{DeviceError, DeviceId, GpuDevice, Kernel, Topology};
use crate::sched::Policy;
use crate::task::{TaskBuilder, TaskError, TaskHandle};

/// A cloneable handle to a runtime: spawn tasks, create arrays and kernels. Bodies get one
/// from their context; it does not keep the runtime's threads alive.
#[derive(Clone)]
pub struct RuntimeHandle {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("cpu_workers", &self.core.sched.pool.workers())
            .field("gpus", &self.core.gpus().len())
            .finish()
    }
}

/// Transfer counters of a runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes and copies per (from, to) link, e.g. `(Host, Gpu(0))`.
    pub links: std::collections::BTreeMap<(MemorySpace, MemorySpace), LinkStats>,
    /// Number of GPU submissions per GPU (each carries a batch of ready tasks).
    pub gpu_submits: Vec<u64>,
    /// Evictions, write-backs and memory in use per GPU.
    pub memory: crate::data::MemoryStats,
    /// Ready tasks an idle CPU worker took from a GPU's queue (heterogeneous stealing).
    pub steals_to_cpu: u64,
    /// Ready tasks an idle GPU took from the CPU pool's queues.
    pub steals_to_gpu: u64,
    /// Tasks dmda placed on a device to learn its cost (explorations), per device.
    pub explorations: std::collections::BTreeMap<DeviceId, u64>,
}

impl Stats {
    /// Counters of one link (zero if unused).
    pub fn link(&self, from: MemorySpace, to: MemorySpace) -> LinkStats {
        self.links.get(&(from, to)).copied().unwrap_or_default()
    }
}

/// How often an idle runtime writes a changed performance model at most.
const MODEL_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl RuntimeHandle {
    /// Starts declaring a task named `name`.
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().build().unwrap();
    /// let h = rt.task("answer").cpu(|_| 6 * 7).spawn();
    /// assert_eq!(h.wait().unwrap(), 42);
    /// ```
    pub fn task<T: Send + 'static>(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> TaskBuilder<T> {
        TaskBuilder::new(self.core.clone(), name.into())
    }

    /// A managed array holding `data`, valid on the host.
    pub fn array_from<T: Pod>(&self, data: Vec<T>) -> Array<T> {
        self.make_array(None, data.len(), Some(bytemuck::cast_slice(&data)))
    }

    /// A managed array holding a copy of `data`, valid on the host.
    pub fn array_from_slice<T: Pod>(&self, data: &[T]) -> Array<T> {
        self.make_array(None, data.len(), Some(bytemuck::cast_slice(data)))
    }

    /// A managed array of zeros with an n-d shape (row-major), valid on the host.
    pub fn array_nd<T: Pod>(&self, shape: &[usize]) -> Array<T> {
        let a = self.array(shape.iter().product());
        // The product matches by construction.
        a.reshape(shape).unwrap_or(a)
    }

    /// Parla's `copy`: a task that writes `src`'s contents into `dst`, ordered with every
    /// other access to both. It runs where `src` is valid (a device-to-device copy on a GPU, a
    /// memcpy on the CPU), so no extra move is made to perform it.
    pub fn copy<T: Pod>(&self, src: &Array<T>, dst: &Array<T>) -> TaskHandle<()> {
        let states = src.states();
        let place = if states.get(MemorySpace::Host).is_valid() {
            DeviceId::Cpu
        } else {
            states
                .iter()
                .find_map(|(sp, c)| match sp {
                    MemorySpace::Gpu(i) if c.is_valid() => Some(DeviceId::Gpu(i)),
                    _ => None,
                })
                .unwrap_or(DeviceId::Cpu)
        };
        self.copy_on(src, dst, place)
    }

    /// Parla's `clone_here` for a device chosen by the caller: a new array with `a`'s
    /// contents, made valid on `device` by a copy task there.
    pub fn clone_to<T: Pod>(&self, a: &Array<T>, device: DeviceId) -> Array<T> {
        let out = self.make_array(Some(format!("{}@{device}", a.label())), a.len(), None);
        drop(self.copy_on(a, &out, device));
        out
    }

    /// [`RuntimeHandle::copy`] on a device chosen by the caller: a copy task placed on
    /// `device` (the source moves there first if it is not valid there). Arrays of different
    /// lengths give a task that fails with [`crate::DataError::LengthMismatch`].
    pub fn copy_on<T: Pod>(
        &self,
        src: &Array<T>,
        dst: &Array<T>,
        device: DeviceId,
    ) -> TaskHandle<()> {
        let name = format!("copy({} -> {} on {device})", src.label(), dst.label());
        if src.len() != dst.len() {
            return TaskHandle {
                node: crate::task::node::Node::finished(
                    name.clone().into(),
                    Err(crate::TaskError::TaskData {
                        task: name,
                        error: crate::DataError::LengthMismatch {
                            array: dst.label().to_string(),
                            expected: dst.len(),
                            got: src.len(),
                        },
                    }),
                ),
                _value: std::marker::PhantomData,
            };
        }
        let place = device;
        let (s1, d1, s2, d2) = (src.clone(), dst.clone(), src.clone(), dst.clone());
        let bytes = crate::data::transfer::padded(src.bytes());
        self.task(name)
            .reads(src)
            .writes(dst)
            .on(place.into())
            .cpu(move |cx| cx.write(&d1).copy_from_slice(cx.read(&s1)))
            .gpu(move |cx| {
                if let (Some(s), Some(d)) = (cx.buffer(&s2).cloned(), cx.buffer(&d2).cloned()) {
                    cx.encoder().copy_buffer_to_buffer(&s, 0, &d, 0, bytes);
                }
            })
            .spawn()
    }
    /// A managed array of `len` zeros, valid on the host.
    pub fn array<T: Pod>(&self, len: usize) -> Array<T> {
        self.make_array(None, len, None)
    }

    /// A managed array holding `data`, with a label used in errors and overviews.
    pub fn array_named<T: Pod>(&self, label: impl Into<String>, data: Vec<T>) -> Array<T> {
        self.make_array(
            Some(label.into()),
            data.len(),
            Some(bytemuck::cast_slice(&data)),
        )
    }

    fn make_array<T: Pod>(
        &self,
        label: Option<String>,
        len: usize,
        init: Option<&[u8]>,
    ) -> Array<T> {
        Array::from_raw(RawArray::new(
            label,
            len,
            std::mem::size_of::<T>(),
            init,
            1 + self.core.gpus().len(),
            self.core.id,
        ))
    }

    /// Compiles a WGSL compute kernel for every GPU of the runtime, once: a second call with
    /// the same source and entry returns the cached kernel. A WGSL error returns
    /// [`DeviceError::Compile`] with the compiler's message.
    pub fn kernel(&self, wgsl: &str, entry: &str) -> Result<Kernel, DeviceError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        wgsl.hash(&mut h);
        let key = (h.finish(), entry.to_string());
        if let Some(k) = self.core.kernels.lock().get(&key) {
            return Ok(k.clone());
        }
        let k = Kernel::compile(wgsl, entry, self.core.gpus())?;
        self.core.kernels.lock().insert(key, k.clone());
        Ok(k)
    }

    /// The devices this runtime uses.
    pub fn topology(&self) -> &Topology {
        &self.core.topology
    }

    /// Number of GPUs this runtime uses.
    pub fn gpu_count(&self) -> usize {
        self.core.gpus().len()
    }

    /// GPU `index` of this runtime, for direct wgpu use beside its tasks (a baseline, a
    /// custom pass); `None` past [`RuntimeHandle::gpu_count`].
    pub fn gpu(&self, index: usize) -> Option<&Arc<GpuDevice>> {
        self.core.gpus().get(index)
    }

    /// Every device tasks can be placed on: each GPU, then the CPU.
    pub fn devices(&self) -> Vec<DeviceId> {
        (0..self.gpu_count())
            .map(DeviceId::Gpu)
            .chain(std::iter::once(DeviceId::Cpu))
            .collect()
    }

    /// dmda's performance model (per task name, size and device).
    pub fn perf_model(&self) -> &crate::sched::PerfModel {
        &self.core.sched.model
    }

    /// The placement policy.
    pub fn policy(&self) -> Policy {
        self.core.sched.policy
    }

    /// Transfer counters, stealing and calibration so far.
    pub fn stats(&self) -> Stats {
        Stats {
            links: self.core.counters().snapshot(),
            gpu_submits: self
                .core
                .sched
                .drivers
                .iter()
                .map(|d| d.submits())
                .collect(),
            memory: self.core.residency.stats(),
            steals_to_cpu: self.core.sched.steals.to_cpu.load(Ordering::Relaxed),
            steals_to_gpu: self.core.sched.steals.to_gpu.load(Ordering::Relaxed),
            explorations: self
                .devices()
                .into_iter()
                .map(|d| (d, self.core.sched.model.explorations(d)))
                .collect(),
        }
    }

    /// Writes the performance model to its store now, if it is persisted and changed (it
    /// is also written when the runtime goes idle, at most once a second, and when it is
    /// dropped).
    pub fn save_perf_model(&self) {
        self.core.sched.model.persist(std::time::Duration::ZERO);
    }

    /// Starts recording every task (name, device, start, end) and every move (link, bytes,
    /// start, end), clearing an earlier recording.
    pub fn start_trace(&self) {
        self.core.start_trace();
    }

    /// Stops recording and returns the trace; [`crate::task::Trace::write_chrome_json`]
    /// writes it for Perfetto (ui.perfetto.dev) or chrome://tracing.
    pub fn take_trace(&self) -> crate::task::Trace {
        self.core.take_trace()
    }

    /// Resolves once no task is ready or running: [`RuntimeHandle::wait_idle`] awaited
    /// instead of blocking (the form to use in the browser).
    pub async fn idle(&self) {
        self.core.quiet().await
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until no task is ready or running. Tasks whose dependencies were never spawned
    /// (a TaskSpace key nobody spawns) do not count: [`RuntimeHandle::wait_idle_checked`]
    /// reports them.
    pub fn wait_idle(&self) {
        self.core.wait_quiet();
        self.core.sched.model.persist(MODEL_SAVE_INTERVAL);
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Like [`RuntimeHandle::wait_idle`], then checks that no task waits for a TaskSpace key
    /// that no task was spawned under: such tasks would never run (dropping the runtime fails
    /// them with a [`TaskError::DependencyFailed`] whose cause is
    /// [`TaskError::NeverSpawned`]).
    ///
    /// # Errors
    /// [`TaskError::Stalled`] listing those keys and the tasks that wait for them directly.
    /// The check sees the spawns made so far: a key another thread is about to spawn may be
    /// listed.
    ///
    /// ```
    /// use hetflow::{Runtime, TaskError, TaskSpace};
    /// let rt = Runtime::builder().no_gpu().build().unwrap();
    /// let ts = TaskSpace::new("T");
    /// let late = rt.task("late").after_key(&ts, 0).cpu(|_| ()).spawn();
    /// assert!(matches!(rt.wait_idle_checked(), Err(TaskError::Stalled { .. })));
    /// rt.task("first").key(&ts, 0).cpu(|_| ()).spawn();
    /// rt.wait_idle_checked().unwrap();
    /// late.wait().unwrap();
    /// ```
    pub fn wait_idle_checked(&self) -> Result<(), TaskError> {
        self.core.wait_quiet();
        self.core.sched.model.persist(MODEL_SAVE_INTERVAL);
        let stuck = self.core.unspawned_keys();
        if stuck.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<String> = stuck.iter().map(|n| n.label()).collect();
        let mut tasks: Vec<String> = stuck.iter().flat_map(|n| n.dependent_names()).collect();
        keys.sort();
        tasks.sort();
        tasks.dedup();
        Err(TaskError::Stalled { keys, tasks })
    }
}

/// A heterogeneous task runtime: a CPU work-stealing pool and one driver per GPU.
///
/// Dropping it waits for every ready or running task, fails the tasks that wait for a
/// TaskSpace key no task was spawned under ([`TaskError::NeverSpawned`] at the root; a
/// `to_vec` blocked behind them returns that failure), then stops and joins its threads.
///
/// ```
/// use hetflow::Runtime;
/// let rt = Runtime::builder().cpu_workers(2).build().unwrap();
/// let x = rt.array_from(vec![1.0f32; 1024]);
/// let y = rt.array::<f32>(1024);
/// rt.task("scale")
///     .args((x.read(), y.write()))
///     .cpu(|(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y = 3.0 * x))
///     .spawn();
/// assert!(y.to_vec().unwrap().iter().all(|&v| v == 3.0));
/// ```
pub struct Runtime {
    pub(super) handle: RuntimeHandle,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

impl Runtime {
    /// A builder with defaults: all CPUs, all GPUs, placement by measured cost (dmda) with
    /// its model kept in the user's cache directory.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A cloneable handle.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for Runtime {
    type Target = RuntimeHandle;
    fn deref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let core = &self.handle.core;
        if core.sched.pool.is_worker_thread() {
            tracing::error!("Runtime dropped inside one of its own tasks; its threads are left to exit on their own");
            core.shut_down.store(true, Ordering::Release);
            return;
        }
        // In the browser nothing may block: keys never spawned stay pending, and the queued
        // work finishes on the event loop (the executors hold what they need).
        #[cfg(not(target_arch = "wasm32"))]
        core.abandon_unspawned_keys();
        core.sched.model.persist(std::time::Duration::ZERO);
        core.shut_down.store(true, Ordering::Release);
        core.sched.pool.shutdown();
        for d in &core.sched.drivers {
            d.shutdown();
        }
        tracing::info!("runtime stopped");
    }
}
