//! PopXL's remote-variable example (seed 001): a remote variable of value 1 in a one-entry
//! remote buffer is loaded to the device, 2 is added to the loaded value, and the result is
//! stored back at the same entry. Both the loaded value and the remote variable are 3.
//!
//! Run: `cargo run --release --example remote_variable`. Expected output:
//! ```text
//! loaded_x: 3
//! remote_x: 3
//! ```

use hetflow::remote::{accumulate, remote_buffer, remote_variable, RemoteError};
use hetflow::{DeviceId, Runtime, RuntimeHandle};

/// The values of `loaded_x` and `remote_x` after the program ran.
pub fn run(rt: &RuntimeHandle) -> Result<(Vec<f32>, Vec<f32>), RemoteError> {
    // A remote buffer of one float32 scalar entry, and a remote variable of value 1 in it.
    let buffer = remote_buffer::<f32>(rt, &[], 1)?;
    let remote_x = remote_variable(1.0f32, &buffer, 0)?;
    let y = rt.array_from(vec![2.0f32]);
    // Load to the device (GPU 0 if there is one), add y there, store back.
    let device = if rt.gpu_count() > 0 {
        DeviceId::Gpu(0)
    } else {
        DeviceId::Cpu
    };
    let loaded_x = buffer.load_to(0, device)?;
    accumulate(rt, &loaded_x, &y, device)?;
    buffer.store(0, &loaded_x)?;
    // Like session.get_tensor_data: both reads are ordered after the store.
    Ok((loaded_x.to_vec()?, remote_x.get()?))
}

/// The printed report.
pub fn report(loaded: &[f32], remote: &[f32]) -> String {
    format!("loaded_x: {}\nremote_x: {}\n", loaded[0], remote[0])
}

#[path = "support/quiet.rs"]
mod quiet;

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let rt = Runtime::builder().build()?;
    let (loaded, remote) = run(&rt)?;
    print!("{}", report(&loaded, &remote));
    Ok(())
}
