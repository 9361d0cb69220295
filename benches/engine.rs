//! Criterion benchmarks of the engine, each against a baseline measured in the same run.
//! After each pair, the ratio hetflow / baseline (per item) is printed.
//!
//! `cargo bench --bench engine`

use std::cell::RefCell;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hetflow::bench as hb;
use hetflow::Runtime;

/// Total time and item count per benchmark id, to print ratios.
struct Totals(RefCell<Vec<(String, Duration, u64)>>);

impl Totals {
    fn add(&self, id: &str, d: Duration, items: u64) {
        let mut v = self.0.borrow_mut();
        match v.iter_mut().find(|(n, _, _)| n == id) {
            Some(e) => {
                e.1 += d;
                e.2 += items;
            }
            None => v.push((id.to_string(), d, items)),
        }
    }
    fn per_item(&self, id: &str) -> f64 {
        let v = self.0.borrow();
        v.iter()
            .find(|(n, _, _)| n == id)
            .map_or(f64::NAN, |(_, d, i)| d.as_nanos() as f64 / *i as f64)
    }
    fn ratio(&self, ours: &str, base: &str, goal: &str) {
        let (a, b) = (self.per_item(ours), self.per_item(base));
        if a.is_nan() || b.is_nan() {
            return; // filtered out on the command line
        }
        println!(
            "RATIO {ours}: {a:.0} ns/item vs {base}: {b:.0} ns/item = {:.2}x (goal {goal})",
            a / b
        );
    }
}

fn engine(c: &mut Criterion) {
    let rt = Runtime::builder().build().expect("runtime");
    let workers = rt.topology().cpu.workers;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("rayon");
    let totals = Totals(RefCell::new(Vec::new()));

    let n = 10_000usize;
    let mut g = c.benchmark_group("empty_tasks");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("hetflow", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters)
                .map(|_| hb::hetflow_empty_tasks_scoped(&rt, n))
                .sum();
            totals.add("hetflow_empty", d, iters * n as u64);
            d
        })
    });
    g.bench_function("rayon_scope", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::rayon_empty_tasks(&pool, n)).sum();
            totals.add("rayon_empty", d, iters * n as u64);
            d
        })
    });
    g.finish();
    totals.ratio("hetflow_empty", "rayon_empty", "spawned from main; <= 2x");

    let mut g = c.benchmark_group("empty_tasks_in_pool");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("hetflow", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters)
                .map(|_| hb::hetflow_empty_tasks_in_pool(&rt, n))
                .sum();
            totals.add("hetflow_empty_pool", d, iters * n as u64);
            d
        })
    });
    g.bench_function("rayon_scope", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::rayon_empty_tasks(&pool, n)).sum();
            totals.add("rayon_empty_pool", d, iters * n as u64);
            d
        })
    });
    g.finish();
    totals.ratio("hetflow_empty_pool", "rayon_empty_pool", "<= 1.5x");

    let mut g = c.benchmark_group("chain_10k");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("hetflow", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::hetflow_chain(&rt, n)).sum();
            totals.add("hetflow_chain", d, iters * n as u64);
            d
        })
    });
    g.bench_function("rayon_nested_spawn", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::rayon_chain(&pool, n)).sum();
            totals.add("rayon_chain", d, iters * n as u64);
            d
        })
    });
    g.finish();
    totals.ratio("hetflow_chain", "rayon_chain", "hetflow <= 1000 ns/task");

    if rt.gpu_count() == 0 {
        println!("no GPU adapter: GPU benchmarks skipped");
        return;
    }
    let gpu = hetflow::device::gpus()[0].clone();
    let mut g = c.benchmark_group("gpu_round_trip");
    g.bench_function("hetflow", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::hetflow_gpu_round_trip(&rt)).sum();
            totals.add("hetflow_gpu_rt", d, iters);
            d
        })
    });
    g.bench_function("raw_wgpu", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::raw_gpu_round_trip(&gpu)).sum();
            totals.add("raw_gpu_rt", d, iters);
            d
        })
    });
    g.finish();
    totals.ratio("hetflow_gpu_rt", "raw_gpu_rt", "<= 1.2x");

    let k = rt.kernel(hb::ADD_ONE_WGSL, "main").expect("kernel");
    let m = 1000usize;
    let mut g = c.benchmark_group("gpu_chain_1000");
    g.sample_size(10);
    g.bench_function("hetflow", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::hetflow_gpu_chain(&rt, &k, m)).sum();
            totals.add("hetflow_gpu_chain", d, iters * m as u64);
            d
        })
    });
    g.bench_function("raw_wgpu_one_submit", |b| {
        b.iter_custom(|iters| {
            let d: Duration = (0..iters).map(|_| hb::raw_gpu_chain(&gpu, m)).sum();
            totals.add("raw_gpu_chain", d, iters * m as u64);
            d
        })
    });
    g.finish();
    totals.ratio(
        "hetflow_gpu_chain",
        "raw_gpu_chain",
        "hetflow <= 10000 ns/task",
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
