//! The LIF + Dense throughput benchmark behind `hetflow bench neuro`.
//!
//! A recurrent network: one LIF population of N neurons driven by a random bias, its spikes
//! fed back through a Dense N x N matrix with connection probability p (random weights of
//! both signs). It runs for a number of steps; the figures are neuron updates per second
//! (N x steps / time) and synaptic events per second (for every spike, the number of
//! non-zero weights in its column, / time). The baseline is the same network as a plain
//! Rust loop, measured in the same run ([`plain_loop`]), and, when given its results file,
//! the same network in a peer simulator (`benches/brian2_peer.py`: Brian2 `cpp_standalone`,
//! built draw for draw from the same generator, with equal spike counts checked; [`Peer`]).

use std::time::Instant;

use hetflow::neuro::{
    Dense, DenseParams, Lif, LifParams, Network, NeuroBackend, NeuroError, RunCfg, RunSteps,
    SpikeCounter,
};

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
    /// The same run on a one-worker runtime (CPU rows, when measured): the parallel
    /// speed-up is `one_worker_seconds / seconds`.
    pub one_worker_seconds: Option<f64>,
}

/// The floating-point benchmark network written as one plain loop (no processes, no
/// ports): LIF with du 0.25, dv 0.05, vth 1, and the synapses as columns, one warm-up step
/// then `steps` timed steps, like the hetflow run. Returns (seconds, spikes in the timed
/// steps), so the caller can check both made the same spikes.
///
/// Like the library's LIF kernels, the loop is compiled for AVX2 too and that version
/// runs where the CPU has it, so the ratio measures the framework, not the instruction set.
pub fn plain_loop(n: usize, bias: &[f64], trip: &[(u32, u32, f64)], steps: u64) -> (f64, u64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { plain_loop_avx2(n, bias, trip, steps) };
    }
    plain_loop_body(n, bias, trip, steps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn plain_loop_avx2(n: usize, bias: &[f64], trip: &[(u32, u32, f64)], steps: u64) -> (f64, u64) {
    plain_loop_body(n, bias, trip, steps)
}

#[inline(always)]
fn plain_loop_body(n: usize, bias: &[f64], trip: &[(u32, u32, f64)], steps: u64) -> (f64, u64) {
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
    let (u, v, bias) = (&mut u[..n], &mut v[..n], &bias[..n]);
    let mut s = vec![0.0f64; n];
    // Spikes per neuron, as the network's SpikeCounter keeps them.
    let mut count = vec![0.0f64; n];
    let count = &mut count[..n];
    let mut spiked = Vec::with_capacity(n);
    let mut spikes = 0u64;
    let mut t0 = Instant::now();
    for step in 0..=steps {
        if step == 1 {
            t0 = Instant::now();
            spikes = 0;
        }
        // The LIF update without branches (so it is vectorized), then the neurons that
        // spiked, found by blocks of 64 as the library's Dense does.
        let (a_in, s_out) = (&a[..n], &mut s[..n]);
        for i in 0..n {
            let ui = u[i] * (1.0 - 0.25) + a_in[i];
            u[i] = ui;
            let vi = v[i] * (1.0 - 0.05) + ui + bias[i];
            let spike = vi > 1.0;
            v[i] = if spike { 0.0 } else { vi };
            s_out[i] = if spike { 1.0 } else { 0.0 };
            count[i] += s_out[i];
        }
        spiked.clear();
        for (b, block) in s.chunks(64).enumerate() {
            if block.iter().fold(0, |m, &x| m | x.to_bits()) != 0 {
                let on = block.iter().enumerate().filter(|(_, &x)| x != 0.0);
                spiked.extend(on.map(|(k, _)| b * 64 + k));
            }
        }
        spikes += spiked.len() as u64;
        a_next.fill(0.0);
        // As the library's Dense does: the column two spikes ahead is prefetched while this
        // one is added, 16 weights at a time (the store is far larger than the caches).
        for (q, &j) in spiked.iter().enumerate() {
            let ahead = spiked.get(q + 2).map_or(0..0, |&j2| ptr[j2]..ptr[j2 + 1]);
            for k0 in (ptr[j]..ptr[j + 1]).step_by(16) {
                let o = ahead.start + (k0 - ptr[j]);
                if o < ahead.end {
                    prefetch(rows.as_ptr().wrapping_add(o));
                    prefetch(vals.as_ptr().wrapping_add(o));
                    prefetch(vals.as_ptr().wrapping_add(o + 8));
                }
                for k in k0..(k0 + 16).min(ptr[j + 1]) {
                    a_next[rows[k] as usize] += vals[k];
                }
            }
        }
        std::mem::swap(&mut a, &mut a_next);
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(&*count);
    (secs, spikes)
}

/// Asks the CPU to start loading the cache line holding `p` (a hint; x86_64 only).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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
    rt: &hetflow::RuntimeHandle,
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
    .on(backend)
    .with_runtime(rt.clone());
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
        one_worker_seconds: None,
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

/// One configuration measured by a peer simulator on the same network (a row of the
/// results file `benches/brian2_peer.py` writes).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// Neurons.
    pub n: usize,
    /// Connection probability.
    pub p: f64,
    /// `floating_pt` or `fixed_pt`.
    pub model: String,
    /// Threads the peer used.
    pub threads: usize,
    /// Median seconds of the timed steps.
    pub seconds: f64,
    /// Spikes in the timed steps (must equal hetflow's).
    pub spikes: u64,
}

/// A peer's results file: which simulator, the run it timed, and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// The simulator and its version, e.g. `brian2 2.9.0 cpp_standalone`.
    pub name: String,
    /// Timed steps (after one warm-up step, as hetflow's run).
    pub steps: u64,
    /// Seed of the network draw.
    pub seed: u64,
    /// The measured configurations.
    pub rows: Vec<PeerRow>,
}

