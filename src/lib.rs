//! # hetflow — a heterogeneous task runtime
//!
//! Spawn tasks from Rust; hetflow places each on a CPU worker or a GPU (through wgpu), moves
//! the arrays it touches to where it runs, and keeps every copy coherent.
//!
//! ```
//! use hetflow::{Runtime, Uniform};
//!
//! let rt = Runtime::builder().build().unwrap();
//! let n = 1000;
//! let x = rt.array_from(vec![1.0f32; n]);
//! let y = rt.array_from(vec![2.0f32; n]);
//! let saxpy = rt.kernel(include_str!("../shaders/saxpy.wgsl"), "main").unwrap();
//! let t = rt.task("saxpy")
//!     .args((x.read(), y.read_write()))
//!     .cpu(|(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y += 3.0 * x))
//!     .gpu(move |cx, (x, y)| {
//!         let groups = saxpy.groups_for(n);
//!         cx.dispatch(&saxpy, (Uniform([3.0f32, 0.0, 0.0, 0.0]), x, y), groups)
//!     })
//!     .spawn();
//! t.wait().unwrap();
//! assert!(y.to_vec().unwrap().iter().all(|&v| v == 5.0));
//! ```
//!
//! Layers, each depending only on the ones after it: [`remote`] (remote buffers,
//! replication, collectives) and [`neuro`] (Lava-style neural process networks), built on
//! the runtime ([`Runtime`], [`RuntimeHandle`]: the state every handle shares) and [`task`]
//! (spawn, typed arguments, the dependency graph, task spaces); then [`sched`] (the
//! scheduler: CPU work stealing, GPU drivers, placement), [`data`] (arrays, coherence,
//! transfers) and [`device`] (topology, kernels). Beside the task layer: [`comm`] (HiCR-style
//! memory slots and one-sided copies between instances, threads or MPI). [`linalg`] (tiled
//! GEMM and Cholesky, default feature `linalg`) is a user of the task layer.
//!
//! The command-line tool, the benchmark suites and the Lava golden checker are not part of
//! this library: they live in the workspace member `cli/` (crate `hetflow-cli`).

#![warn(missing_docs)]
// The auto-trait checks of the neuro run thread (its state reaches wgpu-core types through
// the task graph) nest deeper than the default limit of 128.
#![recursion_limit = "256"]
// In the browser the blocking paths (waits, thread parking, the synchronous mover's staging
// reads) are compiled out, which leaves some of their helpers unused there.
#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

// Memory slots, MPI and the distributed runtime need processes and threads: native only.
#[cfg(not(target_arch = "wasm32"))]
pub mod comm;
pub mod data;
pub mod device;
#[cfg(not(target_arch = "wasm32"))]
pub mod dist;
#[cfg(all(feature = "linalg", not(target_arch = "wasm32")))]
pub mod linalg;
pub mod neuro;
#[cfg(not(target_arch = "wasm32"))]
pub mod remote;
mod runtime;
pub mod sched;
pub mod task;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The clock: std's on native targets; on wasm32 (where std's `Instant::now` panics) the
/// browser's `performance.now()`, through `web-time`.
pub(crate) mod time {
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) use std::time::Instant;
    #[cfg(target_arch = "wasm32")]
    pub(crate) use web_time::Instant;
}

pub use data::{Access, Array, Coherence, DataError, MemorySpace, ReduceOp};
pub use device::{DeviceError, DeviceId, Kernel, Topology};
pub use runtime::{GpuSelection, ModelPersistence, Runtime, RuntimeBuilder, RuntimeHandle, Stats};
pub use sched::{Placement, Policy};
pub use task::{
    ArgsTask, Binding, BuildError, CpuContext, GpuContext, TaskBuilder, TaskError, TaskHandle,
    TaskKey, TaskRef, TaskSpace, Uniform,
};

/// The `bytemuck` crate hetflow is built with, so that element and uniform types need no
/// dependency of their own: derive [`Pod`] and [`Zeroable`] from here and point the derive
/// at this path with `#[bytemuck(crate = "hetflow::bytemuck")]`:
///
/// ```
/// #[derive(Clone, Copy, hetflow::Pod, hetflow::Zeroable)]
/// #[bytemuck(crate = "hetflow::bytemuck")]
/// #[repr(C)]
/// struct Params {
///     alpha: f32,
///     width: u32,
///     _pad: [u32; 2],
/// }
///
/// let u = hetflow::Uniform(Params { alpha: 0.25, width: 512, _pad: [0; 2] });
/// assert_eq!(hetflow::bytemuck::bytes_of(&u.0).len(), 16);
/// ```
pub use bytemuck;
/// `Pod` (plain old data: any bit pattern is valid, no padding), the bound of every array
/// element and uniform: the trait and its derive macro, from [`bytemuck`].
pub use bytemuck::Pod;
/// `Zeroable` (all-zero bytes are a valid value), required by [`Pod`]: the trait and its
/// derive macro, from [`bytemuck`].
pub use bytemuck::Zeroable;
