//! Engine micro-benchmarks, shared by `hetflow bench` and `benches/engine.rs`.
//!
//! Every workload comes with a baseline run in the same process on the same machine (rayon,
//! raw wgpu, a plain loop), because absolute times on shared machines drift; what is reported
//! is the ratio, and for absolute goals the per-item time.

use std::time::{Duration, Instant};

use hetflow::{Placement, Runtime};

/// A GPU kernel adding one to every element, used by the GPU workloads.
pub const ADD_ONE_WGSL: &str = "
@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = a[id.x] + 1u; }
}";

/// What a comparison aims for.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// hetflow / baseline at most this.
    Ratio(f64),
    /// hetflow's time per item at most this many nanoseconds.
    PerItemNs(f64),
}

impl Goal {
    /// The goal as the tables print it.
    pub fn text(&self) -> String {
        match self {
            Goal::Ratio(x) => format!("ratio <= {x}"),
            Goal::PerItemNs(ns) => format!("<= {:.1} us/item", ns / 1000.0),
        }
    }
}

/// One measured comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What was measured.
    pub name: String,
    /// hetflow's time per item, ns.
    pub hetflow_ns: f64,
    /// The baseline's name.
    pub baseline: &'static str,
    /// The baseline's time per item, ns.
    pub baseline_ns: f64,
    /// The goal.
    pub goal: Goal,
}

impl Comparison {
    /// hetflow / baseline.
    pub fn ratio(&self) -> f64 {
        self.hetflow_ns / self.baseline_ns
    }

    /// Whether the goal is met.
    pub fn meets_goal(&self) -> bool {
        match self.goal {
            Goal::Ratio(r) => self.ratio() <= r,
            Goal::PerItemNs(ns) => self.hetflow_ns <= ns,
        }
    }
}

/// Median time per item of `reps` runs of `ours` and of `base`, alternating the two so both
/// see the same machine state (each returns the time of `items` items).
pub fn compare_per_item(
    reps: usize,
    items: usize,
    mut ours: impl FnMut() -> Duration,
    mut base: impl FnMut() -> Duration,
) -> (f64, f64) {
    ours(); // warm-up
    base();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        a.push(ours().as_nanos() as f64 / items as f64);
        b.push(base().as_nanos() as f64 / items as f64);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(a), median(b))
}

/// Spawns `n` independent empty CPU tasks without keeping handles, then waits until the
/// runtime is idle — the same shape as `rayon::scope`.
pub fn hetflow_empty_tasks_scoped(rt: &Runtime, n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        drop(rt.task("empty").on(Placement::Cpu).cpu(|_| ()).spawn());
    }
    rt.wait_idle();
    t.elapsed()
}

/// Spawns `n` independent empty CPU tasks from inside a running task (as `rayon::scope` runs
/// its closure on a pool thread), then waits until the runtime is idle.
pub fn hetflow_empty_tasks_in_pool(rt: &Runtime, n: usize) -> Duration {
    let t = Instant::now();
    drop(
        rt.task("root")
            .on(Placement::Cpu)
            .cpu(move |cx| {
                for _ in 0..n {
                    drop(
                        cx.runtime()
                            .task("empty")
                            .on(Placement::Cpu)
                            .cpu(|_| ())
                            .spawn(),
                    );
                }
            })
            .spawn(),
    );
    rt.wait_idle();
    t.elapsed()
}

/// Spawns `n` independent empty CPU tasks, keeps their handles and waits on each.
pub fn hetflow_empty_tasks(rt: &Runtime, n: usize) -> Duration {
    let t = Instant::now();
    let hs: Vec<_> = (0..n)
        .map(|_| rt.task("empty").on(Placement::Cpu).cpu(|_| ()).spawn())
        .collect();
    for h in hs {
        let _ = h.wait();
    }
    t.elapsed()
}

/// `rayon::scope` spawning `n` empty closures on `pool`.
pub fn rayon_empty_tasks(pool: &rayon::ThreadPool, n: usize) -> Duration {
    let t = Instant::now();
    pool.scope(|s| {
        for _ in 0..n {
            s.spawn(|_| {});
        }
    });
    t.elapsed()
}

