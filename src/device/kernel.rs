//! WGSL compute kernels: validated once, compiled once per device, pipelines cached.

use std::sync::Arc;

use wgpu::naga;

use super::error::DeviceError;
use super::gpu::GpuDevice;

/// What a kernel expects at one binding of group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// `var<uniform>`: small parameters (pass a [`crate::Uniform`]).
    Uniform,
    /// `var<storage, read>`: an array the kernel only reads.
    StorageRead,
    /// `var<storage, read_write>`: an array the kernel writes.
    StorageReadWrite,
}

/// A compiled compute kernel: one WGSL entry point with a pipeline on every GPU of the runtime.
///
/// Create it with [`crate::RuntimeHandle::kernel`]; cloning is cheap (shared pipelines).
/// Its bindings are the entry point's group-0 resources, in binding order; a dispatch passes
/// one argument per binding.
///
/// ```
/// let rt = hetflow::Runtime::builder().build().unwrap();
/// let k = rt.kernel("@group(0) @binding(0) var<storage, read_write> a: array<f32>;
///     @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
///         if id.x < arrayLength(&a) { a[id.x] = a[id.x] * 2.0; }
///     }", "main").unwrap();
/// assert_eq!(k.workgroup_size(), [64, 1, 1]);
/// assert!(rt.kernel("fn broken(", "main").is_err());
/// ```
#[derive(Clone)]
pub struct Kernel {
    pub(crate) inner: Arc<KernelInner>,
}

pub(crate) struct KernelInner {
    pub(crate) label: String,
    pub(crate) workgroup_size: [u32; 3],
    /// (binding index, kind), sorted by binding index.
    pub(crate) bindings: Vec<(u32, BindingKind)>,
    /// One pipeline per runtime GPU, indexed like `DeviceId::Gpu(i)`.
    pub(crate) pipelines: Vec<(wgpu::ComputePipeline, Option<wgpu::BindGroupLayout>)>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("label", &self.inner.label)
            .field("bindings", &self.inner.bindings)
            .finish()
    }
}

impl Kernel {
    /// The kernel's label (its entry point's name).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// `@workgroup_size` of the entry point.
    pub fn workgroup_size(&self) -> [u32; 3] {
        self.inner.workgroup_size
    }

    /// The group-0 bindings the entry point uses, in binding order.
    pub fn bindings(&self) -> &[(u32, BindingKind)] {
        &self.inner.bindings
    }

    #[doc(hidden)]
    /// Identity of the compiled pipelines (tests check the cache with it).
    pub fn inner_for_tests(&self) -> Arc<impl Sized + '_> {
        self.inner.clone()
    }

    /// Workgroups needed to cover `n` invocations along x.
    pub fn groups_for(&self, n: usize) -> [u32; 3] {
        let wg = self.inner.workgroup_size[0].max(1) as usize;
        [n.div_ceil(wg).max(1) as u32, 1, 1]
    }

    /// Validates `source` with naga, then builds a pipeline for `entry` on every device.
    pub(crate) fn compile(
        source: &str,
        entry: &str,
        devices: &[Arc<GpuDevice>],
    ) -> Result<Kernel, DeviceError> {
        let label = entry.to_string();
        let module = naga::front::wgsl::parse_str(source).map_err(|e| DeviceError::Compile {
            label: label.clone(),
            message: e.emit_to_string(source),
        })?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| DeviceError::Compile {
            label: label.clone(),
            message: e.emit_to_string(source),
        })?;
        let (ep_index, ep) = module
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, ep)| ep.name == entry && ep.stage == naga::ShaderStage::Compute)
            .ok_or_else(|| DeviceError::EntryPointNotFound {
                label: label.clone(),
                entry: entry.to_string(),
                available: module
                    .entry_points
                    .iter()
                    .filter(|ep| ep.stage == naga::ShaderStage::Compute)
                    .map(|ep| ep.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let ep_info = info.get_entry_point(ep_index);
        let mut bindings = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(rb) = &var.binding else { continue };
            if ep_info[handle].is_empty() {
                continue;
            }
            if rb.group != 0 {
                return Err(DeviceError::Compile {
                    label,
                    message: format!(
                        "binding {} uses @group({}); hetflow kernels bind everything in group 0",
                        rb.binding, rb.group
                    ),
                });
            }
            let kind = match var.space {
                naga::AddressSpace::Uniform => BindingKind::Uniform,
                naga::AddressSpace::Storage { access } => {
                    if access.contains(naga::StorageAccess::STORE) {
                        BindingKind::StorageReadWrite
                    } else {
                        BindingKind::StorageRead
                    }
                }
                _ => {
                    return Err(DeviceError::Compile {
                        label,
                        message: format!(
                            "binding {} ({:?}) is not a buffer; hetflow kernels bind uniform and storage buffers only",
                            rb.binding, var.space
                        ),
                    })
                }
            };
            bindings.push((rb.binding, kind));
        }
        bindings.sort_by_key(|b| b.0);

        let mut pipelines = Vec::with_capacity(devices.len());
        for gpu in devices {
            let device = &gpu.device;
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = (!bindings.is_empty()).then(|| pipeline.get_bind_group_layout(0));
            if let Some(err) = pollster::block_on(scope.pop()) {
                return Err(DeviceError::Pipeline {
                    label,
                    gpu: gpu.info.index,
                    device: gpu.info.name.clone(),
                    message: err.to_string(),
                });
            }
            pipelines.push((pipeline, layout));
        }
        tracing::debug!(kernel = %label, devices = devices.len(), "kernel compiled");
        Ok(Kernel {
            inner: Arc::new(KernelInner {
                label,
                workgroup_size: ep.workgroup_size,
                bindings,
                pipelines,
            }),
        })
    }
}

// SAFETY: the fields are plain data and wgpu pipeline/layout handles, which are Send + Sync
// (`crate::device::assert_wgpu_handles_are_thread_safe`).
unsafe impl Send for KernelInner {}
// SAFETY: as above.
unsafe impl Sync for KernelInner {}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "
        struct P { a: f32, n: u32 }
        @group(0) @binding(0) var<uniform> p: P;
        @group(0) @binding(1) var<storage, read> x: array<f32>;
        @group(0) @binding(2) var<storage, read_write> y: array<f32>;
        @group(0) @binding(3) var<storage, read_write> unused: array<f32>;
        @compute @workgroup_size(128) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
            if id.x < p.n { y[id.x] = p.a * x[id.x] + y[id.x]; }
        }";

    #[test]
    fn reflection_without_devices() {
        let k = Kernel::compile(SRC, "main", &[]).expect("valid");
        assert_eq!(k.workgroup_size(), [128, 1, 1]);
        assert_eq!(
            k.bindings(),
            &[
                (0, BindingKind::Uniform),
                (1, BindingKind::StorageRead),
                (2, BindingKind::StorageReadWrite)
            ]
        );
        assert_eq!(k.groups_for(129), [2, 1, 1]);
    }

    #[test]
    fn syntax_error_carries_compiler_message() {
        let err = Kernel::compile("fn main( {", "main", &[]).unwrap_err();
        match err {
            DeviceError::Compile { message, .. } => {
                assert!(message.contains("expected"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn type_error_and_missing_entry() {
        let err = Kernel::compile(
            "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
            "main",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, DeviceError::Compile { .. }), "{err}");
        let err = Kernel::compile(SRC, "nope", &[]).unwrap_err();
        assert!(
            matches!(&err, DeviceError::EntryPointNotFound { available, .. } if available == "main"),
            "{err}"
        );
    }
}
