//! The distributed random-DAG program shared by the in-process test (`tests/dist.rs`) and
//! the MPI test (`tests/dist_mpi.rs`, under mpirun): random reads, writes, read-writes,
//! reductions and two-array updates over arrays with random owners, random `on_rank` and
//! random CPU/GPU placement, checked on every rank against sequential execution. Its users
//! declare `mod common;` beside `mod dist_common;`.

#![allow(dead_code)]

use hetflow::data::ReduceOp;
use hetflow::dist::{Cluster, DistArray};
use hetflow::{Kernel, Placement, Uniform};

pub const ARRAYS: usize = 8;
pub const N: usize = 16;

const AXPY: &str = "
@group(0) @binding(0) var<storage, read> b: array<u32>;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = a[id.x] * 3u + b[id.x]; }
}";

/// Runs one random flow of `tasks` tasks; returns the number of tasks this rank ran.
/// Panics (with the seed) if any array or read differs from sequential execution.
pub fn random_dag(c: &Cluster, seed: u64, tasks: usize) -> usize {
    let size = c.size();
    let gpu = c.runtime().gpu_count() > 0;
    let kernels: Option<(Kernel, Kernel)> = gpu.then(|| {
        (
            c.runtime()
                .kernel(crate::common::ADD_UNIFORM, "main")
                .unwrap(),
            c.runtime().kernel(AXPY, "main").unwrap(),
        )
    });
    let mut rng = crate::common::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let arrays: Vec<DistArray<u32>> = (0..ARRAYS)
        .map(|i| {
            let owner = rng.below(size);
            c.array_named(format!("a{i}"), owner, N, || vec![i as u32; N])
                .unwrap()
        })
        .collect();
    let mut model: Vec<Vec<u32>> = (0..ARRAYS).map(|i| vec![i as u32; N]).collect();
    let mut checks = Vec::new();
    let mut ran = 0;
    for t in 0..tasks {
        let i = rng.below(ARRAYS);
        let a = &arrays[i];
        let v = rng.below(1000) as u32;
        let on_rank = (rng.below(4) == 0).then(|| rng.below(size));
        let place = match rng.below(3) {
            0 if gpu => Placement::Gpu(0),
            1 => Placement::Cpu,
            _ => Placement::Any,
        };
        let handle_rank;
        match rng.below(5) {
            0 => {
                // Read: copy into a fresh array owned by a random rank.
                let owner = rng.below(size);
                let check = c.array::<u32>(owner, N).unwrap();
                let mut task = c
                    .task::<()>("copy")
                    .args((a.read(), check.write()))
                    .cpu(|(a, d)| d.copy_from_slice(a));
                if let Some(r) = on_rank {
                    task = task.on_rank(r);
                }
                let h = task.on(Placement::Cpu).spawn().unwrap();
                handle_rank = h.rank();
                checks.push((t, check, model[i].clone()));
            }
            1 => {
                let mut task =
                    c.task::<()>("fill")
                        .args(a.write())
                        .on(Placement::Cpu)
                        .cpu(move |a| {
                            a.iter_mut()
                                .enumerate()
                                .for_each(|(j, x)| *x = v + j as u32)
                        });
                if let Some(r) = on_rank {
                    task = task.on_rank(r);
                }
                handle_rank = task.spawn().unwrap().rank();
                model[i]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, x)| *x = v + j as u32);
            }
            k @ (2 | 3) => {
                let add = move |a: &mut [u32]| a.iter_mut().for_each(|x| *x = x.wrapping_add(v));
                let h = if k == 2 {
                    let mut task = c.task::<()>("add").args(a.read_write()).on(place).cpu(add);
                    if let Some((kadd, _)) = &kernels {
                        let kadd = kadd.clone();
                        task = task.gpu(move |cx, a| {
                            cx.dispatch(&kadd, (Uniform([v, 0, 0, 0]), a), [1, 1, 1])
                        });
                    } else {
                        task = task.on(Placement::Cpu);
                    }
                    match on_rank {
                        Some(r) => task.on_rank(r).spawn(),
                        None => task.spawn(),
                    }
                } else {
                    let task = c
                        .task::<()>("reduce")
                        .args(a.reduce(ReduceOp::Add))
                        .on(Placement::Cpu)
                        .cpu(add);
                    match on_rank {
                        Some(r) => task.on_rank(r).spawn(),
                        None => task.spawn(),
                    }
                };
                handle_rank = h.unwrap().rank();
                model[i].iter_mut().for_each(|x| *x = x.wrapping_add(v));
            }
            _ => {
                // a = 3a + b over two arrays: a dependency across arrays (and ranks).
                let j = (i + 1 + rng.below(ARRAYS - 1)) % ARRAYS;
                let b = &arrays[j];
                let mut task = c
                    .task::<()>("axpy")
                    .args((b.read(), a.read_write()))
                    .on(place)
                    .cpu(|(b, a)| {
                        a.iter_mut()
                            .zip(b)
                            .for_each(|(a, b)| *a = a.wrapping_mul(3).wrapping_add(*b))
                    });
                if let Some((_, kaxpy)) = &kernels {
                    let kaxpy = kaxpy.clone();
                    task = task.gpu(move |cx, (b, a)| cx.dispatch(&kaxpy, (b, a), [1, 1, 1]));
                } else {
                    task = task.on(Placement::Cpu);
                }
                if let Some(r) = on_rank {
                    task = task.on_rank(r);
                }
                handle_rank = task.spawn().unwrap().rank();
                let bm = model[j].clone();
                model[i]
                    .iter_mut()
                    .zip(&bm)
                    .for_each(|(a, b)| *a = a.wrapping_mul(3).wrapping_add(*b));
            }
        }
        if handle_rank == c.rank() {
            ran += 1;
        }
    }
    c.wait_all()
        .unwrap_or_else(|e| panic!("seed {seed}: wait_all: {e}"));
    for (t, check, want) in checks {
        assert_eq!(
            check.to_vec().unwrap(),
            want,
            "seed {seed}, rank {}: the read of task {t}",
            c.rank()
        );
    }
    for (i, a) in arrays.iter().enumerate() {
        assert_eq!(
            a.to_vec().unwrap(),
            model[i],
            "seed {seed}, rank {}: array {i}",
            c.rank()
        );
    }
    ran
}

