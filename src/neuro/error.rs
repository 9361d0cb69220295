//! Errors of the neuro layer.

/// Everything that can go wrong while building, connecting, compiling or running a process
/// network. Each variant says what was wrong and what was expected.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NeuroError {
    /// Two ports (or a port and a Var) of different shapes were connected.
    #[error("shape mismatch connecting {src} {src_shape:?} to {dst} {dst_shape:?}: shapes must be equal")]
    ShapeMismatch {
        /// The source port or Var.
        src: String,
        /// Its shape.
        src_shape: Vec<usize>,
        /// The destination port or Var.
        dst: String,
        /// Its shape.
        dst_shape: Vec<usize>,
    },
    /// The connection is not one of the allowed kinds.
    #[error("cannot {op} {src} ({src_kind}) to {dst} ({dst_kind}): expected {expected}")]
    WrongPortKind {
        /// `connect`, `connect_from` or `connect_var`.
        op: &'static str,
        /// The source port.
        src: String,
        /// Its kind.
        src_kind: &'static str,
        /// The destination port.
        dst: String,
        /// Its kind.
        dst_kind: &'static str,
        /// What the rule allows.
        expected: &'static str,
    },
    /// The same connection was made twice.
    #[error("{src} is already connected to {dst}")]
    DuplicateConnection {
        /// The source.
        src: String,
        /// The destination.
        dst: String,
    },
    /// Ports, Vars or processes of two different networks were mixed.
    #[error("{what} belongs to another Network")]
    ForeignNetwork {
        /// What was foreign.
        what: String,
    },
    /// A process, port or Var name was not found.
    #[error("{kind} `{name}` not found in {owner}")]
    NotFound {
        /// "port", "var", "population", ...
        kind: &'static str,
        /// The name looked up.
        name: String,
        /// Where it was looked up.
        owner: String,
    },
    /// A name was declared twice in one process.
    #[error("{kind} `{name}` declared twice in process `{process}`")]
    DuplicateName {
        /// "port" or "var".
        kind: &'static str,
        /// The name.
        name: String,
        /// The process.
        process: String,
    },
    /// No ProcessModel of the process matches the run configuration.
    #[error("no ProcessModel for process `{process}` ({process_type}) matches select_tag {tag:?}; available: {available:?}")]
    NoProcessModel {
        /// The process's name.
        process: String,
        /// Its type.
        process_type: String,
        /// The requested tag.
        tag: Option<String>,
        /// Tags of the models that exist.
        available: Vec<String>,
    },
    /// Bad parameter values or data (wrong length, out of range).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why, with the expected value.
        reason: String,
    },
    /// A Var was accessed with the wrong element type.
    #[error("Var `{var}` holds {actual} data, {expected} was expected")]
    WrongType {
        /// The Var or port.
        var: String,
        /// The type asked for.
        expected: &'static str,
        /// The type it holds.
        actual: &'static str,
    },
    /// Host access (`get`/`set`, a new `run`) while the network runs.
    #[error(
        "the network is running: {op} is only allowed in the host phase (after wait() or pause())"
    )]
    Running {
        /// The refused operation.
        op: &'static str,
    },
    /// A RefPort was used outside PRE_MGMT / POST_MGMT.
    #[error("RefPort `{port}` accessed in phase {phase}: remote Var access is served only in PRE_MGMT and POST_MGMT")]
    WrongPhase {
        /// The port.
        port: String,
        /// The phase it was used in.
        phase: &'static str,
    },
    /// A port was used that is not connected.
    #[error("port `{port}` is not connected")]
    NotConnected {
        /// The port.
        port: String,
    },
    /// The processes of a spike phase wait on each other's messages (Lava would hang).
    #[error("spike-phase deadlock: processes {processes:?} each wait for a message of the next; put a process that sends before receiving (Dense) in the loop")]
    SpikeCycle {
        /// The processes in the cycle.
        processes: Vec<String>,
    },
    /// A different run configuration was given to an already compiled network.
    #[error(
        "the network was compiled for select_tag {compiled:?}; it cannot run with {requested:?}"
    )]
    ConfigChanged {
        /// The tag it was compiled for.
        compiled: Option<String>,
        /// The tag requested now.
        requested: Option<String>,
    },
    /// The network was stopped; it cannot run again.
    #[error("the network was stopped")]
    Stopped,
    /// A model failed during a step.
    #[error("process `{process}` failed at time step {time_step} in {phase}: {reason}")]
    ModelFailed {
        /// The process.
        process: String,
        /// The step.
        time_step: u64,
        /// The phase.
        phase: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The background run thread panicked.
    #[error("the run thread panicked: {0}")]
    Panicked(String),
    /// The GPU back end cannot run this network as built (a process without a GPU model, a
    /// mix of floating- and fixed-point models, a probe of a Var that is not on the device).
    #[error("GPU back end: {0}")]
    GpuUnsupported(String),
    /// The GPU back end was asked for, and there is no GPU.
    #[error("GPU back end: no GPU adapter found")]
    NoGpu,
    /// The GPU or Auto back end was asked for without a runtime in the run configuration
    /// (`RunCfg::with_runtime`): a GPU belongs to the program's runtime, not to a network.
    #[error(
        "the {0} back end needs the program's runtime: give it with RunCfg::with_runtime",
        "GPU/Auto"
    )]
    NoRuntime,
    /// The network's own CPU runtime could not be built.
    #[error("cannot start the network's runtime: {0}")]
    Runtime(#[source] std::sync::Arc<crate::BuildError>),
    /// A WGSL kernel of the GPU back end was refused.
    #[error("GPU back end: kernel `{entry}`: {source}")]
    Kernel {
        /// The kernel's entry point.
        entry: String,
        /// The device's error.
        #[source]
        source: crate::DeviceError,
    },
    /// A task of the GPU back end failed (moving a Var, a submission).
    #[error("GPU back end: {0}")]
    Task(#[source] crate::TaskError),
    /// Memory for a Var or a recording could not be allocated (too many steps or neurons).
    #[error("cannot allocate {values} values for {what}")]
    Allocation {
        /// What needed the memory.
        what: String,
        /// Values asked for.
        values: usize,
        /// The allocator's refusal.
        #[source]
        source: std::collections::TryReserveError,
    },
    /// A reference file could not be read or understood.
    #[error("reference file: {0}")]
    Reference(String),
}