/// A chain of `n` dependent empty CPU tasks, spawned up front.
pub fn hetflow_chain(rt: &Runtime, n: usize) -> Duration {
    let t = Instant::now();
    let mut prev = rt.task("link").on(Placement::Cpu).cpu(|_| ()).spawn();
    for _ in 1..n {
        prev = rt
            .task("link")
            .after(&prev)
            .on(Placement::Cpu)
            .cpu(|_| ())
            .spawn();
    }
    let _ = prev.wait();
    t.elapsed()
}

/// A chain of `n` empty CPU tasks linked by the data they declare: each reads and writes the
/// same one-element array, so each waits for the one before (dependencies inferred, no
/// handles kept).
pub fn hetflow_rw_chain(rt: &Runtime, n: usize) -> Duration {
    let a = rt.array::<u32>(1);
    let t = Instant::now();
    for _ in 0..n {
        drop(
            rt.task("link")
                .read_write(&a)
                .on(Placement::Cpu)
                .cpu(|_| ())
                .spawn(),
        );
    }
    rt.wait_idle();
    t.elapsed()
}

/// The same chain as nested `rayon::spawn`s: each link spawns the next when it finishes.
pub fn rayon_chain(pool: &rayon::ThreadPool, n: usize) -> Duration {
    fn link(s: &rayon::Scope<'_>, left: usize) {
        if left > 0 {
            s.spawn(move |s| link(s, left - 1));
        }
    }
    let t = Instant::now();
    pool.scope(|s| link(s, n));
    t.elapsed()
}

/// One empty GPU task, spawned and waited for.
pub fn hetflow_gpu_round_trip(rt: &Runtime) -> Duration {
    let t = Instant::now();
    let _ = rt
        .task("empty-gpu")
        .on(Placement::Gpu(0))
        .gpu(|_| ())
        .spawn()
        .wait();
    t.elapsed()
}

/// Raw wgpu: an empty command buffer submitted, then polled until done — spinning on
/// `poll(Poll)` with `yield_now`, the fastest way to learn of completion (a blocking
/// `poll(Wait)` pays the OS wake-up, which on a VM is tens of microseconds).
pub fn raw_gpu_round_trip(gpu: &hetflow::device::GpuDevice) -> Duration {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let t = Instant::now();
    let enc = gpu
        .wgpu_device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    gpu.wgpu_queue().submit([enc.finish()]);
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    gpu.wgpu_queue()
        .on_submitted_work_done(move || d.store(true, Ordering::Release));
    while !done.load(Ordering::Acquire) {
        let _ = gpu.wgpu_device().poll(wgpu::PollType::Poll);
        std::thread::yield_now();
    }
    t.elapsed()
}

/// `n` dependent GPU tasks, each adding one to a small array; waits for the last.
pub fn hetflow_gpu_chain(rt: &Runtime, kernel: &hetflow::Kernel, n: usize) -> Duration {
    let a = rt.array::<u32>(64);
    let t = Instant::now();
    let mut last = None;
    for _ in 0..n {
        let (k, a2) = (kernel.clone(), a.clone());
        last = Some(
            rt.task("inc")
                .read_write(&a)
                .on(Placement::Gpu(0))
                .gpu(move |cx| cx.dispatch_dyn(&k, &[&a2], [1, 1, 1]))
                .spawn(),
        );
    }
    if let Some(h) = last {
        let _ = h.wait();
    }
    t.elapsed()
}

/// Raw wgpu: the same `n` dispatches recorded in one encoder, one submit, one wait.
pub fn raw_gpu_chain(gpu: &hetflow::device::GpuDevice, n: usize) -> Duration {
    let dev = gpu.wgpu_device();
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(ADD_ONE_WGSL.into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let buf = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let t = Instant::now();
    let layout = pipeline.get_bind_group_layout(0);
    let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    for _ in 0..n {
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: buf.as_entire_binding(),
            }],
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    let idx = gpu.wgpu_queue().submit([enc.finish()]);
    let _ = dev.poll(wgpu::PollType::Wait {
        submission_index: Some(idx),
        timeout: None,
    });
    t.elapsed()
}

