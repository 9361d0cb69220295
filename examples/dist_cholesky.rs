//! Distributed tiled Cholesky over MPI (2-D block-cyclic), StarPU-MPI style: every rank runs
//! this same program; each tile task runs on the rank owning the tile it writes, and the
//! runtime moves (and caches) the tiles it reads.
//!
//! ```text
//! cargo build --release --features mpi --example dist_cholesky
//! mpirun --allow-run-as-root --oversubscribe -n 4 target/release/examples/dist_cholesky [n] [tile] [options]
//!   --workers N    CPU workers per rank (default: the runtime's default)
//!   --cpu          no GPU (tile updates on the CPU)
//!   --local        the single-process run of the same tiles and kernels (no mpirun needed)
//!   FILE.json      rank 0 writes one Chrome trace of every rank (open it in Perfetto);
//!                  with --local, the trace of the single-process run
//! ```
//! Prints GFLOP/s, tile messages and bytes sent per rank against what the layout implies,
//! and the residual ‖A − L Lᵀ‖ / ‖A‖.

use std::time::Instant;

use hetflow::dist::{cholesky, cholesky_messages, BlockCyclic, Cluster, DistMatrix};
use hetflow::Runtime;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("dist_cholesky: {what}: {e}");
    std::process::exit(1)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| argv.iter().any(|a| a == f);
    let workers = argv
        .iter()
        .position(|a| a == "--workers")
        .and_then(|i| argv.get(i + 1))
        .map(|w| w.parse::<usize>().unwrap_or_else(|e| fail("--workers", e)));
    let nums: Vec<usize> = argv
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || argv[i - 1] != "--workers")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let trace = argv.iter().find(|a| a.ends_with(".json"));
    let n = nums.first().copied().unwrap_or(1024);
    let tile = nums.get(1).copied().unwrap_or(128);
    let mut b = Runtime::builder();
    if let Some(w) = workers {
        b = b.cpu_workers(w);
    }
    if flag("--cpu") {
        b = b.no_gpu();
    }
    let rt = b.build().unwrap_or_else(|e| fail("runtime", e));
    let gpu = rt.gpu_count() > 0;
    let a = hetflow::linalg::spd_matrix(n, 42);
    let flops = (n as f64).powi(3) / 3.0;
    if flag("--local") {
        let h = rt.handle();
        let m = hetflow::linalg::TiledMatrix::from_dense(&h, &a, n, tile)
            .unwrap_or_else(|e| fail("matrix", e));
        if trace.is_some() {
            h.start_trace();
        }
        let t0 = Instant::now();
        hetflow::linalg::cholesky(&h, &m, gpu).unwrap_or_else(|e| fail("cholesky", e));
        rt.wait_idle_checked()
            .unwrap_or_else(|e| fail("cholesky", e));
        let secs = t0.elapsed().as_secs_f64();
        let local_trace = trace.map(|p| (p, h.take_trace()));
        println!(
            "single process, {} workers, n = {n}, tile = {tile}",
            workers.map_or("default".to_string(), |w| w.to_string())
        );
        println!("time {secs:.3} s, {:.2} GFLOP/s", flops / secs / 1e9);
        let l = m.to_dense_lower().unwrap_or_else(|e| fail("factor", e));
        println!(
            "residual {:.2e}",
            hetflow::linalg::cholesky_residual(&a, &l, n).unwrap_or_else(|e| fail("residual", e))
        );
        if let Some((path, t)) = local_trace {
            t.write_chrome_json(path)
                .unwrap_or_else(|e| fail("trace", e));
            println!("trace written to {path}");
        }
        return;
    }
    let c = Cluster::mpi(&rt.handle()).unwrap_or_else(|e| fail("cluster", e));
    let layout = BlockCyclic::square(c.size());
    let m = DistMatrix::lower(&c, &a, n, tile, layout).unwrap_or_else(|e| fail("matrix", e));
    if c.rank() == 0 {
        println!(
            "{} ranks ({}x{} grid), n = {n}, tile = {tile}, updates on {}",
            c.size(),
            layout.p,
            layout.q,
            if gpu {
                "CPU or GPU (policy)"
            } else {
                "the CPU"
            }
        );
    }
    c.wait_all().unwrap_or_else(|e| fail("wait_all", e));
    if trace.is_some() {
        c.start_trace();
    }
    let t0 = Instant::now();
    cholesky(&c, &m, gpu).unwrap_or_else(|e| fail("cholesky", e));
    c.wait_all().unwrap_or_else(|e| fail("cholesky", e));
    let secs = t0.elapsed().as_secs_f64();
    if let Some(path) = trace {
        if c.write_trace(path).unwrap_or_else(|e| fail("trace", e)) {
            println!("trace of every rank written to {path}");
        }
    }
    let all = c.all_stats().unwrap_or_else(|e| fail("stats", e));
    let l = m.to_dense().unwrap_or_else(|e| fail("factor", e));
    if c.rank() == 0 {
        println!("time {secs:.3} s, {:.2} GFLOP/s", flops / secs / 1e9);
        let sent: u64 = all.iter().map(|x| x.messages_sent).sum();
        let bytes: u64 = all.iter().map(|x| x.bytes_sent).sum();
        let predicted = cholesky_messages(n / tile, layout);
        println!("tile messages: {sent} sent, {predicted} predicted by the layout");
        println!(
            "bytes sent: {bytes}, lower bound from the layout {} ({} per tile)",
            predicted * (tile * tile * 4) as u64,
            tile * tile * 4
        );
        for r in &all {
            println!(
                "rank {}: sent {} messages, {} bytes; received {} messages; cache hits {}; transport polls {}, naps while busy {} ({} ended by an idle worker)",
                r.rank,
                r.messages_sent,
                r.bytes_sent,
                r.messages_received,
                r.cache_hits,
                r.polls,
                r.naps,
                r.nap_pokes
            );
        }
        println!(
            "residual {:.2e}",
            hetflow::linalg::cholesky_residual(&a, &l, n).unwrap_or_else(|e| fail("residual", e))
        );
    }
}
