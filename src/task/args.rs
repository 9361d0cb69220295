//! Typed task arguments: arrays declared once, with how the task uses them.
//!
//! `rt.task("saxpy").args((x.read(), y.read_write()))` declares the accesses (the dependency
//! graph and the coherence tracker see them as `.reads(&x).read_write(&y)`), and the bodies
//! receive the arrays in declared order: a CPU body gets `(&[f32], &mut [f32])`, a GPU body
//! gets one [`Binding`] per array to pass to [`GpuContext::dispatch`]. Nothing is cloned by
//! the user, nothing is looked up by handle in the body, and the compiler enforces the access
//! mode:
//!
//! ```compile_fail
//! # use hetflow::Runtime;
//! let rt = Runtime::builder().no_gpu().build().unwrap();
//! let x = rt.array_from(vec![1.0f32; 4]);
//! // `x` is read: its CPU view is `&[f32]`, so writing through it does not compile.
//! rt.task("bad").args((x.read(),)).cpu(|(x,)| x[0] = 2.0).spawn();
//! ```
//!
//! A GPU body can only bind what the task declared: an [`Array`] is not a binding.
//!
//! ```compile_fail
//! # use hetflow::Runtime;
//! let rt = Runtime::builder().no_gpu().build().unwrap();
//! let (x, z) = (rt.array_from(vec![1u32; 4]), rt.array_from(vec![0u32; 4]));
//! let k = rt.kernel("@group(0) @binding(0) var<storage, read_write> a: array<u32>;
//!     @compute @workgroup_size(1) fn main() { a[0] = 1u; }", "main").unwrap();
//! rt.task("bad")
//!     .args((x.read_write(),))
//!     .gpu(move |cx, (_x,)| cx.dispatch(&k, (&z,), [1, 1, 1]))
//!     .spawn();
//! ```
//!
//! For access lists only known at run time, the untyped form stays:
//! [`TaskBuilder::reads`] … with [`CpuContext::read`] and [`GpuContext::dispatch_dyn`].

// The traits' hidden methods name engine types (`RawArray`): they are sealed, so no one
// outside the crate implements or calls them.
#![allow(private_interfaces)]

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use super::builder::TaskBuilder;
use super::context::{sealed as kernel_arg, ArgRef, CpuContext, GpuContext, Uniform};
use super::handle::{Dependency, TaskHandle};
use super::node::Value;
use super::space::{TaskKey, TaskSpace};
use crate::data::array::RawArray;
use crate::data::{Access, Array, DataError, ReduceOp, Reducible, Reduction};
use crate::device::kernel::Scalar;
use crate::sched::Placement;

/// `array.read()`: the task reads the array (CPU view `&[T]`).
pub struct ReadArg<T: Pod>(Array<T>);
/// `array.read_write()`: the task reads and updates the array (CPU view `&mut [T]`).
pub struct ReadWriteArg<T: Pod>(Array<T>);
/// `array.write()`: the task overwrites the whole array; the old contents are not fetched
/// (CPU view `&mut [T]`: write every element).
pub struct WriteArg<T: Pod>(Array<T>);
/// `array.reduce(op)`: the task combines into the array with `op` (CPU view `&mut [T]`, a
/// private partial that starts at `op`'s identity; see [`TaskBuilder::reduces`]).
pub struct ReduceArg<T: Reducible>(Array<T>, ReduceOp);

impl<T: Pod> Array<T> {
    /// This array as a read argument of a task ([`TaskBuilder::args`]).
    pub fn read(&self) -> ReadArg<T> {
        ReadArg(self.clone())
    }

    /// This array as a read-write argument of a task ([`TaskBuilder::args`]).
    pub fn read_write(&self) -> ReadWriteArg<T> {
        ReadWriteArg(self.clone())
    }

    /// This array as a write-only argument of a task ([`TaskBuilder::args`]): the task
    /// overwrites all of it.
    pub fn write(&self) -> WriteArg<T> {
        WriteArg(self.clone())
    }
}

impl<T: Reducible> Array<T> {
    /// This array as a reduction argument of a task ([`TaskBuilder::args`]).
    pub fn reduce(&self, op: ReduceOp) -> ReduceArg<T> {
        ReduceArg(self.clone(), op)
    }
}

/// A declared array as a GPU body sees it: pass it to [`GpuContext::dispatch`]. Only the
/// runtime makes one, from the task's arguments, so a dispatch binds declared arrays only.
pub struct Binding<'a, T> {
    raw: &'a Arc<RawArray>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Binding<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Binding<'_, T> {}

