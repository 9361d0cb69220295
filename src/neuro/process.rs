//! Processes, Vars and ports, and the connection rules between ports.
//!
//! A [`Network`] owns every process created in it (an arena behind a lock); [`Process`],
//! [`Var`] and [`Port`] are cheap handles into it. Connections are recorded as directed edges
//! between ports; the compiler walks them from any one process to find the whole network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::model::ModelSpec;
use super::run::ExecShared;
use super::{Data, NeuroError};

static NEXT_NETWORK: AtomicU64 = AtomicU64::new(1);

/// The kind of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// Sends messages (spikes, currents).
    Out,
    /// Receives messages; several connections add element-wise.
    In,
    /// Reads and writes a Var of another process.
    Ref,
    /// The access point of a Var for RefPorts.
    Var,
}

impl PortKind {
    /// Lava's class name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Out => "OutPort",
            PortKind::In => "InPort",
            PortKind::Ref => "RefPort",
            PortKind::Var => "VarPort",
        }
    }
}

pub(crate) struct VarData {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Data,
    /// A hierarchical process's Var may alias a Var of one of its sub-processes.
    pub alias: Option<(usize, usize)>,
}

pub(crate) struct PortData {
    pub name: String,
    pub kind: PortKind,
    pub shape: Vec<usize>,
    /// The Var a VarPort gives access to.
    pub var: Option<usize>,
}

pub(crate) struct ProcData {
    pub name: String,
    pub type_name: String,
    pub vars: Vec<VarData>,
    pub ports: Vec<PortData>,
    pub models: Vec<ModelSpec>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub expanded: bool,
}

/// A directed connection between two ports: (process, port) to (process, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edge {
    pub src: (usize, usize),
    pub dst: (usize, usize),
}

#[derive(Default)]
pub(crate) struct Graph {
    pub procs: Vec<ProcData>,
    pub edges: Vec<Edge>,
    pub exec: Option<Arc<ExecShared>>,
}

impl Graph {
    pub fn port_label(&self, (p, i): (usize, usize)) -> String {
        format!("{}.{}", self.procs[p].name, self.procs[p].ports[i].name)
    }

    pub fn var_label(&self, (p, i): (usize, usize)) -> String {
        format!("{}.{}", self.procs[p].name, self.procs[p].vars[i].name)
    }

    /// Follows Var aliases of hierarchical processes down to the Var that holds the data.
    pub fn resolve_var(&self, mut v: (usize, usize)) -> (usize, usize) {
        while let Some(a) = self.procs[v.0].vars[v.1].alias {
            v = a;
        }
        v
    }
}

/// A set of processes that may be connected to each other; it owns their declarations, their
/// connections and, once compiled, the executable.
///
/// ```
/// use hetflow::neuro::{Lif, LifParams, Network, RunCfg, RunSteps};
/// let net = Network::new();
/// let lif = Lif::new(&net, "lif", LifParams::new(3).bias_mant(vec![1.0; 3]).vth(2.5)).unwrap();
/// lif.process().run(RunSteps(3), &RunCfg::floating_pt()).unwrap();
/// assert_eq!(lif.v().get().unwrap().to_f64(), vec![0.0; 3]); // 1, 2, then 3 > 2.5 spikes and resets
/// lif.process().stop().unwrap();
/// ```
#[derive(Clone)]
pub struct Network {
    pub(crate) id: u64,
    pub(crate) graph: Arc<Mutex<Graph>>,
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl Network {
    /// An empty network.
    pub fn new() -> Network {
        Network {
            id: NEXT_NETWORK.fetch_add(1, Ordering::Relaxed),
            graph: Arc::new(Mutex::new(Graph::default())),
        }
    }

    /// Starts declaring a process named `name` of type `type_name` (the type names the
    /// behaviour, e.g. "LIF"; the name identifies this instance in messages and prints).
    pub fn process(&self, name: &str, type_name: &str) -> ProcessBuilder {
        ProcessBuilder {
            net: self.clone(),
            data: ProcData {
                name: name.to_string(),
                type_name: type_name.to_string(),
                vars: Vec::new(),
                ports: Vec::new(),
                models: Vec::new(),
                parent: None,
                children: Vec::new(),
                expanded: false,
            },
            error: None,
        }
    }

    /// Finds a process by name.
    pub fn find(&self, name: &str) -> Option<Process> {
        let g = self.graph.lock();
        g.procs
            .iter()
            .position(|p| p.name == name)
            .map(|id| Process {
                net: self.clone(),
                id,
            })
    }
}

/// Declares a process: its Vars, ports and models.
pub struct ProcessBuilder {
    net: Network,
    data: ProcData,
    error: Option<NeuroError>,
}

impl ProcessBuilder {
    fn check_name(&mut self, kind: &'static str, name: &str) {
        let taken = self.data.vars.iter().any(|v| v.name == name)
            || self.data.ports.iter().any(|p| p.name == name);
        if taken && self.error.is_none() {
            self.error = Some(NeuroError::DuplicateName {
                kind,
                name: name.to_string(),
                process: self.data.name.clone(),
            });
        }
    }

