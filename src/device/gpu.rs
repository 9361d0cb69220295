//! GPU discovery and the per-adapter device handle.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// What kind of device an adapter is, as wgpu reports it.
///
/// Placement reads it: a [`DeviceType::Cpu`] adapter (a software rasteriser: Mesa's lavapipe
/// or llvmpipe, SwiftShader, WARP) runs its kernels on the same cores as the CPU workers, so a
/// kernel there takes cores away from them, and an integrated GPU shares the host's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum DeviceType {
    /// A GPU with its own memory across a bus.
    DiscreteGpu,
    /// A GPU sharing the host's memory.
    IntegratedGpu,
    /// A virtualised GPU (a VM's pass-through or a remoting layer).
    VirtualGpu,
    /// A software adapter running on the host's CPU cores.
    Cpu,
    /// Anything else the driver reports.
    Other,
}

impl DeviceType {
    /// Whether kernels on this adapter run on the host's CPU cores (a software adapter).
    pub fn shares_cpu_cores(self) -> bool {
        self == DeviceType::Cpu
    }

    /// Whether the adapter shares the host's memory (integrated GPUs and software adapters).
    pub fn shares_host_memory(self) -> bool {
        matches!(self, DeviceType::Cpu | DeviceType::IntegratedGpu)
    }
}

impl From<wgpu::DeviceType> for DeviceType {
    fn from(t: wgpu::DeviceType) -> DeviceType {
        match t {
            wgpu::DeviceType::DiscreteGpu => DeviceType::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu => DeviceType::IntegratedGpu,
            wgpu::DeviceType::VirtualGpu => DeviceType::VirtualGpu,
            wgpu::DeviceType::Cpu => DeviceType::Cpu,
            _ => DeviceType::Other,
        }
    }
}