impl<T: Pod> Binding<'_, T> {
    /// The array's label.
    pub fn label(&self) -> &str {
        &self.raw.label
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// The array's copies and their states (see [`Array::overview`]).
    pub fn overview(&self) -> String {
        self.raw.overview()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// One typed argument of a task: [`ReadArg`], [`ReadWriteArg`], [`WriteArg`] or
/// [`ReduceArg`], or an `Option` of one (`None` declares nothing; the bodies receive
/// `None`). Sealed.
pub trait TaskArg: sealed::Sealed + Send + Sync + 'static {
    /// What a CPU body receives: `&[T]` or `&mut [T]` (an `Option` of it for an optional
    /// argument).
    type Cpu<'a>;
    /// What a GPU body receives: a [`Binding`] (an `Option` of it for an optional argument).
    type Gpu<'a>;
    /// Appends the array this argument declares, with its access, if any.
    #[doc(hidden)]
    fn declare_into(&self, out: &mut Vec<(Arc<RawArray>, Access)>);
    #[doc(hidden)]
    fn cpu_view<'a>(&self, cx: &'a CpuContext<'_>) -> Result<Self::Cpu<'a>, DataError>;
    #[doc(hidden)]
    fn gpu_view(&self) -> Self::Gpu<'_>;
}

macro_rules! arg {
    ($ty:ident, $bound:path, $access:expr, $cpu:ty, $view:ident) => {
        impl<T: $bound> sealed::Sealed for $ty<T> {}
        impl<T: $bound> TaskArg for $ty<T> {
            type Cpu<'a> = $cpu;
            type Gpu<'a> = Binding<'a, T>;
            fn declare_into(&self, out: &mut Vec<(Arc<RawArray>, Access)>) {
                #[allow(clippy::redundant_closure_call)]
                out.push((self.0.raw.clone(), ($access)(self)));
            }
            fn cpu_view<'a>(&self, cx: &'a CpuContext<'_>) -> Result<Self::Cpu<'a>, DataError> {
                cx.$view(&self.0)
            }
            fn gpu_view(&self) -> Binding<'_, T> {
                Binding {
                    raw: &self.0.raw,
                    _t: PhantomData,
                }
            }
        }
    };
}

arg!(ReadArg, Pod, |_| Access::Read, &'a [T], try_read);
arg!(
    ReadWriteArg,
    Pod,
    |_| Access::ReadWrite,
    &'a mut [T],
    try_write
);
arg!(WriteArg, Pod, |_| Access::Write, &'a mut [T], try_write);
arg!(
    ReduceArg,
    Reducible,
    |s: &ReduceArg<T>| Access::Reduce(Reduction::of::<T>(s.1)),
    &'a mut [T],
    try_write
);

/// An optional argument: `Some(arg)` declares `arg` as usual and the bodies receive
/// `Some(view)`; `None` declares nothing (no dependency, no transfer) and the bodies receive
/// `None`. So one spawn covers a task that reduces only on some iterations:
///
/// ```
/// use hetflow::{ReduceOp, Runtime};
///
/// let rt = Runtime::builder().no_gpu().build().unwrap();
/// let x = rt.array_from(vec![1.0f32, -3.0, 2.0]);
/// let biggest = rt.array_from(vec![f32::MIN]);
/// for i in 0..3 {
///     let check = (i == 2).then(|| biggest.reduce(ReduceOp::Max));
///     rt.task("step")
///         .args((x.read_write(), check))
///         .cpu(|(x, check)| {
///             x.iter_mut().for_each(|v| *v *= 2.0);
///             if let Some(m) = check {
///                 m[0] = x.iter().copied().fold(m[0], f32::max);
///             }
///         })
///         .spawn();
/// }
/// assert_eq!(biggest.to_vec().unwrap(), vec![16.0]);
/// ```
///
/// A GPU body receives `Option<Binding>` and dispatches the kernel that binds it, or one
/// that does not.
impl<A: TaskArg> sealed::Sealed for Option<A> {}
impl<A: TaskArg> TaskArg for Option<A> {
    type Cpu<'a> = Option<A::Cpu<'a>>;
    type Gpu<'a> = Option<A::Gpu<'a>>;
    fn declare_into(&self, out: &mut Vec<(Arc<RawArray>, Access)>) {
        if let Some(a) = self {
            a.declare_into(out);
        }
    }
    fn cpu_view<'a>(&self, cx: &'a CpuContext<'_>) -> Result<Self::Cpu<'a>, DataError> {
        self.as_ref().map(|a| a.cpu_view(cx)).transpose()
    }
    fn gpu_view(&self) -> Self::Gpu<'_> {
        self.as_ref().map(A::gpu_view)
    }
}

/// A task's typed arguments: one [`TaskArg`] or a tuple of up to 12, in the order the bodies
/// receive them.
pub trait TaskArgs: Send + Sync + 'static {
    /// What a CPU body receives.
    type Cpu<'a>;
    /// What a GPU body receives.
    type Gpu<'a>;
    #[doc(hidden)]
    fn declare(&self, out: &mut Vec<(Arc<RawArray>, Access)>);
    #[doc(hidden)]
    fn cpu_views<'a>(&self, cx: &'a CpuContext<'_>) -> Result<Self::Cpu<'a>, DataError>;
    #[doc(hidden)]
    fn gpu_views(&self) -> Self::Gpu<'_>;
}