/// Runs every engine comparison (GPU ones only if `rt` has a GPU). `scale` multiplies the
/// repetition counts (1 = quick).
pub fn engine_suite(rt: &Runtime, scale: usize, mut progress: impl FnMut(&str)) -> Vec<Comparison> {
    let workers = rt.topology().cpu.workers;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("rayon pool");
    let reps = 5 * scale.max(1);
    let mut out = Vec::new();
    let n = 100_000;
    progress("empty independent tasks");
    let (h, b) = compare_per_item(
        reps,
        n,
        || hetflow_empty_tasks_in_pool(rt, n),
        || rayon_empty_tasks(&pool, n),
    );
    out.push(Comparison {
        name: format!("{n} empty tasks spawned in pool"),
        hetflow_ns: h,
        baseline: "rayon::scope spawn",
        baseline_ns: b,
        goal: Goal::Ratio(1.2),
    });
    let (h, b) = compare_per_item(
        reps,
        n,
        || hetflow_empty_tasks_scoped(rt, n),
        || rayon_empty_tasks(&pool, n),
    );
    out.push(Comparison {
        name: format!("{n} empty tasks from main, wait_idle"),
        hetflow_ns: h,
        baseline: "rayon::scope spawn",
        baseline_ns: b,
        goal: Goal::Ratio(1.5),
    });
    let (h, b) = compare_per_item(
        reps,
        n,
        || hetflow_empty_tasks(rt, n),
        || rayon_empty_tasks(&pool, n),
    );
    out.push(Comparison {
        name: format!("{n} empty tasks from main, wait each"),
        hetflow_ns: h,
        baseline: "rayon::scope spawn",
        baseline_ns: b,
        goal: Goal::Ratio(2.5),
    });
    let n = 10_000;
    progress("chain of dependent tasks");
    let (h, b) = compare_per_item(
        reps,
        n,
        || hetflow_rw_chain(rt, n),
        || rayon_chain(&pool, n),
    );
    out.push(Comparison {
        name: format!("chain of {n} tasks, read_write of one array"),
        hetflow_ns: h,
        baseline: "rayon nested spawn chain",
        baseline_ns: b,
        goal: Goal::PerItemNs(400.0),
    });
    let (h, b) = compare_per_item(reps, n, || hetflow_chain(rt, n), || rayon_chain(&pool, n));
    out.push(Comparison {
        name: format!("chain of {n} tasks, after(handle)"),
        hetflow_ns: h,
        baseline: "rayon nested spawn chain",
        baseline_ns: b,
        goal: Goal::PerItemNs(400.0),
    });
    if rt.gpu_count() > 0 {
        let gpu = rt.gpu(0).expect("a GPU").clone();
        progress("GPU empty-task round trip");
        let trips = 200;
        let (h, b) = compare_per_item(
            reps,
            trips,
            || (0..trips).map(|_| hetflow_gpu_round_trip(rt)).sum(),
            || (0..trips).map(|_| raw_gpu_round_trip(&gpu)).sum(),
        );
        out.push(Comparison {
            name: "GPU empty task round trip".into(),
            hetflow_ns: h,
            baseline: "raw wgpu submit + spin poll",
            baseline_ns: b,
            goal: Goal::Ratio(1.2),
        });
        progress("1000 dependent GPU tasks");
        let n = 1000;
        if let Ok(k) = rt.kernel(ADD_ONE_WGSL, "main") {
            let (h, b) = compare_per_item(
                reps,
                n,
                || hetflow_gpu_chain(rt, &k, n),
                || raw_gpu_chain(&gpu, n),
            );
            out.push(Comparison {
                name: format!("{n} tiny dependent GPU tasks"),
                hetflow_ns: h,
                baseline: "raw wgpu, 1 encoder, 1 submit",
                baseline_ns: b,
                goal: Goal::Ratio(1.2),
            });
        }
    }
    out
}

