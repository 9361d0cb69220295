//! PopXL's remote RTS-variable example (seed 001), replication factor 2: the variable
//! [1, 2] is sharded over two replicas in a remote buffer; the shards are loaded, gathered
//! into the full tensor on every replica, [3, 4] is added, the result is re-sharded and
//! stored back at the same entry. The variable is then [4, 6].
//!
//! Run: `cargo run --release --example remote_rts_var`. Expected output:
//! ```text
//! remote_x: [4.0, 6.0]
//! ```

use hetflow::remote::{
    all_gather, remote_replica_sharded_variable, sharded_slice, GatherAxis, RemoteBuffer,
    RemoteError, Replication,
};
use hetflow::{Runtime, RuntimeHandle};

// ANCHOR: run
/// The value of `remote_x` after the program ran.
pub fn run(rt: &RuntimeHandle) -> Result<Vec<f32>, RemoteError> {
    let rep = Replication::new(rt, 2)?;
    let x = vec![1.0f32, 2.0];
    // One entry; each replica's slot holds x.len() / 2 elements.
    let buffer = RemoteBuffer::<f32>::replicated(&rep, &[x.len() / rep.factor()], 1)?;
    let remote_x = remote_replica_sharded_variable(x, &buffer, 0)?;
    let y = rep.replicated(vec![3.0f32, 4.0]);

    let loaded_x = buffer.load_sharded(0)?; // each shard onto its replica's device
    let full_x = all_gather(&loaded_x, GatherAxis::Concat)?; // [1, 2] on every replica
    full_x.accumulate(&y)?; // [4, 6]
    let updated_shard = sharded_slice(&full_x)?;
    buffer.store_sharded(0, &updated_shard)?;
    remote_x.get()
}
// ANCHOR_END: run

#[path = "support/quiet.rs"]
mod quiet;

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let rt = Runtime::builder().build()?;
    println!("remote_x: {:?}", run(&rt)?);
    Ok(())
}
