//! Shared by the examples and the `hetflow` CLI: a private `XDG_RUNTIME_DIR`.
//!
//! Mesa's Vulkan device-select layer (active for every Vulkan program) asks a Wayland
//! compositor for the default GPU, and libwayland prints "error: XDG_RUNTIME_DIR is invalid
//! or not set in the environment." on every adapter enumeration when that variable is unset
//! or not an absolute path, as on a headless machine. The message is harmless: hetflow opens
//! no window. Pointing the variable at a fresh empty directory changes nothing but the noise;
//! a valid one is left alone.

/// The private directory, removed when dropped.
pub struct PrivateRuntimeDir(Option<std::path::PathBuf>);

impl PrivateRuntimeDir {
    /// Call first in `main`: before any thread starts (it sets an environment variable) and
    /// before the first runtime is built.
    pub fn install() -> Self {
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| std::path::Path::new(&d).is_absolute());
        if valid || !cfg!(unix) {
            return PrivateRuntimeDir(None);
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "hetflow-runtime-{}-{stamp:08x}",
            std::process::id()
        ));
        if !dir.is_absolute() {
            return PrivateRuntimeDir(None);
        }
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // `create` fails on an existing path: the directory is this process's own.
        match builder.create(&dir) {
            Ok(()) => {
                std::env::set_var("XDG_RUNTIME_DIR", &dir);
                PrivateRuntimeDir(Some(dir))
            }
            Err(_) => PrivateRuntimeDir(None),
        }
    }
}

impl Drop for PrivateRuntimeDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
