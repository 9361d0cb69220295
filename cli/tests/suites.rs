//! The benchmark suites measure and report: each runs once at its smallest size and its
//! table (and plot) carry the rows and the baseline.

#[path = "../../tests/common/mod.rs"]
mod common;

use hetflow::device::DeviceId;
use hetflow::{GpuSelection, Runtime};

#[test]
fn sched_bench_suite_reports_first_and_second_runs_against_both_devices() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let rows = hetflow_cli::bench::sched::suite(Some(2), 0, 1000, |_| {}).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.workload.name).collect();
    assert_eq!(names, ["gpu-fast", "cpu-fast", "mixed"]);
    for r in &rows {
        let total = r.workload.gpu_fast + r.workload.cpu_fast;
        for run in [&r.cpu, &r.gpu, &r.first, &r.second] {
            assert!(run.secs > 0.0, "{r:?}");
            assert_eq!(run.on_cpu + run.on_gpu, total, "every task ran once: {r:?}");
        }
        assert_eq!((r.cpu.on_gpu, r.gpu.on_cpu), (0, 0), "{r:?}");
        // The bound never exceeds what a single device achieved (within rounding).
        assert!(r.bound <= r.cpu.secs.min(r.gpu.secs) * 1.001, "{r:?}");
    }
    let table = hetflow_cli::bench::sched::table(&rows);
    assert!(
        table.contains("1st/best") && table.contains("mixed"),
        "{table}"
    );
}

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
    let svg = linalg_svg(&rows);
    assert!(svg.contains("<svg"), "{svg}");
    let texts = svg_texts(&svg);
    for text in [
        "gemm",
        "cholesky",
        "cpu only",
        "faer",
        "workload",
        "GFLOP/s (log scale)",
    ] {
        assert!(
            texts.iter().any(|t| t == text),
            "the plot lacks {text}: {texts:?}"
        );
    }
    assert!(
        !texts.iter().any(|t| t.ends_with(".0")),
        "tick and value labels have no trailing .0: {texts:?}"
    );
    // One bar per row: each row left out takes exactly one rectangle away.
    let bars = |svg: &str| svg.matches("<rect").count();
    let i = rows
        .iter()
        .position(|r| r.workload == "cholesky" && r.mode == "cpu only")
        .unwrap();
    let mut fewer = rows.clone();
    fewer.remove(i);
    assert_eq!(bars(&svg), bars(&linalg_svg(&fewer)) + 1, "one bar per row");
    let gemm_only: Vec<_> = rows
        .iter()
        .filter(|r| r.workload == "gemm")
        .cloned()
        .collect();
    assert_eq!(
        bars(&svg),
        bars(&linalg_svg(&gemm_only)) + rows.len() - gemm_only.len(),
        "every cholesky row has its bar"
    );
}

/// The text elements of an SVG file, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

/// The linalg plot of `rows`, as SVG text.
fn linalg_svg(rows: &[hetflow_cli::bench::engine::LinalgRow]) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "hetflow-linalg-{}-{}.svg",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    hetflow_cli::bench::engine::linalg_svg(rows, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    svg
}

#[test]
fn neuro_plot_has_both_panels_a_legend_and_no_brian2() {
    use hetflow::neuro::NeuroBackend;
    use hetflow_cli::bench::neuro::NeuroBenchRow;
    let row = |n: usize, backend, tag: &str, seconds: f64, plain: Option<f64>| NeuroBenchRow {
        n,
        p: if n > 10_000 { 0.001 } else { 0.1 },
        steps: 100,
        tag: tag.into(),
        backend,
        seconds,
        compile_seconds: 0.1,
        spikes: n as u64,
        syn_events: 100 * n as u64,
        plain_loop_seconds: plain,
        one_worker_seconds: None,
    };
    let rows = [1000usize, 10_000, 100_000]
        .into_iter()
        .flat_map(|n| {
            let t = n as f64 * 1e-6;
            [
                row(n, NeuroBackend::Cpu, "floating_pt", t, Some(t / 2.0)),
                row(n, NeuroBackend::Cpu, "fixed_pt", 2.0 * t, None),
                row(n, NeuroBackend::Gpu, "floating_pt", 0.3, None),
            ]
        })
        .collect::<Vec<_>>();
    let path = std::env::temp_dir().join(format!("hetflow-neuro-{}.svg", std::process::id()));
    hetflow_cli::bench::neuro::svg(&rows, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let texts = svg_texts(&svg);
    for text in [
        "neuron updates / s",
        "synaptic events / s",
        "CPU floating_pt",
        "CPU fixed_pt",
        "GPU floating_pt",
        "plain loop (CPU floating_pt)",
        "neurons N (log scale)",
        "1k",
        "10k",
        "100k",
        "100M",
    ] {
        assert!(
            texts.iter().any(|t| t == text),
            "the plot lacks {text}: {texts:?}"
        );
    }
    assert!(
        !svg.contains("Brian2"),
        "no peer figures from another network"
    );
    assert!(
        !texts.iter().any(|t| t.ends_with(".0")),
        "no tick like 100000000.0: {texts:?}"
    );
    // Each tick label once per panel: the x ticks are the three sizes.
    assert_eq!(texts.iter().filter(|t| *t == "10k").count(), 2, "{texts:?}");
    // A marker per size per panel for each CPU series, and one in the legend.
    assert_eq!(
        svg.matches("<circle").count(),
        2 * 3 * 2 + 2,
        "CPU rows + legend"
    );
    let table = hetflow_cli::bench::neuro::table(&rows);
    assert!(
        !table.contains("Brian2") && table.contains("plain loop"),
        "{table}"
    );
}

#[test]
fn topology_json_names_every_device_one_way() {
    let topo = hetflow::Topology::detect();
    let json: serde_json::Value = serde_json::from_str(&topo.to_json()).unwrap();
    let devices = json["devices"].as_array().unwrap();
    assert_eq!(devices[0]["id"], serde_json::json!({"kind": "cpu"}));
    for (d, g) in devices[1..].iter().zip(&topo.gpus) {
        assert_eq!(
            d["id"],
            serde_json::json!({"kind": "gpu", "index": g.index})
        );
    }
    assert_eq!(devices.len(), 1 + topo.gpus.len());
    // The command prints the same JSON, and no Mesa XDG_RUNTIME_DIR complaint on stderr.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(["info", "--json"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["devices"][0]["id"],
        serde_json::json!({"kind": "cpu"})
    );
    let ids = printed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"]);
    assert!(ids
        .clone()
        .all(|id| id.is_object() && id["kind"].is_string()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
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
