//! Differential test: random DAGs of 10 000 tasks with random accesses to shared arrays and
//! random placement give exactly the results of sequential execution, under every policy.
//! Seeds per policy: `HETFLOW_DIFF_SEEDS` (default 100).

mod common;

use hetflow::data::ReduceOp;
use hetflow::{Array, Placement, Policy, Runtime, Uniform};

const ARRAYS: usize = 8;
const N: usize = 16;
const TASKS: usize = 10_000;

const FILL: &str = "
struct P { v: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = p.v + id.x; }
}";
const COPY: &str = "
@group(0) @binding(0) var<storage, read> s: array<u32>;
@group(0) @binding(1) var<storage, read_write> d: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&d) { d[id.x] = s[id.x]; }
}";

fn run_seed(rt: &Runtime, seed: u64) {
    let (fill, add, copy) = (
        rt.kernel(FILL, "main").unwrap(),
        rt.kernel(common::ADD_UNIFORM, "main").unwrap(),
        rt.kernel(COPY, "main").unwrap(),
    );
    let mut rng = common::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let arrays: Vec<Array<u32>> = (0..ARRAYS)
        .map(|i| rt.array_from(vec![i as u32; N]))
        .collect();
    let mut model: Vec<Vec<u32>> = (0..ARRAYS).map(|i| vec![i as u32; N]).collect();
    let mut checks = Vec::new();
    let gpu = rt.gpu_count() > 0;
    for t in 0..TASKS {
        let i = rng.below(ARRAYS);
        let a = arrays[i].clone();
        let v = rng.below(1000) as u32;
        let place = match rng.below(3) {
            0 if gpu => Placement::Gpu(0),
            1 => Placement::Cpu,
            _ => Placement::Any,
        };
        let name = if t % 2 == 0 { "even" } else { "odd" };
        match rng.below(4) {
            0 => {
                let check = rt.array::<u32>(N);
                let (a1, c1, a2, c2, k) = (
                    a.clone(),
                    check.clone(),
                    a.clone(),
                    check.clone(),
                    copy.clone(),
                );
                rt.task(name)
                    .reads(&a)
                    .writes(&check)
                    .on(place)
                    .cpu(move |cx| cx.write(&c1).copy_from_slice(cx.read(&a1)))
                    .gpu(move |cx| cx.dispatch_dyn(&k, &[&a2, &c2], [1, 1, 1]))
                    .spawn();
                checks.push((t, check, model[i].clone()));
            }
            1 => {
                let (a1, a2, k) = (a.clone(), a.clone(), fill.clone());
                rt.task(name)
                    .writes(&a)
                    .on(place)
                    .cpu(move |cx| {
                        cx.write(&a1)
                            .iter_mut()
                            .enumerate()
                            .for_each(|(j, x)| *x = v + j as u32)
                    })
                    .gpu(move |cx| cx.dispatch_dyn(&k, &[&Uniform([v, 0, 0, 0]), &a2], [1, 1, 1]))
                    .spawn();
                model[i]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, x)| *x = v + j as u32);
            }
            k => {
                let (a1, a2, kern) = (a.clone(), a.clone(), add.clone());
                let b = rt.task(name).on(place);
                let b = if k == 2 {
                    b.read_write(&a)
                } else {
                    b.reduces(&a, ReduceOp::Add)
                };
                b.cpu(move |cx| {
                    cx.write(&a1)
                        .iter_mut()
                        .for_each(|x| *x = x.wrapping_add(v))
                })
                .gpu(move |cx| cx.dispatch_dyn(&kern, &[&Uniform([v, 0, 0, 0]), &a2], [1, 1, 1]))
                .spawn();
                model[i].iter_mut().for_each(|x| *x = x.wrapping_add(v));
            }
        }
    }
    rt.wait_idle();
    for (t, check, want) in checks {
        assert_eq!(check.to_vec().unwrap(), want, "seed {seed}, task {t}");
    }
    for (i, a) in arrays.iter().enumerate() {
        assert_eq!(a.to_vec().unwrap(), model[i], "seed {seed}, array {i}");
    }
}

#[test]
fn random_dags_equal_sequential_execution_under_every_policy() {
    if common::gpu_runtime().is_none() {
        return;
    }
    let seeds: u64 = std::env::var("HETFLOW_DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let policies = [
        Policy::Eager,
        Policy::PreferGpu,
        Policy::PreferCpu,
        Policy::Locality,
        Policy::Dmda,
    ];
    for (p, policy) in policies.iter().enumerate() {
        let rt = Runtime::builder()
            .cpu_workers(2)
            .policy(*policy)
            .build()
            .unwrap();
        for seed in 0..seeds {
            run_seed(&rt, seed * policies.len() as u64 + p as u64);
        }
    }
}
