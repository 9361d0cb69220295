//! Data-parallel SGD of a linear model over R replicas with the momentum sharded in a remote
//! buffer (ZeRO style): each step computes local gradients on every replica's device,
//! reduce-scatters them, streams the momentum shard in, updates the weight shard, streams the
//! momentum back out and all-gathers the weights. The loss goes down and the weights match a
//! single-replica run.
//!
//! Run: `cargo run --release --example remote_sgd [-- REPLICAS]` (default 4). Replicas go
//! round-robin over the GPUs, or on the CPU without one.

use hetflow::remote::sgd::{train_linear, Dataset, LinearSgd};
use hetflow::remote::Replication;
use hetflow::Runtime;

#[path = "support/quiet.rs"]
mod quiet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let replicas: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 4,
    };
    let rt = Runtime::builder().build()?;
    let data = Dataset::synthetic(256, 13, 42);
    let cfg = LinearSgd {
        lr: 0.05,
        momentum: 0.9,
        steps: 80,
    };
    let rep = Replication::new(&rt, replicas)?;
    println!(
        "{} samples, {} features, {replicas} replicas on {:?}",
        data.samples(),
        data.features,
        rep.devices()
    );
    let t = train_linear(&rep, &data, &cfg)?;
    for (step, loss) in t.losses.iter().enumerate().step_by(10) {
        println!("step {step:3}  loss {loss:.6}");
    }
    println!("final loss {:.6}", t.losses[cfg.steps - 1]);
    let single = train_linear(&Replication::new(&rt, 1)?, &data, &cfg)?;
    let diff = t
        .weights
        .iter()
        .zip(&single.weights)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max |w(R={replicas}) - w(R=1)| = {diff:.2e}");
    println!("weights {:?}", t.weights);
    Ok(())
}
