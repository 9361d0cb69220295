//! `hetflow bench sched`: does placement make a second device pay, on the first run and
//! on later ones?
//!
//! Three workloads of independent tasks, each task with a CPU body and a GPU body:
//! - **gpu-fast**: the CPU body computes for a fixed time (a spin of `cpu_us`), the GPU body
//!   is one small kernel: the GPU is the faster device (on lavapipe too: a submission round
//!   trip is tens of µs);
//! - **cpu-fast**: the CPU body computes for `cpu_us / 50` (20 µs) and fills a small array,
//!   the GPU body is the same small kernel: a GPU task costs more than that on lavapipe (a
//!   submission round trip, the kernel on the same cores);
//! - **mixed**: both kinds, interleaved.
//!
//! Each workload runs on the CPU alone, on the GPU alone (prefer-GPU), then twice under the
//! default policy sharing one fresh model file (first run: nothing known; second run: the
//! first run's model). The table prints each time against the best single device and against
//! the better-of-both lower bound: the fluid makespan of the task mix given each kind's
//! per-task cost on each device (measured by the single-device runs), i.e. what a placement
//! that knew every cost in advance could at best reach. On a software adapter (lavapipe) the
//! bound is out of reach: it assumes the two devices work in parallel, and there the GPU's
//! kernels run on the CPU workers' cores. It also prints the explorations the first run
//! spent on each device and the tasks each run placed there.

use std::time::{Duration, Instant};

use hetflow::{DeviceId, Policy, Runtime, RuntimeHandle, TaskHandle, Uniform};

/// Elements each task writes.
const N: usize = 1024;

/// One workload: how many tasks of each kind, interleaved.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Its name in the table.
    pub name: &'static str,
    /// Tasks whose CPU body spins `cpu_us` (the GPU is faster).
    pub gpu_fast: usize,
    /// Tasks whose CPU body is a short spin and a fill (the CPU is faster).
    pub cpu_fast: usize,
}

/// The suite's workloads at `scale` (0: a tenth of scale 1, for tests).
pub fn workloads(scale: usize) -> Vec<Workload> {
    let n = |base: usize| if scale == 0 { base / 10 } else { base * scale };
    vec![
        Workload {
            name: "gpu-fast",
            gpu_fast: n(1000),
            cpu_fast: 0,
        },
        Workload {
            name: "cpu-fast",
            gpu_fast: 0,
            cpu_fast: n(2000),
        },
        Workload {
            name: "mixed",
            gpu_fast: n(500),
            cpu_fast: n(1000),
        },
    ]
}

/// One run's outcome.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Wall time from the first spawn to the last completion.
    pub secs: f64,
    /// Tasks that ran on a GPU.
    pub on_gpu: usize,
    /// Tasks that ran on the CPU.
    pub on_cpu: usize,
    /// Explorations dmda placed on a GPU / on the CPU.
    pub explored: (u64, u64),
}

