//! Errors of the device layer.

/// What went wrong while discovering devices or compiling kernels.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The WGSL source did not parse or did not validate. `message` is the
    /// compiler's own report, with the offending line and a caret.
    #[error("WGSL compile error in kernel `{label}`:\n{message}")]
    Compile {
        /// The kernel's label (its entry point unless given).
        label: String,
        /// The compiler's diagnostic.
        message: String,
    },
    /// The entry point named when creating the kernel is not a compute entry point of the module.
    #[error("kernel `{label}`: no compute entry point `{entry}`; the module has: [{available}]")]
    EntryPointNotFound {
        /// The kernel's label.
        label: String,
        /// The entry point asked for.
        entry: String,
        /// The compute entry points the module does have, comma separated.
        available: String,
    },
    /// Creating the pipeline on a device failed although naga accepted the module
    /// (a device limit, or a driver error).
    #[error("kernel `{label}` failed to build on GPU {gpu} ({device}): {message}")]
    Pipeline {
        /// The kernel's label.
        label: String,
        /// Index of the GPU in the runtime.
        gpu: usize,
        /// The adapter's name.
        device: String,
        /// The driver's or wgpu's message.
        message: String,
    },
    /// A GPU index outside the discovered adapters was asked for.
    #[error("GPU {index} requested, but only {available} GPU(s) were found")]
    NoSuchGpu {
        /// The index asked for.
        index: usize,
        /// How many GPUs exist.
        available: usize,
    },
}
