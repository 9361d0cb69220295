//! Per-task overhead harness for instruction counts: one workload of the engine benchmark
//! (`hetflow_cli::bench::engine`, the same code `hetflow bench` times) per run, so that
//! `valgrind --tool=callgrind` can count the instructions of N and 2N tasks and the
//! difference divided by N is the cost of one task (start-up cancels out).
//!
//! `cargo run --release -p hetflow-cli --example overhead -- <mode> <n>` with mode one of
//! `pool` (empty tasks spawned inside a task), `main` (from main, then `wait_idle`), `wait`
//! (from main, keeping the handles, then waiting on each), `rwchain` (a chain linked by
//! read_write of one array), `chain` (a chain linked by `after`), `rayon-scope` and
//! `rayon-chain` (the same work in rayon), on 2 workers.
//! `cli/scripts/callgrind-per-task.sh` runs them all under callgrind. An optional third
//! argument repeats the workload that many times in the same process and prints the median
//! (for a sampling profiler, e.g. `perf record`, on the steady state). A hetflow mode with
//! the suffix `+gpu` (e.g. `rwchain+gpu`) builds the runtime with the GPUs found, as
//! `hetflow bench` does, instead of none.

use hetflow::Runtime;
use hetflow_cli::bench::engine as hb;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "pool".into());
    let n: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 10_000,
    };
    let reps: usize = match args.next() {
        Some(s) => s.parse::<usize>()?.max(1),
        None => 1,
    };
    let workers = 2;
    let mut times = Vec::with_capacity(reps);
    if mode.starts_with("rayon") {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()?;
        for _ in 0..reps {
            times.push(match mode.as_str() {
                "rayon-scope" => hb::rayon_empty_tasks(&pool, n),
                "rayon-chain" => hb::rayon_chain(&pool, n),
                other => return Err(format!("unknown mode `{other}`").into()),
            });
        }
    } else {
        let (mode, gpus) = match mode.strip_suffix("+gpu") {
            Some(m) => (m, true),
            None => (mode.as_str(), false),
        };
        let builder = Runtime::builder().cpu_workers(workers);
        let rt = if gpus { builder } else { builder.no_gpu() }.build()?;
        for _ in 0..reps {
            times.push(match mode {
                "pool" => hb::hetflow_empty_tasks_in_pool(&rt, n),
                "main" => hb::hetflow_empty_tasks_scoped(&rt, n),
                "wait" => hb::hetflow_empty_tasks(&rt, n),
                "rwchain" => hb::hetflow_rw_chain(&rt, n),
                "chain" => hb::hetflow_chain(&rt, n),
                other => return Err(format!("unknown mode `{other}`").into()),
            });
        }
    }
    times.sort();
    let took = times[times.len() / 2];
    println!(
        "{mode} {n}: {:.0} ns/task",
        took.as_nanos() as f64 / n.max(1) as f64
    );
    Ok(())
}
