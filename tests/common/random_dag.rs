//! The random-DAG program of the differential tests, one file for both targets: the native
//! test (`tests/differential.rs`, 10 000 tasks per seed under every policy) and the browser's
//! (`examples/web`, included by path). [`spawn`] only spawns; each caller waits its own way
//! (`wait_idle` natively, `idle().await` in the page) and compares [`Program::expected`].
//!
//! Tasks over [`ARRAYS`] shared arrays of [`N`] `u32`: snapshots (read, copied into a fresh
//! array), fills (write), increments (read-write) and sum-reductions, each with a CPU body
//! and a GPU body and a random placement; the expected values come from running the same
//! program sequentially on host vectors while spawning.

use hetflow::data::ReduceOp;
use hetflow::{Array, DeviceError, Placement, Runtime, TaskRef, Uniform};

use super::rng::Rng;

/// Shared arrays per program.
pub const ARRAYS: usize = 8;
/// Elements per array.
pub const N: usize = 16;

/// `a[i] = v + i` with `v` in a uniform (binding 0), the array at binding 1.
pub const FILL: &str = "
struct P { v: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = p.v + id.x; }
}";

/// `a[i] += v` with `v` in a uniform (binding 0), the array at binding 1.
pub const ADD_UNIFORM: &str = "
struct P { v: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = a[id.x] + p.v; }
}";

/// `d[i] = s[i]`.
pub const COPY: &str = "
@group(0) @binding(0) var<storage, read> s: array<u32>;
@group(0) @binding(1) var<storage, read_write> d: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&d) { d[id.x] = s[id.x]; }
}";

/// A spawned program and what sequential execution gives.
pub struct Program {
    /// The shared arrays.
    pub arrays: Vec<Array<u32>>,
    /// Their final values under sequential execution.
    pub finals: Vec<Vec<u32>>,
    /// (task index, the snapshot's array, the value its source had at that point).
    pub snapshots: Vec<(usize, Array<u32>, Vec<u32>)>,
    /// Every task, in spawn order.
    pub tasks: Vec<TaskRef>,
}

impl Program {
    /// Every value to compare, named: the snapshots in spawn order, then the final arrays.
    pub fn expected(&self) -> Vec<(String, Array<u32>, Vec<u32>)> {
        let snaps = self
            .snapshots
            .iter()
            .map(|(t, a, want)| (format!("snapshot of task {t}"), a.clone(), want.clone()));
        let finals = self
            .arrays
            .iter()
            .zip(&self.finals)
            .enumerate()
            .map(|(i, (a, want))| (format!("array {i}"), a.clone(), want.clone()));
        snaps.chain(finals).collect()
    }
}

/// Spawns the program of `seed` with `tasks` tasks on `rt` (GPU bodies only where `rt` has a
/// GPU) and returns at once.
pub fn spawn(rt: &Runtime, seed: u64, tasks: usize) -> Result<Program, DeviceError> {
    let (fill, add, copy) = (
        rt.kernel(FILL, "main")?,
        rt.kernel(ADD_UNIFORM, "main")?,
        rt.kernel(COPY, "main")?,
    );
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let arrays: Vec<Array<u32>> = (0..ARRAYS)
        .map(|i| rt.array_from(vec![i as u32; N]))
        .collect();
    let mut model: Vec<Vec<u32>> = (0..ARRAYS).map(|i| vec![i as u32; N]).collect();
    let mut snapshots = Vec::new();
    let mut refs = Vec::with_capacity(tasks);
    let gpu = rt.gpu_count() > 0;
    for t in 0..tasks {
        let i = rng.below(ARRAYS);
        let a = arrays[i].clone();
        let v = rng.below(1000) as u32;
        let place = match rng.below(3) {
            0 if gpu => Placement::Gpu(0),
            1 => Placement::Cpu,
            _ => Placement::Any,
        };
        let name = if t % 2 == 0 { "even" } else { "odd" };
        let handle = match rng.below(4) {
            0 => {
                let check = rt.array::<u32>(N);
                let (a1, c1, a2, c2, k) = (
                    a.clone(),
                    check.clone(),
                    a.clone(),
                    check.clone(),
                    copy.clone(),
                );
                snapshots.push((t, check.clone(), model[i].clone()));
                rt.task(name)
                    .reads(&a)
                    .writes(&check)
                    .on(place)
                    .cpu(move |cx| cx.write(&c1).copy_from_slice(cx.read(&a1)))
                    .gpu(move |cx| cx.dispatch_dyn(&k, &[&a2, &c2], [1, 1, 1]))
                    .spawn()
            }
            1 => {
                let (a1, a2, k) = (a.clone(), a.clone(), fill.clone());
                model[i]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, x)| *x = v + j as u32);
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
                    .spawn()
            }
            k => {
                let (a1, a2, kern) = (a.clone(), a.clone(), add.clone());
                model[i].iter_mut().for_each(|x| *x = x.wrapping_add(v));
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
                .spawn()
            }
        };
        refs.push(handle.task_ref());
    }
    Ok(Program {
        arrays,
        finals: model,
        snapshots,
        tasks: refs,
    })
}
