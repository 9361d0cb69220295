//! Heterogeneous stealing: an idle CPU worker takes ready tasks queued behind a busy GPU, and
//! an idle GPU takes tasks queued on a saturated CPU pool, when the performance model says
//! they finish sooner there — and the results are those of running them where they were put.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hetflow::{Array, DeviceId, Placement, Policy, Runtime, TaskHandle, Uniform};

const N: usize = 256;
const BYTES: u64 = (N * 4) as u64;
const FILL: &str = include_str!("../shaders/fill_f32.wgsl");

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A dmda runtime whose model already knows `job` (CPU and GPU times) and the blocker.
fn runtime(stealing: bool, job_cpu: Duration, job_gpu: Duration, blocker: DeviceId) -> Runtime {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .policy(Policy::Dmda)
        .perf_model_persistence(hetflow::ModelPersistence::Off)
        .heterogeneous_stealing(stealing)
        .build()
        .unwrap();
    let model = rt.perf_model();
    for _ in 0..3 {
        model.record("job", BYTES, DeviceId::Cpu, job_cpu);
        model.record("job", BYTES, DeviceId::Gpu(0), job_gpu);
        // The blocker is predicted short; it really holds its device for 300 ms.
        model.record("blocker", 0, blocker, ms(1));
    }
    rt
}

/// Spawns `n` `job` tasks, each filling its own array with its index on whichever device
/// runs it; the CPU body sleeps `cpu_time` to match the model.
fn jobs(rt: &Runtime, n: usize, cpu_time: Duration) -> Vec<(Array<f32>, TaskHandle<()>)> {
    let fill = rt.kernel(FILL, "main").unwrap();
    (0..n)
        .map(|i| {
            let a = rt.array::<f32>(N);
            let (ac, ag, k) = (a.clone(), a.clone(), fill.clone());
            let h = rt
                .task("job")
                .writes(&a)
                .cpu(move |cx| {
                    std::thread::sleep(cpu_time);
                    cx.write(&ac).fill(i as f32);
                })
                .gpu(move |cx| {
                    cx.dispatch_dyn(&k, &[&Uniform([i as f32; 4]), &ag], k.groups_for(N))
                })
                .spawn();
            (a, h)
        })
        .collect()
}

/// Checks every job's result and returns where each ran.
fn check(jobs: Vec<(Array<f32>, TaskHandle<()>)>) -> Vec<DeviceId> {
    jobs.into_iter()
        .enumerate()
        .map(|(i, (a, h))| {
            let r = h.task_ref();
            h.wait().unwrap();
            assert!(
                a.to_vec().unwrap().iter().all(|&v| v == i as f32),
                "job {i}"
            );
            r.device().unwrap()
        })
        .collect()
}

/// Holds GPU 0's driver for 1 s (a GPU body runs on the driver thread while it encodes).
fn block_gpu(rt: &Runtime) -> TaskHandle<()> {
    block_gpu_then(rt, || ())
}

/// As [`block_gpu`], calling `spawned` after the blocker is queued and before waiting for it
/// to start.
fn block_gpu_then(rt: &Runtime, spawned: impl FnOnce()) -> TaskHandle<()> {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let h = rt
        .task("blocker")
        .on(Placement::Gpu(0))
        .gpu(move |_| {
            s.fetch_add(1, Ordering::AcqRel);
            // Long enough that the test's steal attempt comes before it ends even on a loaded
            // machine (the fence test fails if the batch finishes first).
            std::thread::sleep(ms(1000));
        })
        .spawn();
    spawned();
    while started.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    h
}

/// Holds GPU 0's driver until the returned flag is set (at most 10 s): the jobs queued
/// meanwhile are encoded into the gate's batch, one after another, once it opens.
fn gate_gpu(rt: &Runtime) -> (TaskHandle<()>, Arc<AtomicBool>) {
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let h = rt
        .task("gate")
        .on(Placement::Gpu(0))
        .gpu(move |_| {
            let start = std::time::Instant::now();
            while !o.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(10) {
                std::thread::yield_now();
            }
        })
        .spawn();
    (h, open)
}

/// Holds both CPU workers for 300 ms.
fn block_cpus(rt: &Runtime) -> Vec<TaskHandle<()>> {
    let started = Arc::new(AtomicUsize::new(0));
    let hs = (0..2)
        .map(|_| {
            let s = started.clone();
            rt.task("blocker")
                .on(Placement::Cpu)
                .cpu(move |_| {
                    s.fetch_add(1, Ordering::AcqRel);
                    std::thread::sleep(ms(300));
                })
                .spawn()
        })
        .collect();
    while started.load(Ordering::Acquire) < 2 {
        std::thread::yield_now();
    }
    hs
}

