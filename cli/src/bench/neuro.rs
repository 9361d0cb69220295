//! The LIF + Dense throughput benchmark behind `hetflow bench neuro`.
//!
//! A recurrent network: one LIF population of N neurons driven by a random bias, its spikes
//! fed back through a Dense N x N matrix with connection probability p (random weights of
//! both signs). It runs for a number of steps; the figures are neuron updates per second
//! (N x steps / time) and synaptic events per second (for every spike, the number of
//! non-zero weights in its column, / time). The reference is Brian2's C++ standalone
//! mode on the development machine at N = 10k, p = 0.1.

use std::time::Instant;

use hetflow::neuro::{
    Dense, DenseParams, Lif, LifParams, Network, NeuroBackend, NeuroError, RunCfg, RunSteps,
    SpikeCounter,
};

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
    /// Where it ran.
    pub backend: NeuroBackend,
    /// Seconds for the run (compilation excluded).
    pub seconds: f64,
    /// Seconds to compile (weight compression included).
    pub compile_seconds: f64,
    /// Total spikes.
    pub spikes: u64,
    /// Total synaptic events.
    pub syn_events: u64,
    /// The same network as a plain Rust loop (CPU floating point only), seconds: the
    /// framework's overhead is `seconds / plain_loop_seconds`.
    pub plain_loop_seconds: Option<f64>,
}

