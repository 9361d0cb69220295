//! WGSL compute kernels: validated once, compiled once per device, pipelines cached.

use std::sync::Arc;

// In the browser wgpu has no naga of its own to re-export (WebGPU compiles WGSL itself), so
// kernels are validated with naga as a direct dependency, the same version.
#[cfg(target_arch = "wasm32")]
use naga;
#[cfg(not(target_arch = "wasm32"))]
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

/// The scalar type of an element's components (a vector's or matrix's too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scalar {
    pub kind: ScalarKind,
    /// Bytes per component.
    pub width: u8,
}

/// The kinds of scalar WGSL buffers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarKind {
    Float,
    Sint,
    Uint,
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            ScalarKind::Float => 'f',
            ScalarKind::Sint => 'i',
            ScalarKind::Uint => 'u',
        };
        write!(f, "{k}{}", u32::from(self.width) * 8)
    }
}

impl Scalar {
    /// The scalar type of the components of `T`, for the element types whose meaning is
    /// known (`f32`, `u32`, `i32`, `f64` and arrays of them); `None` for anything else (bytes,
    /// user structs), whose bits a kernel may legitimately reinterpret.
    pub(crate) fn of<T: 'static>() -> Option<Scalar> {
        use std::any::TypeId;
        let t = TypeId::of::<T>();
        macro_rules! known {
            ($($ty:ty => $kind:ident, $w:expr;)*) => {
                $(
                    if t == TypeId::of::<$ty>()
                        || t == TypeId::of::<[$ty; 2]>()
                        || t == TypeId::of::<[$ty; 3]>()
                        || t == TypeId::of::<[$ty; 4]>()
                    {
                        return Some(Scalar { kind: ScalarKind::$kind, width: $w });
                    }
                )*
            };
        }
        known! {
            f32 => Float, 4;
            u32 => Uint, 4;
            i32 => Sint, 4;
            f64 => Float, 8;
        }
        None
    }
}

/// What a storage binding holds, reflected from its WGSL type, for checking the array bound
/// to it: a runtime-sized array (`array<T>`, alone or as a struct's last member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElementLayout {
    /// Bytes before the array (the fixed members of a struct; 0 for a bare array).
    pub offset: u32,
    /// Bytes per element.
    pub stride: u32,
    /// The elements' scalar type (`None` for struct elements).
    pub scalar: Option<Scalar>,
    /// The WGSL element type as written, for messages (e.g. `vec4<f32>`).
    pub name: &'static str,
}

impl ElementLayout {
    /// What the binding expects, for messages.
    pub(crate) fn describe(&self) -> String {
        let elems = format!("array<{}> ({} bytes per element)", self.name, self.stride);
        if self.offset == 0 {
            elems
        } else {
            format!("{} header bytes, then {elems}", self.offset)
        }
    }
}

