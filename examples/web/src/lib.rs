//! hetflow in the browser: the quickstart DAG, a random task graph and a Lava LIF + Dense
//! network, on WebGPU.
//!
//! The page (`www/index.html`, served by `serve.sh`) calls [`run_page`]; the browser tests
//! (`tests/browser.rs`) call the same functions and check every number.
//!
//! ```text
//!   init_x (cpu) ─┐
//!                 ├─> saxpy (WebGPU if any, else cpu) ─> sum (cpu)
//!   init_y (cpu) ─┘                                   └─> max (cpu)
//! ```

use std::fmt::Write as _;

use hetflow::{DeviceId, MemorySpace, Placement, Runtime, TaskError, Uniform};
use wasm_bindgen::prelude::*;

/// `y = a * x + y`, the shader the native quickstart uses.
pub const SAXPY: &str = include_str!("../../../shaders/saxpy.wgsl");

/// What the quickstart DAG did: where each task ran, what moved, what it computed.
#[derive(Debug, Clone)]
pub struct Quickstart {
    /// (task, where it ran), in spawn order.
    pub placements: Vec<(String, String)>,
    /// (from, to, copies, bytes) per link.
    pub links: Vec<(String, String, u64, u64)>,
    /// The sum and the maximum of `y`, and what a plain loop gives.
    pub sum: f64,
    pub want_sum: f64,
    pub max: f32,
    pub want_max: f32,
    /// Elements per array.
    pub n: usize,
}

impl Quickstart {
    /// Whether the DAG's results equal the plain loop's.
    pub fn verified(&self) -> bool {
        ((self.sum - self.want_sum) / self.want_sum).abs() < 1e-9 && self.max == self.want_max
    }

    /// A report for the page.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for (task, place) in &self.placements {
            let _ = writeln!(s, "{task:<7} ran on {place}");
        }
        for (from, to, moves, bytes) in &self.links {
            let _ = writeln!(s, "moved {from} -> {to}: {moves} copies, {bytes} bytes");
        }
        let _ = writeln!(
            s,
            "sum of y = {:.1} (expected {:.1})",
            self.sum, self.want_sum
        );
        let _ = writeln!(s, "max of y = {} (expected {})", self.max, self.want_max);
        let _ = writeln!(
            s,
            "verified: {}",
            if self.verified() { "OK" } else { "MISMATCH" }
        );
        s
    }
}

fn place(rt: &Runtime, d: Option<DeviceId>) -> String {
    match d {
        Some(DeviceId::Gpu(i)) => format!("gpu{i} ({})", rt.topology().gpus[i].name),
        Some(DeviceId::Cpu) => "cpu".to_string(),
        None => "nowhere".to_string(),
    }
}

/// Runs the quickstart DAG on `rt` with `n` elements: initialisation on the CPU, saxpy on
/// WebGPU when the page has it, the sum and the maximum on the CPU.
// ANCHOR: quickstart
pub async fn quickstart(rt: &Runtime, n: usize) -> Result<Quickstart, Box<dyn std::error::Error>> {
    let a = 2.5f32;
    let x = rt.array_named::<f32>("x", vec![0.0; n]);
    let y = rt.array_named::<f32>("y", vec![0.0; n]);
    let init_x = rt
        .task("init_x")
        .args(x.write())
        .on(Placement::Cpu)
        .cpu(|x| {
            for (i, v) in x.iter_mut().enumerate() {
                *v = (i % 1000) as f32 * 0.25;
            }
        })
        .spawn();
    let init_y = rt
        .task("init_y")
        .args(y.write())
        .on(Placement::Cpu)
        .cpu(|y| {
            for (i, v) in y.iter_mut().enumerate() {
                *v = (i % 7) as f32;
            }
        })
        .spawn();
    let kernel = rt.kernel(SAXPY, "main")?;
    let where_saxpy = if rt.gpu_count() > 0 {
        Placement::Gpu(0)
    } else {
        Placement::Cpu
    };
    let saxpy = rt
        .task("saxpy")
        .args((x.read(), y.read_write()))
        .on(where_saxpy)
        .cpu(move |(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x))
        .gpu(move |cx, (x, y)| {
            let groups = kernel.groups_for(n);
            cx.dispatch(&kernel, (Uniform([a, 0.0, 0.0, 0.0]), x, y), groups)
        })
        .spawn();
    let sum = rt
        .task("sum")
        .args(y.read())
        .on(Placement::Cpu)
        .cpu(|y| y.iter().map(|&v| v as f64).sum::<f64>())
        .spawn();
    let max = rt
        .task("max")
        .args(y.read())
        .on(Placement::Cpu)
        .cpu(|y| y.iter().copied().fold(f32::MIN, f32::max))
        .spawn();
    let refs = [
        init_x.task_ref(),
        init_y.task_ref(),
        saxpy.task_ref(),
        sum.task_ref(),
        max.task_ref(),
    ];
    let (total, largest) = (sum.await?, max.await?);
    let mut placements = Vec::new();
    for r in refs {
        r.clone().await?;
        placements.push((r.name(), place(rt, r.device())));
    }
    let (mut want_sum, mut want_max) = (0.0f64, f32::MIN);
    for i in 0..n {
        let v = (i % 7) as f32 + a * ((i % 1000) as f32 * 0.25);
        want_sum += v as f64;
        want_max = want_max.max(v);
    }
    let links = rt
        .stats()
        .links
        .iter()
        .map(|((from, to), l)| (from.to_string(), to.to_string(), l.moves, l.bytes))
        .collect();
    Ok(Quickstart {
        placements,
        links,
        sum: total,
        want_sum,
        max: largest,
        want_max,
        n,
    })
}
// ANCHOR_END: quickstart

