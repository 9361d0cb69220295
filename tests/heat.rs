//! The heat stencil example (examples/heat.rs): CPU and WGSL strips, halos as overlapping
//! slices, an optional reduction every 10 steps, bit for bit equal to a plain loop.

mod common;

#[allow(dead_code)]
#[path = "../examples/heat.rs"]
mod heat;

use heat::{reference, solve, Pinning};

#[test]
fn strips_on_the_cpu_match_the_plain_loop() {
    let rt = hetflow::Runtime::builder()
        .cpu_workers(2)
        .no_gpu()
        .build()
        .unwrap();
    let run = solve(&rt, 67, 35, 0.0, Pinning::Policy).unwrap();
    let (grid, checks) = reference(67, 35);
    assert_eq!(run.steps, 35);
    assert_eq!(checks.len(), 3);
    assert!(run
        .grid
        .iter()
        .zip(&grid)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(run.checks, checks);
    assert_eq!(run.ran_on.get("cpu"), Some(&(16 * 35)));
}

#[test]
fn strips_alternating_between_gpu_and_cpu_match_the_plain_loop() {
    let Some(rt) = common::gpu_runtime() else {
        return;
    };
    let run = solve(rt, 70, 30, 0.0, Pinning::Alternate).unwrap();
    let (grid, checks) = reference(70, 30);
    let differ = run
        .grid
        .iter()
        .zip(&grid)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differ, 0, "cells differing from the plain loop");
    assert_eq!(run.checks, checks);
    assert_eq!(run.ran_on.get("gpu0"), Some(&(8 * 30)));
    assert_eq!(run.ran_on.get("cpu"), Some(&(8 * 30)));
}

#[test]
fn the_tolerance_stops_early_and_tiny_grids_are_refused() {
    let rt = hetflow::Runtime::builder()
        .cpu_workers(2)
        .no_gpu()
        .build()
        .unwrap();
    let (_, checks) = reference(20, 40);
    assert!(checks[1] < checks[0], "the change shrinks: {checks:?}");
    // Stop at the second check: its change is the tolerance.
    let run = solve(&rt, 20, 40, checks[1], Pinning::Policy).unwrap();
    assert_eq!((run.steps, run.checks.len()), (20, 2));
    assert_eq!(run.grid, reference(20, 20).0);
    assert!(solve(&rt, 2, 5, 0.0, Pinning::Policy).is_err());
}