impl std::fmt::Display for DeviceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A description of one GPU as wgpu reports it, for `hetflow info` and for placement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuInfo {
    /// Index of this GPU among the discovered ones (`MemorySpace::Gpu(index)`).
    pub index: usize,
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H100`.
    pub name: String,
    /// Backend the device was opened through (Vulkan preferred).
    pub backend: String,
    /// Device type: discrete, integrated, virtual or CPU (software rasteriser).
    pub device_type: DeviceType,
    /// PCI vendor id.
    pub vendor: u32,
    /// PCI device id.
    pub device: u32,
    /// Driver name.
    pub driver: String,
    /// Driver version string.
    pub driver_info: String,
    /// Largest buffer the device can create, in bytes.
    pub max_buffer_size: u64,
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_binding: u64,
    /// Largest uniform-buffer binding, in bytes.
    pub max_uniform_binding: u64,
    /// Maximum workgroup size per dimension (x, y, z).
    pub max_workgroup_size: [u32; 3],
    /// Maximum invocations in one workgroup.
    pub max_invocations_per_workgroup: u32,
    /// Maximum workgroups per dispatch dimension.
    pub max_workgroups_per_dimension: u32,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_workgroup_storage: u32,
    /// Whether storage buffers can be mapped directly (unified memory: integrated GPUs and
    /// software devices), which lets transfers skip a staging copy.
    pub unified_memory: bool,
}

/// One opened wgpu device: the adapter's description, the device and its queue.
///
/// Created once per process by [`gpus`]; every runtime shares it.
pub struct GpuDevice {
    pub(crate) info: GpuInfo,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// Reused MAP_READ staging buffer for device-to-host copies (grown on demand).
    pub(crate) read_staging: Mutex<Option<wgpu::Buffer>>,
    /// Mapped MAP_WRITE staging buffers ready for host-to-device copies.
    pub(crate) write_staging: Mutex<Vec<wgpu::Buffer>>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("info", &self.info)
            .finish()
    }
}

impl GpuDevice {
    /// The adapter's description and limits.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// The raw wgpu device, for code that needs wgpu directly (benchmarks, interop).
    pub fn wgpu_device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The raw wgpu queue.
    pub fn wgpu_queue(&self) -> &wgpu::Queue {
        &self.queue
    }
}

static GPUS: OnceLock<Vec<Arc<GpuDevice>>> = OnceLock::new();

/// Every GPU of this process, opened once and shared by all runtimes.
///
/// The first call enumerates adapters (this takes tens of milliseconds on Vulkan); later calls
/// return the same devices. `HETFLOW_GPUS=none` hides every GPU (CPU-only runs);
/// `WGPU_BACKEND` (e.g. `vulkan`, `gl`) restricts the backends searched.
///
/// ```
/// for gpu in hetflow::device::gpus() {
///     println!("{} via {}", gpu.info().name, gpu.info().backend);
/// }
/// ```
///
/// In the browser (wasm32) discovery is asynchronous: await `hetflow::web::init` first;
/// until then this returns no GPU.
pub fn gpus() -> &'static [Arc<GpuDevice>] {
    #[cfg(not(target_arch = "wasm32"))]
    {
        GPUS.get_or_init(|| pollster::block_on(discover()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        GPUS.get().map_or(&[][..], |v| &v[..])
    }
}

/// Discovers the GPUs once (the browser's asynchronous path); later calls return the same.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn discover_once() -> &'static [Arc<GpuDevice>] {
    if GPUS.get().is_none() {
        let found = discover().await;
        let _ = GPUS.set(found);
    }
    gpus()
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

/// Two adapters are the same physical device when vendor, device id and type agree and the
/// names agree (GL often reports vendor 0; then the name decides).
fn same_physical(a: &wgpu::AdapterInfo, b: &wgpu::AdapterInfo) -> bool {
    let ids_known = a.vendor != 0 && b.vendor != 0;
    if ids_known && (a.vendor, a.device) != (b.vendor, b.device) {
        return false;
    }
    if !a.device_pci_bus_id.is_empty() && !b.device_pci_bus_id.is_empty() {
        return a.device_pci_bus_id == b.device_pci_bus_id;
    }
    normalize(&a.name) == normalize(&b.name)
}

fn normalize(name: &str) -> String {
    name.chars()
        .take_while(|c| *c != '(')
        .collect::<String>()
        .trim()
        .to_ascii_lowercase()
}

/// Every adapter wgpu finds: on native targets all of them, primary backends first and GL
/// only when those find nothing (it would list the same devices again, and initialising EGL
/// is slow and noisy on headless machines).
#[cfg(not(target_arch = "wasm32"))]
async fn adapters() -> Vec<wgpu::Adapter> {
    let explicit = std::env::var("WGPU_BACKEND").is_ok();
    let enumerate = |backends: Option<wgpu::Backends>| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = backends {
            desc.backends = b;
        }
        let instance = wgpu::Instance::new(desc);
        async move { instance.enumerate_adapters(wgpu::Backends::all()).await }
    };
    let mut adapters = if explicit {
        enumerate(None).await
    } else {
        enumerate(Some(wgpu::Backends::PRIMARY)).await
    };
    if adapters.is_empty() && !explicit {
        adapters = enumerate(Some(wgpu::Backends::GL)).await;
    }
    adapters
}

/// The browser's one WebGPU adapter, if the page may use WebGPU.
#[cfg(target_arch = "wasm32")]
async fn adapters() -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::BROWSER_WEBGPU;
    let instance = wgpu::Instance::new(desc);
    match instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
    {
        Ok(a) => vec![a],
        Err(e) => {
            tracing::warn!(error = %e, "no WebGPU adapter: tasks run on the CPU");
            Vec::new()
        }
    }
}

