//! Behaviour: the [`ProcessModel`] trait (Lava's `PyLoihiProcessModel`), the context a model
//! sees in each phase, model specifications with their tags, and run configurations.

use std::sync::Arc;

use super::process::{PortKind, Process};
use super::{Data, NeuroError, VarType};

/// The phases of one time step (LoihiProtocol), and HOST between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Spiking: messages are sent and received.
    Spk,
    /// Pre-learning management.
    PreMgmt,
    /// Learning.
    Lrn,
    /// Post-learning management.
    PostMgmt,
    /// Between runs: host get/set.
    Host,
}

impl Phase {
    /// Lava's name of the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Spk => "SPK",
            Phase::PreMgmt => "PRE_MGMT",
            Phase::Lrn => "LRN",
            Phase::PostMgmt => "POST_MGMT",
            Phase::Host => "HOST",
        }
    }
}

/// Index of a port of the model's own process (from [`ModelBuild::port`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortIx(pub usize);

/// Index of a Var of the model's own process (from [`ModelBuild::var`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarIx(pub usize);

/// The behaviour of a leaf process under the Loihi protocol (see `src/neuro/PROTOCOL.md`).
///
/// Every step: [`run_spk_early`](Self::run_spk_early) of every model, then
/// [`run_spk`](Self::run_spk) in message order, then the management and learning phases the
/// guards ask for. Guards see the current time step (starting at 1).
pub trait ProcessModel: Send {
    /// The model's name (e.g. `PyLifModelFloat`), shown in the process graph.
    fn name(&self) -> &str;

    /// Sends that do not depend on this step's input (a synapse sending what it accumulated
    /// in the previous step). Runs before any `run_spk` of the step.
    fn run_spk_early(&mut self, _cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }

    /// Whether every OutPort of this model is sent in `run_spk_early`; then its receivers need
    /// not wait for its `run_spk`, which is what lets recurrent loops run.
    fn sends_early(&self) -> bool {
        false
    }

    /// The spike phase.
    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError>;

    /// Guard of the pre-management phase.
    fn pre_guard(&self, _time_step: u64) -> bool {
        false
    }
    /// The pre-management phase.
    fn run_pre_mgmt(&mut self, _cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
    /// Guard of the learning phase.
    fn lrn_guard(&self, _time_step: u64) -> bool {
        false
    }
    /// The learning phase.
    fn run_lrn(&mut self, _cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }
    /// Guard of the post-management phase.
    fn post_guard(&self, _time_step: u64) -> bool {
        false
    }
    /// The post-management phase.
    fn run_post_mgmt(&mut self, _cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        Ok(())
    }

    /// Called before the next step when the host set Var `var` between runs.
    fn var_set(&mut self, _var: VarIx) {}
}

/// Where a RefPort or an InPort's messages come from, resolved by the compiler.
pub(crate) struct Wiring {
    /// Per leaf, per port: the (leaf, port) OutPorts feeding an InPort.
    pub in_srcs: Vec<Vec<Vec<(usize, usize)>>>,
    /// Per leaf, per port: the (leaf, var) a RefPort reaches.
    pub refs: Vec<Vec<Option<(usize, usize)>>>,
    /// Per leaf, per port: `process.port`.
    pub port_labels: Vec<Vec<String>>,
}

/// The Vars a model reaches in a phase: its own (SPK, LRN: the phases that may run in
/// parallel with other processes) or every leaf's (PRE_MGMT, POST_MGMT, which run one
/// process at a time, so RefPorts may reach other processes' Vars).
pub(crate) enum VarsView<'a> {
    Own(&'a mut Vec<Data>),
    All(&'a mut [Vec<Data>]),
}

/// One data-parallel part of a model's step; it borrows a disjoint piece of the model's
/// state for the length of [`Pool::run`].
pub type Part<'s> = Box<dyn FnOnce() -> Result<(), NeuroError> + Send + 's>;

/// The CPU workers of a run as a model sees them ([`Cx::pool`]).
///
/// ```
/// # use hetflow::neuro::{NeuroError, Part, Pool};
/// fn double(pool: Pool<'_>, x: &mut [f64]) -> Result<(), NeuroError> {
///     let chunk = x.len().div_ceil(pool.parts(x.len())).max(1);
///     let parts: Vec<Part<'_>> = x
///         .chunks_mut(chunk)
///         .map(|c| Box::new(move || { c.iter_mut().for_each(|v| *v *= 2.0); Ok(()) }) as Part<'_>)
///         .collect();
///     pool.run(parts)
/// }
/// ```
#[derive(Clone, Copy)]
pub struct Pool<'a> {
    par: Option<&'a super::par::Par>,
    /// This step runs on the run's thread alone (the run is measuring it, or found it
    /// faster): `run` runs the parts one after the other.
    serial: bool,
}

impl Pool<'_> {
    /// The run's pool; `parallel`: whether this step may use it.
    pub(crate) fn new(par: Option<&super::par::Par>, parallel: bool) -> Pool<'_> {
        Pool {
            par,
            serial: !parallel,
        }
    }

    /// In how many parts a population of `n` elements should be split: one per worker,
    /// each of at least a few thousand elements (1 without workers or for a small
    /// population). The same in every step of a run, also in the steps that run on the
    /// run's thread alone, so a model may lay out its data by it once.
    pub fn parts(&self, n: usize) -> usize {
        self.par.map_or(1, |p| p.parts(n))
    }

    /// Runs `parts` on the workers (one here, the others by the run's helper tasks) and
    /// returns when all have finished: the first error, or Ok. Without workers they run one
    /// after the other on this thread.
    pub fn run(&self, parts: Vec<Part<'_>>) -> Result<(), NeuroError> {
        match self.par {
            Some(p) if !self.serial && parts.len() > 1 => p.run(parts),
            _ => parts.into_iter().try_for_each(|j| j()),
        }
    }
}