impl Peer {
    /// Reads a results file (JSON: `{"peer", "steps", "seed", "rows": [{"n", "p", "model",
    /// "threads", "median_s", "spikes"}]}`).
    pub fn read(path: &std::path::Path) -> Result<Peer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let field = |o: &serde_json::Value, k: &str| -> Result<serde_json::Value, String> {
            o.get(k)
                .cloned()
                .ok_or_else(|| format!("{}: missing `{k}`", path.display()))
        };
        let num = |o: &serde_json::Value, k: &str| -> Result<f64, String> {
            field(o, k)?
                .as_f64()
                .ok_or_else(|| format!("{}: `{k}` is not a number", path.display()))
        };
        let text_of = |o: &serde_json::Value, k: &str| -> Result<String, String> {
            Ok(field(o, k)?.as_str().unwrap_or_default().to_string())
        };
        let mut rows = Vec::new();
        for r in field(&v, "rows")?
            .as_array()
            .ok_or_else(|| format!("{}: `rows` is not a list", path.display()))?
        {
            rows.push(PeerRow {
                n: num(r, "n")? as usize,
                p: num(r, "p")?,
                model: text_of(r, "model")?,
                threads: num(r, "threads")? as usize,
                seconds: num(r, "median_s")?,
                spikes: num(r, "spikes")? as u64,
            });
        }
        Ok(Peer {
            name: text_of(&v, "peer")?,
            steps: num(&v, "steps")? as u64,
            seed: num(&v, "seed")? as u64,
            rows,
        })
    }

    /// The peer's rows for the configuration of `r` (every thread count), when the peer
    /// timed the same number of steps.
    pub fn matching(&self, r: &NeuroBenchRow) -> Vec<&PeerRow> {
        if self.steps != r.steps {
            return Vec::new();
        }
        self.rows
            .iter()
            .filter(|p| p.n == r.n && (p.p - r.p).abs() < 1e-12 && p.model == r.tag)
            .collect()
    }
}

