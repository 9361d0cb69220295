//! The performance model between runs (`sched/store.rs`): kept per device identity,
//! damaged and foreign files ignored with a warning, two processes saving at once, the
//! read-only and off switches. CPU-only runtimes: the store does not depend on a GPU.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hetflow::{DeviceId, ModelPersistence, Runtime};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hetflow-pm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("model.txt")
}

fn runtime(path: &Path) -> Runtime {
    Runtime::builder()
        .no_gpu()
        .cpu_workers(1)
        .perf_model_file(path)
        .build()
        .unwrap()
}

fn cpu_samples(rt: &Runtime) -> usize {
    rt.perf_model()
        .summary()
        .iter()
        .find(|d| d.device == DeviceId::Cpu)
        .map_or(0, |d| d.samples)
}

fn teach(rt: &Runtime, kind: &str, n: usize) {
    for i in 0..n {
        rt.perf_model().record(
            kind,
            4096,
            DeviceId::Cpu,
            Duration::from_micros(100 + i as u64),
        );
    }
}

#[test]
fn sections_are_keyed_by_device_identity_and_foreign_ones_are_kept_unused() {
    let path = temp("identity");
    {
        let rt = runtime(&path);
        teach(&rt, "k", 3);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("hetflow-perfmodel 1\n"), "{text}");
    let cpu_line = text
        .lines()
        .find(|l| l.starts_with("[device cpu "))
        .expect("a section for this CPU")
        .to_string();
    // The same samples under another machine's identity: kept in the file, never used.
    let foreign = text.replace(
        &cpu_line,
        "[device cpu another-host | Other CPU | 64 cores]",
    );
    std::fs::write(&path, &foreign).unwrap();
    let rt = runtime(&path);
    assert_eq!(
        cpu_samples(&rt),
        0,
        "a model from another device is not used"
    );
    assert!(rt.perf_model().estimate("k", 4096, DeviceId::Cpu).is_none());
    teach(&rt, "mine", 3);
    rt.save_perf_model();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[device cpu another-host | Other CPU | 64 cores]"));
    assert!(
        text.contains(&cpu_line) && text.contains("mine\t"),
        "{text}"
    );
}

#[test]
fn corrupt_truncated_and_old_files_are_ignored_and_rewritten() {
    let path = temp("corrupt");
    {
        let rt = runtime(&path);
        teach(&rt, "k", 4);
    }
    let good = std::fs::read_to_string(&path).unwrap();
    let cut = &good[..good.rfind("end ").unwrap()];
    let damaged = [
        "garbage\n".to_string(),
        cut.to_string(),
        good.replace("\t13\t", "\tnot-a-size\t"),
        "gemm\t20\tcpu\t1,2,3\n".to_string(), // the unversioned format of earlier releases
        String::new(),
    ];
    for bad in damaged {
        std::fs::write(&path, &bad).unwrap();
        let rt = runtime(&path);
        assert_eq!(cpu_samples(&rt), 0, "{bad:?} was not ignored");
        teach(&rt, "k", 1);
        drop(rt);
        let again = runtime(&path);
        assert_eq!(cpu_samples(&again), 1, "rewritten whole after {bad:?}");
    }
}

#[test]
fn read_only_and_off_write_nothing() {
    let path = temp("switches");
    {
        let rt = runtime(&path);
        teach(&rt, "k", 2);
    }
    let before = std::fs::read_to_string(&path).unwrap();
    {
        let rt = Runtime::builder()
            .no_gpu()
            .cpu_workers(1)
            .perf_model_file(&path)
            .perf_model_persistence(ModelPersistence::ReadOnly)
            .build()
            .unwrap();
        assert_eq!(cpu_samples(&rt), 2, "read");
        teach(&rt, "other", 5);
        rt.save_perf_model();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "never written"
    );
    let rt = Runtime::builder()
        .no_gpu()
        .cpu_workers(1)
        .perf_model_file(&path)
        .perf_model_persistence(ModelPersistence::Off)
        .build()
        .unwrap();
    assert!(rt.perf_model().store_path().is_none());
    assert_eq!(cpu_samples(&rt), 0, "not read");
    teach(&rt, "k", 3);
    drop(rt);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "not written"
    );
}

