//! Sub-arrays: slices share their parent's memory, stay coherent with it, and disjoint slices
//! are independent.

mod common;

use std::time::{Duration, Instant};

use hetflow::{DataError, Placement, Runtime, Uniform};

const FILL: &str = include_str!("../shaders/fill_f32.wgsl");

#[test]
fn disjoint_slices_written_on_cpu_and_gpu_at_the_same_time() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let fill = rt.kernel(FILL, "main").unwrap();
    let n = 1024;
    let a = rt.array_named("A", vec![0.0f32; 2 * n]);
    let (left, right) = (a.slice(..n).unwrap(), a.slice(n..).unwrap());
    let gpu_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = gpu_done.clone();
    let l2 = left.clone();
    // The CPU writer waits, inside its body, for the GPU writer spawned after it: if the two
    // were ordered, the GPU task could not start and this would time out.
    let cpu = rt
        .task("left-on-cpu")
        .writes(&left)
        .on(Placement::Cpu)
        .cpu(move |cx| {
            let start = Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "disjoint slices were serialised"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            cx.write(&l2).fill(1.0);
        })
        .spawn();
    let (r2, f2) = (right.clone(), fill.clone());
    let gpu = rt
        .task("right-on-gpu")
        .writes(&right)
        .on(Placement::Gpu(0))
        .gpu(move |cx| {
            cx.dispatch_dyn(
                &f2,
                &[&Uniform([2.0f32, 0.0, 0.0, 0.0]), &r2],
                f2.groups_for(n),
            )
        })
        .spawn();
    gpu.wait().unwrap();
    gpu_done.store(true, std::sync::atomic::Ordering::Release);
    cpu.wait().unwrap();
    // The parent sees both writes.
    let v = a.to_vec().unwrap();
    assert!(v[..n].iter().all(|&x| x == 1.0) && v[n..].iter().all(|&x| x == 2.0));
    // A parent write is seen through a slice.
    let (a2, f3) = (a.clone(), fill.clone());
    rt.task("parent-on-gpu")
        .writes(&a)
        .on(Placement::Gpu(0))
        .gpu(move |cx| {
            cx.dispatch_dyn(
                &f3,
                &[&Uniform([5.0f32, 0.0, 0.0, 0.0]), &a2],
                f3.groups_for(2 * n),
            )
        })
        .spawn();
    assert_eq!(right.to_vec().unwrap(), vec![5.0; n]);
    let o = right.overview();
    assert!(
        o.contains("Parent_ID: ") && !o.contains("Parent_ID: None"),
        "{o}"
    );
    assert!(o.contains("Slice: 1024..2048"), "{o}");
}

#[test]
fn overlapping_slices_are_ordered_and_bounds_are_checked() {
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    let a = rt.array_from((0..10).collect::<Vec<u32>>());
    let mid = a.slice(3..7).unwrap();
    let tail = a.slice(5..=9).unwrap();
    assert_eq!(tail.len(), 5);
    let (m2, t2) = (mid.clone(), tail.clone());
    rt.task("mid")
        .read_write(&mid)
        .cpu(move |cx| cx.write(&m2).iter_mut().for_each(|x| *x += 100))
        .spawn();
    rt.task("tail")
        .read_write(&tail)
        .cpu(move |cx| cx.write(&t2).iter_mut().for_each(|x| *x *= 2))
        .spawn();
    assert_eq!(
        a.to_vec().unwrap(),
        vec![0, 1, 2, 103, 104, 210, 212, 14, 16, 18]
    );
    match a.slice(8..11) {
        Err(DataError::SliceOutOfRange {
            start, end, len, ..
        }) => assert_eq!((start, end, len), (8, 11, 10)),
        other => panic!("expected SliceOutOfRange, got {other:?}"),
    }
    // Slices of slices address the root correctly.
    let inner = tail.slice(1..3).unwrap();
    assert_eq!(inner.to_vec().unwrap(), vec![212, 14]);
}