impl<A: TaskArg> TaskArgs for A {
    type Cpu<'a> = A::Cpu<'a>;
    type Gpu<'a> = A::Gpu<'a>;
    fn declare(&self, out: &mut Vec<(Arc<RawArray>, Access)>) {
        self.declare_into(out);
    }
    fn cpu_views<'a>(&self, cx: &'a CpuContext<'_>) -> Result<Self::Cpu<'a>, DataError> {
        self.cpu_view(cx)
    }
    fn gpu_views(&self) -> Self::Gpu<'_> {
        self.gpu_view()
    }
}

macro_rules! args_tuple {
    ($($a:ident $i:tt),+) => {
        impl<$($a: TaskArg),+> TaskArgs for ($($a,)+) {
            type Cpu<'a> = ($($a::Cpu<'a>,)+);
            type Gpu<'a> = ($($a::Gpu<'a>,)+);
            fn declare(&self, out: &mut Vec<(Arc<RawArray>, Access)>) {
                $(self.$i.declare_into(out);)+
            }
            fn cpu_views<'a>(&self, cx: &'a CpuContext<'_>) -> Result<Self::Cpu<'a>, DataError> {
                Ok(($(self.$i.cpu_view(cx)?,)+))
            }
            fn gpu_views(&self) -> Self::Gpu<'_> {
                ($(self.$i.gpu_view(),)+)
            }
        }
    };
}

args_tuple!(A 0);
args_tuple!(A 0, B 1);
args_tuple!(A 0, B 1, C 2);
args_tuple!(A 0, B 1, C 2, D 3);
args_tuple!(A 0, B 1, C 2, D 3, E 4);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);

/// One kernel binding in a typed dispatch: a [`Binding`] of a declared array or a
/// [`Uniform`] (not an [`Array`]: only what the task declared can be bound). Sealed, with
/// [`crate::task::KernelArg`]'s conversion.
pub trait Bind: kernel_arg::Sealed {}

impl<T: Pod> kernel_arg::Sealed for Binding<'_, T> {
    fn arg_ref(&self) -> ArgRef<'_> {
        ArgRef::Array(self.raw, Scalar::of::<T>())
    }
}
impl<T: Pod> Bind for Binding<'_, T> {}

impl<T: Pod> Bind for Uniform<T> {}

impl<B: Bind> kernel_arg::Sealed for &B {
    fn arg_ref(&self) -> ArgRef<'_> {
        (**self).arg_ref()
    }
}
impl<B: Bind> Bind for &B {}

/// The bindings of one dispatch, in binding order: a tuple of [`Bind`]s (a kernel with one
/// binding takes a 1-tuple, `(x,)`).
pub trait Bindings {
    #[doc(hidden)]
    fn arg_refs(&self) -> Vec<ArgRef<'_>>;
}

macro_rules! bindings_tuple {
    ($($b:ident $i:tt),+) => {
        impl<$($b: Bind),+> Bindings for ($($b,)+) {
            fn arg_refs(&self) -> Vec<ArgRef<'_>> {
                vec![$(self.$i.arg_ref()),+]
            }
        }
    };
}

bindings_tuple!(A 0);
bindings_tuple!(A 0, B 1);
bindings_tuple!(A 0, B 1, C 2);
bindings_tuple!(A 0, B 1, C 2, D 3);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
bindings_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);

/// A task with typed arguments, made by [`TaskBuilder::args`]: its bodies receive the
/// declared arrays. Nothing runs until [`ArgsTask::spawn`].
///
/// ```
/// use hetflow::Runtime;
///
/// let rt = Runtime::builder().no_gpu().build().unwrap();
/// let x = rt.array_from(vec![1.0f32; 4]);
/// let y = rt.array_from(vec![2.0f32; 4]);
/// rt.task("saxpy")
///     .args((x.read(), y.read_write()))
///     .cpu(|(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y += 3.0 * x))
///     .spawn();
/// assert_eq!(y.to_vec().unwrap(), vec![5.0; 4]);
/// ```
#[must_use = "a task does nothing until spawn() is called"]
pub struct ArgsTask<T, A> {
    inner: TaskBuilder<T>,
    args: Arc<A>,
}

