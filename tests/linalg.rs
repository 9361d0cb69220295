//! Tiled Cholesky: correct under every policy, and no tile moves to where it is valid.

mod common;

use std::collections::HashMap;

use hetflow::linalg::{cholesky, cholesky_residual, spd_matrix, TiledMatrix};
use hetflow::{MemorySpace, Policy, Runtime};

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
            .perf_model_persistence(hetflow::ModelPersistence::Off)
            .build()
            .unwrap();
        let tm = TiledMatrix::from_dense(&rt, &a, n, tile).unwrap();
        for h in cholesky(&rt, &tm, true).unwrap() {
            h.wait().unwrap();
        }
        let l = tm.to_dense_lower().unwrap();
        let r = cholesky_residual(&a, &l, n).unwrap();
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
        .perf_model_persistence(hetflow::ModelPersistence::Off)
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
    assert!(cholesky_residual(&a, &l, n).unwrap() < 1e-4);
}

#[test]
fn tiled_gemm_matches_dense_product_on_cpu_and_gpu() {
    let _ = common::gpu_runtime();
    let (n, tile) = (96, 32);
    let a = spd_matrix(n, 1);
    let b = spd_matrix(n, 2);
    let c0 = spd_matrix(n, 3);
    // Reference: C0 + A·B in f64.
    let mut want = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            let s: f64 = (0..n)
                .map(|k| a[i * n + k] as f64 * b[k * n + j] as f64)
                .sum();
            want[i * n + j] = s + c0[i * n + j] as f64;
        }
    }
    for policy in [Policy::PreferGpu, Policy::PreferCpu, Policy::Dmda] {
        let rt = Runtime::builder()
            .cpu_workers(2)
            .policy(policy)
            .perf_model_persistence(hetflow::ModelPersistence::Off)
            .build()
            .unwrap();
        let ta = TiledMatrix::from_dense_full(&rt, &a, n, tile, "A").unwrap();
        let tb = TiledMatrix::from_dense_full(&rt, &b, n, tile, "B").unwrap();
        let tc = TiledMatrix::from_dense_full(&rt, &c0, n, tile, "C").unwrap();
        let handles = hetflow::linalg::gemm(&rt, &ta, &tb, &tc, true).unwrap();
        assert_eq!(handles.len(), 27);
        for h in handles {
            h.wait().unwrap();
        }
        let got = tc.to_dense().unwrap();
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-3, "{policy:?}: max error {err:e}");
    }
    // Mismatched shapes are typed errors.
    let rt = Runtime::builder().no_gpu().build().unwrap();
    let full = TiledMatrix::from_dense_full(&rt, &a, n, tile, "A").unwrap();
    let lower = TiledMatrix::from_dense(&rt, &a, n, tile).unwrap();
    assert!(hetflow::linalg::gemm(&rt, &full, &full, &lower, false).is_err());
}
