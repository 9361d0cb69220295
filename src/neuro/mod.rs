//! # neuro — Lava-style neural process networks
//!
//! Job: let a Lava user build a network of processes (LIF neurons, Dense synapses, their own
//! processes), connect their ports, pick models by tag and run it for a number of time steps
//! with the Loihi phase protocol, getting the same numbers as Lava's CPU simulation (fixed
//! point bit for bit, floating point to rounding).
//!
//! The parts, one concept each:
//! - [`process`]: [`Network`], [`Process`], [`Var`], [`Port`] and the connection rules;
//! - [`model`]: the [`ProcessModel`] trait, the per-phase context [`Cx`], model specs with
//!   tags ([`ModelSpec`]) and run configurations ([`RunCfg`]);
//! - `compiler`: discovery from one process, hierarchical expansion, model
//!   selection, port resolution, spike-phase order and process groups (printable);
//! - `run`: the phase loop and run control ([`RunSteps`], non-blocking runs, pause, wait,
//!   stop), host `get`/`set`; the spike order cut into waves whose processes run at once;
//! - `par`: work of a step on the runtime's CPU workers (a wave's processes, a model's
//!   data-parallel parts through [`Cx::pool`]) by helper tasks that stay between the
//!   parts of a step, scoped like `std::thread::scope`;
//! - [`procs`]: LIF, Dense, spike source/sink, Monitor;
//! - [`gpu`]: the GPU back end: WGSL models of LIF, Dense/Sparse (event-driven where the
//!   element type has atomics), source, sink, counter and Monitor buffers, many steps per
//!   submission, CPU processes joining through RefPorts, and mixed networks (processes
//!   pinned to the CPU or the GPU with [`RunCfg::pin`], messages moved as managed arrays).
//!
//! Everything runs on the user's runtime ([`RunCfg::with_runtime`]): there is no global
//! runtime. A CPU network given none makes a CPU runtime of its own.
//!
//! The run loop and the GPU back end are `async` (one code path on every target): in the
//! browser [`Process::run_async`], [`Var::get_async`] and [`Monitor::data_async`] await the
//! GPU's completions through the page's event loop; natively the blocking `run`, `get` and
//! `data` poll the same futures, which never suspend there (each GPU wait blocks as a task
//! handle's `wait` does).
//!
//! The Lava golden checker (`hetflow lava-check`) and the LIF + Dense throughput benchmark
//! (`hetflow bench neuro`) live in the command-line tool (`cli/`), on this module's public API.
//!
//! Invariants:
//! - the time step starts at 1 and continues across runs; a step always runs SPK, then the
//!   phases the guards ask for, in the order of `PROTOCOL.md` (beside this file);
//! - within SPK a process runs only after every process whose message it receives in this
//!   step has sent it (a process that sends before receiving, like Dense, breaks the wait),
//!   so a message sent at step t by a LIF reaches the next LIF through Dense at t + 1;
//! - Vars are read and written by the host only between runs; RefPorts only in PRE_MGMT and
//!   POST_MGMT; a network is compiled once, for one configuration;
//! - processes that run at once (one wave) write only their own Vars and OutPorts and read
//!   only messages that are final for the step, so any number of workers gives the same
//!   numbers as one, bit for bit (`PROTOCOL.md`, "Parallel processes").
//!
//! ```
//! use hetflow::neuro::{Dense, DenseParams, Lif, LifParams, Monitor, Network, RunCfg, RunSteps};
//!
//! let net = Network::new();
//! let pre = Lif::new(&net, "pre", LifParams::new(2).bias_mant(vec![3.0, 0.0]).vth(2.0)).unwrap();
//! let w = Dense::new(&net, "w", DenseParams::new(1, 2, vec![5.0, 7.0])).unwrap();
//! let post = Lif::new(&net, "post", LifParams::new(1).vth(100.0)).unwrap();
//! pre.s_out().connect(&w.s_in()).unwrap();
//! w.a_out().connect(&post.a_in()).unwrap();
//! let mon = Monitor::new(&net, "mon").unwrap();
//! mon.probe(&post.u(), 3).unwrap();
//! pre.process().run(RunSteps(3), &RunCfg::floating_pt()).unwrap();
//! // pre neuron 0 spikes every step from step 1; post's u sees it one step late.
//! assert_eq!(mon.data("post.u").unwrap(), vec![vec![0.0], vec![5.0], vec![10.0]]);
//! ```

mod compiler;
mod data;
mod error;
pub mod gpu;
pub mod model;
mod par;
pub mod process;
pub mod procs;
mod run;

pub use data::{Data, VarType};
pub use error::NeuroError;
pub use model::{
    Cx, ModelBuild, ModelSpec, NeuroBackend, Part, Phase, Pool, PortIx, ProcessModel, RunCfg, VarIx,
};
pub use process::{
    ConnectFromIn, ConnectTo, InPort, Network, OutPort, Port, PortKind, Process, ProcessBuilder,
    RefPort, Var, VarPort,
};
pub use procs::dense::{Dense, DenseParams, SignMode};
pub use procs::io::{SpikeCounter, SpikeSink, SpikeSource};
pub use procs::lif::{Lif, LifParams};
pub use procs::monitor::Monitor;
pub use run::{RunCondition, RunSteps};
