//! What a task body sees: its declared arrays on the CPU, or an encoder on the GPU.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use super::args::Bindings;
use super::error::TaskError;
use crate::data::array::RawArray;
use crate::data::reduce::HostPartial;
use crate::data::{Access, Array, DataError};
use crate::device::kernel::{ElementLayout, Scalar};
use crate::device::{BindingKind, GpuDevice, Kernel};
use crate::runtime::RuntimeHandle;
use crate::sched::job::BatchEncoder;

/// A private copy of an array that a `write` after a `read` of it in the same body goes to,
/// copied into the array when the body returns (see [`CpuContext::try_write`]).
///
/// The words are owned through a raw pointer, not a `Box`, so that moving the entry (the
/// table grows) never asserts uniqueness over memory a handed-out `&mut [T]` points into.
struct Scratch {
    array: u64,
    words: NonNull<[u128]>,
}

impl Scratch {
    fn copy_of(raw: &RawArray) -> Scratch {
        let mut words = vec![0u128; raw.bytes.div_ceil(16)].into_boxed_slice();
        // SAFETY: the task declared access to `raw`, so no writer runs concurrently, and this
        // body holds no `&mut` to it (the caller checked the borrow table).
        let host = unsafe { raw.host_bytes() };
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..raw.bytes].copy_from_slice(host);
        Scratch {
            array: raw.id,
            words: NonNull::from(Box::leak(words)),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: `words` came from `Box::leak` in `copy_of` and is freed only here; every
        // slice handed out from it borrowed the context, which outlives this entry.
        drop(unsafe { Box::from_raw(self.words.as_ptr()) });
    }
}

// SAFETY: a `Scratch` owns its words alone (like the `Box` it was made from).
unsafe impl Send for Scratch {}

/// The context of a CPU body: borrow the task's declared arrays as slices, spawn more tasks.
///
/// ## Borrows
/// A body may take any number of `read`s of an array, then one `write` of it. A `write` that
/// comes after a `read` of the same array cannot hand out the array's memory, since the read
/// slice may still be alive and a `&[T]` must never alias a `&mut [T]`: it hands out a private
/// copy of the contents instead, which is copied into the array when the body returns
/// successfully (read slices keep showing the contents the body started with). A `read` after
/// a `write`, or a second `write`, is a [`DataError::BorrowConflict`]: the `&mut [T]` may
/// still be alive. This costs nothing in the common case (reads and writes of different
/// arrays, or a single `write`), and one copy of the array in the read-then-write case.
pub struct CpuContext<'a> {
    task: &'a str,
    accesses: &'a [(Arc<RawArray>, Access)],
    /// (array id, n) with n > 0 shared borrows, n = -1 one mutable borrow.
    borrows: RefCell<Vec<(u64, i32)>>,
    /// Private copies that writes after reads went to.
    scratch: RefCell<Vec<Scratch>>,
    runtime: &'a RuntimeHandle,
    /// Private partials of the arrays this task reduces.
    partials: &'a [HostPartial],
}

