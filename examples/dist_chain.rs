//! Per-task cost of the distributed runtime: chains of no-op tasks linked by read-write of
//! one array, against the same chain on the plain engine in the same process.
//!
//! ```text
//! cargo build --release --features mpi --example dist_chain
//! mpirun --allow-run-as-root --oversubscribe -n 2 target/release/examples/dist_chain [tasks] [reps]
//! ```
//! Rows (medians of `reps`, alternating): the engine alone (rank 0's runtime, no cluster);
//! the distributed chain kept on one rank (planning on every rank, no message); the chain
//! alternating between ranks 0 and 1 (one message per task) with 4-byte and 1 MiB arrays.

use std::time::Instant;

use hetflow::dist::Cluster;
use hetflow::{Placement, Runtime};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[path = "support/quiet.rs"]
mod quiet;

fn main() {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tasks = nums.first().copied().unwrap_or(2000);
    let reps = nums.get(1).copied().unwrap_or(5);
    let rt = Runtime::builder().cpu_workers(1).no_gpu().build().unwrap();
    let c = match Cluster::mpi(&rt.handle()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dist_chain: {e}");
            std::process::exit(1);
        }
    };
    let other = if c.size() > 1 { 1 } else { 0 };
    let mut rows: Vec<(String, Vec<f64>)> = vec![
        ("engine alone (rank 0, no cluster)".into(), vec![]),
        ("distributed, all on rank 0".into(), vec![]),
        ("distributed, alternating ranks, 4 B".into(), vec![]),
        ("distributed, alternating ranks, 1 MiB".into(), vec![]),
    ];
    for _ in 0..reps {
        // The engine alone: only rank 0 runs it; the others wait at the next collective.
        if c.rank() == 0 {
            let a = rt.array_from(vec![0u32; 1]);
            let t0 = Instant::now();
            for _ in 0..tasks {
                rt.task("inc")
                    .args(a.read_write())
                    .on(Placement::Cpu)
                    .cpu(|a| a[0] += 1)
                    .spawn();
            }
            rt.wait_idle();
            rows[0].1.push(t0.elapsed().as_secs_f64() / tasks as f64);
        }
        c.wait_all().unwrap();
        for (row, len, alternate) in [(1, 1usize, false), (2, 1, true), (3, 1 << 18, true)] {
            let a = c.array::<u32>(0, len).unwrap();
            c.wait_all().unwrap();
            let t0 = Instant::now();
            for i in 0..tasks {
                let r = if alternate && i % 2 == 1 { other } else { 0 };
                c.task::<()>("inc")
                    .args(a.read_write())
                    .on_rank(r)
                    .on(Placement::Cpu)
                    .cpu(|a| a[0] += 1)
                    .spawn()
                    .unwrap();
            }
            c.wait_all().unwrap();
            rows[row].1.push(t0.elapsed().as_secs_f64() / tasks as f64);
            assert_eq!(a.to_vec().unwrap()[0], tasks as u32);
        }
    }
    if c.rank() == 0 {
        println!(
            "{} ranks x 1 worker, chains of {tasks} tasks, medians of {reps}",
            c.size()
        );
        let base = median(rows[0].1.clone());
        for (name, v) in rows {
            let m = median(v);
            println!(
                "{name:<42} {:>9.2} µs/task  {:>6.1}x the engine",
                m * 1e6,
                m / base
            );
        }
        let s = c.stats();
        println!(
            "rank 0: {} messages sent, {} received",
            s.messages_sent, s.messages_received
        );
    }
}
