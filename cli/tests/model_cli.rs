//! `hetflow model show`, `hetflow model reset` and the model lines of `hetflow info`, on a
//! model file written by a runtime of this process (the same host and CPU identity).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hetflow::{DeviceId, Runtime};

fn hetflow(args: &[&str], cache: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .env("HOME", cache)
        .env("XDG_CACHE_HOME", cache.join(".cache"))
        .env("HETFLOW_GPUS", "none")
        .env_remove("HETFLOW_PERF_MODEL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn model_show_info_and_reset() {
    let cache = std::env::temp_dir().join(format!("hetflow-model-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::create_dir_all(&cache).unwrap();
    let host = hetflow::sched::store::host_name();
    let file = cache
        .join(".cache")
        .join("hetflow")
        .join(format!("perfmodel-{host}.txt"));
    let (ok, out) = hetflow(&["model", "show"], &cache);
    assert!(ok && out.contains("not written yet"), "{out}");
    assert!(out.contains(&file.display().to_string()), "{out}");
    {
        // A runtime of this process teaches the model two kinds and writes it there.
        let rt = Runtime::builder()
            .no_gpu()
            .cpu_workers(1)
            .perf_model_file(&file)
            .build()
            .unwrap();
        for kind in ["gemm", "syrk"] {
            for _ in 0..3 {
                rt.perf_model()
                    .record(kind, 1 << 20, DeviceId::Cpu, Duration::from_micros(300));
            }
        }
    }
    assert!(file.exists());
    let (ok, out) = hetflow(&["model", "show"], &cache);
    assert!(ok && out.contains("(exists)"), "{out}");
    assert!(out.contains("2 kinds, 2 sizes, 6 samples"), "{out}");
    let (ok, out) = hetflow(&["info"], &cache);
    assert!(ok && out.contains("placement policy: Dmda"), "{out}");
    assert!(out.contains("2 kinds, 2 sizes, 6 samples"), "{out}");
    let (ok, out) = hetflow(&["model", "reset"], &cache);
    assert!(ok && out.contains("removed"), "{out}");
    assert!(!file.exists());
    let (ok, out) = hetflow(&["model", "reset"], &cache);
    assert!(ok && out.contains("nothing to remove"), "{out}");
    let _ = std::fs::remove_dir_all(&cache);
}
