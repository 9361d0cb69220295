//! Reductions: concurrent reducers on the CPU and the GPU, partials folded before the next
//! access, dependencies as specified.

mod common;

use std::sync::{Arc, Barrier, RwLock};

use hetflow::data::ReduceOp;
use hetflow::{Placement, Runtime, Uniform};

const ADD_INTO: &str = include_str!("../shaders/add_f32.wgsl");

/// The memory test reads the process's resident size, which every test in this binary shares:
/// it holds this lock for writing so that no other test allocates while it measures; the
/// others hold it for reading and run concurrently with each other as before.
static RSS_QUIET: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    RSS_QUIET.read().unwrap_or_else(|e| e.into_inner())
}

// ANCHOR: cpu_reducers
#[test]
fn cpu_reducers_run_concurrently_and_fold_before_the_read() {
    let _shared = shared();
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    let a = rt.array_from(vec![10.0f32; 8]);
    // Both reducers wait on one barrier: they only finish if they run at the same time.
    let barrier = Arc::new(Barrier::new(2));
    for v in [1.0f32, 2.0] {
        let (a2, b) = (a.clone(), barrier.clone());
        rt.task("reduce-add")
            .reduces(&a, ReduceOp::Add)
            .cpu(move |cx| {
                let part = cx.write(&a2);
                assert!(
                    part.iter().all(|&x| x == 0.0),
                    "a partial starts at the identity"
                );
                part.iter_mut().for_each(|x| *x += v);
                b.wait();
            })
            .spawn();
    }
    assert_eq!(a.to_vec().unwrap(), vec![13.0; 8]);
}
// ANCHOR_END: cpu_reducers

#[test]
fn every_operation_on_the_cpu() {
    let _shared = shared();
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    for (op, init, parts, want) in [
        (ReduceOp::Add, 1i32, vec![2, 3, 4], 10),
        (ReduceOp::Mul, 2, vec![3, 4], 24),
        (ReduceOp::Min, 5, vec![7, -3, 9], -3),
        (ReduceOp::Max, 5, vec![7, -3, 9], 9),
    ] {
        let a = rt.array_from(vec![init; 4]);
        for p in parts {
            let a2 = a.clone();
            rt.task("r")
                .reduces(&a, op)
                .cpu(move |cx| cx.write(&a2).iter_mut().for_each(|x| *x = p))
                .spawn();
        }
        assert_eq!(a.to_vec().unwrap(), vec![want; 4], "{op:?}");
    }
}

#[test]
fn reducers_of_another_op_and_writers_are_ordered() {
    let _shared = shared();
    let rt = Runtime::builder().cpu_workers(2).no_gpu().build().unwrap();
    let a = rt.array_from(vec![1.0f64; 2]);
    let add = |v: f64| {
        let a2 = a.clone();
        rt.task("add")
            .reduces(&a, ReduceOp::Add)
            .cpu(move |cx| cx.write(&a2).fill(v))
            .spawn();
    };
    add(1.0);
    add(2.0); // 1 + 1 + 2 = 4
    let a2 = a.clone();
    rt.task("mul")
        .reduces(&a, ReduceOp::Mul)
        .cpu(move |cx| cx.write(&a2).fill(3.0))
        .spawn(); // 12
    let a3 = a.clone();
    rt.task("rw")
        .read_write(&a)
        .cpu(move |cx| cx.write(&a3)[1] -= 2.0)
        .spawn(); // [12, 10]
    add(0.5);
    assert_eq!(a.to_vec().unwrap(), vec![12.5, 10.5]);
}

#[test]
fn gpu_and_cpu_reducers_together() {
    let _shared = shared();
    let Some(_) = common::gpu_runtime() else {
        return;
    };
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let k = rt.kernel(ADD_INTO, "main").unwrap();
    let n = 1000;
    let a = rt.array_from(vec![100.0f32; n]);
    for i in 0..6 {
        let v = (i + 1) as f32;
        let (a2, a3, k2) = (a.clone(), a.clone(), k.clone());
        let place = if i % 2 == 0 {
            Placement::Gpu(0)
        } else {
            Placement::Cpu
        };
        rt.task("reduce")
            .reduces(&a, ReduceOp::Add)
            .on(place)
            .cpu(move |cx| cx.write(&a2).iter_mut().for_each(|x| *x += v))
            .gpu(move |cx| {
                cx.dispatch_dyn(&k2, &[&Uniform([v, 0.0, 0.0, 0.0]), &a3], k2.groups_for(n))
            })
            .spawn();
    }
    // A GPU reader after the group sees the folded value (1 + ... + 6 = 21).
    let out = rt.array::<f32>(n);
    let copy = rt
        .kernel(include_str!("../shaders/copy_f32.wgsl"), "main")
        .unwrap();
    let (a4, o2) = (a.clone(), out.clone());
    rt.task("read-on-gpu")
        .reads(&a)
        .writes(&out)
        .on(Placement::Gpu(0))
        .gpu(move |cx| cx.dispatch_dyn(&copy, &[&a4, &o2], copy.groups_for(n)))
        .spawn();
    assert_eq!(out.to_vec().unwrap(), vec![121.0; n]);
    assert_eq!(a.to_vec().unwrap(), vec![121.0; n]);
}

