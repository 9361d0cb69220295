//! Device layer: what hardware exists and how to compile code for it.
//!
//! Job: discover the CPU and every wgpu adapter once per process ([`gpus`]), open one
//! `wgpu::Device` per physical adapter, describe the machine ([`Topology`]), and compile WGSL
//! compute kernels ([`Kernel`]) with their pipelines cached per device.
//!
//! Invariants:
//! - One physical GPU appears once: when an adapter is visible through several backends
//!   (Vulkan and GL, say), the Vulkan one is kept (`gpu::discover`).
//! - Devices are created once per process and shared by every [`crate::Runtime`]; creating many
//!   Vulkan devices concurrently is unreliable, so discovery runs under a `OnceLock`.
//! - No wgpu error ever panics: every device has an uncaptured-error handler that logs, and
//!   kernel compilation runs naga's validator first and a wgpu error scope second, so a bad
//!   shader yields [`DeviceError::Compile`].
//!
//! This layer knows nothing about tasks or arrays.

mod error;
pub(crate) mod gpu;
pub(crate) mod kernel;
mod topology;

pub use error::DeviceError;
pub use gpu::{gpus, DeviceType, GpuDevice, GpuInfo};
pub use kernel::{BindingKind, Kernel};
pub use topology::{
    ComputeKind, ComputeResource, CpuInfo, Device, DeviceId, MemoryKind, MemorySpaceInfo, Topology,
};

/// Compile-time proof that the wgpu handles hetflow stores are `Send + Sync`; the manual
/// `unsafe impl`s on [`GpuDevice`], the kernel internals and the array state rely on it.
/// (The impls exist so that auto-trait checks in downstream crates stop at our types instead
/// of recursing through wgpu-core's deep internals, which overflows rustc's default limit.)
#[allow(dead_code)]
pub(crate) fn assert_wgpu_handles_are_thread_safe() {
    fn ok<T: Send + Sync>() {}
    ok::<wgpu::Device>();
    ok::<wgpu::Queue>();
    ok::<wgpu::Buffer>();
    ok::<wgpu::ComputePipeline>();
    ok::<wgpu::BindGroupLayout>();
    ok::<wgpu::CommandBuffer>();
}
