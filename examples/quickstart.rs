//! Quickstart: a small DAG of CPU and GPU tasks.
//!
//! ```text
//!   init_x (cpu) ─┐
//!                 ├─> saxpy (cpu or gpu: placement) ─> sum (cpu reduction)
//!   init_y (cpu) ─┘                                └─> max (cpu reduction)
//! ```
//! Data moves automatically: x and y are written on the host, read where saxpy runs, and the
//! result comes back for the reductions. saxpy has a CPU and a GPU body; the default policy
//! (dmda) picks by measured cost, and presumes a software GPU (lavapipe, SwiftShader) far
//! slower than the CPU until measured: there it runs on the CPU, and the demo says why. Run: `cargo run --release --example quickstart`;
//! add `-- --trace trace.json` to write a Chrome trace of every task and move (open it in
//! ui.perfetto.dev).

use hetflow::{DeviceId, Runtime, Uniform};

#[path = "support/quiet.rs"]
mod quiet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let trace_path = std::env::args().skip_while(|a| a != "--trace").nth(1);
    let on_gpu = std::env::args().any(|a| a == "--gpu");
    let mut builder = Runtime::builder();
    if on_gpu {
        builder = builder.policy(hetflow::Policy::PreferGpu);
    }
    let rt = builder.build()?;
    if trace_path.is_some() {
        rt.start_trace();
    }
    println!("hetflow quickstart\n{}", rt.topology());
    if rt.gpu_count() == 0 {
        println!("No GPU found: every task runs on the CPU.\n");
    }
    for g in &rt.topology().gpus {
        if g.device_type.shares_cpu_cores() && !on_gpu {
            println!(
                "gpu{} is a software adapter ({}) on the CPU's own cores: the default policy \
                 presumes it {:.0}x slower than the CPU until measured, so saxpy runs on the CPU \
                 (`cargo run --release --example quickstart -- --gpu` places it on the GPU).\n",
                g.index,
                g.name,
                rt.perf_model().prior(DeviceId::Gpu(g.index))
            );
        }
    }

    let n = 1 << 20;
    let a = 2.5f32;
    let x = rt.array_named::<f32>("x", vec![0.0; n]);
    let y = rt.array_named::<f32>("y", vec![0.0; n]);

    let init_x = rt
        .task("init_x")
        .args(x.write())
        .on(hetflow::Placement::Cpu)
        .cpu(|x| {
            for (i, v) in x.iter_mut().enumerate() {
                *v = (i % 1000) as f32 * 0.25;
            }
        })
        .spawn();
    let init_y = rt
        .task("init_y")
        .args(y.write())
        .on(hetflow::Placement::Cpu)
        .cpu(|y| {
            for (i, v) in y.iter_mut().enumerate() {
                *v = (i % 7) as f32;
            }
        })
        .spawn();

    // ANCHOR: saxpy
    let kernel = rt.kernel(include_str!("../shaders/saxpy.wgsl"), "main")?;
    let saxpy = rt
        .task("saxpy")
        .args((x.read(), y.read_write()))
        .cpu(move |(x, y)| y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x))
        .gpu(move |cx, (x, y)| {
            let groups = kernel.groups_for(n);
            cx.dispatch(&kernel, (Uniform([a, 0.0, 0.0, 0.0]), x, y), groups)
        })
        .spawn();
    // ANCHOR_END: saxpy

    let sum = rt
        .task("sum")
        .args(y.read())
        .on(hetflow::Placement::Cpu)
        .cpu(|y| y.iter().map(|&v| v as f64).sum::<f64>())
        .spawn();
    let max = rt
        .task("max")
        .args(y.read())
        .on(hetflow::Placement::Cpu)
        .cpu(|y| y.iter().copied().fold(f32::MIN, f32::max))
        .spawn();

    let refs = [
        init_x.task_ref(),
        init_y.task_ref(),
        saxpy.task_ref(),
        sum.task_ref(),
        max.task_ref(),
    ];
    let (total, largest) = (sum.wait()?, max.wait()?);
    for r in &refs {
        r.wait()?;
        let place = match r.device() {
            Some(DeviceId::Gpu(i)) => format!("gpu{i} ({})", rt.topology().gpus[i].name),
            Some(DeviceId::Cpu) => "cpu".to_string(),
            None => "nowhere".to_string(),
        };
        println!("{:<7} ran on {place}", r.name());
    }

    // Verify against a plain loop.
    let (mut want_sum, mut want_max) = (0.0f64, f32::MIN);
    for i in 0..n {
        let v = (i % 7) as f32 + a * ((i % 1000) as f32 * 0.25);
        want_sum += v as f64;
        want_max = want_max.max(v);
    }
    let rel = ((total - want_sum) / want_sum).abs();
    println!("\nsum of y = {total:.1} (expected {want_sum:.1}, relative error {rel:.1e})");
    println!("max of y = {largest} (expected {want_max})");
    let stats = rt.stats();
    for ((from, to), l) in &stats.links {
        println!(
            "moved {from} -> {to}: {} copies, {} bytes",
            l.moves, l.bytes
        );
    }
    if rel > 1e-9 || largest != want_max {
        return Err("result mismatch".into());
    }
    println!("verified: OK");
    if let Some(path) = trace_path {
        let trace = rt.take_trace();
        trace.write_chrome_json(&path)?;
        println!(
            "trace: {} tasks and {} moves written to {path}",
            trace.tasks.len(),
            trace.moves.len()
        );
    }
    Ok(())
}