/// Time of one host-to-GPU move of `a` by a GPU task (the host copy is made newer first).
pub fn hetflow_upload(rt: &Runtime, a: &hetflow::Array<u32>) -> Duration {
    let a2 = a.clone();
    let _ = rt
        .task("touch")
        .read_write(a)
        .on(Placement::Cpu)
        .cpu(move |cx| cx.write(&a2)[0] += 1)
        .spawn()
        .wait();
    let t = Instant::now();
    let _ = rt
        .task("upload")
        .reads(a)
        .on(Placement::Gpu(0))
        .gpu(|_| ())
        .spawn()
        .wait();
    t.elapsed()
}

/// Raw wgpu: `queue.write_buffer` of `data`, an empty submit, and a wait.
pub fn raw_upload(gpu: &hetflow::device::GpuDevice, buf: &wgpu::Buffer, data: &[u8]) -> Duration {
    let t = Instant::now();
    gpu.wgpu_queue().write_buffer(buf, 0, data);
    let idx = gpu.wgpu_queue().submit([]);
    let _ = gpu.wgpu_device().poll(wgpu::PollType::Wait {
        submission_index: Some(idx),
        timeout: None,
    });
    t.elapsed()
}

/// Host-to-GPU bandwidth of each upload path for a `mib`-MiB array, against raw
/// `queue.write_buffer`; per-item times are per MiB.
pub fn upload_suite(mib: usize, scale: usize) -> Vec<Comparison> {
    use hetflow::data::UploadPath;
    let mut out = Vec::new();
    let Some(gpu) = hetflow::device::gpus().first().cloned() else {
        return out;
    };
    let n = mib << 18; // u32 elements
    let raw_buf = gpu.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let data = vec![7u8; n * 4];
    for path in [
        UploadPath::WriteBuffer,
        UploadPath::Staging,
        UploadPath::Mapped,
    ] {
        let Ok(rt) = Runtime::builder().cpu_workers(1).upload_path(path).build() else {
            continue;
        };
        let a = rt.array::<u32>(n);
        let (h, b) = compare_per_item(
            3 * scale.max(1),
            mib,
            || hetflow_upload(&rt, &a),
            || raw_upload(&gpu, &raw_buf, &data),
        );
        out.push(Comparison {
            name: format!("upload {mib} MiB, {path:?} path (per MiB)"),
            hetflow_ns: h,
            baseline: "raw queue.write_buffer + wait",
            baseline_ns: b,
            goal: Goal::Ratio(1.2),
        });
    }
    out
}