/// Enumerates adapters, keeps one per physical device (best backend first) and opens them.
pub(crate) async fn discover() -> Vec<Arc<GpuDevice>> {
    if std::env::var("HETFLOW_GPUS").is_ok_and(|v| v.eq_ignore_ascii_case("none")) {
        tracing::info!("HETFLOW_GPUS=none: GPUs disabled");
        return Vec::new();
    }
    let mut adapters = adapters().await;
    adapters.sort_by_key(|a| backend_rank(a.get_info().backend));
    let mut kept: Vec<wgpu::Adapter> = Vec::new();
    for adapter in adapters {
        let info = adapter.get_info();
        if let Some(dup) = kept.iter().find(|k| same_physical(&k.get_info(), &info)) {
            tracing::debug!(
                adapter = %info.name, backend = ?info.backend, kept = ?dup.get_info().backend,
                "skipping adapter already listed through a better backend"
            );
            continue;
        }
        kept.push(adapter);
    }
    let mut out = Vec::new();
    for adapter in kept {
        match open(&adapter, out.len()).await {
            Ok(dev) => out.push(Arc::new(dev)),
            Err(e) => {
                tracing::warn!(adapter = %adapter.get_info().name, error = %e, "could not open adapter")
            }
        }
    }
    tracing::info!(count = out.len(), "GPU discovery finished");
    out
}

async fn open(
    adapter: &wgpu::Adapter,
    index: usize,
) -> Result<GpuDevice, wgpu::RequestDeviceError> {
    let ainfo = adapter.get_info();
    let limits = adapter.limits();
    // SHADER_F64 where the adapter has it: the neural floating-point models then compute in
    // f64 on the device, as Lava does on the CPU.
    let wanted = wgpu::Features::MAPPABLE_PRIMARY_BUFFERS | wgpu::Features::SHADER_F64;
    let features = adapter.features() & wanted;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("hetflow"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await?;
    let name = ainfo.name.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        tracing::error!(device = %name, error = %e, "uncaptured wgpu error");
    }));
    let unified = features.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
        && matches!(
            ainfo.device_type,
            wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::Cpu
        );
    let info = GpuInfo {
        index,
        name: ainfo.name.clone(),
        backend: format!("{:?}", ainfo.backend),
        device_type: ainfo.device_type.into(),
        vendor: ainfo.vendor,
        device: ainfo.device,
        driver: ainfo.driver.clone(),
        driver_info: ainfo.driver_info.clone(),
        max_buffer_size: limits.max_buffer_size,
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_uniform_binding: limits.max_uniform_buffer_binding_size,
        max_workgroup_size: [
            limits.max_compute_workgroup_size_x,
            limits.max_compute_workgroup_size_y,
            limits.max_compute_workgroup_size_z,
        ],
        max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        unified_memory: unified,
    };
    tracing::info!(gpu = index, name = %info.name, backend = %info.backend, "opened GPU");
    Ok(GpuDevice {
        info,
        device,
        queue,
        read_staging: Mutex::new(None),
        write_staging: Mutex::new(Vec::new()),
    })
}

// SAFETY: every field is Send + Sync: `GpuInfo` is plain data, `parking_lot::Mutex` of a
// Send type is Sync, and the wgpu handles are Send + Sync
// (`crate::device::assert_wgpu_handles_are_thread_safe` checks this at compile time).
unsafe impl Send for GpuDevice {}
// SAFETY: as above.
unsafe impl Sync for GpuDevice {}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, vendor: u32, backend: wgpu::Backend) -> wgpu::AdapterInfo {
        let mut i = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, backend);
        i.name = name.into();
        i.vendor = vendor;
        i
    }

    #[test]
    fn vulkan_and_gl_views_of_one_device_are_the_same() {
        let vk = info(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            0x10005,
            wgpu::Backend::Vulkan,
        );
        let gl = info("llvmpipe (LLVM 15.0.6, 256 bits)", 0, wgpu::Backend::Gl);
        assert!(same_physical(&vk, &gl));
        let other = info("NVIDIA H100", 0x10de, wgpu::Backend::Vulkan);
        assert!(!same_physical(&vk, &other));
        assert!(backend_rank(wgpu::Backend::Vulkan) < backend_rank(wgpu::Backend::Gl));
    }
}
