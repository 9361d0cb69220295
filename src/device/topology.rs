//! The machine as the runtime sees it: one CPU and zero or more GPUs.
//!
//! Two views of the same facts: [`Topology`] (the CPU and each GPU with its limits, as the
//! scheduler uses them) and, HiCR-style, [`Topology::devices`]: a list of [`Device`]s, each
//! with its memory spaces (host RAM with its size, each GPU's memory) and compute resources
//! (one per CPU core, one per GPU). Both serialize to JSON ([`Topology::to_json`]).

use std::fmt;

use serde::Serialize;

use super::gpu::GpuInfo;

/// Where a task runs or where a copy of data lives.
///
/// Serializes as an object with a `kind`, like a [`ComputeResource`]: `{"kind": "cpu"}` and
/// `{"kind": "gpu", "index": 0}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceId {
    /// The CPU worker pool (host memory).
    Cpu,
    /// The GPU with this index (its own memory).
    Gpu(usize),
}

impl Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            DeviceId::Cpu => {
                let mut s = serializer.serialize_struct("DeviceId", 1)?;
                s.serialize_field("kind", "cpu")?;
                s.end()
            }
            DeviceId::Gpu(index) => {
                let mut s = serializer.serialize_struct("DeviceId", 2)?;
                s.serialize_field("kind", "gpu")?;
                s.serialize_field("index", index)?;
                s.end()
            }
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The CPU.
    pub cpu: CpuInfo,
    /// The GPUs the runtime uses, indexed as `DeviceId::Gpu(i)`.
    pub gpus: Vec<GpuInfo>,
}

/// What kind of memory a [`MemorySpaceInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Host RAM.
    HostRam,
    /// A GPU's own memory (on unified-memory GPUs, host RAM seen through the GPU).
    GpuMemory,
}

/// One memory space of a [`Device`] (HiCR's `MemorySpace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemorySpaceInfo {
    /// Name used in memory-slot APIs and printouts: `host` or `gpu<i>`.
    pub name: String,
    /// Host RAM or GPU memory.
    pub kind: MemoryKind,
    /// Total size in bytes, when known: the OS reports host RAM; wgpu reports no total for a
    /// GPU, so GPU memory spaces have `None`.
    pub size_bytes: Option<u64>,
    /// Largest single allocation in bytes, when limited (a GPU's maximum buffer size).
    pub max_allocation_bytes: Option<u64>,
}

/// What kind of compute resource a [`ComputeResource`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeKind {
    /// One logical CPU core (hardware thread).
    CpuCore,
    /// A whole GPU (runs compute shaders).
    Gpu,
}

/// One compute resource of a [`Device`] (HiCR's `ComputeResource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComputeResource {
    /// CPU core or GPU.
    pub kind: ComputeKind,
    /// Index among the resources of this kind on the device (core number, GPU index).
    pub index: usize,
}

/// One device of the HiCR view: the host (CPU cores + RAM) or a GPU (its compute + memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Which device this is.
    pub id: DeviceId,
    /// Human-readable name (`host CPU`, or the adapter's name).
    pub name: String,
    /// Memory spaces, the first one being the device's main memory.
    pub memory_spaces: Vec<MemorySpaceInfo>,
    /// Compute resources.
    pub compute_resources: Vec<ComputeResource>,
}

impl Topology {
    /// The machine without a runtime: the CPU (all logical cores as workers) and every GPU
    /// this process found ([`crate::device::gpus`]).
    ///
    /// ```
    /// let topo = hetflow::Topology::detect();
    /// let devices = topo.devices();
    /// assert_eq!(devices[0].id, hetflow::DeviceId::Cpu);
    /// assert!(topo.to_json().contains("\"memory_spaces\""));
    /// ```
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Topology {
            cpu: CpuInfo::detect(cores),
            gpus: super::gpus().iter().map(|g| g.info().clone()).collect(),
        }
    }

    /// HiCR's view: the host device first, then one device per GPU, each with its memory
    /// spaces and compute resources.
    pub fn devices(&self) -> Vec<Device> {
        let mut out = vec![Device {
            id: DeviceId::Cpu,
            name: "host CPU".into(),
            memory_spaces: vec![MemorySpaceInfo {
                name: "host".into(),
                kind: MemoryKind::HostRam,
                size_bytes: self.cpu.memory_bytes,
                max_allocation_bytes: None,
            }],
            compute_resources: (0..self.cpu.logical_cores)
                .map(|index| ComputeResource {
                    kind: ComputeKind::CpuCore,
                    index,
                })
                .collect(),
        }];
        for g in &self.gpus {
            out.push(Device {
                id: DeviceId::Gpu(g.index),
                name: g.name.clone(),
                memory_spaces: vec![MemorySpaceInfo {
                    name: format!("gpu{}", g.index),
                    kind: MemoryKind::GpuMemory,
                    size_bytes: None,
                    max_allocation_bytes: Some(g.max_buffer_size),
                }],
                compute_resources: vec![ComputeResource {
                    kind: ComputeKind::Gpu,
                    index: g.index,
                }],
            });
        }
        out
    }

    /// JSON with both views: `{"devices": [...], "cpu": {...}, "gpus": [...]}`; a device's
    /// `id` is `{"kind": "cpu"}` or `{"kind": "gpu", "index": i}`.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "devices": self.devices(),
            "cpu": self.cpu,
            "gpus": self.gpus,
        });
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
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
        writeln!(
            f,
            "HiCR view (devices -> memory spaces, compute resources):"
        )?;
        for d in self.devices() {
            let cores = d.compute_resources.len();
            let compute = match d.id {
                DeviceId::Cpu => format!("{cores} CPU cores"),
                DeviceId::Gpu(_) => "1 GPU".to_string(),
            };
            let spaces: Vec<String> = d
                .memory_spaces
                .iter()
                .map(|m| {
                    let size = m.size_bytes.map_or("size unknown".into(), mib);
                    match m.max_allocation_bytes {
                        Some(max) => format!("{} ({size}, max allocation {})", m.name, mib(max)),
                        None => format!("{} ({size})", m.name),
                    }
                })
                .collect();
            writeln!(
                f,
                "  {}  memory spaces: {}  compute: {compute}",
                d.id,
                spaces.join(", ")
            )?;
        }
        Ok(())
    }
}
