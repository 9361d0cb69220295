//! Differential test: random DAGs of 10 000 tasks with random accesses to shared arrays and
//! random placement give exactly the results of sequential execution, under every policy.
//! Seeds per policy: `HETFLOW_DIFF_SEEDS` (default 100).

mod common;

use common::random_dag;
use hetflow::{Policy, Runtime};

const TASKS: usize = 10_000;

fn run_seed(rt: &Runtime, seed: u64) {
    let program = random_dag::spawn(rt, seed, TASKS).unwrap();
    rt.wait_idle();
    for (what, array, want) in program.expected() {
        assert_eq!(array.to_vec().unwrap(), want, "seed {seed}, {what}");
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
            .perf_model_persistence(hetflow::ModelPersistence::Off)
            .build()
            .unwrap();
        for seed in 0..seeds {
            run_seed(&rt, seed * policies.len() as u64 + p as u64);
        }
    }
}
