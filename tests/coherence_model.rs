//! Managed arrays against a sequential reference model: random sequences of (device, access,
//! array) give exactly the values sequential execution gives, the MESI invariants hold after
//! every step, and all of it also under a GPU budget so small that evictions never stop.

mod common;

use hetflow::{Array, DataError, MemorySpace, Placement, Runtime, TaskError, Uniform};
use proptest::prelude::*;

const N: usize = 256; // elements per array: 1 KiB

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write(f32),
    ReadWrite(f32),
    ReduceAdd(f32),
}

#[derive(Debug, Clone, Copy)]
struct Step {
    gpu: bool,
    array: usize,
    op: Op,
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        Just(Op::Read),
        (1u8..50).prop_map(|v| Op::Write(v as f32)),
        (1u8..50).prop_map(|v| Op::ReadWrite(v as f32)),
        (1u8..50).prop_map(|v| Op::ReduceAdd(v as f32)),
    ];
    (any::<bool>(), 0usize..6, op).prop_map(|(gpu, array, op)| Step { gpu, array, op })
}

struct Kernels {
    fill: hetflow::Kernel,
    add: hetflow::Kernel,
    copy: hetflow::Kernel,
}

fn kernels(rt: &Runtime) -> Kernels {
    Kernels {
        fill: rt
            .kernel(include_str!("../shaders/fill_f32.wgsl"), "main")
            .unwrap(),
        add: rt
            .kernel(include_str!("../shaders/add_f32.wgsl"), "main")
            .unwrap(),
        copy: rt
            .kernel(include_str!("../shaders/copy_f32.wgsl"), "main")
            .unwrap(),
    }
}

fn check_invariants(arrays: &[Array<f32>]) {
    for a in arrays {
        if let Err(e) = a.states().check() {
            panic!("invariant broken for {}: {e}", a.label());
        }
    }
}

/// The arrays a sequence works on: two roots and slices of them, overlapping and disjoint.
/// Each entry: (array, root index, element range within the root).
fn family(rt: &Runtime) -> Vec<(Array<f32>, usize, std::ops::Range<usize>)> {
    let r0 = rt.array_named("r0", vec![0.0f32; N]);
    let r1 = rt.array_named("r1", vec![1.0f32; N]);
    let mut v = vec![(r0.clone(), 0, 0..N), (r1.clone(), 1, 0..N)];
    for (root, idx, range) in [
        (&r0, 0, 0..N / 2),
        (&r0, 0, N / 2..N),
        (&r0, 0, N / 4..3 * N / 4),
        (&r1, 1, 32..96),
    ] {
        v.push((root.slice(range.clone()).unwrap(), idx, range));
    }
    v
}

