//! Placement policies: dmda learns per-device costs and ignores outliers; locality follows
//! the data.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hetflow::{DeviceId, Placement, Policy, Runtime};

/// Runs `n` tasks one at a time whose CPU body takes `cpu` and GPU body `gpu`; returns where
/// each ran. `slow_cpu_once` makes one CPU run take 200 ms when set.
fn synthetic(
    rt: &Runtime,
    n: usize,
    cpu: Duration,
    gpu: Duration,
    slow_cpu_once: &Arc<AtomicBool>,
) -> Vec<DeviceId> {
    (0..n)
        .map(|_| {
            let slow = slow_cpu_once.clone();
            let h = rt
                .task("synthetic")
                .cpu(move |_| {
                    let extra = if slow.swap(false, Ordering::AcqRel) {
                        Duration::from_millis(200)
                    } else {
                        Duration::ZERO
                    };
                    std::thread::sleep(cpu + extra);
                })
                .gpu(move |_| std::thread::sleep(gpu))
                .spawn();
            let r = h.task_ref();
            h.wait().unwrap();
            r.device().unwrap()
        })
        .collect()
}

fn share(v: &[DeviceId], d: DeviceId) -> f64 {
    v.iter().filter(|x| **x == d).count() as f64 / v.len() as f64
}

#[test]
fn dmda_learns_the_faster_device_and_ignores_an_outlier() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let ms = Duration::from_millis;
    let never = Arc::new(AtomicBool::new(false));
    // A 20x difference: under load a 1 ms sleep can take several (both cores busy made a
    // 6x difference flip placements), never 20.
    for (cpu, gpu, fast) in [
        (ms(1), ms(20), DeviceId::Cpu),
        (ms(20), ms(1), DeviceId::Gpu(0)),
    ] {
        let rt = Runtime::builder()
            .cpu_workers(2)
            .policy(Policy::Dmda)
            .build()
            .unwrap();
        let placed = synthetic(&rt, 24, cpu, gpu, &never);
        // Calibration runs each device MIN_SAMPLES times, then placement shifts.
        assert!(
            placed[..6].contains(&DeviceId::Cpu) && placed[..6].contains(&DeviceId::Gpu(0)),
            "{placed:?}"
        );
        assert!(share(&placed[12..], fast) >= 0.9, "{placed:?}");
    }
    // CPU faster; one 200 ms CPU run must not flip placement to the GPU.
    let rt = Runtime::builder()
        .cpu_workers(2)
        .policy(Policy::Dmda)
        .build()
        .unwrap();
    synthetic(&rt, 12, ms(1), ms(20), &never);
    let slow = Arc::new(AtomicBool::new(true));
    let after = synthetic(&rt, 12, ms(1), ms(20), &slow);
    assert!(!slow.load(Ordering::Acquire), "the slow run happened");
    assert!(share(&after[1..], DeviceId::Cpu) >= 0.9, "{after:?}");
    assert!(rt.perf_model().rejected_outliers() >= 1);
    let est = rt
        .perf_model()
        .estimate("synthetic", 0, DeviceId::Cpu)
        .unwrap();
    assert!(est < ms(50), "the outlier poisoned the model: {est:?}");
}

// ANCHOR: model_file
#[test]
fn dmda_model_is_saved_and_reloaded() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let path = std::env::temp_dir().join(format!("hetflow-model-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let never = Arc::new(AtomicBool::new(false));
    let ms = Duration::from_millis;
    {
        let rt = Runtime::builder()
            .policy(Policy::Dmda)
            .perf_model_file(&path)
            .build()
            .unwrap();
        synthetic(&rt, 10, ms(1), ms(6), &never);
    }
    let rt = Runtime::builder()
        .policy(Policy::Dmda)
        .perf_model_file(&path)
        .build()
        .unwrap();
    let placed = synthetic(&rt, 5, ms(1), ms(6), &never);
    assert_eq!(
        placed,
        vec![DeviceId::Cpu; 5],
        "calibrated from the file, no GPU runs needed"
    );
    std::fs::write(&path, "garbage\n").unwrap();
    let err = Runtime::builder()
        .policy(Policy::Dmda)
        .perf_model_file(&path)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    let _ = std::fs::remove_file(&path);
}
// ANCHOR_END: model_file

#[test]
fn locality_runs_where_the_data_is() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let rt = Runtime::builder()
        .cpu_workers(2)
        .policy(Policy::Locality)
        .build()
        .unwrap();
    let k = rt
        .kernel(include_str!("../shaders/add_one_f32.wgsl"), "main")
        .unwrap();
    let a = rt.array_from(vec![0.0f32; 4096]);
    // Put the data on the GPU, then give a task the choice.
    let (k1, a1) = (k.clone(), a.clone());
    rt.task("to-gpu")
        .read_write(&a)
        .on(Placement::Gpu(0))
        .gpu(move |cx| cx.dispatch_dyn(&k1, &[&a1], k1.groups_for(4096)))
        .spawn()
        .wait()
        .unwrap();
    let place = |rt: &Runtime| {
        let a3 = a.clone();
        let h = rt
            .task("either")
            .reads(&a)
            .cpu(move |cx| cx.read(&a3)[0])
            .gpu(|_| 0.0)
            .spawn();
        let r = h.task_ref();
        h.wait().unwrap();
        r.device().unwrap()
    };
    // Valid only on the GPU: the task goes there.
    assert_eq!(place(&rt), DeviceId::Gpu(0));
    // Valid on both after a host read: the policy is free to choose, and nothing moves.
    assert_eq!(a.to_vec().unwrap()[0], 1.0);
    let before = rt.stats();
    place(&rt);
    assert_eq!(
        rt.stats().links,
        before.links,
        "no move needed wherever it ran"
    );
}
