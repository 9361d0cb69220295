//! Distributed tiled Cholesky over MPI (2-D block-cyclic), StarPU-MPI style: every rank runs
//! this same program; each tile task runs on the rank owning the tile it writes, and the
//! runtime moves (and caches) the tiles it reads.
//!
//! ```text
//! cargo build --release --features mpi --example dist_cholesky
//! mpirun --allow-run-as-root --oversubscribe -n 4 target/release/examples/dist_cholesky [n] [tile]
//! ```
//! Prints GFLOP/s, tile messages and bytes sent per rank, and the residual ‖A − L Lᵀ‖ / ‖A‖.

use std::time::Instant;

use hetflow::dist::{cholesky, cholesky_messages, BlockCyclic, Cluster, DistMatrix};
use hetflow::Runtime;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1024);
    let tile = args.get(1).copied().unwrap_or(128);
    let rt = Runtime::builder().build().unwrap_or_else(|e| {
        eprintln!("runtime: {e}");
        std::process::exit(1)
    });
    let c = match Cluster::mpi(&rt.handle()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dist_cholesky: {e}");
            std::process::exit(1);
        }
    };
    let layout = BlockCyclic::square(c.size());
    let a = hetflow::linalg::spd_matrix(n, 42);
    let m = match DistMatrix::lower(&c, &a, n, tile, layout) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("dist_cholesky: {e}");
            std::process::exit(1);
        }
    };
    let gpu = rt.gpu_count() > 0;
    if c.rank() == 0 {
        println!(
            "{} ranks ({}x{} grid), n = {n}, tile = {tile}, updates on {}",
            c.size(),
            layout.p,
            layout.q,
            if gpu {
                "CPU or GPU (policy)"
            } else {
                "the CPU (no GPU found)"
            }
        );
    }
    c.wait_all().unwrap();
    let t0 = Instant::now();
    cholesky(&c, &m, gpu).unwrap();
    if let Err(e) = c.wait_all() {
        eprintln!("rank {}: {e}", c.rank());
        std::process::exit(1);
    }
    let secs = t0.elapsed().as_secs_f64();
    let all = c.all_stats().unwrap();
    let l = m.to_dense().unwrap();
    if c.rank() == 0 {
        let flops = (n as f64).powi(3) / 3.0;
        println!("time {:.3} s, {:.2} GFLOP/s", secs, flops / secs / 1e9);
        let sent: u64 = all.iter().map(|x| x.messages_sent).sum();
        println!(
            "tile messages: {sent} sent, {} predicted by the layout",
            cholesky_messages(n / tile, layout)
        );
        for r in &all {
            println!(
                "rank {}: sent {} messages, {} bytes; received {} messages; cache hits {}",
                r.rank, r.messages_sent, r.bytes_sent, r.messages_received, r.cache_hits
            );
        }
        // Residual ‖A − L Lᵀ‖_F / ‖A‖_F.
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for i in 0..n {
            for j in 0..=i {
                let mut s = 0.0f64;
                for k in 0..=j {
                    s += l[i * n + k] as f64 * l[j * n + k] as f64;
                }
                let d = a[i * n + j] as f64 - s;
                num += d * d;
                den += (a[i * n + j] as f64).powi(2);
            }
        }
        println!("residual {:.2e}", (num / den).sqrt());
    }
}