#[test]
fn idle_cpu_takes_tasks_queued_behind_a_busy_gpu() {
    if common::gpu_runtime().is_none() {
        return;
    }
    for stealing in [true, false] {
        // The model says the GPU is 5× faster, so dmda queues most jobs there; while the GPU is
        // held, the jobs at the back of its queue finish sooner on the idle CPU workers.
        let rt = runtime(stealing, ms(5), ms(1), DeviceId::Gpu(0));
        let blocker = block_gpu(&rt);
        let js = jobs(&rt, 12, ms(5));
        blocker.wait().unwrap();
        let ran = check(js);
        let stats = rt.stats();
        let on_gpu = ran.iter().filter(|d| **d == DeviceId::Gpu(0)).count();
        if stealing {
            assert!(stats.steals_to_cpu >= 1, "no steal: {ran:?} {stats:?}");
            assert!(
                on_gpu >= 1,
                "dmda still queues the first jobs on the GPU: {ran:?}"
            );
        } else {
            assert_eq!((stats.steals_to_cpu, stats.steals_to_gpu), (0, 0));
        }
    }
}

#[test]
fn idle_gpu_takes_tasks_queued_on_a_saturated_pool() {
    if common::gpu_runtime().is_none() {
        return;
    }
    for stealing in [true, false] {
        // The model says the CPU is 3× faster, so dmda queues most jobs on the pool; while both
        // workers are held, the idle GPU takes queued jobs that finish sooner there.
        let rt = runtime(stealing, ms(1), ms(3), DeviceId::Cpu);
        let blockers = block_cpus(&rt);
        let js = jobs(&rt, 12, ms(1));
        let ran = check(js);
        for b in blockers {
            b.wait().unwrap();
        }
        let stats = rt.stats();
        let software = rt.topology().gpus[0].device_type.shares_cpu_cores();
        if stealing && !software {
            assert!(stats.steals_to_gpu >= 1, "no steal: {ran:?} {stats:?}");
        } else if stealing {
            // A software adapter (lavapipe) runs on the cores of the pool it would steal
            // from: it frees no capacity, so it takes only work it does in less time, and
            // here the model says it is 3x slower.
            assert_eq!(stats.steals_to_gpu, 0, "{ran:?} {stats:?}");
        } else {
            assert_eq!((stats.steals_to_cpu, stats.steals_to_gpu), (0, 0));
        }
    }
}

#[test]
fn a_task_behind_an_unfinished_same_gpu_fence_is_never_stolen() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let add = include_str!("../shaders/add_f32.wgsl");
    for depends in [true, false] {
        // `first` writes x on the GPU; the GPU driver is then held by the blocker, so batch 1
        // (holding `first`) is not even submitted. `job` is queued on the GPU (the model says
        // the GPU is faster), then the model changes its mind. With `job` depending on `first`
        // (released early, carrying the fence of batch 1) the idle CPU must leave it; without
        // the dependency it takes it. The gate holds the driver until `first` and the blocker
        // are both queued, so they share a batch: otherwise the driver may submit `first`
        // alone, the device finish it, and `job` rightly carry no unfinished fence.
        let rt = runtime(true, ms(5), ms(1), DeviceId::Gpu(0));
        let (gate, open) = gate_gpu(&rt);
        let fill = rt.kernel(FILL, "main").unwrap();
        let add = rt.kernel(add, "main").unwrap();
        let x = rt.array::<f32>(N);
        let other = rt.array_from(vec![7.0f32; N]);
        let xg = x.clone();
        let first = rt
            .task("first")
            .on(Placement::Gpu(0))
            .writes(&x)
            .gpu(move |cx| {
                cx.dispatch_dyn(&fill, &[&Uniform([7.0f32; 4]), &xg], fill.groups_for(N))
            })
            .spawn();
        let blocker = block_gpu_then(&rt, || open.store(true, Ordering::Release));
        let target = if depends { x.clone() } else { other.clone() };
        let (tc, tg) = (target.clone(), target.clone());
        let job = rt
            .task("job")
            .read_write(&target)
            .cpu(move |cx| cx.write(&tc).iter_mut().for_each(|v| *v += 1.0))
            .gpu(move |cx| cx.dispatch_dyn(&add, &[&Uniform([1.0f32; 4]), &tg], add.groups_for(N)))
            .spawn();
        // Now the CPU looks 50× faster for `job`: three runs in a row replace the history.
        for _ in 0..3 {
            rt.perf_model()
                .record("job", BYTES, DeviceId::Cpu, Duration::from_micros(100));
        }
        // Wake a worker: after this task it searches, and asks the GPU queue.
        rt.task("poke")
            .on(Placement::Cpu)
            .cpu(|_| {})
            .spawn()
            .wait()
            .unwrap();
        let r = job.task_ref();
        job.wait().unwrap();
        first.wait().unwrap();
        blocker.wait().unwrap();
        gate.wait().unwrap();
        assert!(target.to_vec().unwrap().iter().all(|&v| v == 8.0));
        let stats = rt.stats();
        if depends {
            assert_eq!(r.device(), Some(DeviceId::Gpu(0)));
            assert_eq!(stats.steals_to_cpu, 0);
        } else {
            assert_eq!(r.device(), Some(DeviceId::Cpu), "{stats:?}");
            assert_eq!(stats.steals_to_cpu, 1);
        }
    }
}