/// The runtime-sized array a binding of type `ty` ends in, if any.
fn element_layout(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<ElementLayout> {
    let scalar_of = |inner: &naga::TypeInner| -> Option<(Scalar, &'static str)> {
        let (s, shape) = match inner {
            naga::TypeInner::Scalar(s) | naga::TypeInner::Atomic(s) => (*s, ""),
            naga::TypeInner::Vector { size, scalar } => (
                *scalar,
                match size {
                    naga::VectorSize::Bi => "vec2",
                    naga::VectorSize::Tri => "vec3",
                    naga::VectorSize::Quad => "vec4",
                },
            ),
            naga::TypeInner::Matrix { scalar, .. } => (*scalar, "mat"),
            _ => return None,
        };
        let kind = match s.kind {
            naga::ScalarKind::Float => ScalarKind::Float,
            naga::ScalarKind::Sint => ScalarKind::Sint,
            naga::ScalarKind::Uint => ScalarKind::Uint,
            _ => return None,
        };
        let scalar = Scalar {
            kind,
            width: s.width,
        };
        let name = match (shape, scalar.to_string().as_str()) {
            ("", "f32") => "f32",
            ("", "u32") => "u32",
            ("", "i32") => "i32",
            ("vec2", "f32") => "vec2<f32>",
            ("vec3", "f32") => "vec3<f32>",
            ("vec4", "f32") => "vec4<f32>",
            ("vec2", "u32") => "vec2<u32>",
            ("vec4", "u32") => "vec4<u32>",
            ("vec2", "i32") => "vec2<i32>",
            ("vec4", "i32") => "vec4<i32>",
            _ => "a vector or matrix",
        };
        Some((scalar, name))
    };
    let array = |ty: naga::Handle<naga::Type>, offset: u32| match &module.types[ty].inner {
        naga::TypeInner::Array {
            base,
            size: naga::ArraySize::Dynamic,
            stride,
        } => {
            let elem = scalar_of(&module.types[*base].inner);
            Some(ElementLayout {
                offset,
                stride: *stride,
                scalar: elem.map(|(s, _)| s),
                name: elem.map_or("a struct", |(_, n)| n),
            })
        }
        _ => None,
    };
    match &module.types[ty].inner {
        naga::TypeInner::Struct { members, .. } => members
            .last()
            .and_then(|m| array(m.ty, m.offset))
            // The fixed members' types are not checked against the array's element type.
            .map(|l| ElementLayout { scalar: None, ..l }),
        _ => array(ty, 0),
    }
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
    /// Whether a dispatch checks the element type of each array against its binding (see
    /// [`Kernel::untyped`]); sizes are checked either way.
    pub(crate) typed: bool,
}

pub(crate) struct KernelInner {
    pub(crate) label: String,
    pub(crate) workgroup_size: [u32; 3],
    /// (binding index, kind), sorted by binding index.
    pub(crate) bindings: Vec<(u32, BindingKind)>,
    /// Per binding (same order): the runtime-sized array a storage binding holds, if any.
    pub(crate) layouts: Vec<Option<ElementLayout>>,
    /// Per binding (same order): the bytes a uniform binding takes (its WGSL type's size
    /// rounded up to 16); `None` for storage bindings.
    pub(crate) uniform_sizes: Vec<Option<u32>>,
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

    /// The same kernel for arrays of any element type: it moves raw words (a copy kernel
    /// declared over `array<u32>` for `f32`, `i32` and `u32` data alike), so a dispatch checks
    /// only that each array holds a whole number of the binding's elements, not that their
    /// types agree. By default a dispatch refuses, say, an `Array<f32>` bound to `array<u32>`.
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().build().unwrap();
    /// let copy = rt.kernel("@group(0) @binding(0) var<storage, read> s: array<u32>;
    ///     @group(0) @binding(1) var<storage, read_write> d: array<u32>;
    ///     @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    ///         if id.x < arrayLength(&d) { d[id.x] = s[id.x]; }
    ///     }", "main").unwrap().untyped();
    /// # let _ = copy;
    /// ```
    pub fn untyped(mut self) -> Kernel {
        self.typed = false;
        self
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

    /// Workgroups needed to cover a `width` × `height` grid of invocations: x along the
    /// width, y along the height, each divided by the entry point's `@workgroup_size` in
    /// that dimension (rounded up; at least one group each). The shader still checks
    /// `id.x < width && id.y < height`, since the last groups overhang the grid.
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().build().unwrap();
    /// let k = rt.kernel("@group(0) @binding(0) var<storage, read_write> a: array<f32>;
    ///     @compute @workgroup_size(16, 8) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    ///         if id.x < 100u && id.y < 20u { a[id.y * 100u + id.x] = 1.0; }
    ///     }", "main").unwrap();
    /// assert_eq!(k.groups_for_2d(100, 20), [7, 3, 1]);
    /// assert_eq!(k.groups_for_2d(0, 0), [1, 1, 1]);
    /// ```
    pub fn groups_for_2d(&self, width: usize, height: usize) -> [u32; 3] {
        let [wx, wy, _] = self.inner.workgroup_size.map(|w| w.max(1) as usize);
        [
            width.div_ceil(wx).max(1) as u32,
            height.div_ceil(wy).max(1) as u32,
            1,
        ]
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
        // What every device can run: a shader using f64 where a device lacks SHADER_F64
        // (most WebGPU adapters) is refused here, with naga's message, rather than by the
        // driver later.
        let mut caps = naga::valid::Capabilities::all();
        if devices
            .iter()
            .any(|d| !d.device.features().contains(wgpu::Features::SHADER_F64))
        {
            caps.remove(naga::valid::Capabilities::FLOAT64);
        }
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
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
            let (layout, uniform) = match kind {
                // The bytes a uniform binding takes: its type's size rounded up to 16, the
                // uniform address space's alignment (what wgpu requires of the buffer).
                BindingKind::Uniform => (
                    None,
                    Some(
                        module.types[var.ty]
                            .inner
                            .size(module.to_ctx())
                            .div_ceil(16)
                            * 16,
                    ),
                ),
                _ => (element_layout(&module, var.ty), None),
            };
            bindings.push((rb.binding, kind, layout, uniform));
        }
        bindings.sort_by_key(|b| b.0);
        let layouts: Vec<Option<ElementLayout>> = bindings.iter().map(|b| b.2).collect();
        let uniform_sizes: Vec<Option<u32>> = bindings.iter().map(|b| b.3).collect();
        let bindings: Vec<(u32, BindingKind)> = bindings.iter().map(|b| (b.0, b.1)).collect();

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
            #[cfg(not(target_arch = "wasm32"))]
            if let Some(err) = pollster::block_on(scope.pop()) {
                return Err(DeviceError::Pipeline {
                    label,
                    gpu: gpu.info.index,
                    device: gpu.info.name.clone(),
                    message: err.to_string(),
                });
            }
            // WebGPU resolves the scope through the page's event loop, after this returns.
            // naga has validated the module above, so an error here is the browser's own
            // limit: it is logged, and each task dispatching the pipeline fails in its scope.
            #[cfg(target_arch = "wasm32")]
            {
                let pop = scope.pop();
                let what = label.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(e) = pop.await {
                        tracing::error!(kernel = %what, error = %e, "WebGPU rejected the pipeline");
                    }
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
                layouts,
                uniform_sizes,
                pipelines,
            }),
            typed: true,
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
        assert_eq!(k.groups_for_2d(129, 5), [2, 5, 1]);
        let tiles = SRC.replace("@workgroup_size(128)", "@workgroup_size(8, 4)");
        let k = Kernel::compile(&tiles, "main", &[]).expect("valid");
        assert_eq!(k.workgroup_size(), [8, 4, 1]);
        assert_eq!(k.groups_for_2d(17, 8), [3, 2, 1]);
        assert_eq!(k.groups_for_2d(16, 9), [2, 3, 1]);
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