#[path = "../../../tests/common/rng.rs"]
mod rng;

/// The native Parla data-movement story (the same file, included).
#[path = "../../../tests/common/parla.rs"]
pub mod parla;

/// The native differential test's random-DAG program (the same file, included).
#[path = "../../../tests/common/random_dag.rs"]
pub mod random_dag;

/// What a random DAG run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DagRun {
    /// Tasks spawned.
    pub tasks: usize,
    /// Of those, how many ran on a GPU and how many on the CPU.
    pub on_gpu: usize,
    pub on_cpu: usize,
    /// Values compared with sequential execution (snapshots and final arrays).
    pub checked: usize,
}

/// A random task graph of `tasks` tasks over 8 shared arrays of 16 `u32`: snapshots
/// (read), fills (write), increments (read-write) and sum-reductions, each with a CPU and a
/// WebGPU body and a random placement. Every snapshot and every final array is compared
/// with sequential execution of the same program; the first difference is the error.
pub async fn random_dag(rt: &Runtime, seed: u64, tasks: usize) -> Result<DagRun, String> {
    let program = random_dag::spawn(rt, seed, tasks).map_err(|e| e.to_string())?;
    rt.idle().await;
    let mut run = DagRun {
        tasks,
        ..DagRun::default()
    };
    for r in &program.tasks {
        r.clone().await.map_err(|e: TaskError| e.to_string())?;
        match r.device() {
            Some(DeviceId::Gpu(_)) => run.on_gpu += 1,
            _ => run.on_cpu += 1,
        }
    }
    for (what, array, want) in program.expected() {
        let got = array.to_vec_async().await.map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("seed {seed}, {what}: {got:?}, expected {want:?}"));
        }
        run.checked += 1;
    }
    Ok(run)
}

/// The native Lava golden checker (`hetflow lava-check`), the same file: it rebuilds the
/// network a reference file describes, runs it (`Process::run_async`) and compares every
/// recorded value (`Monitor::data_async`).
#[path = "../../../cli/src/lava_check.rs"]
pub mod lava_check;

/// Lava's recording of a 20 -> 10 LIF + Dense feed-forward network, fixed point
/// (bit-accurate Loihi), 100 steps.
pub const LAVA_FF_FIXED: &str = include_str!("../../../tests/data/lava/lava_ff_20_10_fixed.json");
/// The same network in floating point.
pub const LAVA_FF_FLOAT: &str = include_str!("../../../tests/data/lava/lava_ff_20_10_float.json");

/// Runs the Lava reference file `text` on `rt` with `backend` and compares with Lava.
pub async fn lava_golden(
    rt: &Runtime,
    text: &str,
    backend: hetflow::neuro::NeuroBackend,
) -> Result<lava_check::CheckReport, hetflow::neuro::NeuroError> {
    let json = lava_check::parse(text, "the reference file")?;
    lava_check::check_async(&json, backend, Some(&rt.handle())).await
}

/// Bytes moved on one link so far.
pub fn moved(rt: &Runtime, from: MemorySpace, to: MemorySpace) -> (u64, u64) {
    let l = rt.stats().link(from, to);
    (l.moves, l.bytes)
}

/// The page's entry point: runs the quickstart DAG, a random graph and the Lava network,
/// returns the report.
#[wasm_bindgen]
pub async fn run_page() -> String {
    match page().await {
        Ok(s) => s,
        Err(e) => format!("error: {e}"),
    }
}

async fn page() -> Result<String, Box<dyn std::error::Error>> {
    let rt = Runtime::builder().build_async().await?;
    let mut out = format!("hetflow in the browser\n{}\n", rt.topology());
    if rt.gpu_count() == 0 {
        out.push_str("No WebGPU adapter: every task runs on the CPU.\n");
    }
    let q = quickstart(&rt, 1 << 16).await?;
    out.push_str(&q.report());
    let rt2 = Runtime::builder().build_async().await?;
    let dag = random_dag(&rt2, 1, 500).await?;
    let _ = writeln!(
        out,
        "\nrandom DAG (seed 1): {} tasks ({} on WebGPU, {} on the CPU), {} results equal to sequential execution",
        dag.tasks, dag.on_gpu, dag.on_cpu, dag.checked
    );
    let backend = if rt.gpu_count() > 0 {
        hetflow::neuro::NeuroBackend::Gpu
    } else {
        hetflow::neuro::NeuroBackend::Cpu
    };
    for text in [LAVA_FF_FIXED, LAVA_FF_FLOAT] {
        let rt3 = Runtime::builder().build_async().await?;
        let r = lava_golden(&rt3, text, backend).await?;
        let _ = writeln!(
            out,
            "\nLava {} ({}, {} steps) on {backend:?}: {} values compared, {}",
            r.name,
            r.tag,
            r.num_steps,
            r.compared,
            match &r.mismatch {
                None if r.tag == "fixed_pt" => "bit-exact".to_string(),
                None => "equal to Lava within 1e-4".to_string(),
                Some(m) => format!("MISMATCH: {m}"),
            }
        );
    }
    Ok(out)
}