/// The floating-point benchmark network written as one plain loop (no processes, no
/// ports): LIF with du 0.25, dv 0.05, vth 1, and the synapses as columns, one warm-up step
/// then `steps` timed steps, like the hetflow run. Returns (seconds, spikes in the timed
/// steps), so the caller can check both made the same spikes.
pub fn plain_loop(n: usize, bias: &[f64], trip: &[(u32, u32, f64)], steps: u64) -> (f64, u64) {
    let mut ptr = vec![0usize; n + 1];
    for &(_, j, _) in trip {
        ptr[j as usize + 1] += 1;
    }
    for j in 0..n {
        ptr[j + 1] += ptr[j];
    }
    let mut fill = ptr.clone();
    let mut rows = vec![0u32; trip.len()];
    let mut vals = vec![0.0; trip.len()];
    for &(i, j, v) in trip {
        rows[fill[j as usize]] = i;
        vals[fill[j as usize]] = v;
        fill[j as usize] += 1;
    }
    let (mut u, mut v, mut a, mut a_next) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut spiked = Vec::with_capacity(n);
    let mut spikes = 0u64;
    let mut t0 = Instant::now();
    for step in 0..=steps {
        if step == 1 {
            t0 = Instant::now();
            spikes = 0;
        }
        spiked.clear();
        for i in 0..n {
            let ui = u[i] * (1.0 - 0.25) + a[i];
            u[i] = ui;
            let vi = v[i] * (1.0 - 0.05) + ui + bias[i];
            if vi > 1.0 {
                v[i] = 0.0;
                spiked.push(i);
            } else {
                v[i] = vi;
            }
        }
        spikes += spiked.len() as u64;
        a_next.fill(0.0);
        for &j in &spiked {
            for k in ptr[j]..ptr[j + 1] {
                a_next[rows[k] as usize] += vals[k];
            }
        }
        std::mem::swap(&mut a, &mut a_next);
    }
    (t0.elapsed().as_secs_f64(), spikes)
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

/// Builds and runs the benchmark network: `n` neurons, connection probability `p`, `steps`
/// steps, floating point (`fixed = false`) or fixed point, on `backend`. Above 20 000
/// neurons the synapses are a `Sparse` process (Dense's dynamics, compressed storage: a
/// dense N x N Var would not fit).
pub fn run(
    n: usize,
    p: f64,
    steps: u64,
    fixed: bool,
    seed: u64,
    backend: NeuroBackend,
) -> Result<NeuroBenchRow, NeuroError> {
    let mut rng = Rng(seed);
    let net = Network::new();
    let mut float_lif = None;
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
        let bias: Vec<f64> = (0..n).map(|_| rng.unit() * 0.12).collect();
        float_lif = Some(bias.clone());
        (
            LifParams::new(n).du(0.25).dv(0.05).vth(1.0).bias_mant(bias),
            0.02 / (n as f64 * p).sqrt() * 30.0,
        )
    };
    let lif = Lif::new(&net, "lif", params)?;
    let mut nnz_col = vec![0u64; n];
    let sparse = n > 20_000;
    let mut w = if sparse { Vec::new() } else { vec![0.0; n * n] };
    let (mut row_ptr, mut cols) = (vec![0i32], Vec::new());
    let baseline = float_lif.is_some() && backend == NeuroBackend::Cpu;
    let mut trip: Vec<(u32, u32, f64)> = Vec::new();
    // Geometric skips between connections: O(n^2 p) draws instead of O(n^2).
    let ln_q = (1.0 - p).ln();
    for i in 0..n {
        let mut j = 0usize;
        loop {
            let skip = ((1.0 - rng.unit()).ln() / ln_q).floor();
            if !skip.is_finite() || j as f64 + skip >= n as f64 {
                break;
            }
            j += skip as usize;
            let v = (rng.unit() * 2.0 - 1.3) * scale;
            let v = if fixed { v.round() } else { v };
            if v != 0.0 {
                nnz_col[j] += 1;
                if baseline {
                    trip.push((i as u32, j as u32, v));
                }
                if sparse {
                    cols.push(j as i32);
                    w.push(v);
                } else {
                    w[i * n + j] = v;
                }
            }
            j += 1;
        }
        row_ptr.push(cols.len() as i32);
    }
    let params = if sparse {
        DenseParams::sparse(n, n, row_ptr, cols, w)
    } else {
        DenseParams::new(n, n, w)
    };
    let dense = Dense::new(&net, "w", params)?;
    let counter = SpikeCounter::new(&net, "counter", n)?;
    lif.s_out().connect(&dense.s_in())?;
    dense.a_out().connect(&lif.a_in())?;
    lif.s_out().connect(&counter.s_in())?;
    let cfg = if fixed {
        RunCfg::fixed_pt()
    } else {
        RunCfg::floating_pt()
    }
    .on(backend);
    let t0 = Instant::now();
    lif.process().compile(&cfg)?;
    // The first step builds the compressed weights: time it with compilation.
    lif.process().run(RunSteps(1), &cfg)?;
    let compile_seconds = t0.elapsed().as_secs_f64();
    counter.count().set(vec![0.0; n])?;
    let t = Instant::now();
    lif.process().run(RunSteps(steps), &cfg)?;
    let seconds = t.elapsed().as_secs_f64();
    let counts = counter.count().get()?.to_f64();
    lif.process().stop()?;
    let spikes = counts.iter().sum::<f64>() as u64;
    // With fixed point the weights were clipped/truncated: count what Dense really holds.
    if fixed {
        let wq = dense.weights().get()?.to_i32();
        nnz_col.iter_mut().for_each(|c| *c = 0);
        if sparse {
            let cols = dense.process().var("cols")?.get()?.to_i32();
            for (&j, &x) in cols.iter().zip(&wq) {
                nnz_col[j as usize] += (x != 0) as u64;
            }
        } else {
            for row in wq.chunks_exact(n) {
                for (j, &x) in row.iter().enumerate() {
                    nnz_col[j] += (x != 0) as u64;
                }
            }
        }
    }
    let syn_events = counts
        .iter()
        .zip(&nnz_col)
        .map(|(&c, &k)| c as u64 * k)
        .sum();
    let plain = match (&float_lif, baseline) {
        (Some(bias), true) => {
            let (secs, plain_spikes) = plain_loop(n, bias, &trip, steps);
            if plain_spikes != spikes {
                return Err(NeuroError::Invalid {
                    what: "benchmark baseline".into(),
                    reason: format!("the plain loop made {plain_spikes} spikes, hetflow {spikes}"),
                });
            }
            Some(secs)
        }
        _ => None,
    };
    Ok(NeuroBenchRow {
        plain_loop_seconds: plain,
        n,
        p,
        steps,
        tag: cfg.select_tag.unwrap_or_default(),
        backend,
        seconds,
        compile_seconds,
        spikes,
        syn_events,
    })
}