/// The CPU rows against the peer: its time at each thread count, whether the spike counts
/// are equal (a ratio is printed only then), and the peer's best time over hetflow's.
pub fn peer_table(rows: &[NeuroBenchRow], peer: &Peer) -> String {
    let mut s = format!(
        "same network in {} ({} steps, seed {}):\n| N | p | model | hetflow s | peer s (threads) | spikes | peer best / hetflow |\n|---|---|---|---|---|---|---|\n",
        peer.name, peer.steps, peer.seed
    );
    for r in rows.iter().filter(|r| r.backend == NeuroBackend::Cpu) {
        let m = peer.matching(r);
        if m.is_empty() {
            continue;
        }
        let times: Vec<String> = m
            .iter()
            .map(|p| format!("{:.4} ({})", p.seconds, p.threads))
            .collect();
        let equal = m.iter().all(|p| p.spikes == r.spikes);
        let best = m.iter().map(|p| p.seconds).fold(f64::INFINITY, f64::min);
        s += &format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} |\n",
            r.n,
            r.p,
            r.tag,
            r.seconds,
            times.join(", "),
            if equal {
                format!("equal ({})", r.spikes)
            } else {
                format!(
                    "DIFFERENT: hetflow {}, peer {:?}",
                    r.spikes,
                    m.iter().map(|p| p.spikes).collect::<Vec<_>>()
                )
            },
            if equal {
                format!("{:.2}x", best / r.seconds)
            } else {
                "- (not the same run)".into()
            },
        );
    }
    s
}

/// The rows as a table, with the same network as a plain loop as the baseline where there is
/// one (the CPU floating-point rows), and the one-worker time where it was measured.
pub fn table(rows: &[NeuroBenchRow]) -> String {
    let mut s = String::from(
        "| N | p | steps | model | back end | run s | plain loop s (run / loop; 1 worker / loop) | 1 worker s (speed-up) | spikes/neuron/step | neuron updates/s | synaptic events/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {:?} | {:.4} | {} | {} | {:.4} | {:.3e} | {:.3e} |\n",
            r.n,
            r.p,
            r.steps,
            r.tag,
            r.backend,
            r.seconds,
            r.plain_loop_seconds
                .map(|b| match r.one_worker_seconds {
                    // The framework's overhead is the one-worker run against the loop
                    // (the loop is one thread too).
                    Some(w) => format!("{b:.4} ({:.2}x; {:.2}x)", r.seconds / b, w / b),
                    None => format!("{b:.4} ({:.2}x)", r.seconds / b),
                })
                .unwrap_or_else(|| "-".into()),
            r.one_worker_seconds
                .map(|b| format!("{b:.4} ({:.2}x)", b / r.seconds))
                .unwrap_or_else(|| "-".into()),
            r.rate(),
            r.neuron_updates_per_s(),
            r.syn_events_per_s(),
        );
    }
    s
}