    /// A Var with `shape` and initial value `init` (its length must be the shape's product;
    /// its element type is the Var's until a model converts it).
    pub fn var(mut self, name: &str, shape: &[usize], init: impl Into<Data>) -> Self {
        self.check_name("var", name);
        let init = init.into();
        let n: usize = shape.iter().product();
        if init.len() != n && self.error.is_none() {
            self.error = Some(NeuroError::Invalid {
                what: format!("initial value of Var `{}.{name}`", self.data.name),
                reason: format!("{} elements for shape {shape:?}, {n} expected", init.len()),
            });
        }
        self.data.vars.push(VarData {
            name: name.to_string(),
            shape: shape.to_vec(),
            init,
            alias: None,
        });
        self
    }

    fn port(mut self, name: &str, kind: PortKind, shape: &[usize], var: Option<usize>) -> Self {
        self.check_name("port", name);
        self.data.ports.push(PortData {
            name: name.to_string(),
            kind,
            shape: shape.to_vec(),
            var,
        });
        self
    }

    /// An InPort.
    pub fn in_port(self, name: &str, shape: &[usize]) -> Self {
        self.port(name, PortKind::In, shape, None)
    }

    /// An OutPort.
    pub fn out_port(self, name: &str, shape: &[usize]) -> Self {
        self.port(name, PortKind::Out, shape, None)
    }

    /// A RefPort.
    pub fn ref_port(self, name: &str, shape: &[usize]) -> Self {
        self.port(name, PortKind::Ref, shape, None)
    }

    /// An explicit VarPort giving access to the Var `var` (declared before).
    pub fn var_port(mut self, name: &str, var: &str) -> Self {
        match self.data.vars.iter().position(|v| v.name == var) {
            Some(i) => {
                let shape = self.data.vars[i].shape.clone();
                self.port(name, PortKind::Var, &shape, Some(i))
            }
            None => {
                if self.error.is_none() {
                    self.error = Some(NeuroError::NotFound {
                        kind: "var",
                        name: var.to_string(),
                        owner: format!("process `{}`", self.data.name),
                    });
                }
                self
            }
        }
    }

    /// Adds a model; the run configuration's tag selects among them.
    pub fn model(mut self, model: ModelSpec) -> Self {
        self.data.models.push(model);
        self
    }

    /// Adds the process to the network.
    pub fn build(self) -> Result<Process, NeuroError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut g = self.net.graph.lock();
        if g.exec.is_some() {
            return Err(NeuroError::Invalid {
                what: format!("process `{}`", self.data.name),
                reason: "the network is already compiled; declare processes before the first run"
                    .into(),
            });
        }
        g.procs.push(self.data);
        let id = g.procs.len() - 1;
        drop(g);
        Ok(Process { net: self.net, id })
    }
}

/// A handle to a process of a [`Network`].
#[derive(Clone)]
pub struct Process {
    pub(crate) net: Network,
    pub(crate) id: usize,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Process({})", self.name())
    }
}

impl Process {
    /// The network it belongs to.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Its name.
    pub fn name(&self) -> String {
        self.net.graph.lock().procs[self.id].name.clone()
    }

    /// Its type name.
    pub fn type_name(&self) -> String {
        self.net.graph.lock().procs[self.id].type_name.clone()
    }

