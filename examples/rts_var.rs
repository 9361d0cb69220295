//! PopXL's RTS-variable example (seed 001), replication factor 2: `replica_sharded_variable`
//! makes the variable [1, 2] and its shards (the hidden remote buffer's slots, loaded and
//! stored automatically by coherence); the sharded slice of [3, 4] is added to the shards on
//! the replicas' devices. The variable is then [4, 6].
//!
//! Run: `cargo run --release --example rts_var`. Expected output:
//! ```text
//! remote_x: [4.0, 6.0]
//! ```

use hetflow::remote::{replica_sharded_variable, sharded_slice, RemoteError, Replication};
use hetflow::{Runtime, RuntimeHandle};

/// The value of `remote_x` after the program ran.
pub fn run(rt: &RuntimeHandle) -> Result<Vec<f32>, RemoteError> {
    let rep = Replication::new(rt, 2)?;
    let (remote_x, loaded_x) = replica_sharded_variable(vec![1.0f32, 2.0], &rep)?;
    let y = rep.replicated(vec![3.0f32, 4.0]);
    let y_shard = sharded_slice(&y)?;
    loaded_x.accumulate(&y_shard)?;
    remote_x.get()
}

#[path = "support/quiet.rs"]
mod quiet;

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let rt = Runtime::builder().build()?;
    println!("remote_x: {:?}", run(&rt)?);
    Ok(())
}
