//! Criterion benchmarks of the engine, each against a baseline measured in the same run.
//! After each pair, the ratio hetflow / baseline (per item) is printed.
//!
//! `cargo bench --bench engine`; with `HETFLOW_BENCH_GUARD=1` a missed goal fails the run
//! (a regression guard: run it on a quiet machine, as the figures are noisy).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hetflow::Runtime;
use hetflow_cli::bench::engine as hb;

/// Benchmarks `ours` and `base` (each returns the time of `items` items) in one group and
/// prints their per-item ratio.
fn pair(
    c: &mut Criterion,
    group: &str,
    items: u64,
    goal: hb::Goal,
    base_name: &'static str,
    mut ours: impl FnMut() -> Duration,
    mut base: impl FnMut() -> Duration,
) {
    let mut totals = [(Duration::ZERO, 0u64); 2];
    let mut g = c.benchmark_group(group);
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    g.bench_function("hetflow", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| ours()).sum();
            totals[0].0 += d;
            totals[0].1 += iters * items;
            d
        })
    });
    g.bench_function(base_name, |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| base()).sum();
            totals[1].0 += d;
            totals[1].1 += iters * items;
            d
        })
    });
    g.finish();
    if totals.iter().all(|t| t.1 > 0) {
        let per = |t: (Duration, u64)| t.0.as_nanos() as f64 / t.1 as f64;
        let (a, b) = (per(totals[0]), per(totals[1]));
        let row = hb::Comparison {
            name: group.to_string(),
            hetflow_ns: a,
            baseline: base_name,
            baseline_ns: b,
            goal,
        };
        let (goal_text, met) = (goal.text(), row.meets_goal());
        let verdict = if met { "met" } else { "MISSED" };
        println!("RATIO {group}: hetflow {a:.0} ns/item vs {base_name} {b:.0} ns/item = {:.2}x (goal {goal_text}: {verdict})", row.ratio());
        if !met && std::env::var("HETFLOW_BENCH_GUARD").is_ok_and(|v| v == "1") {
            panic!("HETFLOW_BENCH_GUARD=1: {group} missed its goal ({goal_text})");
        }
    }
}

fn engine(c: &mut Criterion) {
    let rt = Runtime::builder().build().expect("runtime");
    let workers = rt.topology().cpu.workers;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("rayon");
    let n = 10_000usize;
    pair(
        c,
        "empty_tasks_in_pool",
        n as u64,
        hb::Goal::Ratio(1.2),
        "rayon_scope",
        || hb::hetflow_empty_tasks_in_pool(&rt, n),
        || hb::rayon_empty_tasks(&pool, n),
    );
    pair(
        c,
        "empty_tasks_from_main",
        n as u64,
        hb::Goal::Ratio(1.5),
        "rayon_scope",
        || hb::hetflow_empty_tasks_scoped(&rt, n),
        || hb::rayon_empty_tasks(&pool, n),
    );
    pair(
        c,
        "rw_chain_10k",
        n as u64,
        hb::Goal::PerItemNs(400.0),
        "rayon_nested_spawn",
        || hb::hetflow_rw_chain(&rt, n),
        || hb::rayon_chain(&pool, n),
    );
    pair(
        c,
        "after_chain_10k",
        n as u64,
        hb::Goal::PerItemNs(400.0),
        "rayon_nested_spawn",
        || hb::hetflow_chain(&rt, n),
        || hb::rayon_chain(&pool, n),
    );
    if rt.gpu_count() == 0 {
        println!("no GPU adapter: GPU benchmarks skipped");
        return;
    }
    let gpu = hetflow::device::gpus()[0].clone();
    pair(
        c,
        "gpu_round_trip",
        1,
        hb::Goal::Ratio(1.2),
        "raw_wgpu",
        || hb::hetflow_gpu_round_trip(&rt),
        || hb::raw_gpu_round_trip(&gpu),
    );
    let k = rt.kernel(hb::ADD_ONE_WGSL, "main").expect("kernel");
    let m = 1000usize;
    pair(
        c,
        "gpu_chain_1000",
        m as u64,
        hb::Goal::Ratio(1.2),
        "raw_wgpu_one_submit",
        || hb::hetflow_gpu_chain(&rt, &k, m),
        || hb::raw_gpu_chain(&gpu, m),
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