    /// The Var named `name`.
    pub fn var(&self, name: &str) -> Result<Var, NeuroError> {
        let g = self.net.graph.lock();
        let p = &g.procs[self.id];
        p.vars
            .iter()
            .position(|v| v.name == name)
            .map(|idx| Var {
                net: self.net.clone(),
                proc: self.id,
                idx,
            })
            .ok_or_else(|| NeuroError::NotFound {
                kind: "var",
                name: name.to_string(),
                owner: format!("process `{}`", p.name),
            })
    }

    /// The port named `name`.
    pub fn port(&self, name: &str) -> Result<Port, NeuroError> {
        let g = self.net.graph.lock();
        let p = &g.procs[self.id];
        p.ports
            .iter()
            .position(|v| v.name == name)
            .map(|idx| Port {
                net: self.net.clone(),
                proc: self.id,
                idx,
            })
            .ok_or_else(|| NeuroError::NotFound {
                kind: "port",
                name: name.to_string(),
                owner: format!("process `{}`", p.name),
            })
    }

    /// Adds a port after creation (used by Monitor and by hierarchical models).
    pub(crate) fn add_port(
        &self,
        name: &str,
        kind: PortKind,
        shape: &[usize],
    ) -> Result<Port, NeuroError> {
        let mut g = self.net.graph.lock();
        let p = &mut g.procs[self.id];
        if p.ports.iter().any(|q| q.name == name) {
            return Err(NeuroError::DuplicateName {
                kind: "port",
                name: name.to_string(),
                process: p.name.clone(),
            });
        }
        p.ports.push(PortData {
            name: name.to_string(),
            kind,
            shape: shape.to_vec(),
            var: None,
        });
        Ok(Port {
            net: self.net.clone(),
            proc: self.id,
            idx: p.ports.len() - 1,
        })
    }

    /// Adds a Var after creation (used by Monitor).
    pub(crate) fn add_var(&self, name: &str, shape: &[usize], init: Data) -> Var {
        let mut g = self.net.graph.lock();
        let p = &mut g.procs[self.id];
        p.vars.push(VarData {
            name: name.to_string(),
            shape: shape.to_vec(),
            init,
            alias: None,
        });
        Var {
            net: self.net.clone(),
            proc: self.id,
            idx: p.vars.len() - 1,
        }
    }

    /// Makes `child` a sub-process of this (hierarchical) process; called by sub-process
    /// models while they build.
    pub fn adopt(&self, child: &Process) -> Result<(), NeuroError> {
        if child.net.id != self.net.id {
            return Err(NeuroError::ForeignNetwork {
                what: format!("process `{}`", child.name()),
            });
        }
        let mut g = self.net.graph.lock();
        g.procs[child.id].parent = Some(self.id);
        g.procs[self.id].children.push(child.id);
        Ok(())
    }

    /// The sub-processes its hierarchical model built (empty before compilation).
    pub fn children(&self) -> Vec<Process> {
        let g = self.net.graph.lock();
        g.procs[self.id]
            .children
            .iter()
            .map(|&id| Process {
                net: self.net.clone(),
                id,
            })
            .collect()
    }
}

/// A handle to a Var of a process.
#[derive(Clone)]
pub struct Var {
    pub(crate) net: Network,
    pub(crate) proc: usize,
    pub(crate) idx: usize,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var({})", self.label())
    }
}

impl Var {
    /// `process.var`.
    pub fn label(&self) -> String {
        self.net.graph.lock().var_label((self.proc, self.idx))
    }

    /// Its shape.
    pub fn shape(&self) -> Vec<usize> {
        self.net.graph.lock().procs[self.proc].vars[self.idx]
            .shape
            .clone()
    }

    /// The process it belongs to.
    pub fn process(&self) -> Process {
        Process {
            net: self.net.clone(),
            id: self.proc,
        }
    }

    /// Makes this (hierarchical process's) Var an alias of `target`, a Var of a sub-process
    /// of the same shape: get, set and RefPorts then reach `target`.
    pub fn alias(&self, target: &Var) -> Result<(), NeuroError> {
        if target.net.id != self.net.id {
            return Err(NeuroError::ForeignNetwork {
                what: target.label(),
            });
        }
        let mut g = self.net.graph.lock();
        let (a, b) = (
            &g.procs[self.proc].vars[self.idx].shape,
            &g.procs[target.proc].vars[target.idx].shape,
        );
        if a != b {
            return Err(NeuroError::ShapeMismatch {
                src: g.var_label((self.proc, self.idx)),
                src_shape: a.clone(),
                dst: g.var_label((target.proc, target.idx)),
                dst_shape: b.clone(),
            });
        }
        g.procs[self.proc].vars[self.idx].alias = Some((target.proc, target.idx));
        Ok(())
    }