impl<T: Send + 'static> TaskBuilder<T> {
    /// Declares the task's arrays once, with how it uses each (`x.read()`,
    /// `y.read_write()`, `z.write()`, `s.reduce(op)`); the bodies then receive them in this
    /// order. A single argument or a tuple of up to 12.
    pub fn args<A: TaskArgs>(self, args: A) -> ArgsTask<T, A> {
        let mut declared = Vec::new();
        args.declare(&mut declared);
        let inner = declared
            .into_iter()
            .fold(self, |b, (raw, access)| b.access(raw, access));
        ArgsTask {
            inner,
            args: Arc::new(args),
        }
    }
}

impl<T: Send + 'static, A: TaskArgs> ArgsTask<T, A> {
    /// Runs after `dep` has finished (see [`TaskBuilder::after`]).
    pub fn after(mut self, dep: &impl Dependency) -> Self {
        self.inner = self.inner.after(dep);
        self
    }

    /// Runs after every task in `deps`.
    pub fn after_all<'d, D: Dependency + 'd>(
        mut self,
        deps: impl IntoIterator<Item = &'d D>,
    ) -> Self {
        self.inner = self.inner.after_all(deps);
        self
    }

    /// Runs after the task spawned under `key` in `space` (see [`TaskBuilder::after_key`]).
    pub fn after_key(mut self, space: &TaskSpace, key: impl Into<TaskKey>) -> Self {
        self.inner = self.inner.after_key(space, key);
        self
    }

    /// Names this task `space[key]`.
    pub fn key(mut self, space: &TaskSpace, key: impl Into<TaskKey>) -> Self {
        self.inner = self.inner.key(space, key);
        self
    }

    /// Where the task may run (default [`Placement::Any`]).
    pub fn on(mut self, placement: Placement) -> Self {
        self.inner = self.inner.on(placement);
        self
    }

    /// Its priority among ready CPU tasks (see [`TaskBuilder::priority`]).
    pub fn priority(mut self, priority: i32) -> Self {
        self.inner = self.inner.priority(priority);
        self
    }

    /// The CPU body: receives the arguments' host views in declared order (`&[T]` for a
    /// read, `&mut [T]` otherwise). Its return value is the task's value.
    pub fn cpu(self, f: impl for<'a> FnOnce(A::Cpu<'a>) -> T + Send + 'static) -> Self {
        self.cpu_with(move |_, views| f(views))
    }

    /// Like [`ArgsTask::cpu`], with the body's context too (its runtime, for nested
    /// spawns; its name).
    pub fn cpu_with(
        mut self,
        f: impl for<'a, 'c> FnOnce(&'a CpuContext<'c>, A::Cpu<'a>) -> T + Send + 'static,
    ) -> Self {
        let args = self.args.clone();
        self.inner = self.inner.cpu_body(Box::new(move |cx| {
            let cx = &*cx;
            let views = args.cpu_views(cx)?;
            Ok(Box::new(f(cx, views)) as Value)
        }));
        self
    }

    /// A fallible CPU body: `Err` fails the task with [`crate::TaskError::Failed`].
    pub fn cpu_try<E>(
        mut self,
        f: impl for<'a> FnOnce(A::Cpu<'a>) -> Result<T, E> + Send + 'static,
    ) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let args = self.args.clone();
        self.inner = self.inner.cpu_body(Box::new(move |cx| {
            let views = args.cpu_views(&*cx)?;
            Ok(Box::new(f(views)?) as Value)
        }));
        self
    }

    /// The GPU body: receives the context and one [`Binding`] per argument, in declared
    /// order, to record dispatches with [`GpuContext::dispatch`].
    pub fn gpu(
        mut self,
        f: impl for<'a, 'c> FnOnce(&mut GpuContext<'c>, A::Gpu<'a>) -> T + Send + 'static,
    ) -> Self {
        let args = self.args.clone();
        self.inner = self.inner.gpu(move |cx| f(cx, args.gpu_views()));
        self
    }

    /// A fallible GPU body.
    pub fn gpu_try<E>(
        mut self,
        f: impl for<'a, 'c> FnOnce(&mut GpuContext<'c>, A::Gpu<'a>) -> Result<T, E> + Send + 'static,
    ) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let args = self.args.clone();
        self.inner = self.inner.gpu_try(move |cx| f(cx, args.gpu_views()));
        self
    }

    /// Submits the task (see [`TaskBuilder::spawn`]).
    pub fn spawn(self) -> TaskHandle<T> {
        self.inner.spawn()
    }
}