impl<'a> CpuContext<'a> {
    pub(crate) fn new(
        task: &'a str,
        accesses: &'a [(Arc<RawArray>, Access)],
        runtime: &'a RuntimeHandle,
        partials: &'a [HostPartial],
    ) -> Self {
        CpuContext {
            task,
            accesses,
            borrows: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::new()),
            runtime,
            partials,
        }
    }

    /// The task's name.
    pub fn task_name(&self) -> &str {
        self.task
    }

    /// Ends the body: copies every private write copy (a write after a read of the same
    /// array) into its array. Called only when the body succeeded.
    pub(crate) fn commit(self) {
        if self.scratch.borrow().is_empty() {
            return;
        }
        for s in self.scratch.take() {
            let Some((raw, _)) = self.accesses.iter().find(|(r, _)| r.id == s.array) else {
                continue;
            };
            // SAFETY: the body has returned, so no slice it was given is alive; the task
            // declared a write of `raw`, so no other task uses its host copy now.
            let host = unsafe { raw.host_bytes_mut() };
            // SAFETY: `words` is live until `s` drops (see `Scratch`), and nothing else
            // borrows it any more.
            let words = unsafe { s.words.as_ref() };
            host.copy_from_slice(&bytemuck::cast_slice::<u128, u8>(words)[..raw.bytes]);
        }
    }

    /// The overview of each array the task declared, in declared order, one after another
    /// (see [`Array::overview`]).
    pub fn overviews(&self) -> String {
        let all: Vec<String> = self.accesses.iter().map(|(r, _)| r.overview()).collect();
        all.join("\n")
    }

    /// The runtime, to spawn nested tasks or create arrays from inside a body.
    pub fn runtime(&self) -> &RuntimeHandle {
        self.runtime
    }

    /// The task's own handle on the array (it lives as long as the context).
    fn entry(&self, raw: &RawArray) -> Option<(&'a RawArray, Access)> {
        self.accesses
            .iter()
            .find(|(r, _)| r.id == raw.id)
            .map(|(r, a)| (&**r, *a))
    }

    fn undeclared(
        &self,
        raw: &RawArray,
        used: &'static str,
        declared: Option<Access>,
    ) -> DataError {
        DataError::Undeclared {
            task: self.task.to_string(),
            array: raw.label.clone(),
            used,
            declared: declared.map_or("nothing", Access::name),
        }
    }

    /// Borrows a declared array for reading.
    pub fn try_read<'s, T: Pod>(&'s self, a: &Array<T>) -> Result<&'s [T], DataError> {
        let raw = match self.entry(&a.raw) {
            Some((raw, access)) if access.reduction().is_none() => raw,
            other => return Err(self.undeclared(&a.raw, "reading", other.map(|e| e.1))),
        };
        let mut b = self.borrows.borrow_mut();
        match b.iter_mut().find(|(id, _)| *id == raw.id) {
            Some((_, n)) if *n < 0 => {
                return Err(DataError::BorrowConflict {
                    task: self.task.to_string(),
                    array: raw.label.clone(),
                    what: "for reading while it is borrowed for writing",
                })
            }
            Some((_, n)) => *n += 1,
            None => b.push((raw.id, 1)),
        }
        // SAFETY: the task declared this array, so the dependency graph runs no writer of it
        // concurrently, and its host copy was made valid before the body started. The borrow
        // table above rules out a live `&mut` from this body.
        Ok(bytemuck::cast_slice(unsafe { raw.host_bytes() }))
    }

    /// Borrows a declared array for writing (declared `writes` or `read_write`). With
    /// `writes`, the old contents are not fetched: overwrite every element.
    ///
    /// After a `read` of the same array in this body, the slice is a private copy of the
    /// contents, written into the array when the body returns (see [`CpuContext`]'s
    /// "Borrows"). A second `write` of the array is a [`DataError::BorrowConflict`].
    #[allow(clippy::mut_from_ref)]
    pub fn try_write<'s, T: Pod>(&'s self, a: &Array<T>) -> Result<&'s mut [T], DataError> {
        let entry = self.entry(&a.raw);
        let declared = entry.map(|e| e.1);
        let (raw, reducing) = match entry {
            Some((raw, access)) if access.writes() => (raw, false),
            Some((raw, access)) if access.reduction().is_some() => (raw, true),
            _ => return Err(self.undeclared(&a.raw, "writing", declared)),
        };
        let mut b = self.borrows.borrow_mut();
        match b.iter_mut().find(|(id, _)| *id == raw.id) {
            Some((_, n)) if *n > 0 && !reducing => {
                // Read slices of the array may be alive: write to a private copy.
                *n = -1;
                let mut scratch = self.scratch.borrow_mut();
                scratch.push(Scratch::copy_of(raw));
                let words = scratch[scratch.len() - 1].words;
                // SAFETY: the words are this entry's alone and stay allocated until the
                // context drops (moving the entry does not move them); the borrow table now
                // marks the array as written, so this is the only slice of them.
                let bytes = unsafe { bytemuck::cast_slice_mut::<u128, u8>(&mut *words.as_ptr()) };
                return Ok(bytemuck::cast_slice_mut(&mut bytes[..raw.bytes]));
            }
            Some(_) => {
                return Err(DataError::BorrowConflict {
                    task: self.task.to_string(),
                    array: raw.label.clone(),
                    what: "for writing a second time",
                })
            }
            None => b.push((raw.id, -1)),
        }
        if reducing {
            let Some(p) = self.partials.iter().find(|p| p.array_id == raw.id) else {
                return Err(self.undeclared(&a.raw, "reducing", declared));
            };
            // SAFETY: the partial belongs to this task alone, and the borrow table guarantees
            // this is the only borrow of it in this body.
            return Ok(bytemuck::cast_slice_mut(unsafe { p.bytes_mut() }));
        }
        // SAFETY: the task declared a write, so the dependency graph runs no other reader or
        // writer of this array concurrently; the borrow table guarantees this is the only
        // borrow of it in this body.
        Ok(bytemuck::cast_slice_mut(unsafe { raw.host_bytes_mut() }))
    }

    /// Parla's `clone_here` in a CPU body: a private copy of a declared array's contents.
    pub fn clone_here<T: Pod>(&self, a: &Array<T>) -> Result<Vec<T>, DataError> {
        self.try_read(a).map(<[T]>::to_vec)
    }

    /// Like [`CpuContext::try_read`].
    ///
    /// # Panics
    /// If the array was not declared on the task; the task then fails with
    /// [`TaskError::Panicked`] carrying the [`DataError`] message.
    pub fn read<'s, T: Pod>(&'s self, a: &Array<T>) -> &'s [T] {
        self.try_read(a).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`CpuContext::try_write`].
    ///
    /// # Panics
    /// If the array was not declared for writing, or is already borrowed for writing in this
    /// body; the
    /// task then fails with [`TaskError::Panicked`] carrying the [`DataError`] message.
    #[allow(clippy::mut_from_ref)]
    pub fn write<'s, T: Pod>(&'s self, a: &Array<T>) -> &'s mut [T] {
        self.try_write(a).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Small parameters passed to a kernel's `var<uniform>` binding.
