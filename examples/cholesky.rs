//! Tiled Cholesky on CPU + GPU: `A = L Lᵀ` for an SPD f32 matrix split into tiles.
//!
//! POTRF and TRSM tiles run on the CPU (faer); SYRK and GEMM tiles on the CPU or the GPU, as
//! the policy decides. Prints where the tiles ran, GFLOP/s, and checks ‖L·Lᵀ − A‖/‖A‖ < 1e-4.
//!
//! `cargo run --release --example cholesky -- [n] [tile] [default|eager|dmda|locality|cpu] [--trace FILE] [--model FILE]`
//!
//! The default policy (dmda) places each tile by measured cost. It keeps its performance
//! model per device in the user's cache directory (`hetflow model show`), so a second run
//! starts calibrated; `--model FILE` keeps it in FILE instead. Calibration is bounded: a
//! device presumed slow (a software GPU) is only tried as far as 10% of the work pays for.

use std::collections::BTreeMap;
use std::time::Instant;

use hetflow::linalg::{cholesky, spd_matrix, TiledMatrix};
use hetflow::{Policy, Runtime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (trace_path, model_path) = (opt("--trace"), opt("--model"));
    let plain: Vec<&String> = args.iter().take_while(|a| !a.starts_with("--")).collect();
    let n: usize = plain.first().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let tile: usize = plain.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let mode = plain.get(2).map_or("default", |s| s.as_str());
    let mut builder = Runtime::builder();
    match mode {
        "eager" => builder = builder.policy(Policy::Eager),
        "locality" => builder = builder.policy(Policy::Locality),
        "dmda" => builder = builder.policy(Policy::Dmda),
        "default" | "cpu" => {}
        other => {
            return Err(format!(
                "unknown mode {other:?}: expected default, eager, dmda, locality or cpu"
            )
            .into())
        }
    }
    if let Some(path) = &model_path {
        builder = builder.perf_model_file(path);
    }
    let rt = builder.build()?;
    println!(
        "tiled Cholesky n = {n}, tile = {tile}, policy = {mode}, GPUs = {}",
        rt.gpu_count()
    );

    // A = M Mᵀ / n + I: symmetric positive definite, well conditioned.
    let dense = spd_matrix(n, 12345);
    let a = faer::MatRef::from_row_major_slice(&dense, n, n).to_owned();

    let tm = TiledMatrix::from_dense(&rt, &dense, n, tile)?;
    if trace_path.is_some() {
        rt.start_trace();
    }
    if mode != "cpu" && rt.gpu_count() > 0 {
        // Compile the GPU tile kernel before the clock starts (the runtime caches it), as
        // faer is warmed up below: a one-time setup cost, printed apart.
        let t0 = Instant::now();
        rt.kernel(include_str!("../shaders/tile_gemm.wgsl"), "nt_sub")?;
        println!(
            "GPU kernel compiled in {:.3} s (not counted)",
            t0.elapsed().as_secs_f64()
        );
    }
    let start = Instant::now();
    let handles = cholesky(&rt, &tm, mode != "cpu")?;
    let mut places: BTreeMap<String, usize> = BTreeMap::new();
    let refs: Vec<_> = handles.iter().map(|h| h.task_ref()).collect();
    for h in handles {
        h.wait()?;
    }
    let secs = start.elapsed().as_secs_f64();
    for r in &refs {
        let kind = r.name().split('(').next().unwrap_or("?").to_string();
        let dev = r.device().map_or("none".into(), |d| d.to_string());
        *places.entry(format!("{kind} on {dev}")).or_default() += 1;
    }
    let gflops = (n as f64).powi(3) / 3.0 / secs / 1e9;
    println!("time {secs:.3} s, {gflops:.2} GFLOP/s");
    for (k, v) in &places {
        println!("  {v:5} x {k}");
    }
    let stats = rt.stats();
    let explored: Vec<String> = stats
        .explorations
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(d, n)| format!("{n} on {d}"))
        .collect();
    if rt.policy() == Policy::Dmda && mode != "cpu" {
        println!(
            "placement: dmda, model {}; calibration runs: {}",
            rt.perf_model()
                .store_path()
                .map_or("not persisted".to_string(), |(p, _)| p
                    .display()
                    .to_string()),
            if explored.is_empty() {
                "none".to_string()
            } else {
                explored.join(", ")
            }
        );
    }
    if stats.steals_to_cpu + stats.steals_to_gpu > 0 {
        println!(
            "heterogeneous stealing moved {} task(s) from the GPU queue to the CPU and {} from the CPU queue to the GPU",
            stats.steals_to_cpu, stats.steals_to_gpu
        );
    }

    let l = tm.to_dense_lower()?;
    let lm = faer::MatRef::from_row_major_slice(&l, n, n);
    let r = lm * lm.transpose() - &a;
    let rel = r.norm_l2() / a.norm_l2();
    println!("relative residual ||L Lt - A|| / ||A|| = {rel:.2e}");
    if let Some(path) = trace_path {
        let trace = rt.take_trace();
        trace.write_chrome_json(&path)?;
        println!(
            "trace: {} tasks, {} moves -> {path}",
            trace.tasks.len(),
            trace.moves.len()
        );
    }
    // Baseline in the same run: faer's own Cholesky of the whole matrix.
    let t0 = Instant::now();
    let llt = a
        .llt(faer::Side::Lower)
        .map_err(|e| format!("faer: {e:?}"))?;
    let faer_secs = t0.elapsed().as_secs_f64();
    drop(llt);
    println!(
        "faer llt (one call, same matrix): {faer_secs:.3} s, {:.2} GFLOP/s; hetflow/faer speed ratio {:.2}x",
        (n as f64).powi(3) / 3.0 / faer_secs / 1e9,
        faer_secs / secs
    );
    if rel >= 1e-4 {
        return Err(format!("residual {rel:.2e} is not below 1e-4").into());
    }
    println!("verified: OK");
    Ok(())
}