/// The rows as a table with the ratio to Brian2's figures.
pub fn table(rows: &[NeuroBenchRow]) -> String {
    let mut s = String::from(
        "| N | p | steps | model | back end | run s | plain loop s (ratio) | spikes/neuron/step | neuron updates/s | vs Brian2 | synaptic events/s | vs Brian2 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {:?} | {:.3} | {} | {:.4} | {:.3e} | {:.2}x | {:.3e} | {:.2}x |\n",
            r.n,
            r.p,
            r.steps,
            r.tag,
            r.backend,
            r.seconds,
            r.plain_loop_seconds
                .map(|b| format!("{b:.3} ({:.2}x)", r.seconds / b))
                .unwrap_or_else(|| "-".into()),
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

/// Plots neuron updates/s and synaptic events/s against N (both axes logarithmic) for every
/// back end and model, with Brian2's two figures at N = 10k, as an SVG file.
pub fn svg(
    rows: &[NeuroBenchRow],
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs: Vec<f64> = rows.iter().map(|r| r.n as f64).collect();
    let ys: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.neuron_updates_per_s(), r.syn_events_per_s()])
        .chain([BRIAN2_NEURON_UPDATES_PER_S, BRIAN2_SYN_EVENTS_PER_S])
        .filter(|y| y.is_finite() && *y > 0.0)
        .collect();
    let (xmin, xmax) = xs.iter().fold((5e2f64, 2e3f64), |(a, b), &x| {
        (a.min(x / 2.0), b.max(x * 2.0))
    });
    let (ymin, ymax) = ys.iter().fold((1e9f64, 1e3f64), |(a, b), &y| {
        (a.min(y / 3.0), b.max(y * 3.0))
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "hetflow neuro: LIF + Dense throughput (higher is better)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("neurons N")
        .y_desc("per second")
        .draw()?;
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let mut keys: Vec<(NeuroBackend, String)> = Vec::new();
    for r in rows {
        if !keys.iter().any(|(b, t)| *b == r.backend && *t == r.tag) {
            keys.push((r.backend, r.tag.clone()));
        }
    }
    for (k, (backend, tag)) in keys.iter().enumerate() {
        let color = palette[k % palette.len()];
        let mine: Vec<&NeuroBenchRow> = rows
            .iter()
            .filter(|r| r.backend == *backend && r.tag == *tag)
            .collect();
        let upd: Vec<(f64, f64)> = mine
            .iter()
            .map(|r| (r.n as f64, r.neuron_updates_per_s()))
            .collect();
        let syn: Vec<(f64, f64)> = mine
            .iter()
            .map(|r| (r.n as f64, r.syn_events_per_s()))
            .collect();
        chart
            .draw_series(LineSeries::new(upd.clone(), color.stroke_width(2)))?
            .label(format!("{backend:?} {tag}: neuron updates/s"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(upd.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        chart
            .draw_series(LineSeries::new(syn.clone(), color.mix(0.5).stroke_width(1)))?
            .label(format!("{backend:?} {tag}: synaptic events/s"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.5).stroke_width(1))
            });
        chart.draw_series(
            syn.iter()
                .map(|&p| TriangleMarker::new(p, 5, color.mix(0.5).filled())),
        )?;
    }
    chart
        .draw_series(
            [BRIAN2_NEURON_UPDATES_PER_S, BRIAN2_SYN_EVENTS_PER_S]
                .iter()
                .map(|&y| Cross::new((1e4, y), 8, BLACK.stroke_width(2))),
        )?
        .label("Brian2 C++ standalone, N = 10k, p = 0.1")
        .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