    /// The current value: the initial value before the first run, the live value between
    /// runs. Refused while a run is in progress (Lava allows get/set only in HOST). In the
    /// browser, use [`Var::get_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn get(&self) -> Result<Data, NeuroError> {
        pollster::block_on(self.get_async())
    }

    /// [`Var::get`] awaited: a Var on the GPU comes back through an awaited mapping (the
    /// form for the browser; natively it blocks the polling thread as `get` does).
    pub async fn get_async(&self) -> Result<Data, NeuroError> {
        let (exec, v) = {
            let g = self.net.graph.lock();
            let v = g.resolve_var((self.proc, self.idx));
            match &g.exec {
                Some(exec) => (exec.clone(), v),
                None => return Ok(g.procs[v.0].vars[v.1].init.clone()),
            }
        };
        match exec.get_var(v).await? {
            Some(d) => Ok(d),
            None => Ok(self.net.graph.lock().procs[v.0].vars[v.1].init.clone()),
        }
    }

    /// Sets the value (converted to the Var's element type); it takes effect at the next
    /// step. In the browser, use [`Var::set_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn set(&self, value: impl Into<Data>) -> Result<(), NeuroError> {
        pollster::block_on(self.set_async(value))
    }

    /// [`Var::set`] awaited (a Var on the GPU is written by a task whose end is awaited).
    pub async fn set_async(&self, value: impl Into<Data>) -> Result<(), NeuroError> {
        let value = value.into();
        let (exec, v, label) = {
            let mut g = self.net.graph.lock();
            let v = g.resolve_var((self.proc, self.idx));
            let label = g.var_label(v);
            match &g.exec {
                Some(exec) => (exec.clone(), v, label),
                None => return g.procs[v.0].vars[v.1].init.assign(&value, &label),
            }
        };
        if exec.set_var(v, &value, &label).await? {
            Ok(())
        } else {
            self.net.graph.lock().procs[v.0].vars[v.1]
                .init
                .assign(&value, &label)
        }
    }
}

/// A handle to a port of a process. The connection methods check the rules of Lava's
/// remote-memory tutorial and return typed errors for wrong kinds, mismatched shapes and
/// duplicates:
///
/// | method | allowed |
/// |---|---|
/// | `connect` | OutPort → InPort; OutPort → OutPort and InPort → InPort (hierarchical); RefPort → RefPort or VarPort; VarPort → VarPort |
/// | `connect_from` | the same pairs, written from the receiving side |
/// | `connect_var` | RefPort → Var (through the Var's implicit VarPort) |
#[derive(Clone)]
pub struct Port {
    pub(crate) net: Network,
    pub(crate) proc: usize,
    pub(crate) idx: usize,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.kind().name(), self.label())
    }
}

impl Port {
    /// `process.port`.
    pub fn label(&self) -> String {
        self.net.graph.lock().port_label((self.proc, self.idx))
    }

    /// Its kind.
    pub fn kind(&self) -> PortKind {
        self.net.graph.lock().procs[self.proc].ports[self.idx].kind
    }

    /// Its shape.
    pub fn shape(&self) -> Vec<usize> {
        self.net.graph.lock().procs[self.proc].ports[self.idx]
            .shape
            .clone()
    }

    /// The process it belongs to.
    pub fn process(&self) -> Process {
        Process {
            net: self.net.clone(),
            id: self.proc,
        }
    }

    /// Connects this port to `dst` (see the table on [`Port`]).
    pub fn connect(&self, dst: &Port) -> Result<(), NeuroError> {
        self.link(dst, "connect")
    }

    /// Connects `src` to this port (see the table on [`Port`]).
    pub fn connect_from(&self, src: &Port) -> Result<(), NeuroError> {
        src.link(self, "connect_from")
    }

