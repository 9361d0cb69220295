//! The machine as the runtime sees it: one CPU and zero or more GPUs.

use std::fmt;

use super::gpu::GpuInfo;

/// Where a task runs or where a copy of data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceId {
    /// The CPU worker pool (host memory).
    Cpu,
    /// The GPU with this index (its own memory).
    Gpu(usize),
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Cpu => write!(f, "cpu"),
            DeviceId::Gpu(i) => write!(f, "gpu{i}"),
        }
    }
}

/// The host CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// Hardware threads available to this process.
    pub logical_cores: usize,
    /// Worker threads the runtime runs CPU tasks on.
    pub workers: usize,
    /// Host memory in bytes, when the OS tells it (`/proc/meminfo`).
    pub memory_bytes: Option<u64>,
}

impl CpuInfo {
    pub(crate) fn detect(workers: usize) -> Self {
        let logical_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        CpuInfo {
            logical_cores,
            workers,
            memory_bytes,
        }
    }
}

/// Every device of a runtime, as printed by `hetflow info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The CPU.
    pub cpu: CpuInfo,
    /// The GPUs the runtime uses, indexed as `DeviceId::Gpu(i)`.
    pub gpus: Vec<GpuInfo>,
}

fn mib(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cpu;
        writeln!(
            f,
            "cpu   kind=CPU  logical cores={}  workers={}  memory={}",
            c.logical_cores,
            c.workers,
            c.memory_bytes.map_or("unknown".into(), mib)
        )?;
        if self.gpus.is_empty() {
            writeln!(f, "(no GPU adapter found: tasks run on the CPU)")?;
        }
        for g in &self.gpus {
            writeln!(f, "gpu{}  kind=GPU  {}", g.index, g.name)?;
            writeln!(
                f,
                "      backend={}  type={}  vendor=0x{:04x}  device=0x{:04x}",
                g.backend, g.device_type, g.vendor, g.device
            )?;
            writeln!(f, "      driver={} {}", g.driver, g.driver_info)?;
            writeln!(
                f,
                "      memory limits: max buffer={}  max storage binding={}  max uniform binding={}  unified memory={}",
                mib(g.max_buffer_size),
                mib(g.max_storage_binding),
                mib(g.max_uniform_binding),
                g.unified_memory
            )?;
            writeln!(
                f,
                "      workgroup limits: size={:?}  invocations={}  groups per dim={}  shared memory={} B",
                g.max_workgroup_size,
                g.max_invocations_per_workgroup,
                g.max_workgroups_per_dimension,
                g.max_workgroup_storage
            )?;
        }
        Ok(())
    }
}