/// Spawns every step at once (the runtime orders them by their accesses), then compares each
/// read with the model's value at that point of the sequence.
fn run_against_model(rt: &Runtime, k: &Kernels, steps: &[Step]) {
    let has_gpu = rt.gpu_count() > 0;
    let members = family(rt);
    let arrays: Vec<Array<f32>> = members.iter().map(|m| m.0.clone()).collect();
    let mut model: Vec<Vec<f32>> = vec![vec![0.0; N], vec![1.0; N]];
    let mut reads = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let (a, root, range) = members[s.array].clone();
        let n = range.len();
        let all = arrays.clone();
        let on_gpu = s.gpu && has_gpu;
        let place = if on_gpu {
            Placement::Gpu(0)
        } else {
            Placement::Cpu
        };
        let name = format!("step{i}");
        match s.op {
            Op::Read => {
                let check = rt.array::<f32>(n);
                let (a2, c2, copy) = (a.clone(), check.clone(), k.copy.clone());
                let (a3, c3) = (a.clone(), check.clone());
                let all2 = all.clone();
                rt.task(name)
                    .reads(&a)
                    .writes(&check)
                    .on(place)
                    .cpu(move |cx| {
                        cx.write(&c2).copy_from_slice(cx.read(&a2));
                        check_invariants(&all2);
                    })
                    .gpu(move |cx| {
                        cx.dispatch_dyn(&copy, &[&a3, &c3], copy.groups_for(n));
                        check_invariants(&all);
                    })
                    .spawn();
                reads.push((i, check, model[root][range].to_vec()));
            }
            Op::Write(v) => {
                let (a2, fill, a3) = (a.clone(), k.fill.clone(), a.clone());
                let all2 = all.clone();
                rt.task(name)
                    .writes(&a)
                    .on(place)
                    .cpu(move |cx| {
                        cx.write(&a2).fill(v);
                        check_invariants(&all2);
                    })
                    .gpu(move |cx| {
                        cx.dispatch_dyn(
                            &fill,
                            &[&Uniform([v, 0.0, 0.0, 0.0]), &a3],
                            fill.groups_for(n),
                        );
                        check_invariants(&all);
                    })
                    .spawn();
                model[root][range].fill(v);
            }
            Op::ReduceAdd(v) | Op::ReadWrite(v) => {
                let (a2, add, a3) = (a.clone(), k.add.clone(), a.clone());
                let all2 = all.clone();
                let b = rt.task(name);
                let b = if matches!(s.op, Op::ReduceAdd(_)) {
                    b.reduces(&a, hetflow::data::ReduceOp::Add)
                } else {
                    b.read_write(&a)
                };
                b.on(place)
                    .cpu(move |cx| {
                        cx.write(&a2).iter_mut().for_each(|x| *x += v);
                        check_invariants(&all2);
                    })
                    .gpu(move |cx| {
                        cx.dispatch_dyn(
                            &add,
                            &[&Uniform([v, 0.0, 0.0, 0.0]), &a3],
                            add.groups_for(n),
                        );
                        check_invariants(&all);
                    })
                    .spawn();
                model[root][range].iter_mut().for_each(|x| *x += v);
            }
        }
    }
    rt.wait_idle();
    let first_diff = |got: &[f32], want: &[f32]| {
        got.iter()
            .zip(want)
            .position(|(g, w)| g != w)
            .map(|j| (j, got[j], want[j]))
    };
    for (i, check, want) in reads {
        let got = check.to_vec().unwrap();
        assert_eq!(
            first_diff(&got, &want),
            None,
            "step {i}: {:?} (index, got, want)",
            steps[i]
        );
    }
    for (a, want) in arrays.iter().zip(&model) {
        let got = a.to_vec().unwrap();
        assert_eq!(
            first_diff(&got, want),
            None,
            "final value of {} (index, got, want)",
            a.label()
        );
    }
    check_invariants(&arrays);
}

fn runtimes() -> Option<(Runtime, Runtime)> {
    common::gpu_runtime()?;
    let roomy = Runtime::builder().cpu_workers(2).build().unwrap();
    // Room for three 1 KiB arrays (plus the read-check arrays): evictions all the time. The
    // roomy runtime uploads by its default path (mapped on unified-memory GPUs), this one
    // through staging buffers, so both paths meet the model.
    let tiny = Runtime::builder()
        .cpu_workers(2)
        .gpu_memory_budget(3 * 1024)
        .upload_path(hetflow::data::UploadPath::Staging)
        .build()
        .unwrap();
    Some((roomy, tiny))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_sequential_model(steps in proptest::collection::vec(step(), 1..40)) {
        let Some((roomy, tiny)) = runtimes() else { return Ok(()) };
        let (kr, kt) = (kernels(&roomy), kernels(&tiny));
        run_against_model(&roomy, &kr, &steps);
        run_against_model(&tiny, &kt, &steps);
    }
}

#[test]
fn tiny_budget_evicts_and_writes_back_without_losing_data() {
    let Some((_, tiny)) = runtimes() else { return };
    let k = kernels(&tiny);
    // Twelve arrays of 1 KiB through a 3 KiB GPU: every round evicts, and every GPU copy is
    // the only valid one (written there), so it must be written back before it is dropped.
    let arrays: Vec<Array<f32>> = (0..12).map(|_| tiny.array::<f32>(N)).collect();
    for round in 1..=3 {
        for a in &arrays {
            let (add, a2) = (k.add.clone(), a.clone());
            tiny.task("add")
                .read_write(a)
                .on(Placement::Gpu(0))
                .gpu(move |cx| {
                    cx.dispatch_dyn(
                        &add,
                        &[&Uniform([1.0f32, 0.0, 0.0, 0.0]), &a2],
                        add.groups_for(N),
                    )
                })
                .spawn();
        }
        tiny.wait_idle();
        for a in &arrays {
            assert_eq!(a.to_vec().unwrap(), vec![round as f32; N]);
        }
    }
    let m = tiny.stats().memory;
    assert!(m.evictions >= 20, "{m:?}");
    assert!(m.write_backs >= 1, "{m:?}");
    assert!(m.gpus[0].0 <= m.gpus[0].1 || m.overcommits > 0, "{m:?}");
    let down = tiny.stats().link(MemorySpace::Gpu(0), MemorySpace::Host);
    assert!(down.moves >= m.write_backs);
}

