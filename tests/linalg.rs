//! Tiled Cholesky: correct under every policy, and no tile moves to where it is valid.

mod common;

use std::collections::HashMap;

use hetflow::linalg::{cholesky, spd_matrix, TiledMatrix};
use hetflow::{MemorySpace, Policy, Runtime};

fn residual(a: &[f32], l: &[f32], n: usize) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for i in 0..n {
        for j in 0..n {
            let s: f64 = (0..n)
                .map(|k| l[i * n + k] as f64 * l[j * n + k] as f64)
                .sum();
            num += (s - a[i * n + j] as f64).powi(2);
            den += (a[i * n + j] as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

#[test]
fn tiled_cholesky_is_correct_under_every_policy() {
    let _ = common::gpu_runtime();
    let (n, tile) = (192, 48);
    let a = spd_matrix(n, 7);
    for policy in [
        Policy::Eager,
        Policy::Dmda,
        Policy::Locality,
        Policy::PreferGpu,
        Policy::PreferCpu,
    ] {
        let rt = Runtime::builder()
            .cpu_workers(2)
            .policy(policy)
            .build()
            .unwrap();
        let tm = TiledMatrix::from_dense(&rt, &a, n, tile).unwrap();
        for h in cholesky(&rt, &tm, true).unwrap() {
            h.wait().unwrap();
        }
        let l = tm.to_dense_lower().unwrap();
        let r = residual(&a, &l, n);
        assert!(r < 1e-4, "{policy:?}: residual {r:e}");
    }
    // Shape errors are typed.
    let rt = Runtime::builder().no_gpu().build().unwrap();
    assert!(TiledMatrix::from_dense(&rt, &a, n, 50).is_err());
}

#[test]
fn no_tile_moves_to_where_it_is_already_valid() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let (n, tile) = (256, 32);
    let a = spd_matrix(n, 7);
    let rt = Runtime::builder()
        .cpu_workers(2)
        .policy(Policy::PreferGpu)
        .build()
        .unwrap();
    let tm = TiledMatrix::from_dense(&rt, &a, n, tile).unwrap();
    rt.start_trace();
    for h in cholesky(&rt, &tm, true).unwrap() {
        h.wait().unwrap();
    }
    let trace = rt.take_trace();
    // Updates (SYRK, GEMM) run on the GPU, POTRF and TRSM on the CPU. A tile therefore goes
    // up once for its GPU updates, comes down once for its POTRF/TRSM, and (off-diagonal
    // tiles, read by later updates) goes up once more: any further move would be to a space
    // where the tile was still valid.
    let mut per_tile: HashMap<(String, bool), usize> = HashMap::new();
    for m in &trace.moves {
        let up = m.to == MemorySpace::Gpu(0);
        *per_tile.entry((m.array.clone(), up)).or_default() += 1;
    }
    for ((tile_name, up), count) in &per_tile {
        let limit = if *up { 2 } else { 1 };
        assert!(
            *count <= limit,
            "{tile_name}: {count} moves {}",
            if *up { "up" } else { "down" }
        );
    }
    assert!(per_tile.keys().any(|(_, up)| *up), "updates ran on the GPU");
    let l = tm.to_dense_lower().unwrap();
    assert!(residual(&a, &l, n) < 1e-4);
}
