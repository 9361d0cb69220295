//! [`RuntimeBuilder`]: the tunables of a runtime, then starting its pool and drivers.

use super::core::Core;
use super::handle::{Runtime, RuntimeHandle};
use crate::device::{gpus, CpuInfo, DeviceError, Topology};
use crate::sched::cpu::CpuPool;
use crate::sched::gpu::GpuDriver;
use crate::sched::Policy;
use crate::task::BuildError;

/// Which GPUs a runtime uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GpuSelection {
    /// Every GPU found (default).
    #[default]
    All,
    /// None: a CPU-only runtime.
    None,
    /// These GPU indices (as listed by `hetflow info`).
    Only(Vec<usize>),
}

/// Configures and builds a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    cpu_workers: Option<usize>,
    gpus: GpuSelection,
    policy: Policy,
    gpu_memory_budget: Option<u64>,
    upload: crate::data::UploadPath,
    perf_model_file: Option<std::path::PathBuf>,
    stealing: Option<bool>,
}

impl RuntimeBuilder {
    /// Heterogeneous stealing under [`Policy::Dmda`] (default on): an idle CPU worker takes a
    /// ready task queued for a busy GPU, and an idle GPU one queued on a saturated CPU pool,
    /// when the task has a body there and the performance model says it finishes sooner
    /// there. [`crate::Stats::steals_to_cpu`] and [`crate::Stats::steals_to_gpu`] count the moves.
    pub fn heterogeneous_stealing(mut self, on: bool) -> Self {
        self.stealing = Some(on);
        self
    }

    /// Number of CPU worker threads (default: the available parallelism).
    pub fn cpu_workers(mut self, n: usize) -> Self {
        self.cpu_workers = Some(n);
        self
    }

    /// Which GPUs to use (default: all).
    pub fn gpus(mut self, gpus: GpuSelection) -> Self {
        self.gpus = gpus;
        self
    }

    /// Shorthand for `gpus(GpuSelection::None)`.
    pub fn no_gpu(self) -> Self {
        self.gpus(GpuSelection::None)
    }

    /// The placement policy for tasks that may run on several devices (default: eager).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Bytes of array copies each GPU may hold before the least recently used are evicted.
    ///
    /// wgpu does not report how much memory a device has, so the default is an estimate: half
    /// the host's RAM for integrated and software GPUs (they share it), and for discrete GPUs
    /// 80% of the largest buffer the device allows, capped at half the host's RAM.
    pub fn gpu_memory_budget(mut self, bytes: u64) -> Self {
        self.gpu_memory_budget = Some(bytes);
        self
    }

    /// A file for dmda's performance model: loaded at build if it exists, written when the
    /// runtime is dropped, so the next run starts calibrated.
    pub fn perf_model_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.perf_model_file = Some(path.into());
        self
    }

    /// How host-to-GPU copies are made (default [`crate::data::UploadPath::Auto`]: mapped on
    /// unified-memory GPUs, reused staging buffers for large arrays elsewhere).
    pub fn upload_path(mut self, path: crate::data::UploadPath) -> Self {
        self.upload = path;
        self
    }

    /// [`RuntimeBuilder::build`] with device discovery awaited: the form to use in the
    /// browser, where finding the WebGPU adapter is asynchronous (on native targets discovery
    /// blocks briefly, once per process, as in `build`).
    ///
    /// ```
    /// let rt = pollster::block_on(hetflow::Runtime::builder().no_gpu().build_async()).unwrap();
    /// assert_eq!(rt.gpu_count(), 0);
    /// ```
    pub async fn build_async(self) -> Result<Runtime, BuildError> {
        #[cfg(target_arch = "wasm32")]
        if !matches!(self.gpus, GpuSelection::None) {
            crate::web::init().await;
        }
        self.build()
    }

    /// Discovers devices (once per process), starts the CPU workers and one driver thread per
    /// GPU. In the browser, use [`RuntimeBuilder::build_async`] (or await
    /// `hetflow::web::init` first): there this finds only GPUs already discovered.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let workers = self
            .cpu_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 {
            return Err(BuildError::Config(
                "cpu_workers must be at least 1 (host-side copies run on the CPU pool)".into(),
            ));
        }
        let all = match self.gpus {
            GpuSelection::None => &[][..],
            _ => gpus(),
        };
        let chosen: Vec<_> = match &self.gpus {
            GpuSelection::All => all.to_vec(),
            GpuSelection::None => Vec::new(),
            GpuSelection::Only(list) => list
                .iter()
                .map(|&i| {
                    all.get(i).cloned().ok_or(DeviceError::NoSuchGpu {
                        index: i,
                        available: all.len(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let pool = CpuPool::start(workers)?;
        let mut drivers = Vec::with_capacity(chosen.len());
        for (i, g) in chosen.iter().enumerate() {
            drivers.push(GpuDriver::start(i, g.clone())?);
        }
        let topology = Topology {
            cpu: CpuInfo::detect(workers),
            gpus: chosen
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let mut info = g.info().clone();
                    info.index = i;
                    info
                })
                .collect(),
        };
        tracing::info!(workers, gpus = chosen.len(), policy = ?self.policy, "runtime started");
        let host = topology.cpu.memory_bytes.unwrap_or(8 << 30);
        let budgets = topology
            .gpus
            .iter()
            .map(|g| {
                self.gpu_memory_budget.unwrap_or_else(|| {
                    if g.unified_memory
                        || g.device_type == "Cpu"
                        || g.device_type == "IntegratedGpu"
                    {
                        host / 2
                    } else {
                        (g.max_buffer_size / 5 * 4).min(host / 2)
                    }
                })
            })
            .collect();
        let model = match &self.perf_model_file {
            Some(path) if path.exists() => crate::sched::PerfModel::load(path).map_err(|e| {
                BuildError::Config(format!("performance model {}: {e}", path.display()))
            })?,
            _ => crate::sched::PerfModel::default(),
        };
        let config = super::core::CoreConfig {
            policy: self.policy,
            budgets,
            upload: self.upload,
            model,
            stealing: self.stealing.unwrap_or(true),
        };
        let core = Core::new(pool, drivers, chosen, topology, config);
        Ok(Runtime {
            handle: RuntimeHandle { core },
            perf_model_file: self.perf_model_file,
        })
    }
}