#[test]
fn array_larger_than_budget_fails_with_sizes() {
    let Some((_, tiny)) = runtimes() else { return };
    let big = tiny.array::<f32>(4096); // 16 KiB > 3 KiB
    let b2 = big.clone();
    let h = tiny
        .task("too-big")
        .read_write(&big)
        .on(Placement::Gpu(0))
        .gpu(move |cx| {
            let _ = cx.buffer(&b2);
        })
        .spawn();
    match h.wait() {
        Err(TaskError::TaskData {
            error: DataError::OverBudget {
                bytes, budget, gpu, ..
            },
            ..
        }) => {
            assert_eq!((bytes, budget, gpu), (16384, 3072, 0));
        }
        other => panic!("expected OverBudget, got {other:?}"),
    }
    // A failed writer poisons the array: later accesses fail naming it.
    assert!(
        matches!(big.to_vec(), Err(TaskError::DependencyFailed { root, .. }) if root == "too-big")
    );
    // A task whose arrays each fit but together do not fails the same way, with the sum.
    let (a, b) = (tiny.array::<f32>(512), tiny.array::<f32>(512)); // 2 KiB each, 4 KiB > 3 KiB
    let h = tiny
        .task("pair")
        .reads(&a)
        .writes(&b)
        .on(Placement::Gpu(0))
        .gpu(|_| ())
        .spawn();
    match h.wait() {
        Err(TaskError::TaskData {
            error: DataError::OverBudget { bytes, .. },
            ..
        }) => assert_eq!(bytes, 4096),
        other => panic!("expected OverBudget, got {other:?}"),
    }
}

/// Random slice operations where every slice is a temporary: its handle is dropped as soon as
/// its task is spawned (the usual `a.slice(r)` pattern), so the only copy of a GPU write, or a
/// reduction's pending partials, may belong to a slice nobody holds any more. Checked against
/// a sequential model after every read and at the end.
fn dropped_slices_against_model(rt: &Runtime, k: &Kernels, seed: u64, ops: usize) {
    const LEN: usize = 2048;
    let has_gpu = rt.gpu_count() > 0;
    let mut rng = common::Rng(seed);
    let roots = [
        rt.array_named("root0", vec![0.0f32; LEN]),
        rt.array_named("root1", vec![1.0f32; LEN]),
    ];
    let mut model = [vec![0.0f32; LEN], vec![1.0f32; LEN]];
    let mut reads = Vec::new();
    for i in 0..ops {
        let root = rng.below(2);
        let start = rng.below(LEN);
        let end = (start + 1 + rng.below(LEN - start)).min(LEN);
        // One operation in eight uses the whole root (through a slice of all of it, or the
        // root itself), so parents and slices interleave.
        let whole = rng.below(8) == 0;
        let range = if whole { 0..LEN } else { start..end };
        let n = range.len();
        let place = if has_gpu && rng.below(2) == 0 {
            Placement::Gpu(0)
        } else {
            Placement::Cpu
        };
        let v = (1 + rng.below(9)) as f32;
        let a = if whole && rng.below(2) == 0 {
            roots[root].clone()
        } else {
            roots[root].slice(range.clone()).unwrap()
        };
        let name = format!("op{i}");
        match rng.below(4) {
            0 => {
                let check = rt.array::<f32>(n);
                let (a2, c2, copy) = (a.clone(), check.clone(), k.copy.clone());
                let (a3, c3) = (a.clone(), check.clone());
                rt.task(name)
                    .reads(&a)
                    .writes(&check)
                    .on(place)
                    .cpu(move |cx| cx.write(&c2).copy_from_slice(cx.read(&a2)))
                    .gpu(move |cx| cx.dispatch_dyn(&copy, &[&a3, &c3], copy.groups_for(n)))
                    .spawn();
                reads.push((i, check, model[root][range].to_vec()));
            }
            1 => {
                let (a2, fill, a3) = (a.clone(), k.fill.clone(), a.clone());
                rt.task(name)
                    .writes(&a)
                    .on(place)
                    .cpu(move |cx| cx.write(&a2).fill(v))
                    .gpu(move |cx| {
                        let u = Uniform([v, 0.0, 0.0, 0.0]);
                        cx.dispatch_dyn(&fill, &[&u, &a3], fill.groups_for(n))
                    })
                    .spawn();
                model[root][range].fill(v);
            }
            op => {
                let (a2, add, a3) = (a.clone(), k.add.clone(), a.clone());
                let b = rt.task(name);
                let b = if op == 2 {
                    b.reduces(&a, hetflow::data::ReduceOp::Add)
                } else {
                    b.read_write(&a)
                };
                b.on(place)
                    .cpu(move |cx| cx.write(&a2).iter_mut().for_each(|x| *x += v))
                    .gpu(move |cx| {
                        let u = Uniform([v, 0.0, 0.0, 0.0]);
                        cx.dispatch_dyn(&add, &[&u, &a3], add.groups_for(n))
                    })
                    .spawn();
                model[root][range].iter_mut().for_each(|x| *x += v);
            }
        }
        // `a` (the only handle outside the task) goes here.
        drop(a);
    }
    rt.wait_idle();
    for (i, check, want) in reads {
        let got = check.to_vec().unwrap();
        let wrong = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        assert_eq!(
            wrong, 0,
            "seed {seed}, read at op {i}: {wrong} elements wrong"
        );
    }
    for (r, (a, want)) in roots.iter().zip(&model).enumerate() {
        let got = a.to_vec().unwrap();
        let wrong = got.iter().zip(want).filter(|(g, w)| g != w).count();
        assert_eq!(
            wrong, 0,
            "seed {seed}: root{r} has {wrong} of {LEN} elements wrong"
        );
    }
}