#[test]
fn reading_a_reduced_array_inside_the_reducer_is_an_error() {
    let _shared = shared();
    let rt = Runtime::builder().cpu_workers(1).no_gpu().build().unwrap();
    let a = rt.array_from(vec![1u32; 2]);
    let a2 = a.clone();
    let h = rt
        .task("bad")
        .reduces(&a, ReduceOp::Add)
        .cpu(move |cx| cx.read(&a2)[0])
        .spawn();
    assert!(h
        .wait()
        .unwrap_err()
        .to_string()
        .contains("declared reduce"));
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn gpu_partials_count_against_the_budget_and_spill_under_it() {
    let _quiet = RSS_QUIET.write().unwrap_or_else(|e| e.into_inner());
    if common::gpu_runtime().is_none() {
        return;
    }
    const MIB: usize = 1 << 20;
    let rt = Runtime::builder()
        .cpu_workers(2)
        .gpu_memory_budget(8 * MIB as u64)
        .build()
        .unwrap();
    let add = rt.kernel(ADD_INTO, "main").unwrap();
    let n = MIB / 4; // 1 MiB of f32
    let a = rt.array_named("sum", vec![0.0f32; n]);
    let reduce = |count: usize| {
        for _ in 0..count {
            let (a2, k) = (a.clone(), add.clone());
            rt.task("gpu-reduce")
                .reduces(&a, ReduceOp::Add)
                .on(Placement::Gpu(0))
                .gpu(move |cx| {
                    cx.dispatch_dyn(
                        &k,
                        &[&Uniform([1.0f32, 0.0, 0.0, 0.0]), &a2],
                        k.groups_for(n),
                    )
                })
                .spawn();
        }
        rt.wait_idle();
    };
    // Three pending partials: they are GPU memory in use.
    reduce(3);
    let (used, budget) = rt.stats().memory.gpus[0];
    assert!(
        used >= 3 * MIB as u64,
        "3 pending partials, {used} bytes shown in use"
    );
    assert!(used <= budget);
    // Hundreds more: the budget holds, and so does the process's memory. The first round
    // brings the allocators to their working size; the second must not grow it further (one
    // partial per reducer kept would add 200 MiB).
    reduce(100);
    let before = rss_kib();
    reduce(100);
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    let (used, budget) = rt.stats().memory.gpus[0];
    assert!(
        used <= budget + MIB as u64,
        "{used} bytes in use, budget {budget}"
    );
    assert!(
        grown_mib < 40,
        "100 more reducers of a 1 MiB array grew the process by {grown_mib} MiB"
    );
    assert!(a.to_vec().unwrap().iter().all(|&x| x == 203.0));
    // Folded: nothing pending any more.
    assert_eq!(rt.stats().memory.gpus[0].0, 0);
}

// ANCHOR: f32_max_recipe
/// f32 max on a GPU: WGSL has no float atomics. Each workgroup reduces its values in
/// workgroup memory (a tree), then one invocation folds the result into the partial with a
/// compare-and-swap loop on the f32's bits. The partial is a reducer's private copy of the
/// whole array, filled with Max's identity for f32, `f32::MIN` (bits 0xff7fffff), so any
/// sign works (an `atomicMax` on the u32 bits would not: as a u32, 0xff7fffff is larger
/// than the bits of every non-negative float).
const MAX_F32: &str = "
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> biggest: array<atomic<u32>>;
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var v = bitcast<f32>(0xff7fffffu); // f32::MIN, the identity
    if id.x < arrayLength(&x) { v = x[id.x]; }
    part[lid] = v;
    for (var half = 32u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if lid < half { part[lid] = max(part[lid], part[lid + half]); }
    }
    if lid == 0u {
        var old = atomicLoad(&biggest[0]);
        loop {
            let next = max(bitcast<f32>(old), part[0]);
            if bitcast<u32>(next) == old { break; }
            let r = atomicCompareExchangeWeak(&biggest[0], old, bitcast<u32>(next));
            if r.exchanged { break; }
            old = r.old_value;
        }
    }
}";

#[test]
fn f32_max_on_the_gpu_by_workgroup_tree_and_compare_and_swap() {
    let _shared = shared();
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    // The partial (Array<f32>) is bound as array<atomic<u32>>: the kernel opts out of the
    // element type check.
    let max_k = rt.kernel(MAX_F32, "main").unwrap().untyped();
    let n = 10_000;
    // All negative, so a wrong identity (0, or the bits of a non-negative float) shows.
    let mut data: Vec<f32> = (0..n)
        .map(|i| -1.0 - ((i * 7919) % 1000) as f32 / 8.0)
        .collect();
    data[n - 3] = -0.5; // the largest, in the last quarter
    let x = rt.array_from(data.clone());
    let biggest = rt.array_from(vec![f32::MIN]);
    let quarters: Vec<_> = (0..4)
        .map(|q| x.slice(q * n / 4..(q + 1) * n / 4).unwrap())
        .collect();
    for part in &quarters {
        let k = max_k.clone();
        let len = part.len();
        rt.task("max")
            .args((part.read(), biggest.reduce(hetflow::ReduceOp::Max)))
            .on(Placement::Gpu(0))
            .gpu(move |cx, (part, m)| cx.dispatch(&k, (part, m), k.groups_for(len)))
            .spawn();
    }
    assert_eq!(biggest.to_vec().unwrap(), vec![-0.5]);
}
// ANCHOR_END: f32_max_recipe