    /// Connects this RefPort to `var` through the Var's implicit VarPort (created on first use).
    pub fn connect_var(&self, var: &Var) -> Result<(), NeuroError> {
        if var.net.id != self.net.id {
            return Err(NeuroError::ForeignNetwork { what: var.label() });
        }
        let mut g = self.net.graph.lock();
        let me = &g.procs[self.proc].ports[self.idx];
        if me.kind != PortKind::Ref {
            return Err(NeuroError::WrongPortKind {
                op: "connect_var",
                src: g.port_label((self.proc, self.idx)),
                src_kind: me.kind.name(),
                dst: g.var_label((var.proc, var.idx)),
                dst_kind: "Var",
                expected: "a RefPort as source",
            });
        }
        let vshape = g.procs[var.proc].vars[var.idx].shape.clone();
        if me.shape != vshape {
            return Err(NeuroError::ShapeMismatch {
                src: g.port_label((self.proc, self.idx)),
                src_shape: me.shape.clone(),
                dst: g.var_label((var.proc, var.idx)),
                dst_shape: vshape,
            });
        }
        let implicit = format!("_{}_implicit_port", g.procs[var.proc].vars[var.idx].name);
        let owner = &mut g.procs[var.proc];
        let vp = match owner.ports.iter().position(|p| p.name == implicit) {
            Some(i) => i,
            None => {
                owner.ports.push(PortData {
                    name: implicit,
                    kind: PortKind::Var,
                    shape: vshape,
                    var: Some(var.idx),
                });
                owner.ports.len() - 1
            }
        };
        drop(g);
        self.link(
            &Port {
                net: self.net.clone(),
                proc: var.proc,
                idx: vp,
            },
            "connect_var",
        )
    }

    fn link(&self, dst: &Port, op: &'static str) -> Result<(), NeuroError> {
        if dst.net.id != self.net.id {
            return Err(NeuroError::ForeignNetwork { what: dst.label() });
        }
        let mut g = self.net.graph.lock();
        let (s, d) = ((self.proc, self.idx), (dst.proc, dst.idx));
        let sp = &g.procs[s.0].ports[s.1];
        let dp = &g.procs[d.0].ports[d.1];
        use PortKind::*;
        let ok = matches!(
            (sp.kind, dp.kind),
            (Out, In) | (Out, Out) | (In, In) | (Ref, Ref) | (Ref, Var) | (Var, Var)
        );
        if !ok {
            let expected = match sp.kind {
                Out => "an InPort (or an OutPort of the parent process)",
                In => "an InPort of a sub-process",
                Ref => "a RefPort or a VarPort (or a Var with connect_var)",
                Var => "a VarPort",
            };
            return Err(NeuroError::WrongPortKind {
                op,
                src: g.port_label(s),
                src_kind: sp.kind.name(),
                dst: g.port_label(d),
                dst_kind: dp.kind.name(),
                expected,
            });
        }
        if sp.shape != dp.shape {
            return Err(NeuroError::ShapeMismatch {
                src: g.port_label(s),
                src_shape: sp.shape.clone(),
                dst: g.port_label(d),
                dst_shape: dp.shape.clone(),
            });
        }
        let e = Edge { src: s, dst: d };
        if g.edges.contains(&e) {
            return Err(NeuroError::DuplicateConnection {
                src: g.port_label(s),
                dst: g.port_label(d),
            });
        }
        if g.exec.is_some() {
            return Err(NeuroError::Invalid {
                what: format!("connection {} -> {}", g.port_label(s), g.port_label(d)),
                reason: "the network is already compiled; connect before the first run".into(),
            });
        }
        g.edges.push(e);
        Ok(())
    }
}

macro_rules! typed_port {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug)]
        pub struct $name(Port);

        impl std::ops::Deref for $name {
            type Target = Port;
            fn deref(&self) -> &Port {
                &self.0
            }
        }

        impl From<$name> for Port {
            fn from(p: $name) -> Port {
                p.0
            }
        }

        impl TryFrom<Port> for $name {
            type Error = NeuroError;
            /// Checks the kind: a typed error names the port and both kinds otherwise.
            fn try_from(p: Port) -> Result<$name, NeuroError> {
                let kind = p.kind();
                if kind == $kind {
                    Ok($name(p))
                } else {
                    Err(NeuroError::WrongPortKind {
                        op: "convert",
                        src: p.label(),
                        src_kind: kind.name(),
                        dst: stringify!($name).into(),
                        dst_kind: $kind.name(),
                        expected: concat!("a port declared as ", stringify!($name)),
                    })
                }
            }
        }

        impl sealed::Sealed for $name {}
    };
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Port {}
}