#[test]
fn random_slices_with_dropped_handles_match_sequential_model() {
    let Some((roomy, _)) = runtimes() else {
        return;
    };
    let kr = kernels(&roomy);
    for seed in 1..=4 {
        dropped_slices_against_model(&roomy, &kr, seed, 320);
    }
    // Under a budget of two roots (a root and its read-check copy fit): orphaned slices are
    // evicted, and written back, all the time.
    let tight = Runtime::builder()
        .cpu_workers(2)
        .gpu_memory_budget(16 * 1024)
        .upload_path(hetflow::data::UploadPath::Staging)
        .build()
        .unwrap();
    let kt = kernels(&tight);
    for seed in [99, 100] {
        dropped_slices_against_model(&tight, &kt, seed, 320);
    }
    assert!(tight.stats().memory.evictions > 0);
}

#[test]
fn dropped_slice_keeps_its_gpu_write_and_its_cpu_partials() {
    let Some((rt, _)) = runtimes() else { return };
    let k = kernels(&rt);
    let a = rt.array_named("A", vec![0.0f32; 64]);
    {
        let s = a.slice(16..32).unwrap();
        let (s2, fill) = (s.clone(), k.fill.clone());
        rt.task("gpu-write-slice")
            .writes(&s)
            .on(Placement::Gpu(0))
            .gpu(move |cx| {
                let u = Uniform([3.0f32, 0.0, 0.0, 0.0]);
                cx.dispatch_dyn(&fill, &[&u, &s2], fill.groups_for(16))
            })
            .spawn()
            .wait()
            .unwrap();
    }
    let v = a.to_vec().unwrap();
    assert_eq!(
        &v[16..32],
        &[3.0; 16],
        "the dropped slice's GPU write is lost"
    );
    assert!(v[..16].iter().chain(&v[32..]).all(|&x| x == 0.0));
    for _ in 0..4 {
        let s = a.slice(40..48).unwrap();
        let s2 = s.clone();
        rt.task("cpu-reduce-slice")
            .reduces(&s, hetflow::data::ReduceOp::Add)
            .on(Placement::Cpu)
            .cpu(move |cx| cx.write(&s2).iter_mut().for_each(|x| *x += 1.0))
            .spawn()
            .wait()
            .unwrap();
    }
    let v = a.to_vec().unwrap();
    assert_eq!(
        &v[40..48],
        &[4.0; 8],
        "the dropped slice's partials vanished"
    );
}

#[test]
fn any_placement_runs_on_the_cpu_what_cannot_fit_the_gpu_budget() {
    let Some((_, tiny)) = runtimes() else { return };
    let k = kernels(&tiny);
    // 16 KiB > the 3 KiB budget: on the GPU it could only fail with OverBudget.
    let big = tiny.array_named("big", vec![1.0f32; 4096]);
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (b2, b3, add) = (big.clone(), big.clone(), k.add.clone());
        handles.push(
            tiny.task("either")
                .read_write(&big)
                .on(Placement::Any)
                .cpu(move |cx| cx.write(&b2).iter_mut().for_each(|x| *x += 1.0))
                .gpu(move |cx| {
                    let u = Uniform([1.0f32, 0.0, 0.0, 0.0]);
                    cx.dispatch_dyn(&add, &[&u, &b3], add.groups_for(4096))
                })
                .spawn(),
        );
    }
    for h in handles {
        let r = h.task_ref();
        r.wait().unwrap();
        assert_eq!(r.device(), Some(hetflow::DeviceId::Cpu));
    }
    assert_eq!(big.to_vec().unwrap(), vec![9.0; 4096]);
}