/// The OutPort buffers of other leaves a model may read.
#[derive(Clone, Copy)]
pub(crate) enum Srcs<'a> {
    /// Every leaf's (the own slot is empty: the own buffers are in `Cx::outs`).
    All(&'a [Vec<Data>]),
    /// Per leaf, the readable ones (`None`: being written now, or the own).
    Some(&'a [Option<&'a Vec<Data>>]),
}

impl<'a> Srcs<'a> {
    fn get(self, l: usize) -> Option<&'a Vec<Data>> {
        match self {
            Srcs::All(v) => v.get(l),
            Srcs::Some(v) => v.get(l).copied().flatten(),
        }
    }
}

/// What a model sees while it runs a phase: its Vars, its ports, and the time step.
pub struct Cx<'a> {
    pub(crate) time_step: u64,
    pub(crate) phase: Phase,
    pub(crate) me: usize,
    pub(crate) vars: VarsView<'a>,
    /// The own OutPort buffers.
    pub(crate) outs: &'a mut Vec<Data>,
    /// Per leaf, the OutPort buffers this model may read (its senders'); `None` for the own
    /// leaf (read through `outs`) and for leaves that may be writing now.
    pub(crate) srcs: Srcs<'a>,
    pub(crate) wiring: &'a Wiring,
    /// The worker pool for data-parallel parts.
    pub(crate) pool: Pool<'a>,
}

impl<'a> Cx<'a> {
    /// The current time step (1 in the first step; continues across runs).
    pub fn time_step(&self) -> u64 {
        self.time_step
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn own(&self) -> &Vec<Data> {
        match &self.vars {
            VarsView::Own(v) => v,
            VarsView::All(v) => &v[self.me],
        }
    }

    /// All Vars of the own process, in declaration order.
    pub fn vars_mut(&mut self) -> &mut [Data] {
        match &mut self.vars {
            VarsView::Own(v) => v,
            VarsView::All(v) => &mut v[self.me],
        }
    }

    /// One Var of the own process.
    pub fn var(&self, v: VarIx) -> &Data {
        &self.own()[v.0]
    }

    /// One Var of the own process, mutable.
    pub fn var_mut(&mut self, v: VarIx) -> &mut Data {
        &mut self.vars_mut()[v.0]
    }

    /// The run's CPU workers, for splitting this step into data-parallel parts (the handle
    /// does not borrow the context, so the parts may borrow its Vars).
    pub fn pool(&self) -> Pool<'a> {
        self.pool
    }

