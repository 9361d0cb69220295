//! The LIF + Dense throughput benchmark behind `hetflow bench --neuro`.
//!
//! A recurrent network: one LIF population of N neurons driven by a random bias, its spikes
//! fed back through a Dense N x N matrix with connection probability p (random weights of
//! both signs). It runs for a number of steps; the figures are neuron updates per second
//! (N x steps / time) and synaptic events per second (for every spike, the number of
//! non-zero weights in its column, / time). The reference is Brian2's C++ standalone
//! mode on the development machine at N = 10k, p = 0.1.

use std::time::Instant;

use super::model::{Cx, ModelSpec, PortIx, ProcessModel, VarIx};
use super::{DType, Dense, DenseParams, Lif, LifParams, Network, NeuroError, RunCfg, RunSteps};

/// Brian2 C++ standalone on this machine, N = 10k, p = 0.1: neuron updates per second.
pub const BRIAN2_NEURON_UPDATES_PER_S: f64 = 2.2e7;
/// Brian2 C++ standalone on this machine, N = 10k, p = 0.1: synaptic events per second.
pub const BRIAN2_SYN_EVENTS_PER_S: f64 = 3.5e8;

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct NeuroBenchRow {
    /// Neurons.
    pub n: usize,
    /// Connection probability.
    pub p: f64,
    /// Time steps.
    pub steps: u64,
    /// select_tag.
    pub tag: String,
    /// Seconds for the run (compilation excluded).
    pub seconds: f64,
    /// Seconds to compile (weight compression included).
    pub compile_seconds: f64,
    /// Total spikes.
    pub spikes: u64,
    /// Total synaptic events.
    pub syn_events: u64,
}

impl NeuroBenchRow {
    /// Neuron updates per second.
    pub fn neuron_updates_per_s(&self) -> f64 {
        self.n as f64 * self.steps as f64 / self.seconds
    }
    /// Synaptic events per second.
    pub fn syn_events_per_s(&self) -> f64 {
        self.syn_events as f64 / self.seconds
    }
    /// Mean firing rate, spikes per neuron per step.
    pub fn rate(&self) -> f64 {
        self.spikes as f64 / (self.n as f64 * self.steps as f64)
    }
}

/// SplitMix64: a small deterministic generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counts the spikes of each neuron into its Var `count` (a process of the benchmark, and
/// an example of a user-defined process).
struct Counter {
    buf: Vec<f64>,
}

impl ProcessModel for Counter {
    fn name(&self) -> &str {
        "PySpikeCounter"
    }
    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        cx.recv_f64(PortIx(0), &mut self.buf)?;
        let c = cx.var_mut(VarIx(0)).as_f64_mut("count")?;
        for (c, &s) in c.iter_mut().zip(&self.buf) {
            *c += s;
        }
        Ok(())
    }
}

/// Builds and runs the benchmark network: `n` neurons, connection probability `p`, `steps`
/// steps, floating point (`fixed = false`) or fixed point.
pub fn run(
    n: usize,
    p: f64,
    steps: u64,
    fixed: bool,
    seed: u64,
) -> Result<NeuroBenchRow, NeuroError> {
    let mut rng = Rng(seed);
    let net = Network::new();
    let (params, scale) = if fixed {
        let bias = (0..n).map(|_| (rng.unit() * 60.0).floor()).collect();
        (
            LifParams::new(n)
                .du(1000.0)
                .dv(200.0)
                .vth(500.0)
                .bias_mant(bias)
                .bias_exp(vec![6.0; n]),
            8.0,
        )
    } else {
        let bias = (0..n).map(|_| rng.unit() * 0.12).collect();
        (
            LifParams::new(n).du(0.25).dv(0.05).vth(1.0).bias_mant(bias),
            0.02 / (n as f64 * p).sqrt() * 30.0,
        )
    };
    let lif = Lif::new(&net, "lif", params)?;
    let mut w = vec![0.0; n * n];
    let mut nnz_col = vec![0u64; n];
    for i in 0..n {
        for (j, x) in w[i * n..(i + 1) * n].iter_mut().enumerate() {
            if rng.unit() < p {
                let v = (rng.unit() * 2.0 - 1.3) * scale;
                let v = if fixed { v.round() } else { v };
                if v != 0.0 {
                    *x = v;
                    nnz_col[j] += 1;
                }
            }
        }
    }
    let dense = Dense::new(&net, "w", DenseParams::new(n, n, w))?;
    let counter = net
        .process("counter", "SpikeCounter")
        .var("count", &[n], vec![0.0; n])
        .in_port("s_in", &[n])
        .model(ModelSpec::leaf("PySpikeCounter", &[], move |b| {
            b.set_dtype(VarIx(0), DType::F64);
            Ok(Box::new(Counter { buf: vec![0.0; n] }))
        }))
        .build()?;
    lif.s_out().connect(&dense.s_in())?;
    dense.a_out().connect(&lif.a_in())?;
    lif.s_out().connect(&counter.port("s_in")?)?;
    let cfg = if fixed {
        RunCfg::fixed_pt()
    } else {
        RunCfg::floating_pt()
    };
    let t0 = Instant::now();
    lif.process().compile(&cfg)?;
    // The first step builds the compressed weights: time it with compilation.
    lif.process().run(RunSteps(1), &cfg)?;
    let compile_seconds = t0.elapsed().as_secs_f64();
    counter.var("count")?.set(vec![0.0; n])?;
    let t = Instant::now();
    lif.process().run(RunSteps(steps), &cfg)?;
    let seconds = t.elapsed().as_secs_f64();
    let counts = counter.var("count")?.get()?.to_f64();
    lif.process().stop()?;
    let spikes = counts.iter().sum::<f64>() as u64;
    // With fixed point the weights were clipped/truncated: count what Dense really holds.
    if fixed {
        let wq = dense.weights().get()?.to_i32();
        nnz_col.iter_mut().for_each(|c| *c = 0);
        for row in wq.chunks_exact(n) {
            for (j, &x) in row.iter().enumerate() {
                nnz_col[j] += (x != 0) as u64;
            }
        }
    }
    let syn_events = counts
        .iter()
        .zip(&nnz_col)
        .map(|(&c, &k)| c as u64 * k)
        .sum();
    Ok(NeuroBenchRow {
        n,
        p,
        steps,
        tag: cfg.select_tag.unwrap_or_default(),
        seconds,
        compile_seconds,
        spikes,
        syn_events,
    })
}

/// The rows as a table with the ratio to Brian2's figures.
pub fn table(rows: &[NeuroBenchRow]) -> String {
    let mut s = String::from(
        "| N | p | steps | model | run s | spikes/neuron/step | neuron updates/s | vs Brian2 | synaptic events/s | vs Brian2 |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {:.3} | {:.4} | {:.3e} | {:.2}x | {:.3e} | {:.2}x |\n",
            r.n,
            r.p,
            r.steps,
            r.tag,
            r.seconds,
            r.rate(),
            r.neuron_updates_per_s(),
            r.neuron_updates_per_s() / BRIAN2_NEURON_UPDATES_PER_S,
            r.syn_events_per_s(),
            r.syn_events_per_s() / BRIAN2_SYN_EVENTS_PER_S,
        );
    }
    s += &format!(
        "Brian2 C++ standalone reference (N = 10k, p = 0.1): {:.1e} neuron updates/s, {:.1e} synaptic events/s\n",
        BRIAN2_NEURON_UPDATES_PER_S, BRIAN2_SYN_EVENTS_PER_S
    );
    s
}
