//! The benchmark suites measure and report: each runs once at its smallest size and its
//! table (and plot) carry the rows and the baseline.

#[path = "../../tests/common/mod.rs"]
mod common;

use hetflow::device::DeviceId;
use hetflow::{GpuSelection, Runtime};

#[test]
fn linalg_bench_suite_writes_table_and_svg() {
    let _ = common::gpu_runtime();
    let rows = hetflow_cli::bench::engine::linalg_suite(128, 64, |_| {}).unwrap();
    assert!(rows
        .iter()
        .any(|r| r.workload == "gemm" && r.mode == "faer"));
    assert!(
        rows.iter()
            .any(|r| r.workload == "cholesky" && r.mode == "dmda")
            || Runtime::builder().build().unwrap().gpu_count() == 0
    );
    assert!(rows.iter().all(|r| r.secs > 0.0 && r.gflops > 0.0));
    let table = hetflow_cli::bench::engine::linalg_table(&rows);
    assert!(
        table.contains("cpu only") && table.contains("vs faer"),
        "{table}"
    );
    let path = std::env::temp_dir().join(format!("hetflow-linalg-{}.svg", std::process::id()));
    hetflow_cli::bench::engine::linalg_svg(&rows, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("cholesky cpu only"),
        "svg lacks bars"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn all_reduce_benchmark_measures_and_checks_its_result() {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .gpus(GpuSelection::None)
        .build()
        .unwrap();
    let row = hetflow_cli::bench::remote::measure(&rt, vec![DeviceId::Cpu; 3], 1000, 1).unwrap();
    assert_eq!(
        (row.replicas, row.elems, row.device.as_str()),
        (3, 1000, "cpu")
    );
    assert!(row.hetflow_s > 0.0 && row.host_sum_s > 0.0 && row.ratio().is_finite());
    let table = hetflow_cli::bench::remote::all_reduce_table(&[row]);
    assert!(
        table.contains("host sum") && table.lines().count() == 2,
        "{table}"
    );
}
