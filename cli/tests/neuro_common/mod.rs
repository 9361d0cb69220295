//! Helpers shared by the neuro CPU and GPU tests.

use hetflow::neuro::*;

/// The Lava golden files: `tests/data/lava`, or `$HETFLOW_TEST_DATA/lava` when the tests run
/// away from their source tree (the GPU bundle, `cli/scripts/gpu-bundle.sh`).
#[allow(dead_code)]
pub fn lava_data_dir() -> std::path::PathBuf {
    match std::env::var_os("HETFLOW_TEST_DATA") {
        Some(dir) => std::path::PathBuf::from(dir).join("lava"),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/lava"),
    }
}

/// A small deterministic generator: `rnd(m)` is uniform-ish in `0..m`.
pub fn lcg(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    }
}

/// `len` weights, each non-zero with probability 1 / `one_in`, then an integer in
/// `-span/2 .. span/2`.
pub fn sparse_weights(
    len: usize,
    one_in: u64,
    span: u64,
    rnd: &mut impl FnMut(u64) -> u64,
) -> Vec<f64> {
    (0..len)
        .map(|_| {
            if rnd(one_in) == 0 {
                rnd(span) as f64 - (span / 2) as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// The same random matrix as a Dense and as a Sparse process gives the same dynamics.
pub fn dense_vs_sparse(backend: NeuroBackend, rt: Option<&hetflow::RuntimeHandle>) {
    let (n_in, n_out) = (30, 20);
    let mut rnd = lcg(99);
    let w = sparse_weights(n_out * n_in, 4, 500, &mut rnd);
    let (mut ptr, mut cols, mut vals) = (vec![0i32], Vec::new(), Vec::new());
    for i in 0..n_out {
        for j in 0..n_in {
            if w[i * n_in + j] != 0.0 {
                cols.push(j as i32);
                vals.push(w[i * n_in + j]);
            }
        }
        ptr.push(cols.len() as i32);
    }
    let raster: Vec<Vec<f64>> = (0..n_in)
        .map(|_| (0..11).map(|_| rnd(2) as f64).collect())
        .collect();
    for mut cfg in [RunCfg::floating_pt(), RunCfg::fixed_pt()] {
        cfg.runtime = rt.cloned();
        let mut traces = Vec::new();
        for sparse in [false, true] {
            let net = Network::new();
            let src = SpikeSource::new(&net, "src", &raster).unwrap();
            let p = if sparse {
                DenseParams::sparse(n_out, n_in, ptr.clone(), cols.clone(), vals.clone())
            } else {
                DenseParams::new(n_out, n_in, w.clone())
            };
            let d = Dense::new(&net, "w", p.weight_exp(-1).num_weight_bits(6)).unwrap();
            let lif = Lif::new(
                &net,
                "lif",
                LifParams::new(n_out)
                    .du(300.0)
                    .dv(200.0)
                    .vth(50.0)
                    .du(0.25)
                    .dv(0.1),
            )
            .unwrap();
            src.s_out().connect(&d.s_in()).unwrap();
            d.a_out().connect(&lif.a_in()).unwrap();
            let mon = Monitor::new(&net, "mon").unwrap();
            mon.probe(&lif.u(), 50).unwrap();
            mon.probe_out(&lif.s_out(), 50).unwrap();
            src.process()
                .run(RunSteps(50), &cfg.clone().on(backend))
                .unwrap();
            let graph = src.process().process_graph().unwrap();
            assert!(
                graph.contains(if sparse { "Sparse" } else { "Dense" }),
                "{graph}"
            );
            traces.push((mon.data("lif.u").unwrap(), mon.data("lif.s_out").unwrap()));
        }
        assert_eq!(traces[0], traces[1], "{cfg:?}");
        assert!(traces[0].0.iter().flatten().any(|&u| u != 0.0));
    }
}
