//! A neural network on the program's own runtime, with one process on the GPU: two LIF
//! populations on the CPU talk through a Dense connection pinned to the GPU
//! (`RunCfg::pin`). Their messages move between host and device as managed arrays, one
//! move per connection and step (the runtime's `Stats` count them), and in fixed point the
//! result equals the all-CPU run bit for bit. Without a GPU the Dense stays on the CPU.
//!
//! Run: `cargo run --release --example neuro_mixed`. Expected output (with a GPU):
//! ```text
//! spikes of `post`: 1568 (all-CPU run: 1568)
//! moves in 99 steps: 99 host->GPU, 99 GPU->host
//! ```

use hetflow::neuro::{
    Dense, DenseParams, Lif, LifParams, Network, NeuroError, RunCfg, RunSteps, SpikeCounter,
};
use hetflow::{DeviceId, MemorySpace, Runtime, RuntimeHandle};

/// Runs the network for 100 steps on `rt`, with the Dense on `dense_on`: the spikes `post`
/// made, and the (host->GPU, GPU->host) moves of the last 99 steps.
pub fn run(rt: &RuntimeHandle, dense_on: DeviceId) -> Result<(u64, (u64, u64)), NeuroError> {
    let net = Network::new();
    let n = 16;
    let pre = Lif::new(
        &net,
        "pre",
        LifParams::new(n)
            .du(800.0)
            .dv(200.0)
            .vth(100.0)
            .bias_mant((0..n).map(|i| 20.0 + 5.0 * i as f64).collect())
            .bias_exp(vec![6.0; n]),
    )?;
    let weights = (0..n * n)
        .map(|k| if k % 3 == 0 { 40.0 } else { 0.0 })
        .collect();
    let w = Dense::new(&net, "w", DenseParams::new(n, n, weights))?;
    let post = Lif::new(
        &net,
        "post",
        LifParams::new(n).du(800.0).dv(200.0).vth(50.0),
    )?;
    let count = SpikeCounter::new(&net, "count", n)?;
    pre.s_out().connect(&w.s_in())?;
    w.a_out().connect(&post.a_in())?;
    post.s_out().connect(&count.s_in())?;
    let cfg = RunCfg::fixed_pt()
        .with_runtime(rt.clone())
        .pin("w", dense_on);
    let link = |from, to| rt.stats().link(from, to).moves;
    pre.process().run(RunSteps(1), &cfg)?;
    let (up, down) = (
        link(MemorySpace::Host, MemorySpace::Gpu(0)),
        link(MemorySpace::Gpu(0), MemorySpace::Host),
    );
    pre.process().run(RunSteps(99), &cfg)?;
    let moves = (
        link(MemorySpace::Host, MemorySpace::Gpu(0)) - up,
        link(MemorySpace::Gpu(0), MemorySpace::Host) - down,
    );
    let spikes = count.count().get()?.to_f64().iter().sum::<f64>() as u64;
    pre.process().stop()?;
    Ok((spikes, moves))
}

#[path = "support/quiet.rs"]
mod quiet;

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let rt = Runtime::builder().build()?;
    let (cpu, _) = run(&rt, DeviceId::Cpu)?;
    let on = if rt.gpu_count() > 0 {
        DeviceId::Gpu(0)
    } else {
        println!("no GPU: the Dense stays on the CPU");
        DeviceId::Cpu
    };
    let (spikes, (up, down)) = run(&rt, on)?;
    println!("spikes of `post`: {spikes} (all-CPU run: {cpu})");
    println!("moves in 99 steps: {up} host->GPU, {down} GPU->host");
    assert_eq!(spikes, cpu, "the mixed run must equal the all-CPU run");
    Ok(())
}