/// Runs this test binary's `child` test in a new process with `env`.
fn spawn_child(env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The body of the child processes (does nothing when run as a plain test).
#[test]
fn child() {
    let Ok(role) = std::env::var("HETFLOW_PM_CHILD") else {
        return;
    };
    match role.as_str() {
        // Saves its own kind 100 times into HETFLOW_PM_PATH.
        "saver" => {
            let path = PathBuf::from(std::env::var("HETFLOW_PM_PATH").unwrap());
            let kind = std::env::var("HETFLOW_PM_KIND").unwrap();
            let rt = runtime(&path);
            for _ in 0..100 {
                teach(&rt, &kind, 1);
                rt.save_perf_model();
            }
        }
        // HETFLOW_PERF_MODEL set by the parent: where does the model live?
        "where" => {
            let rt = Runtime::builder().no_gpu().cpu_workers(1).build().unwrap();
            let at = rt.perf_model().store_path();
            let expect = std::env::var("HETFLOW_PM_EXPECT").unwrap();
            let got = at.map_or("none".to_string(), |(p, ro)| {
                format!("{}{}", p.display(), if ro { " ro" } else { "" })
            });
            assert_eq!(got, expect);
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn two_processes_saving_at_once_never_corrupt_the_file() {
    let path = temp("race");
    let p = path.to_string_lossy().to_string();
    let kids: Vec<_> = ["a", "b"]
        .iter()
        .map(|k| {
            spawn_child(&[
                ("HETFLOW_PM_CHILD", "saver"),
                ("HETFLOW_PM_PATH", &p),
                ("HETFLOW_PM_KIND", k),
            ])
        })
        .collect();
    // Meanwhile this process reads it: every read sees a whole file.
    let mut reads = 0;
    for mut k in kids {
        while k.try_wait().unwrap().is_none() {
            if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(text.ends_with('\n') && text.contains("\nend "), "{text:?}");
                reads += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(k.wait().unwrap().success());
    }
    let rt = runtime(&path);
    assert!(cpu_samples(&rt) > 0, "after {reads} reads");
    // No temporary files are left behind.
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn the_environment_overrides_the_default_and_the_builder_overrides_it() {
    let path = temp("env");
    let p = path.to_string_lossy().to_string();
    let cases = [
        ("off", "none".to_string()),
        ("readonly", "ro".to_string()),
        (p.as_str(), p.clone()),
    ];
    for (value, expect) in cases {
        let expect = if expect == "ro" {
            // Read-only at the default place in this (fake) cache directory.
            format!("{} ro", fake_cache_file(&path))
        } else {
            expect
        };
        let dir = path.parent().unwrap().to_string_lossy().to_string();
        let status = spawn_child(&[
            ("HETFLOW_PM_CHILD", "where"),
            ("HETFLOW_PERF_MODEL", value),
            ("HETFLOW_PM_EXPECT", &expect),
            ("XDG_CACHE_HOME", &dir),
        ])
        .wait()
        .unwrap();
        assert!(status.success(), "HETFLOW_PERF_MODEL={value}");
    }
    // The builder's explicit choice wins over the variable (checked in-process: the
    // variable is not set here, so the builder's file is used).
    let rt = runtime(&path);
    assert_eq!(rt.perf_model().store_path().unwrap().0, path.as_path());
}

/// The default model file under `XDG_CACHE_HOME` = the directory of `path`.
fn fake_cache_file(path: &Path) -> String {
    let host = hetflow::sched::store::host_name();
    path.parent()
        .unwrap()
        .join("hetflow")
        .join(format!("perfmodel-{host}.txt"))
        .to_string_lossy()
        .to_string()
}
