//! The distributed runtime under mpirun (feature `mpi`; run by `.ci/run`):
//!
//! ```text
//! mpirun -n 2 target/release/deps/dist_mpi-*            # random DAGs, failures, Cholesky
//! mpirun -n 4 target/release/deps/dist_mpi-*
//! mpirun -n 2 target/release/deps/dist_mpi-* mismatch   # different flows: typed error
//! mpirun -n 2 target/release/deps/dist_mpi-* die        # rank 1 dies: the job ends
//! ```
//! Seeds: `HETFLOW_DIST_SEEDS` (default 20), 2000 tasks each.

mod common;
mod dist_common;

use std::time::Duration;

use hetflow::dist::{Cluster, DistError};
use hetflow::Runtime;

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let rt = Runtime::builder().cpu_workers(1).build().unwrap();
    let c = match Cluster::builder()
        .timeout(Duration::from_secs(60))
        .mpi(&rt.handle())
    {
        Ok(c) => c,
        Err(e @ DistError::NotUnderMpirun { .. }) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
        Err(e) => panic!("{e}"),
    };
    let rank = c.rank();
    match mode.as_str() {
        "mismatch" => {
            let a = c.array_from(0, vec![1u32; 4]).unwrap();
            let b = c.array::<u32>(1, 4).unwrap();
            for _ in 0..(1 + rank) {
                c.task::<()>("copy")
                    .args((a.read(), b.write()))
                    .cpu(|(a, b)| b.copy_from_slice(a))
                    .spawn()
                    .unwrap();
            }
            match c.wait_all() {
                Err(DistError::FlowMismatch { .. }) => println!("rank {rank}: mismatch detected"),
                other => panic!("rank {rank}: expected a flow mismatch, got {other:?}"),
            }
        }
        "die" => {
            let a = c.array_from(0, vec![1u32; 4]).unwrap();
            let b = c.array::<u32>(1, 4).unwrap();
            if rank == 1 {
                // Dies without a word to the others, as a crashed rank would.
                std::process::exit(3);
            }
            c.task::<()>("copy")
                .args((a.read(), b.write()))
                .cpu(|(a, b)| b.copy_from_slice(a))
                .spawn()
                .unwrap();
            let r = c.wait_all();
            println!("rank {rank}: wait_all after a peer died: {r:?}");
            std::process::exit(if r.is_err() { 4 } else { 0 });
        }
        _ => {
            let seeds: u64 = std::env::var("HETFLOW_DIST_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(20);
            let t0 = std::time::Instant::now();
            let mut ran = 0;
            for seed in 0..seeds {
                ran += dist_common::random_dag(&c, 1000 + seed, 2000);
            }
            println!(
                "rank {rank}/{}: {seeds} random DAGs of 2000 tasks equal sequential execution ({ran} tasks ran here, {:.1} s)",
                c.size(),
                t0.elapsed().as_secs_f64()
            );
            failure_crosses_ranks(&c);
            dist_common::cholesky_matches_single_process(&c);
            println!("rank {rank}: {:?}", c.stats());
        }
    }
}

fn failure_crosses_ranks(c: &Cluster) {
    let last = c.size() - 1;
    let a = c.array_from(last, vec![1.0f32; 4]).unwrap();
    let b = c.array::<f32>(0, 4).unwrap();
    c.task::<()>("breaks")
        .args(a.read_write())
        .cpu_try(|_| Err::<(), _>(Injected))
        .spawn()
        .unwrap();
    let h = c
        .task::<()>("uses a")
        .args((a.read(), b.write()))
        .cpu(|(a, b)| b.copy_from_slice(a))
        .spawn()
        .unwrap();
    if let Some(err) = h.wait().err() {
        assert!(
            err.to_string()
                .contains(&format!("`breaks` failed on rank {last}")),
            "{err}"
        );
    } else {
        assert_ne!(c.rank(), 0, "rank 0 ran the dependent: it must fail");
    }
    match c.wait_all() {
        Err(DistError::RemoteTask { task, rank, .. }) if task == "breaks" && rank == last => {}
        other => panic!("rank {}: wait_all gave {other:?}", c.rank()),
    }
    // The failure was reported; writing the array clears it and the flow goes on.
    c.task::<()>("clear")
        .args(a.write())
        .cpu(|a| a.fill(2.0))
        .spawn()
        .unwrap();
    c.task::<()>("uses a")
        .args((a.read(), b.write()))
        .cpu(|(a, b)| b.copy_from_slice(a))
        .spawn()
        .unwrap();
    c.wait_all().unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![2.0; 4]);
    println!(
        "rank {}: a failure on rank {last} reached every rank",
        c.rank()
    );
}