/// Distributed tiled Cholesky on a 2-D block-cyclic grid against the single-process run of
/// the same tiles and tile kernels on this rank's own engine: bit-identical factor, and
/// exactly the tile messages the layout predicts.
pub fn cholesky_matches_single_process(c: &Cluster) {
    use hetflow::dist::{cholesky, cholesky_messages, BlockCyclic, DistMatrix};
    let (n, t) = (256, 32);
    let nt = n / t;
    let a = hetflow::linalg::spd_matrix(n, 11);
    let layout = BlockCyclic::square(c.size());
    let m = DistMatrix::lower(c, &a, n, t, layout).unwrap();
    c.wait_all().unwrap();
    let before = c.all_stats().unwrap();
    cholesky(c, &m, true).unwrap();
    c.wait_all().unwrap();
    let after = c.all_stats().unwrap();
    let sent: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.messages_sent - b.messages_sent)
        .sum();
    assert_eq!(sent, cholesky_messages(nt, layout), "tile messages");
    let l = m.to_dense().unwrap();
    // The same tiles and kernels in one process. GPU updates may run on a GPU in either run;
    // for bits to match both use the CPU kernels here.
    let rt = c.runtime();
    let tm = hetflow::linalg::TiledMatrix::from_dense(rt, &a, n, t).unwrap();
    hetflow::linalg::cholesky(rt, &tm, false).unwrap();
    let want = tm.to_dense_lower().unwrap();
    let m2 = DistMatrix::lower(c, &a, n, t, layout).unwrap();
    cholesky(c, &m2, false).unwrap();
    c.wait_all().unwrap();
    let l2 = m2.to_dense().unwrap();
    assert!(
        l2.iter()
            .zip(&want)
            .all(|(x, y)| x.to_bits() == y.to_bits()),
        "rank {}: the distributed factor differs from the single-process one",
        c.rank()
    );
    // The GPU-update run is a correct factor too (within f32 rounding).
    let worst = l
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "GPU-update factor off by {worst}");
    println!(
        "rank {}: distributed Cholesky {n}x{n} (tile {t}, grid {}x{}) bit-identical to one process; {sent} tile messages as predicted",
        c.rank(),
        layout.p,
        layout.q
    );
}