    fn src(&self, l: usize, o: usize) -> Result<&Data, NeuroError> {
        // The own leaf's buffers are in `srcs` when this run writes into a scratch copy
        // (an early sender), else (taken out, or `None`) in `outs`.
        match self.srcs.get(l).and_then(|outs| outs.get(o)) {
            Some(d) => Ok(d),
            None if l == self.me => Ok(&self.outs[o]),
            None => Err(NeuroError::Invalid {
                what: format!("message from leaf {l}"),
                reason: "its sender may still be writing it (phase order violated)".into(),
            }),
        }
    }

    fn label(&self, p: PortIx) -> &str {
        &self.wiring.port_labels[self.me][p.0]
    }

    /// The message on InPort `p` without a copy: the sender's buffer, when the port has
    /// exactly one connection, from another process, of `n` elements (else None: use
    /// [`Cx::recv_f64`] or [`Cx::recv_i32`], which also sum several connections).
    pub fn recv_borrow(&self, p: PortIx, n: usize) -> Option<&'a Data> {
        let srcs: Srcs<'a> = self.srcs;
        match self.wiring.in_srcs[self.me][p.0].as_slice() {
            &[(l, o)] if l != self.me => {
                let d = &srcs.get(l)?[o];
                (d.len() == n).then_some(d)
            }
            _ => None,
        }
    }

    /// The own Vars and the f64 buffer of OutPort `p` (length `n`) at once, so that a model
    /// can compute its message straight into the buffer from its state.
    pub fn vars_and_out_f64(&mut self, p: PortIx, n: usize) -> (&mut [Data], &mut [f64]) {
        let slot = &mut self.outs[p.0];
        if !matches!(slot, Data::F64(v) if v.len() == n) {
            *slot = Data::zeros(VarType::F64, n);
        }
        let out = match slot {
            Data::F64(v) => v.as_mut_slice(),
            Data::I32(_) => unreachable!("slot was just made f64"),
        };
        let vars = match &mut self.vars {
            VarsView::Own(v) => v.as_mut_slice(),
            VarsView::All(v) => v[self.me].as_mut_slice(),
        };
        (vars, out)
    }

    /// The own Vars and the i32 buffer of OutPort `p` (length `n`) at once.
    pub fn vars_and_out_i32(&mut self, p: PortIx, n: usize) -> (&mut [Data], &mut [i32]) {
        let slot = &mut self.outs[p.0];
        if !matches!(slot, Data::I32(v) if v.len() == n) {
            *slot = Data::zeros(VarType::I32, n);
        }
        let out = match slot {
            Data::I32(v) => v.as_mut_slice(),
            Data::F64(_) => unreachable!("slot was just made i32"),
        };
        let vars = match &mut self.vars {
            VarsView::Own(v) => v.as_mut_slice(),
            VarsView::All(v) => v[self.me].as_mut_slice(),
        };
        (vars, out)
    }

    /// Sends the own Var `v` on OutPort `p` by exchanging their buffers (no copy): the Var
    /// then holds the OutPort's previous buffer, so use it only when the model overwrites
    /// the Var before anyone reads it (Dense: `a_buff` is recomputed in the same step's
    /// `run_spk`). Falls back to a copy when the types or lengths differ.
    pub fn send_var_swap(&mut self, p: PortIx, v: VarIx) {
        let var = match &mut self.vars {
            VarsView::Own(own) => &mut own[v.0],
            VarsView::All(all) => &mut all[self.me][v.0],
        };
        let slot = &mut self.outs[p.0];
        if var.dtype() == slot.dtype() && var.len() == slot.len() {
            std::mem::swap(var, slot);
        } else {
            *slot = var.clone();
        }
    }

    /// Receives on InPort `p` into `buf` as f64: the element-wise sum of every connection,
    /// zeros when none.
    pub fn recv_f64(&self, p: PortIx, buf: &mut [f64]) -> Result<(), NeuroError> {
        buf.fill(0.0);
        for &(l, o) in &self.wiring.in_srcs[self.me][p.0] {
            let msg = self.src(l, o)?;
            check_len(self.label(p), msg.len(), buf.len())?;
            match msg {
                Data::F64(m) => buf.iter_mut().zip(m).for_each(|(b, &m)| *b += m),
                Data::I32(m) => buf.iter_mut().zip(m).for_each(|(b, &m)| *b += m as f64),
            }
        }
        Ok(())
    }

    /// Receives on InPort `p` into `buf` as i32 (wrapping sum of every connection).
    pub fn recv_i32(&self, p: PortIx, buf: &mut [i32]) -> Result<(), NeuroError> {
        buf.fill(0);
        for &(l, o) in &self.wiring.in_srcs[self.me][p.0] {
            let msg = self.src(l, o)?;
            check_len(self.label(p), msg.len(), buf.len())?;
            match msg {
                Data::I32(m) => buf
                    .iter_mut()
                    .zip(m)
                    .for_each(|(b, &m)| *b = b.wrapping_add(m)),
                Data::F64(m) => buf
                    .iter_mut()
                    .zip(m)
                    .for_each(|(b, &m)| *b = b.wrapping_add(m as i32)),
            }
        }
        Ok(())
    }

    /// The message buffer of OutPort `p`, as f64 of length `n`; what is in it at the end of
    /// the call is what is sent.
    pub fn out_f64(&mut self, p: PortIx, n: usize) -> &mut [f64] {
        let slot = &mut self.outs[p.0];
        if !matches!(slot, Data::F64(v) if v.len() == n) {
            *slot = Data::zeros(VarType::F64, n);
        }
        match slot {
            Data::F64(v) => v,
            Data::I32(_) => unreachable!("slot was just made f64"),
        }
    }

    /// The message buffer of OutPort `p`, as i32 of length `n`.
    pub fn out_i32(&mut self, p: PortIx, n: usize) -> &mut [i32] {
        let slot = &mut self.outs[p.0];
        if !matches!(slot, Data::I32(v) if v.len() == n) {
            *slot = Data::zeros(VarType::I32, n);
        }
        match slot {
            Data::I32(v) => v,
            Data::F64(_) => unreachable!("slot was just made i32"),
        }
    }

    /// Sends the own Var `v` on OutPort `p` (no intermediate copy).
    pub fn send_var(&mut self, p: PortIx, v: VarIx) {
        let src = match &self.vars {
            VarsView::Own(own) => &own[v.0],
            VarsView::All(all) => &all[self.me][v.0],
        };
        let slot = &mut self.outs[p.0];
        match (src, &mut *slot) {
            (Data::F64(s), Data::F64(d)) if s.len() == d.len() => d.copy_from_slice(s),
            (Data::I32(s), Data::I32(d)) if s.len() == d.len() => d.copy_from_slice(s),
            (src, slot) => *slot = src.clone(),
        }
    }

    /// Sends `msg` on OutPort `p`.
    pub fn send(&mut self, p: PortIx, msg: &Data) {
        match msg {
            Data::F64(m) => self.out_f64(p, m.len()).copy_from_slice(m),
            Data::I32(m) => self.out_i32(p, m.len()).copy_from_slice(m),
        }
    }

    fn ref_target(&self, p: PortIx) -> Result<(usize, usize), NeuroError> {
        if !matches!(self.phase, Phase::PreMgmt | Phase::PostMgmt) {
            return Err(NeuroError::WrongPhase {
                port: self.label(p).to_string(),
                phase: self.phase.name(),
            });
        }
        self.wiring.refs[self.me][p.0].ok_or_else(|| NeuroError::NotConnected {
            port: self.label(p).to_string(),
        })
    }

    fn all_vars(&mut self, p: PortIx) -> Result<&mut [Vec<Data>], NeuroError> {
        let phase = self.phase.name();
        let port = self.label(p).to_string();
        match &mut self.vars {
            VarsView::All(v) => Ok(v),
            VarsView::Own(_) => Err(NeuroError::WrongPhase { port, phase }),
        }
    }

    /// Reads the Var RefPort `p` is connected to (PRE_MGMT and POST_MGMT only).
    pub fn ref_read(&self, p: PortIx) -> Result<Data, NeuroError> {
        let (l, v) = self.ref_target(p)?;
        match &self.vars {
            VarsView::All(vars) => Ok(vars[l][v].clone()),
            VarsView::Own(_) => Err(NeuroError::WrongPhase {
                port: self.label(p).to_string(),
                phase: self.phase.name(),
            }),
        }
    }

    /// Writes the Var RefPort `p` is connected to (converted to its element type).
    pub fn ref_write(&mut self, p: PortIx, value: &Data) -> Result<(), NeuroError> {
        let (l, v) = self.ref_target(p)?;
        let label = self.label(p).to_string();
        self.all_vars(p)?[l][v].assign(value, &label)
    }
}

