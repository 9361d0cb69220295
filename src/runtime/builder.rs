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

/// Whether dmda's performance model is read from and written to disk between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ModelPersistence {
    /// Read when the runtime is built, written as it learns and when it is dropped (default).
    #[default]
    ReadWrite,
    /// Read when the runtime is built, never written.
    ReadOnly,
    /// Neither: every run starts uncalibrated.
    Off,
}

/// Configures and builds a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    cpu_workers: Option<usize>,
    gpus: GpuSelection,
    software_gpus: Option<bool>,
    policy: Policy,
    gpu_memory_budget: Option<u64>,
    upload: crate::data::UploadPath,
    perf_model_file: Option<std::path::PathBuf>,
    persistence: Option<ModelPersistence>,
    exploration: Option<f64>,
    stealing: Option<bool>,
}

/// Where the model lives and whether it is written, from the builder, then
/// `HETFLOW_PERF_MODEL` (`off`, `readonly` or a path), then the defaults.
fn model_store(
    file: Option<std::path::PathBuf>,
    persistence: Option<ModelPersistence>,
) -> Option<(std::path::PathBuf, bool)> {
    let env = std::env::var("HETFLOW_PERF_MODEL")
        .ok()
        .filter(|v| !v.is_empty());
    let env_mode = match env.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("off" | "0" | "none") => Some(ModelPersistence::Off),
        Some("readonly" | "read-only" | "ro") => Some(ModelPersistence::ReadOnly),
        Some("on" | "1") => Some(ModelPersistence::ReadWrite),
        _ => None,
    };
    let env_path = env
        .filter(|_| env_mode.is_none())
        .map(std::path::PathBuf::from);
    let mode = persistence.or(env_mode).unwrap_or_default();
    if mode == ModelPersistence::Off {
        return None;
    }
    let path = file
        .or(env_path)
        .or_else(crate::sched::store::default_path)?;
    Some((path, mode == ModelPersistence::ReadOnly))
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

    /// Whether [`GpuSelection::All`] includes software adapters (lavapipe, llvmpipe,
    /// SwiftShader, WARP: [`crate::device::DeviceType::Cpu`]). Default: yes, unless
    /// `HETFLOW_SOFTWARE_GPU=0`.
    ///
    /// They are included because they are real GPUs to the program (the same kernels, the
    /// same API checks; in a browser without a hardware GPU, SwiftShader is the only WebGPU
    /// there is) and placement copes with them: dmda presumes them 32× slower than the CPU
    /// until measured and never spends more than a tenth of the timed work finding out, and
    /// counts their kernels as occupying the CPU workers' cores.
    pub fn software_gpus(mut self, on: bool) -> Self {
        self.software_gpus = Some(on);
        self
    }

    /// Shorthand for `gpus(GpuSelection::None)`.
    pub fn no_gpu(self) -> Self {
        self.gpus(GpuSelection::None)
    }

    /// The placement policy for tasks that may run on several devices (default:
    /// [`Policy::Dmda`], placement by measured cost with persistent models).
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

    /// The file dmda's performance model is kept in, instead of the default one in the
    /// user's cache directory (`sched/store.rs`: `$XDG_CACHE_HOME/hetflow/perfmodel-<host>.txt`;
    /// `HETFLOW_PERF_MODEL=<path>` sets it too). Read at build if it exists (a corrupt or
    /// foreign file is a warning and ignored), written as the model learns and when the
    /// runtime is dropped, so the next run starts calibrated.
    pub fn perf_model_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.perf_model_file = Some(path.into());
        self
    }

    /// The share of the timed work that dmda may spend measuring devices it has no
    /// measurement of (default 0.1: calibration never costs a run more than a tenth of its
    /// work plus one task; `sched/perfmodel.rs`). Higher finds a device the priors underrate
    /// sooner (after about `prior / fraction` tasks of a kind), at a higher worst case; 0
    /// never tries a device the priors rate slower.
    ///
    /// # Errors
    /// [`RuntimeBuilder::build`] fails with [`BuildError::Config`] for a negative or
    /// non-finite fraction.
    pub fn exploration_budget(mut self, fraction: f64) -> Self {
        self.exploration = Some(fraction);
        self
    }

    /// Whether the performance model is read and written (default
    /// [`ModelPersistence::ReadWrite`]; `HETFLOW_PERF_MODEL=off` or `readonly` set it too,
    /// and this call wins over the variable).
    pub fn perf_model_persistence(mut self, mode: ModelPersistence) -> Self {
        self.persistence = Some(mode);
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
        // Checked before any thread starts: an error after would leave the pool's workers.
        if let Some(f) = self.exploration.filter(|f| !f.is_finite() || *f < 0.0) {
            return Err(BuildError::Config(format!(
                "exploration_budget must be a finite fraction >= 0 (0.1 is the default), got {f}"
            )));
        }
        let all = match self.gpus {
            GpuSelection::None => &[][..],
            _ => gpus(),
        };
        let software = self.software_gpus.unwrap_or_else(|| {
            std::env::var("HETFLOW_SOFTWARE_GPU").map_or(true, |v| v.trim() != "0")
        });
        let chosen: Vec<_> = match &self.gpus {
            GpuSelection::All => all
                .iter()
                .filter(|g| software || !g.info().device_type.shares_cpu_cores())
                .cloned()
                .collect(),
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
                    if g.unified_memory || g.device_type.shares_host_memory() {
                        host / 2
                    } else {
                        (g.max_buffer_size / 5 * 4).min(host / 2)
                    }
                })
            })
            .collect();
        let mut model = crate::sched::PerfModel::new(profiles(&topology));
        if let Some(f) = self.exploration {
            model.set_exploration_fraction(f);
        }
        if let Some((path, read_only)) = model_store(self.perf_model_file, self.persistence) {
            model.attach_store(path, read_only);
        }
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
        })
    }
}

/// What the performance model knows of each device: identity, prior, shared cores.
fn profiles(topology: &Topology) -> Vec<crate::sched::perfmodel::DeviceProfile> {
    use crate::device::DeviceId;
    use crate::sched::perfmodel::{type_prior, DeviceProfile};
    use crate::sched::store::{cpu_identity, gpu_identity};
    topology
        .gpus
        .iter()
        .map(|g| DeviceProfile {
            device: DeviceId::Gpu(g.index),
            identity: gpu_identity(g),
            shares_cpu_cores: g.device_type.shares_cpu_cores(),
            prior: type_prior(g.device_type),
        })
        .chain(std::iter::once(DeviceProfile {
            device: DeviceId::Cpu,
            identity: cpu_identity(topology.cpu.logical_cores),
            shares_cpu_cores: false,
            prior: 1.0,
        }))
        .collect()
}
