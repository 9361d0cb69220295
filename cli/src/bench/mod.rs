//! Benchmark suites: each prints hetflow's figure beside a baseline measured in the same run,
//! and the ratio.
//!
//! - [`engine`]: per-task overhead against rayon, GPU round trips and chains against raw
//!   wgpu, uploads, tiled linear algebra against faer (`hetflow bench`, `--linalg`);
//! - [`comm`]: memory-slot put/get against memcpy and raw MPI RMA (`hetflow bench comm`);
//! - [`remote`]: all-reduce across replicas against a host sum (`hetflow bench remote`);
//! - [`neuro`]: the recurrent LIF + Dense network against a plain loop (`hetflow bench neuro`);
//! - [`sched`]: placement's first and second runs against the best single device and the
//!   better-of-both bound (`hetflow bench sched`);
//! - [`plot`]: what their SVG plots share (tick labels, log axes, legends).

pub mod comm;
pub mod engine;
pub mod neuro;
pub mod plot;
pub mod remote;
pub mod sched;