///
/// The value is copied into a uniform buffer at dispatch. Its layout must match the WGSL
/// struct (use `#[repr(C)]` and WGSL's alignment rules).
#[derive(Debug, Clone, Copy)]
pub struct Uniform<T: Pod>(pub T);

#[doc(hidden)]
#[allow(private_interfaces)]
#[derive(Clone, Copy)]
pub enum ArgRef<'a> {
    /// An array, with the scalar type of its elements when it is known.
    Array(&'a Arc<RawArray>, Option<Scalar>),
    Uniform(&'a [u8]),
}

/// Something that can be bound to a kernel binding: an [`Array`] or a [`Uniform`].
pub trait KernelArg: sealed::Sealed {}

pub(super) mod sealed {
    pub trait Sealed {
        fn arg_ref(&self) -> super::ArgRef<'_>;
    }
}

impl<T: Pod> sealed::Sealed for Array<T> {
    fn arg_ref(&self) -> ArgRef<'_> {
        ArgRef::Array(&self.raw, Scalar::of::<T>())
    }
}
impl<T: Pod> KernelArg for Array<T> {}

impl<T: Pod> sealed::Sealed for Uniform<T> {
    fn arg_ref(&self) -> ArgRef<'_> {
        ArgRef::Uniform(bytemuck::bytes_of(&self.0))
    }
}
impl<T: Pod> KernelArg for Uniform<T> {}

/// The context of a GPU body: record dispatches into the task's command buffer.
///
/// A body only *encodes* work; it runs on the GPU after the body returns, batched with other
/// ready tasks. Errors in a dispatch (wrong number or kind of arguments, an undeclared array,
/// too many workgroups, a wgpu validation error) fail the task with a [`TaskError`].
///
/// Dispatches go into the batch's shared command buffer as they are recorded, so a body that
/// fails after some dispatches (an `Err`, a panic, a later refused dispatch) leaves those in
/// the batch: they run, and the task fails as usual — its arrays are poisoned and hold
/// whatever it left, as for a failed CPU body. Commands recorded through
/// [`GpuContext::encoder`] are dropped with a failed task.
pub struct GpuContext<'a> {
    task: &'a str,
    gpu: &'a GpuDevice,
    index: usize,
    /// The batch's shared encoder, where validated dispatches go.
    batch: &'a mut BatchEncoder,
    /// The task's own encoder, once the body asked for raw access ([`GpuContext::encoder`]).
    own: Option<wgpu::CommandEncoder>,
    buffers: &'a [(u64, Access, wgpu::Buffer)],
    error: Option<TaskError>,
}

impl<'a> GpuContext<'a> {
    pub(crate) fn new(
        task: &'a str,
        gpu: &'a GpuDevice,
        index: usize,
        batch: &'a mut BatchEncoder,
        buffers: &'a [(u64, Access, wgpu::Buffer)],
    ) -> Self {
        GpuContext {
            task,
            gpu,
            index,
            batch,
            own: None,
            buffers,
            error: None,
        }
    }

    pub(crate) fn take_error(&mut self) -> Option<TaskError> {
        self.error.take()
    }

    /// The task's own encoder, if the body used raw access.
    pub(crate) fn take_own(&mut self) -> Option<wgpu::CommandEncoder> {
        self.own.take()
    }

    /// The task's name.
    pub fn task_name(&self) -> &str {
        self.task
    }

    /// Index of the GPU the task runs on.
    pub fn gpu_index(&self) -> usize {
        self.index
    }