typed_port!(
    OutPort,
    PortKind::Out,
    "A port known to be an OutPort (see [`Port`])."
);
typed_port!(
    InPort,
    PortKind::In,
    "A port known to be an InPort (see [`Port`])."
);
typed_port!(
    RefPort,
    PortKind::Ref,
    "A port known to be a RefPort (see [`Port`])."
);
typed_port!(
    VarPort,
    PortKind::Var,
    "A port known to be a VarPort (see [`Port`])."
);

/// What a port of kind `Src` may be connected to: the compiler checks the pairs the types
/// know; an untyped [`Port`] is accepted and checked when connecting.
///
/// ```compile_fail,E0277
/// # use hetflow::neuro::*;
/// let net = Network::new();
/// let a = Lif::new(&net, "a", LifParams::new(1)).unwrap();
/// let b = Lif::new(&net, "b", LifParams::new(1)).unwrap();
/// // OutPort -> OutPort of another leaf is fine for hierarchies, but an OutPort never feeds
/// // a Var: this does not compile.
/// a.s_out().connect(&b.u());
/// ```
///
/// ```compile_fail,E0277
/// # use hetflow::neuro::*;
/// // An InPort cannot be the target of a RefPort: rejected by the compiler.
/// fn wire(r: &RefPort, d: &Dense) {
///     let _ = r.connect(&d.s_in());
/// }
/// ```
pub trait ConnectTo<Src>: sealed::Sealed {
    /// The untyped port.
    fn target(&self) -> &Port;
}

macro_rules! allow {
    ($src:ident => $($dst:ident),*) => {
        $(impl ConnectTo<$src> for $dst {
            fn target(&self) -> &Port {
                self
            }
        })*
        impl ConnectTo<$src> for Port {
            fn target(&self) -> &Port {
                self
            }
        }
    };
}

allow!(OutPort => InPort, OutPort);
allow!(InPort => InPort);
allow!(RefPort => RefPort, VarPort);
allow!(VarPort => VarPort);

macro_rules! typed_connect {
    ($name:ident) => {
        impl $name {
            /// Connects to `dst`; the pairs the types allow are listed on [`ConnectTo`].
            pub fn connect(&self, dst: &impl ConnectTo<$name>) -> Result<(), NeuroError> {
                self.0.connect(dst.target())
            }
        }
    };
}

typed_connect!(OutPort);
typed_connect!(InPort);
typed_connect!(RefPort);
typed_connect!(VarPort);

impl InPort {
    /// Receives from `src` (an OutPort, or the InPort of a parent process).
    pub fn connect_from(&self, src: &impl ConnectFromIn) -> Result<(), NeuroError> {
        self.0.connect_from(src.source())
    }
}

/// What may connect into an InPort.
pub trait ConnectFromIn: sealed::Sealed {
    /// The untyped port.
    fn source(&self) -> &Port;
}

impl ConnectFromIn for OutPort {
    fn source(&self) -> &Port {
        self
    }
}
impl ConnectFromIn for InPort {
    fn source(&self) -> &Port {
        self
    }
}
impl ConnectFromIn for Port {
    fn source(&self) -> &Port {
        self
    }
}

impl Process {
    /// The OutPort named `name` (typed error if it is another kind).
    pub fn out_port(&self, name: &str) -> Result<OutPort, NeuroError> {
        OutPort::try_from(self.port(name)?)
    }
    /// The InPort named `name`.
    pub fn in_port(&self, name: &str) -> Result<InPort, NeuroError> {
        InPort::try_from(self.port(name)?)
    }
    /// The RefPort named `name`.
    pub fn ref_port(&self, name: &str) -> Result<RefPort, NeuroError> {
        RefPort::try_from(self.port(name)?)
    }
    /// The VarPort named `name`.
    pub fn var_port(&self, name: &str) -> Result<VarPort, NeuroError> {
        VarPort::try_from(self.port(name)?)
    }
}