/// A workload's row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// CPU alone, GPU alone, first and second run of the default policy.
    pub cpu: Run,
    /// GPU alone.
    pub gpu: Run,
    /// First run of the default policy (fresh model).
    pub first: Run,
    /// Second run (the first run's model).
    pub second: Run,
    /// Better-of-both lower bound, seconds.
    pub bound: f64,
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Spawns the workload on `rt` and waits for it.
fn run(rt: &RuntimeHandle, w: Workload, cpu_us: u64) -> Result<Run, Box<dyn std::error::Error>> {
    let fill = rt.kernel(include_str!("../../../shaders/fill_f32.wgsl"), "main")?;
    let total = w.gpu_fast + w.cpu_fast;
    let arrays: Vec<_> = (0..total).map(|_| rt.array::<f32>(N)).collect();
    let start = Instant::now();
    let mut handles: Vec<TaskHandle<()>> = Vec::with_capacity(total);
    let (mut a, mut b) = (0, 0);
    for (i, arr) in arrays.iter().enumerate() {
        // Interleave: the kind with more left goes next.
        let fast_gpu = a < w.gpu_fast && (b >= w.cpu_fast || a * w.cpu_fast <= b * w.gpu_fast);
        if fast_gpu {
            a += 1;
        } else {
            b += 1;
        }
        let k = fill.clone();
        let v = i as f32;
        let spin_for = Duration::from_micros(if fast_gpu { cpu_us } else { cpu_us / 50 });
        let h = rt
            .task(if fast_gpu {
                "sched-gpu-fast"
            } else {
                "sched-cpu-fast"
            })
            .args((arr.write(),))
            .cpu(move |(out,)| {
                spin(spin_for);
                out.fill(v);
            })
            .gpu(move |cx, (out,)| {
                cx.dispatch(&k, (Uniform([v, 0.0, 0.0, 0.0]), out), k.groups_for(N))
            })
            .spawn();
        handles.push(h);
    }
    let refs: Vec<_> = handles.iter().map(|h| h.task_ref()).collect();
    for h in handles {
        h.wait()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut out = Run {
        secs,
        ..Run::default()
    };
    for r in refs {
        match r.device() {
            Some(DeviceId::Cpu) => out.on_cpu += 1,
            Some(DeviceId::Gpu(_)) => out.on_gpu += 1,
            None => {}
        }
    }
    let stats = rt.stats();
    out.explored = (
        stats
            .explorations
            .iter()
            .filter(|(d, _)| matches!(d, DeviceId::Gpu(_)))
            .map(|(_, n)| n)
            .sum(),
        stats.explorations.get(&DeviceId::Cpu).copied().unwrap_or(0),
    );
    Ok(out)
}

/// The fluid lower bound of running `n` tasks per kind, each costing `c` on one of `workers`
/// CPU workers and `g` on the GPU: the smallest `T` such that the GPU's share fits in `T`
/// and the rest fits in `workers · T`. Kinds are given to the GPU in order of its relative
/// advantage (g / c), which is optimal for the relaxation.
pub fn fluid_bound(kinds: &[(usize, f64, f64)], workers: usize) -> f64 {
    let w = workers.max(1) as f64;
    let mut order: Vec<(usize, f64, f64)> = kinds.to_vec();
    order.sort_by(|x, y| (x.2 / x.1.max(1e-12)).total_cmp(&(y.2 / y.1.max(1e-12))));
    let feasible = |t: f64| {
        let mut gpu_left = t;
        let mut cpu_work = 0.0;
        for &(n, c, g) in &order {
            let n = n as f64;
            let on_gpu = if g > 0.0 { (gpu_left / g).min(n) } else { n };
            gpu_left -= on_gpu * g;
            cpu_work += (n - on_gpu) * c;
        }
        cpu_work <= w * t + 1e-12
    };
    let (mut lo, mut hi) = (0.0, 1.0);
    while !feasible(hi) {
        hi *= 2.0;
    }
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if feasible(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Runs the suite `rounds` times and keeps, per workload and column, the run with the
/// median time (its placement counts with it).
pub fn suite_rounds(
    workers: Option<usize>,
    scale: usize,
    rounds: usize,
    step: impl Fn(&str),
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let mut all: Vec<Vec<Row>> = Vec::new();
    for r in 0..rounds.max(1) {
        all.push(suite(workers, scale, 1000, |s| {
            step(&format!("round {}: {s}", r + 1))
        })?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = Vec::new();
    for w in 0..all[0].len() {
        let rows: Vec<&Row> = all.iter().map(|round| &round[w]).collect();
        let pick = |f: &dyn Fn(&Row) -> &Run| {
            let secs = median(rows.iter().map(|r| f(r).secs).collect());
            rows.iter()
                .map(|r| f(r))
                .find(|run| run.secs == secs)
                .unwrap_or(f(rows[0]))
                .clone()
        };
        out.push(Row {
            workload: rows[0].workload,
            cpu: pick(&|r| &r.cpu),
            gpu: pick(&|r| &r.gpu),
            first: pick(&|r| &r.first),
            second: pick(&|r| &r.second),
            bound: median(rows.iter().map(|r| r.bound).collect()),
        });
    }
    Ok(out)
}

/// Runs the suite once: every workload on the CPU alone, the GPU alone, and twice under the
/// default policy with one fresh model file.
pub fn suite(
    workers: Option<usize>,
    scale: usize,
    cpu_us: u64,
    step: impl Fn(&str),
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let builder = || {
        let b = Runtime::builder();
        match workers {
            Some(w) => b.cpu_workers(w),
            None => b,
        }
    };
    let probe = builder().build()?;
    if probe.gpu_count() == 0 {
        return Err("bench sched needs a GPU (install mesa-vulkan-drivers for lavapipe)".into());
    }
    let workers = probe.topology().cpu.workers;
    drop(probe);
    let dir = std::env::temp_dir().join(format!("hetflow-bench-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for w in workloads(scale) {
        step(&format!("{}: CPU alone", w.name));
        let cpu = run(&builder().no_gpu().build()?.handle(), w, cpu_us)?;
        step(&format!("{}: GPU alone", w.name));
        let gpu = run(
            &builder()
                .policy(Policy::PreferGpu)
                .perf_model_persistence(hetflow::ModelPersistence::Off)
                .build()?
                .handle(),
            w,
            cpu_us,
        )?;
        let model = dir.join(format!("{}.txt", w.name));
        let _ = std::fs::remove_file(&model);
        let mut default_runs = Vec::new();
        for which in ["first", "second"] {
            step(&format!("{}: default policy, {which} run", w.name));
            let rt = builder().perf_model_file(&model).build()?;
            default_runs.push(run(&rt.handle(), w, cpu_us)?);
            drop(rt);
        }
        let second = default_runs.pop().unwrap_or_default();
        let first = default_runs.pop().unwrap_or_default();
        // Per-task costs per kind, from single-kind runs of the single-device modes.
        // Never above what either device achieved alone (per-task costs are measured, so the
        // fluid figure can exceed a single-device time by their noise).
        let bound = bound_for(w, &rows, &cpu, &gpu, workers)
            .min(cpu.secs)
            .min(gpu.secs);
        rows.push(Row {
            workload: w,
            cpu,
            gpu,
            first,
            second,
            bound,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

/// The lower bound of `w`: single-kind workloads give their own per-task costs; the mixed
/// one uses those measured by the single-kind rows before it.
fn bound_for(w: Workload, rows: &[Row], cpu: &Run, gpu: &Run, workers: usize) -> f64 {
    let per_task = |r: &Run, n: usize, on_cpu: bool| {
        let k = if on_cpu { workers as f64 } else { 1.0 };
        r.secs * k / n.max(1) as f64
    };
    let cost_of = |name: &str| {
        rows.iter().find(|r| r.workload.name == name).map(|r| {
            let n = r.workload.gpu_fast + r.workload.cpu_fast;
            (per_task(&r.cpu, n, true), per_task(&r.gpu, n, false))
        })
    };
    let total = w.gpu_fast + w.cpu_fast;
    let kinds: Vec<(usize, f64, f64)> = match (w.gpu_fast, w.cpu_fast) {
        (_, 0) | (0, _) => vec![(
            total,
            per_task(cpu, total, true),
            per_task(gpu, total, false),
        )],
        _ => {
            let (Some(a), Some(b)) = (cost_of("gpu-fast"), cost_of("cpu-fast")) else {
                return cpu.secs.min(gpu.secs);
            };
            vec![(w.gpu_fast, a.0, a.1), (w.cpu_fast, b.0, b.1)]
        }
    };
    fluid_bound(&kinds, workers)
}

/// The table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>14} {:>15}\n",
        "workload",
        "CPU (s)",
        "GPU (s)",
        "bound (s)",
        "1st (s)",
        "1st/best",
        "2nd/best",
        "1st/bound",
        "2nd/bound",
        "1st gpu/cpu",
        "explored g/c"
    ));
    for r in rows {
        let best = r.cpu.secs.min(r.gpu.secs);
        s.push_str(&format!(
            "{:<9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.2}x {:>9.2}x {:>8.2}x {:>8.2}x {:>14} {:>15}\n",
            r.workload.name,
            r.cpu.secs,
            r.gpu.secs,
            r.bound,
            r.first.secs,
            best / r.first.secs,
            best / r.second.secs,
            r.bound / r.first.secs,
            r.bound / r.second.secs,
            format!("{}/{}", r.first.on_gpu, r.first.on_cpu),
            format!("{}/{}", r.first.explored.0, r.first.explored.1),
        ));
    }
    s.push_str(
        "ratios are speeds (best or bound time / run time): 1.00x = as fast as the best single device or the bound\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fluid_bound_splits_work_by_relative_advantage() {
        // One kind, 2 CPU workers at 1 s per task, GPU 1 s per task: 3 tasks in 1 s.
        let t = fluid_bound(&[(3, 1.0, 1.0)], 2);
        assert!((t - 1.0).abs() < 1e-6, "{t}");
        // GPU useless (1000 s per task): the CPU alone, 4 tasks / 2 workers.
        let t = fluid_bound(&[(4, 1.0, 1000.0)], 2);
        assert!((t - 2.0).abs() < 1e-2, "{t}");
        // Two kinds, each best on its own device: both run in parallel.
        let t = fluid_bound(&[(10, 1.0, 0.1), (10, 0.1, 1.0)], 1);
        assert!((t - 1.0).abs() < 1e-6, "{t}");
    }
}