    /// The device, for direct wgpu use.
    pub fn device(&self) -> &GpuDevice {
        self.gpu
    }

    /// The task's command encoder, for direct wgpu use (copies, custom passes).
    ///
    /// Commands recorded here (and the task's dispatches after this call) go to a command
    /// buffer of the task's own, queued after everything recorded before: a wgpu validation
    /// error in it fails this task alone. Dispatches of a body that never calls this share
    /// the batch's command buffer, which is cheaper.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        if self.own.is_none() {
            self.batch.cut();
        }
        let (device, task) = (&self.gpu.device, self.task);
        self.own.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(task) })
        })
    }

    /// The device buffer of a declared array (valid when the body runs).
    pub fn buffer<T: Pod>(&self, a: &Array<T>) -> Option<&wgpu::Buffer> {
        self.buffers
            .iter()
            .find(|(id, _, _)| *id == a.raw.id)
            .map(|(_, _, b)| b)
    }

    /// Records one dispatch of `kernel` with `bindings` bound to its bindings in order: a
    /// tuple of the task's [`Binding`](super::Binding)s (typed arguments,
    /// [`crate::TaskBuilder::args`]) and [`Uniform`]s.
    pub fn dispatch(&mut self, kernel: &Kernel, bindings: impl Bindings, workgroups: [u32; 3]) {
        if self.error.is_some() {
            return;
        }
        let args = bindings.arg_refs();
        if let Err(e) = self.try_dispatch(kernel, &args, workgroups) {
            self.error = Some(e);
        }
    }

    /// Records one dispatch with arrays named by handle (the untyped form, for access lists
    /// built at run time): each must be declared on the task ([`crate::TaskBuilder::reads`]
    /// …), or the task fails with [`DataError::Undeclared`].
    pub fn dispatch_dyn(&mut self, kernel: &Kernel, args: &[&dyn KernelArg], workgroups: [u32; 3]) {
        if self.error.is_some() {
            return;
        }
        let args: Vec<ArgRef<'_>> = args.iter().map(|a| a.arg_ref()).collect();
        if let Err(e) = self.try_dispatch(kernel, &args, workgroups) {
            self.error = Some(e);
        }
    }

    fn gpu_err(&self, message: String) -> TaskError {
        TaskError::Gpu {
            task: self.task.to_string(),
            message,
        }
    }

    /// Checks an array against the runtime-sized array its binding holds: the same element
    /// type where both are known, and a whole number of elements.
    fn check_layout(
        &self,
        kernel: &Kernel,
        binding: u32,
        layout: &ElementLayout,
        raw: &RawArray,
        scalar: Option<Scalar>,
    ) -> Result<(), TaskError> {
        let mismatch = |found: String| TaskError::BindingMismatch {
            task: self.task.to_string(),
            kernel: kernel.inner.label.as_str().into(),
            binding,
            array: raw.label.as_str().into(),
            expected: layout.describe().into(),
            found: found.into(),
        };
        if let (true, Some(want), Some(have)) = (kernel.typed, layout.scalar, scalar) {
            if want != have {
                return Err(mismatch(format!("elements of {have}")));
            }
        }
        let bytes = raw.bytes as u64;
        let (offset, stride) = (u64::from(layout.offset), u64::from(layout.stride));
        if bytes < offset || (stride > 0 && !(bytes - offset).is_multiple_of(stride)) {
            return Err(mismatch(format!("{bytes} bytes")));
        }
        Ok(())
    }

    fn try_dispatch(
        &mut self,
        kernel: &Kernel,
        args: &[ArgRef<'_>],
        groups: [u32; 3],
    ) -> Result<(), TaskError> {
        let k = &kernel.inner;
        let Some((pipeline, layout)) = k.pipelines.get(self.index) else {
            return Err(self.gpu_err(format!(
                "kernel `{}` has no pipeline for GPU {} (it was created by another runtime)",
                k.label, self.index
            )));
        };
        if args.len() != k.bindings.len() {
            return Err(self.gpu_err(format!(
                "kernel `{}` expects {} argument(s) for bindings {:?}, got {}",
                k.label,
                k.bindings.len(),
                k.bindings,
                args.len()
            )));
        }
        let max = self.gpu.info.max_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(self.gpu_err(format!(
                "kernel `{}`: {groups:?} workgroups exceed the device limit of {max} per dimension",
                k.label
            )));
        }
        enum Src<'b> {
            Uniform(usize),
            Buffer(&'b wgpu::Buffer),
        }
        let mut uniforms = Vec::new();
        let mut sources: Vec<(u32, Src<'_>)> = Vec::with_capacity(args.len());
        let bindings = args
            .iter()
            .zip(&k.bindings)
            .zip(k.layouts.iter().zip(&k.uniform_sizes));
        for ((arg, &(binding, kind)), (layout, uniform_size)) in bindings {
            match *arg {
                ArgRef::Array(raw, scalar) => {
                    if let Some(layout) = layout {
                        self.check_layout(kernel, binding, layout, raw, scalar)?;
                    }
                    let Some((_, access, buf)) =
                        self.buffers.iter().find(|(id, _, _)| *id == raw.id)
                    else {
                        return Err(TaskError::TaskData {
                            task: self.task.to_string(),
                            error: DataError::Undeclared {
                                task: self.task.to_string(),
                                array: raw.label.clone(),
                                used: "a kernel binding",
                                declared: "nothing",
                            },
                        });
                    };
                    match kind {
                        BindingKind::Uniform => {
                            return Err(self.gpu_err(format!(
                                "kernel `{}` binding {binding} is a uniform; pass a Uniform, not array `{}`",
                                k.label, raw.label
                            )))
                        }
                        BindingKind::StorageReadWrite
                            if !access.writes() && access.reduction().is_none() =>
                        {
                            return Err(TaskError::TaskData {
                                task: self.task.to_string(),
                                error: DataError::Undeclared {
                                    task: self.task.to_string(),
                                    array: raw.label.clone(),
                                    used: "a read_write binding",
                                    declared: access.name(),
                                },
                            })
                        }
                        _ => {}
                    }
                    sources.push((binding, Src::Buffer(buf)));
                }
                ArgRef::Uniform(bytes) => {
                    if kind != BindingKind::Uniform {
                        return Err(self.gpu_err(format!(
                            "kernel `{}` binding {binding} is a storage buffer ({kind:?}); pass an Array, not a Uniform",
                            k.label
                        )));
                    }
                    // A uniform shorter than the WGSL struct reads its last fields as 0, a
                    // longer one means the struct is not what the caller thinks: both are
                    // refused, naming both sizes.
                    if let Some(size) = uniform_size.filter(|s| *s as usize != bytes.len()) {
                        return Err(TaskError::BindingMismatch {
                            task: self.task.to_string(),
                            kernel: k.label.clone().into_boxed_str(),
                            binding,
                            array: "a Uniform".into(),
                            expected: format!(
                                "a uniform of {size} bytes (its WGSL type's size, rounded up to 16)"
                            )
                            .into_boxed_str(),
                            found: format!("{} bytes", bytes.len()).into_boxed_str(),
                        });
                    }
                    let max = self.gpu.info.max_uniform_binding;
                    if bytes.len() as u64 > max {
                        return Err(self.gpu_err(format!(
                            "kernel `{}` binding {binding}: a uniform of {} bytes exceeds the device limit of {max}",
                            k.label,
                            bytes.len()
                        )));
                    }
                    // A slot of the batch's uniform arena (one buffer per 64 KiB of uniforms,
                    // written once before the batch is submitted).
                    uniforms.push(self.batch.uniform(bytes));
                    sources.push((binding, Src::Uniform(uniforms.len() - 1)));
                }
            }
        }
        // Built only when the batch has no such group yet.
        let make = |layout: &wgpu::BindGroupLayout| {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = sources
                .iter()
                .map(|(binding, src)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: match src {
                        Src::Uniform(i) => {
                            let (buffer, offset, size) = &uniforms[*i];
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer,
                                offset: *offset,
                                size: std::num::NonZeroU64::new(*size),
                            })
                        }
                        Src::Buffer(buf) => buf.as_entire_binding(),
                    },
                })
                .collect();
            self.gpu
                .device
                .create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&k.label),
                    layout,
                    entries: &entries,
                })
        };
        let bind_group = layout.as_ref().map(|layout| {
            if !uniforms.is_empty() {
                // A uniform is a fresh slot per dispatch: nothing to reuse.
                return make(layout);
            }
            let key: Vec<(u32, wgpu::Buffer)> = sources
                .iter()
                .filter_map(|(binding, src)| match src {
                    Src::Buffer(buf) => Some((*binding, (*buf).clone())),
                    Src::Uniform(_) => None,
                })
                .collect();
            self.batch.bind_group(pipeline, key, || make(layout))
        });
        let encoder = match &mut self.own {
            Some(own) => own,
            None => self.batch.shared(),
        };
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&k.label),
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        if let Some(bg) = &bind_group {
            pass.set_bind_group(0, bg, &[]);
        }
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }
}