/// Plots, as an SVG file, neuron updates/s (left) and synaptic events/s (right) against N,
/// both axes logarithmic with ticks at the measured sizes, one series per back end and
/// model, and the plain loop (the same network, measured in the same run) where the rows
/// have it; the legend and each size's p are beside the panels.
pub fn svg(
    rows: &[NeuroBenchRow],
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use super::plot::{self, Marker};
    use plotters::prelude::*;
    if rows.is_empty() {
        return Err("neuro svg: no rows to plot".into());
    }
    type Metric = fn(&NeuroBenchRow) -> f64;
    // Each series: label, colour, marker, points of each metric.
    struct Series {
        label: String,
        color: RGBColor,
        marker: Marker,
        points: [Vec<(f64, f64)>; 2],
    }
    let metrics: [(&str, Metric, Metric); 2] = [
        (
            "neuron updates / s",
            |r| r.neuron_updates_per_s(),
            |r| {
                r.plain_loop_seconds
                    .map_or(f64::NAN, |b| r.n as f64 * r.steps as f64 / b)
            },
        ),
        (
            "synaptic events / s",
            |r| r.syn_events_per_s(),
            |r| {
                r.plain_loop_seconds
                    .map_or(f64::NAN, |b| r.syn_events as f64 / b)
            },
        ),
    ];
    let good = |y: f64| y.is_finite() && y > 0.0;
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let label = format!("{} {}", format!("{:?}", r.backend).to_uppercase(), r.tag);
        let k = match series.iter().position(|s| s.label == label) {
            Some(k) => k,
            None => {
                series.push(Series {
                    color: plot::PALETTE[series.len() % (plot::PALETTE.len() - 1)],
                    marker: if r.backend == NeuroBackend::Cpu {
                        Marker::Circle
                    } else {
                        Marker::Triangle
                    },
                    label,
                    points: [Vec::new(), Vec::new()],
                });
                series.len() - 1
            }
        };
        for (m, (_, value, _)) in metrics.iter().enumerate() {
            let y = value(r);
            if good(y) {
                series[k].points[m].push((r.n as f64, y));
            }
        }
    }
    let mut plain = Series {
        label: "plain loop (CPU floating_pt)".into(),
        color: plot::PALETTE[plot::PALETTE.len() - 1],
        marker: Marker::Cross,
        points: [Vec::new(), Vec::new()],
    };
    for r in rows {
        for (m, (_, _, baseline)) in metrics.iter().enumerate() {
            let y = baseline(r);
            if good(y) {
                plain.points[m].push((r.n as f64, y));
            }
        }
    }
    if !plain.points[0].is_empty() {
        series.push(plain);
    }
    for s in &mut series {
        for p in &mut s.points {
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }

    let mut sizes: Vec<usize> = rows.iter().map(|r| r.n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (xmin, xmax) = (sizes[0] as f64 / 1.6, sizes[sizes.len() - 1] as f64 * 1.6);
    // Ticks at the measured sizes, dropping one that would crowd the one before it (under
    // 1/8 of a panel's width away on the log axis).
    let min_ratio = (xmax / xmin).powf(1.0 / 8.0);
    let mut xticks: Vec<f64> = Vec::new();
    for &n in &sizes {
        let x = n as f64;
        if xticks.last().is_none_or(|&last| x / last >= min_ratio) {
            xticks.push(x);
        }
    }
    let steps = rows[0].steps;
    let mut ps: Vec<(usize, f64)> = rows.iter().map(|r| (r.n, r.p)).collect();
    ps.sort_by_key(|a| a.0);
    ps.dedup_by(|a, b| a.0 == b.0);

    let root = SVGBackend::new(path, (1150, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("hetflow neuro: recurrent LIF + Dense, {steps} steps (higher is better)"),
        ("sans-serif", 22),
    )?;
    let (panels, legend_area) = root.split_horizontally(880);
    let panels = panels.split_evenly((1, 2));
    for (m, (area, (name, _, _))) in panels.iter().zip(&metrics).enumerate() {
        let ys: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points[m].iter().map(|p| p.1))
            .collect();
        let ymin = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let ymax = ys.iter().copied().fold(0.0, f64::max);
        let (ylo, yhi) = if ys.is_empty() {
            (1.0, 10.0)
        } else {
            plot::decade_range(ymin / 1.5, ymax * 1.5)
        };
        let (bold, light) = plot::log_ticks(ylo, yhi);
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (xmin..xmax).log_scale().with_key_points(xticks.clone()),
                (ylo..yhi)
                    .log_scale()
                    .with_key_points(bold)
                    .with_light_points(light),
            )?;
        let label = |v: &f64| plot::si(*v);
        chart
            .configure_mesh()
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .x_label_style(("sans-serif", 13))
            .y_label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .x_desc("neurons N (log scale)")
            .y_desc(format!("{name} (log scale)"))
            .draw()?;
        for s in &series {
            let pts = &s.points[m];
            let style = s.color.stroke_width(2);
            if s.marker == Marker::Cross {
                chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))?;
            } else {
                chart.draw_series(LineSeries::new(pts.clone(), style))?;
            }
            let (c, size) = (s.color, plot::MARKER_SIZE);
            match s.marker {
                Marker::Circle => {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, size, c.filled())))?;
                }
                Marker::Triangle => {
                    chart.draw_series(
                        pts.iter()
                            .map(|&p| TriangleMarker::new(p, size + 1, c.filled())),
                    )?;
                }
                Marker::Cross => {
                    chart
                        .draw_series(pts.iter().map(|&p| Cross::new(p, size, c.stroke_width(2))))?;
                }
                Marker::Bar => {
                    chart.draw_series(pts.iter().map(|&p| {
                        EmptyElement::at(p)
                            + Rectangle::new([(-size, -size), (size, size)], c.filled())
                    }))?;
                }
            }
        }
    }
    let entries: Vec<(String, RGBColor, Marker)> = series
        .iter()
        .map(|s| (s.label.clone(), s.color, s.marker))
        .collect();
    let mut notes = vec!["connection probability:".to_string()];
    notes.extend(
        ps.iter()
            .map(|(n, p)| format!("  N = {}: p = {p}", plot::si(*n as f64))),
    );
    plot::legend(&legend_area, "series", &entries, &notes)?;
    root.present()?;
    Ok(())
}