fn check_len(port: &str, got: usize, want: usize) -> Result<(), NeuroError> {
    if got != want {
        return Err(NeuroError::Invalid {
            what: format!("message on {port}"),
            reason: format!("{got} elements, {want} expected"),
        });
    }
    Ok(())
}

/// What a model builder sees: the process's Vars (which it may convert to its element
/// types) and its ports by name.
pub struct ModelBuild<'a> {
    pub(crate) process: &'a str,
    pub(crate) var_names: Vec<String>,
    pub(crate) var_shapes: Vec<Vec<usize>>,
    pub(crate) vars: &'a mut Vec<Data>,
    pub(crate) port_names: Vec<String>,
    pub(crate) port_shapes: Vec<Vec<usize>>,
    pub(crate) port_kinds: Vec<PortKind>,
}

impl ModelBuild<'_> {
    /// The process's name.
    pub fn process_name(&self) -> &str {
        self.process
    }

    /// The index of Var `name`.
    pub fn var(&self, name: &str) -> Result<VarIx, NeuroError> {
        self.var_names
            .iter()
            .position(|v| v == name)
            .map(VarIx)
            .ok_or_else(|| NeuroError::NotFound {
                kind: "var",
                name: name.to_string(),
                owner: format!("process `{}`", self.process),
            })
    }

    /// The index of port `name`.
    pub fn port(&self, name: &str) -> Result<PortIx, NeuroError> {
        self.port_names
            .iter()
            .position(|v| v == name)
            .map(PortIx)
            .ok_or_else(|| NeuroError::NotFound {
                kind: "port",
                name: name.to_string(),
                owner: format!("process `{}`", self.process),
            })
    }

    /// Names of all ports, in order.
    pub fn port_names(&self) -> &[String] {
        &self.port_names
    }

    /// The shape of a port.
    pub fn port_shape(&self, p: PortIx) -> &[usize] {
        &self.port_shapes[p.0]
    }

    /// The kind of a port.
    pub fn port_kind(&self, p: PortIx) -> PortKind {
        self.port_kinds[p.0]
    }

    /// The shape of a Var.
    pub fn var_shape(&self, v: VarIx) -> &[usize] {
        &self.var_shapes[v.0]
    }

    /// The initial value of a Var.
    pub fn value(&self, v: VarIx) -> &Data {
        &self.vars[v.0]
    }

    /// Converts Var `v` to `dtype` for this model (as a LavaPyType declaration does).
    pub fn set_dtype(&mut self, v: VarIx, dtype: VarType) {
        let d = self.vars[v.0].cast(dtype);
        self.vars[v.0] = d;
    }
}

