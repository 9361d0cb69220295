//! Collectives property-tested against a plain host implementation: random replication
//! factors 1..=8, random sizes (most not divisible by R), every reduce op, three element
//! types, replicas on the CPU and (when there is a GPU) on a random mix of GPU and CPU.

mod common;

use std::sync::OnceLock;

use hetflow::remote::{
    all_gather, all_reduce, reduce_scatter, sharded_slice, CollectiveOp, Element, GatherAxis,
    Replication,
};
use hetflow::{DeviceId, Runtime};
use proptest::prelude::*;

fn cpu_runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::builder().cpu_workers(2).no_gpu().build().unwrap())
}

/// The runtimes to test on, with the replicas' devices: all-CPU, and a GPU/CPU mix chosen by
/// `mix` (bit r set: replica r on GPU 0).
fn replications(r: usize, mix: u8) -> Vec<Replication> {
    let mut out = vec![Replication::new(cpu_runtime(), r).unwrap()];
    if let Some(rt) = common::gpu_runtime() {
        let devices = (0..r)
            .map(|i| {
                if mix >> i & 1 == 1 {
                    DeviceId::Gpu(0)
                } else {
                    DeviceId::Cpu
                }
            })
            .collect();
        out.push(Replication::on(rt, devices).unwrap());
    }
    out
}

// ---- the host reference ----

fn ref_reduce<T: Element>(inputs: &[Vec<T>], op: CollectiveOp) -> Vec<T> {
    let n = inputs[0].len();
    (0..n)
        .map(|i| {
            let acc = inputs[1..]
                .iter()
                .fold(inputs[0][i], |acc, x| op.combine(acc, x[i]));
            if op == CollectiveOp::Mean {
                acc.div_count(inputs.len())
            } else {
                acc
            }
        })
        .collect()
}

/// Shard r of `full` over `r_count` replicas, zero-padded.
fn ref_shard<T: Element>(full: &[T], r_count: usize, r: usize) -> Vec<T> {
    let s = full.len().div_ceil(r_count);
    (0..s)
        .map(|k| full.get(r * s + k).copied().unwrap_or_else(T::zeroed))
        .collect()
}

fn close<T: Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            if T::DTYPE == hetflow::remote::ElementType::F32 {
                let (x, y): (f32, f32) = (bytemuck::cast(*x), bytemuck::cast(*y));
                (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs()))
            } else {
                x == y
            }
        })
}

fn check_reduce<T: Element>(
    inputs: Vec<Vec<T>>,
    op: CollectiveOp,
    mix: u8,
) -> Result<(), TestCaseError> {
    let r_count = inputs.len();
    let expected = ref_reduce(&inputs, op);
    for rep in replications(r_count, mix) {
        let rt = rep.runtime();
        let x = rep
            .per_replica(inputs.iter().map(|v| rt.array_from(v.clone())).collect())
            .unwrap();
        let scattered = reduce_scatter(&x, op).unwrap();
        let reduced = all_reduce(&x, op).unwrap();
        for r in 0..r_count {
            let got = scattered.shard(r).to_vec().unwrap();
            prop_assert!(
                close(&got, &ref_shard(&expected, r_count, r)),
                "reduce_scatter {op:?} R={r_count} replica {r} on {:?}: {got:?} vs {expected:?}",
                rep.devices()
            );
            let got = reduced.to_vec(r).unwrap();
            prop_assert!(
                close(&got, &expected),
                "all_reduce {op:?} R={r_count} replica {r}: {got:?} vs {expected:?}"
            );
        }
        prop_assert!(close(&scattered.to_vec().unwrap(), &expected));
    }
    Ok(())
}

fn check_gather_and_slice<T: Element>(
    full: Vec<T>,
    r_count: usize,
    mix: u8,
) -> Result<(), TestCaseError> {
    let n = full.len();
    let s = n.div_ceil(r_count);
    for rep in replications(r_count, mix) {
        let x = rep.replicated(full.clone());
        let sharded = sharded_slice(&x).unwrap();
        prop_assert_eq!(sharded.shard_len(), s);
        for r in 0..r_count {
            prop_assert_eq!(
                sharded.shard(r).to_vec().unwrap(),
                ref_shard(&full, r_count, r)
            );
        }
        let concat = all_gather(&sharded, GatherAxis::Concat).unwrap();
        let stacked = all_gather(&sharded, GatherAxis::NewAxis).unwrap();
        let padded: Vec<T> = (0..r_count)
            .flat_map(|r| ref_shard(&full, r_count, r))
            .collect();
        for r in 0..r_count {
            prop_assert_eq!(concat.to_vec(r).unwrap(), full.clone());
            prop_assert_eq!(stacked.replica(r).shape(), vec![r_count, s]);
            prop_assert_eq!(stacked.to_vec(r).unwrap(), padded.clone());
        }
    }
    Ok(())
}

fn inputs<T: std::fmt::Debug + Clone>(
    values: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = (Vec<Vec<T>>, usize, u8)> {
    (1..=8usize, 1..=67usize).prop_flat_map(move |(r, n)| {
        (
            prop::collection::vec(prop::collection::vec(values.clone(), n), r),
            0..CollectiveOp::ALL.len(),
            any::<u8>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn reduce_scatter_and_all_reduce_f32((x, op, mix) in inputs(-4i8..=4)) {
        // Small integers as floats: sums and products are exact, so only the mean rounds.
        let x: Vec<Vec<f32>> = x.iter().map(|v| v.iter().map(|&e| f32::from(e)).collect()).collect();
        check_reduce(x, CollectiveOp::ALL[op], mix)?;
    }

    #[test]
    fn reduce_scatter_and_all_reduce_i32((x, op, mix) in inputs(-50i32..=50)) {
        let op = CollectiveOp::ALL[op];
        // Keep products in range: |50^8| overflows i32.
        let x = if op == CollectiveOp::Mul {
            x.iter().map(|v| v.iter().map(|e| e % 4).collect()).collect()
        } else { x };
        check_reduce(x, op, mix)?;
    }

    #[test]
    fn reduce_scatter_and_all_reduce_u32((x, op, mix) in inputs(0u32..=9)) {
        check_reduce(x, CollectiveOp::ALL[op], mix)?;
    }

    #[test]
    fn sharded_slice_and_all_gather(
        (r, full, mix) in (1..=8usize, prop::collection::vec(any::<i32>(), 1..=67), any::<u8>())
    ) {
        check_gather_and_slice(full, r, mix)?;
    }

    #[test]
    fn sharded_slice_and_all_gather_f32(
        (r, full, mix) in (1..=8usize, prop::collection::vec(-1e6f32..1e6, 1..=67), any::<u8>())
    ) {
        check_gather_and_slice(full, r, mix)?;
    }
}
