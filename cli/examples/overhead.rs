//! Per-task overhead harness for instruction counts: one workload per run, so that
//! `valgrind --tool=callgrind` can count the instructions of N and 2N tasks and the
//! difference divided by N is the cost of one task (start-up cancels out).
//!
//! `cargo run --release -p hetflow-cli --example overhead -- <mode> <n>` with mode one of
//! `pool` (empty tasks spawned inside a task), `main` (from main, then `wait_idle`),
//! `rwchain` (a chain linked by read_write of one array), `chain` (a chain linked by
//! `after`), `rayon-scope` and `rayon-chain` (the same work in rayon). `cli/scripts/
//! callgrind-per-task.sh` runs them all under callgrind.

use std::time::Instant;

use hetflow::{Placement, Runtime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "pool".into());
    let n: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 10_000,
    };
    let workers = 2;
    let t = Instant::now();
    match mode.as_str() {
        "pool" | "main" | "rwchain" | "chain" => {
            let rt = Runtime::builder().cpu_workers(workers).no_gpu().build()?;
            let t = Instant::now();
            match mode.as_str() {
                "pool" => {
                    let inner = (*rt).clone();
                    rt.task("outer")
                        .on(Placement::Cpu)
                        .cpu(move |_| {
                            for _ in 0..n {
                                drop(inner.task("e").on(Placement::Cpu).cpu(|_| ()).spawn());
                            }
                        })
                        .spawn()
                        .wait()?;
                    rt.wait_idle();
                }
                "main" => {
                    for _ in 0..n {
                        drop(rt.task("e").on(Placement::Cpu).cpu(|_| ()).spawn());
                    }
                    rt.wait_idle();
                }
                "rwchain" => {
                    let a = rt.array::<u32>(1);
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
                }
                _ => {
                    let mut prev = rt.task("link").on(Placement::Cpu).cpu(|_| ()).spawn();
                    for _ in 1..n {
                        prev = rt
                            .task("link")
                            .after(&prev)
                            .on(Placement::Cpu)
                            .cpu(|_| ())
                            .spawn();
                    }
                    prev.wait()?;
                }
            }
            println!("{mode} {n}: {:.0} ns/task", per_task(t, n));
            return Ok(());
        }
        "rayon-scope" => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(workers).build()?;
            pool.scope(|s| {
                for _ in 0..n {
                    s.spawn(|_| ());
                }
            });
        }
        "rayon-chain" => {
            fn link(s: &rayon::Scope<'_>, left: usize) {
                if left > 0 {
                    s.spawn(move |s| link(s, left - 1));
                }
            }
            let pool = rayon::ThreadPoolBuilder::new().num_threads(workers).build()?;
            pool.scope(|s| link(s, n));
        }
        other => return Err(format!("unknown mode `{other}`").into()),
    }
    println!("{mode} {n}: {:.0} ns/task", per_task(t, n));
    Ok(())
}

fn per_task(t: Instant, n: usize) -> f64 {
    t.elapsed().as_nanos() as f64 / n.max(1) as f64
}