type LeafFn =
    dyn Fn(&mut ModelBuild<'_>) -> Result<Box<dyn ProcessModel>, NeuroError> + Send + Sync;
type SubFn = dyn Fn(&Process) -> Result<(), NeuroError> + Send + Sync;

#[derive(Clone)]
pub(crate) enum ModelKind {
    Leaf(Arc<LeafFn>),
    Sub(Arc<SubFn>),
}

/// One implementation of a process: a leaf model (Rust behaviour) or a sub-process model
/// (builds sub-processes and wires the parent's ports and Vars to them), with the tags that
/// select it.
#[derive(Clone)]
pub struct ModelSpec {
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) kind: ModelKind,
}

impl ModelSpec {
    /// A leaf model built by `build` at compile time.
    pub fn leaf(
        name: &str,
        tags: &[&str],
        build: impl Fn(&mut ModelBuild<'_>) -> Result<Box<dyn ProcessModel>, NeuroError>
            + Send
            + Sync
            + 'static,
    ) -> ModelSpec {
        ModelSpec {
            name: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            kind: ModelKind::Leaf(Arc::new(build)),
        }
    }

    /// A sub-process model: `build` receives the parent process, creates sub-processes
    /// (calling [`Process::adopt`] on each), connects the parent's ports to theirs
    /// (InPort → InPort, OutPort → OutPort, RefPort → RefPort) and aliases Vars.
    pub fn sub(
        name: &str,
        tags: &[&str],
        build: impl Fn(&Process) -> Result<(), NeuroError> + Send + Sync + 'static,
    ) -> ModelSpec {
        ModelSpec {
            name: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            kind: ModelKind::Sub(Arc::new(build)),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the model answers to `tag` (a model without tags answers to every tag; no tag
    /// selects the first model, as Lava does).
    pub(crate) fn matches(&self, tag: Option<&str>) -> bool {
        match tag {
            None => true,
            Some(t) => self.tags.is_empty() || self.tags.iter().any(|x| x == t),
        }
    }
}

/// The back end a run uses for processes that have several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeuroBackend {
    /// CPU models.
    Cpu,
    /// WGSL models on the first GPU (every process needs one: LIF, Dense, spike source and
    /// sink, Monitor).
    Gpu,
    /// The runtime places the whole network: on the GPU when there is a hardware GPU and
    /// every process of the network has a GPU model, else on the CPU. A software rasterizer
    /// (lavapipe, SwiftShader) runs these models 20–75× slower than the CPU models, so it is
    /// never chosen. The choice is logged and printed in the process graph.
    Auto,
}

/// A run configuration: which model each process gets (Lava's `Loihi2SimCfg(select_tag=..)`),
/// the back end, and the runtime the network's processes run on.
#[derive(Debug, Clone)]
pub struct RunCfg {
    /// The tag models are selected by (`floating_pt`, `fixed_pt`, `bit_accurate_loihi`);
    /// `None` takes each process's first model.
    pub select_tag: Option<String>,
    /// The back end.
    pub backend: NeuroBackend,
    /// The runtime whose CPU workers and GPUs run the processes. `None`: the compiled
    /// network makes a CPU-only runtime of its own (the GPU and Auto back ends need one
    /// given here, so that every network of a program shares one device).
    pub runtime: Option<crate::RuntimeHandle>,
    /// Leaf processes placed by the user, by name, overriding the back end: a network
    /// with processes on both the CPU and the GPU runs mixed (see `PROTOCOL.md`).
    pub pins: Vec<(String, crate::DeviceId)>,
}

impl PartialEq for RunCfg {
    /// Equal when the tag, the back end and the pins are (the runtime is where, not what,
    /// it runs).
    fn eq(&self, other: &RunCfg) -> bool {
        self.select_tag == other.select_tag
            && self.backend == other.backend
            && self.pins == other.pins
    }
}

impl RunCfg {
    /// `Loihi2SimCfg(select_tag=tag)`.
    pub fn sim(tag: &str) -> RunCfg {
        RunCfg {
            select_tag: Some(tag.to_string()),
            backend: NeuroBackend::Cpu,
            runtime: None,
            pins: Vec::new(),
        }
    }

    /// `Loihi1SimCfg()`: each process's first model.
    pub fn default_sim() -> RunCfg {
        RunCfg {
            select_tag: None,
            backend: NeuroBackend::Cpu,
            runtime: None,
            pins: Vec::new(),
        }
    }

    /// The same configuration on another back end.
    pub fn on(mut self, backend: NeuroBackend) -> RunCfg {
        self.backend = backend;
        self
    }

    /// The same configuration running on `rt` (its CPU workers and GPUs).
    ///
    /// ```
    /// use hetflow::neuro::RunCfg;
    /// let rt = hetflow::Runtime::builder().no_gpu().cpu_workers(2).build().unwrap();
    /// let cfg = RunCfg::floating_pt().with_runtime(rt.handle());
    /// assert!(cfg.runtime.is_some());
    /// ```
    pub fn with_runtime(mut self, rt: crate::RuntimeHandle) -> RunCfg {
        self.runtime = Some(rt);
        self
    }

    /// Places leaf process `process` (its name) on `device` whatever the back end: e.g.
    /// a CPU network with one Dense on the GPU (`DeviceId::Gpu(0)`; only the first GPU is
    /// used). Its messages to and from CPU processes move between host and device through
    /// the coherence tracker, one move per connection and step.
    pub fn pin(mut self, process: &str, device: crate::DeviceId) -> RunCfg {
        self.pins.retain(|(p, _)| p != process);
        self.pins.push((process.to_string(), device));
        self
    }

    /// Floating-point models.
    pub fn floating_pt() -> RunCfg {
        RunCfg::sim("floating_pt")
    }

    /// Bit-accurate fixed-point models.
    pub fn fixed_pt() -> RunCfg {
        RunCfg::sim("fixed_pt")
    }
}