/// Formats comparisons as a table.
pub fn table(rows: &[Comparison]) -> String {
    // Columns as wide as their longest entry, so long workload names keep the table aligned.
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(8);
    let wb = rows
        .iter()
        .map(|r| r.baseline.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut s = format!(
        "{:<w$} {:>12} {:>12} {:>8}  {:<wb$} {}\n",
        "workload", "hetflow/item", "base/item", "ratio", "baseline", "goal"
    );
    for r in rows {
        let goal = r.goal.text();
        s += &format!(
            "{:<w$} {:>12} {:>12} {:>7.2}x  {:<wb$} {} {}\n",
            r.name,
            fmt_ns(r.hetflow_ns),
            fmt_ns(r.baseline_ns),
            r.ratio(),
            r.baseline,
            goal,
            if r.meets_goal() { "met" } else { "MISSED" }
        );
    }
    s
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// One linear-algebra measurement: a workload under one mode, with faer's own call as the
/// baseline of the same run.
#[derive(Debug, Clone)]
pub struct LinalgRow {
    /// `gemm` or `cholesky`.
    pub workload: &'static str,
    /// How it ran (`faer`, `cpu only`, `gpu updates`, `eager`, `dmda`).
    pub mode: String,
    /// Seconds.
    pub secs: f64,
    /// GFLOP/s.
    pub gflops: f64,
    /// Matrix order.
    pub n: usize,
    /// Tile order.
    pub tile: usize,
}

fn run_tasks(handles: Vec<hetflow::TaskHandle<()>>) -> Result<(), hetflow::TaskError> {
    for h in handles {
        h.wait()?;
    }
    Ok(())
}

/// Tiled GEMM (`2n³` flops) and Cholesky (`n³/3`) with hetflow under each mode, and faer's
/// own single call on the same data. dmda runs twice and reports the second (calibrated) run.
pub fn linalg_suite(
    n: usize,
    tile: usize,
    mut progress: impl FnMut(&str),
) -> Result<Vec<LinalgRow>, Box<dyn std::error::Error>> {
    use hetflow::linalg::{cholesky, gemm, spd_matrix, TiledMatrix};
    use hetflow::Policy;
    let (a, b) = (spd_matrix(n, 1), spd_matrix(n, 2));
    let gemm_flops = 2.0 * (n as f64).powi(3);
    let chol_flops = (n as f64).powi(3) / 3.0;
    let mut rows = Vec::new();
    let mut push = |workload, mode: &str, secs: f64, flops: f64| {
        rows.push(LinalgRow {
            workload,
            mode: mode.to_string(),
            secs,
            gflops: flops / secs / 1e9,
            n,
            tile,
        })
    };
    progress("faer baselines");
    let fa = faer::MatRef::from_row_major_slice(&a, n, n);
    let fb = faer::MatRef::from_row_major_slice(&b, n, n);
    drop(fa * fb); // warm-up: faer's thread pool and caches
    let t = Instant::now();
    let prod = fa * fb;
    push("gemm", "faer", t.elapsed().as_secs_f64(), gemm_flops);
    drop(prod);
    drop(fa.llt(faer::Side::Lower));
    let t = Instant::now();
    let llt = fa
        .llt(faer::Side::Lower)
        .map_err(|e| format!("faer llt: {e:?}"))?;
    push("cholesky", "faer", t.elapsed().as_secs_f64(), chol_flops);
    drop(llt);
    let modes: [(&str, Policy, bool, usize); 4] = [
        ("cpu only", Policy::PreferCpu, false, 1),
        ("gpu updates", Policy::PreferGpu, true, 1),
        ("eager", Policy::Eager, true, 1),
        ("dmda", Policy::Dmda, true, 2),
    ];
    for (mode, policy, gpu, runs) in modes {
        // No model file: a row must not depend on what earlier runs left in the cache (dmda's
        // second run in the same runtime is its calibrated figure).
        let rt = Runtime::builder()
            .policy(policy)
            .perf_model_persistence(hetflow::ModelPersistence::Off)
            .build()?;
        if gpu && rt.gpu_count() == 0 {
            continue;
        }
        for run in 0..runs {
            progress(&format!(
                "{mode}: gemm{}",
                if runs > 1 {
                    format!(" (run {})", run + 1)
                } else {
                    String::new()
                }
            ));
            let (ta, tb) = (
                TiledMatrix::from_dense_full(&rt, &a, n, tile, "A")?,
                TiledMatrix::from_dense_full(&rt, &b, n, tile, "B")?,
            );
            let tc = TiledMatrix::from_dense_full(&rt, &vec![0.0; n * n], n, tile, "C")?;
            let t = Instant::now();
            run_tasks(gemm(&rt, &ta, &tb, &tc, gpu)?)?;
            let gemm_secs = t.elapsed().as_secs_f64();
            progress(&format!("{mode}: cholesky"));
            let tm = TiledMatrix::from_dense(&rt, &a, n, tile)?;
            let t = Instant::now();
            run_tasks(cholesky(&rt, &tm, gpu)?)?;
            let chol_secs = t.elapsed().as_secs_f64();
            if run + 1 == runs {
                push("gemm", mode, gemm_secs, gemm_flops);
                push("cholesky", mode, chol_secs, chol_flops);
            }
        }
    }
    Ok(rows)
}

/// The rows as a table with each mode's speed relative to faer.
pub fn linalg_table(rows: &[LinalgRow]) -> String {
    let mut s = format!(
        "{:<10} {:<12} {:>10} {:>10} {:>12}\n",
        "workload", "mode", "time (s)", "GFLOP/s", "vs faer"
    );
    for r in rows {
        let faer = rows
            .iter()
            .find(|f| f.workload == r.workload && f.mode == "faer")
            .map_or(f64::NAN, |f| f.secs);
        s += &format!(
            "{:<10} {:<12} {:>10.3} {:>10.2} {:>11.2}x\n",
            r.workload,
            r.mode,
            r.secs,
            r.gflops,
            faer / r.secs
        );
    }
    s
}

/// A grouped bar chart of GFLOP/s, as SVG: one group per workload, one bar per mode (the
/// colours named in a legend beside the chart), each bar labelled with its value. The
/// GFLOP/s axis is logarithmic: the modes differ by decades (a software GPU is hundreds of
/// times slower than faer), and a linear axis would flatten the slow bars to nothing.
pub fn linalg_svg(
    rows: &[LinalgRow],
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use super::plot::{self, Marker};
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let rows: Vec<&LinalgRow> = rows
        .iter()
        .filter(|r| r.gflops.is_finite() && r.gflops > 0.0)
        .collect();
    let Some(first) = rows.first() else {
        return Err("linalg_svg: no row with a positive GFLOP/s to plot".into());
    };
    let mut workloads: Vec<&str> = Vec::new();
    let mut modes: Vec<&str> = Vec::new();
    for r in &rows {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
        if !modes.contains(&r.mode.as_str()) {
            modes.push(&r.mode);
        }
    }
    let color = |mode: &str| {
        let m = modes.iter().position(|x| *x == mode).unwrap_or(0);
        plot::PALETTE[m % plot::PALETTE.len()]
    };
    let min = rows.iter().map(|r| r.gflops).fold(f64::INFINITY, f64::min);
    let max = rows.iter().map(|r| r.gflops).fold(0.0, f64::max);
    // Room below the smallest bar (so it shows) and above the tallest (for its label).
    let (lo, hi) = plot::decade_range(min / 2.0, max * 2.5);
    let (bold, light) = plot::log_ticks(lo, hi);

    let full = SVGBackend::new(path, (1000, 540)).into_drawing_area();
    full.fill(&WHITE)?;
    let root = full.titled(
        &format!(
            "hetflow tiled linear algebra: n = {}, tile = {} (higher is better)",
            first.n, first.tile
        ),
        ("sans-serif", 22),
    )?;
    let (chart_area, legend_area) = root.split_horizontally(790);
    let groups = workloads.len() as f64;
    let mut chart = ChartBuilder::on(&chart_area)
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..groups,
            (lo..hi)
                .log_scale()
                .with_key_points(bold)
                .with_light_points(light),
        )?;
    let gflops_label = |y: &f64| plot::si(*y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&gflops_label)
        .y_label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .x_desc("workload")
        .y_desc("GFLOP/s (log scale)")
        .draw()?;
    // Each group fills 80 % of its unit; the bars share it in the legend's order.
    let slot = 0.8 / modes.len() as f64;
    for (g, workload) in workloads.iter().enumerate() {
        for (m, mode) in modes.iter().enumerate() {
            let Some(r) = rows
                .iter()
                .find(|r| r.workload == *workload && r.mode == *mode)
            else {
                continue;
            };
            let x0 = g as f64 + 0.1 + m as f64 * slot;
            let x1 = x0 + slot * 0.9;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, lo), (x1, r.gflops)],
                color(mode).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                plot::si(r.gflops),
                ((x0 + x1) / 2.0, r.gflops * 1.05),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
        }
    }
    // The workloads' names under their groups, centred (the axis has no ticks: its values
    // are group positions).
    for (g, workload) in workloads.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, lo));
        full.draw(&Text::new(
            workload.to_string(),
            (px, py + 8),
            TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    let entries: Vec<(String, RGBColor, Marker)> = modes
        .iter()
        .map(|m| (m.to_string(), color(m), Marker::Bar))
        .collect();
    let mut notes = Vec::new();
    if modes.contains(&"faer") {
        notes.push("faer: faer's own call,".to_string());
        notes.push("the others: hetflow tasks".to_string());
    }
    if modes.contains(&"dmda") {
        notes.push("dmda: its second run".to_string());
    }
    plot::legend(&legend_area, "mode", &entries, &notes)?;
    root.present()?;
    Ok(())
}
