//! Collectives across replicas: all-gather, reduce-scatter, all-reduce, the sharded slice and
//! element-wise accumulate.
//!
//! Each collective spawns one task per replica, placed on that replica's device. The task
//! declares a read of every input it combines and a write of its own output, so the engine
//! orders it after the producers of its inputs and moves them to its device (host ↔ GPU
//! copies, or nothing when replicas share a device). On a GPU replica the body dispatches
//! `shaders/collective.wgsl`, one pass per source replica (passes in one command buffer run
//! in order); on a CPU replica it runs the same arithmetic as plain loops, folding sources in
//! replica order, so CPU and GPU replicas give the same results.

use crate::data::{Array, ReduceOp};
use crate::device::{DeviceId, Kernel};
use crate::task::Uniform;

use super::element::Element;
use super::error::RemoteError;
use super::replication::{Replicated, Replication, Sharded};

const COLLECTIVE: &str = include_str!("../../shaders/collective.wgsl");

/// How a reduce-scatter or all-reduce combines the replicas' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectiveOp {
    /// Sum.
    Add,
    /// Sum divided by R (integer division for integer types).
    Mean,
    /// Product.
    Mul,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl CollectiveOp {
    /// Every operation, for tests and benchmarks.
    pub const ALL: [CollectiveOp; 5] = [
        CollectiveOp::Add,
        CollectiveOp::Mean,
        CollectiveOp::Mul,
        CollectiveOp::Min,
        CollectiveOp::Max,
    ];

    fn code(self) -> u32 {
        match self {
            CollectiveOp::Add => 0,
            CollectiveOp::Mean => 1,
            CollectiveOp::Mul => 2,
            CollectiveOp::Min => 3,
            CollectiveOp::Max => 4,
        }
    }

    /// The element-wise combine (a mean combines by addition, then divides).
    pub fn combine<T: Element>(self, a: T, b: T) -> T {
        let op = match self {
            CollectiveOp::Add | CollectiveOp::Mean => ReduceOp::Add,
            CollectiveOp::Mul => ReduceOp::Mul,
            CollectiveOp::Min => ReduceOp::Min,
            CollectiveOp::Max => ReduceOp::Max,
        };
        T::combine(op, a, b)
    }
}

/// `dst[i] = op(dst[i], src[i])`, with the match on `op` outside the loop so each arm is a
/// plain (vectorisable) loop.
fn fold_into<T: Element>(dst: &mut [T], src: &[T], op: CollectiveOp) {
    fn each<T: Element>(dst: &mut [T], src: &[T], f: impl Fn(T, T) -> T) {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d = f(*d, *s));
    }
    match op {
        CollectiveOp::Add | CollectiveOp::Mean => {
            each(dst, src, |a, b| T::combine(ReduceOp::Add, a, b))
        }
        CollectiveOp::Mul => each(dst, src, |a, b| T::combine(ReduceOp::Mul, a, b)),
        CollectiveOp::Min => each(dst, src, |a, b| T::combine(ReduceOp::Min, a, b)),
        CollectiveOp::Max => each(dst, src, |a, b| T::combine(ReduceOp::Max, a, b)),
    }
}

/// How an all-gather lays out the shards it collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GatherAxis {
    /// Concatenated into the whole tensor of the sharded tensor's logical length (padding
    /// dropped).
    #[default]
    Concat,
    /// Stacked along a new leading axis: shape `[R, shard_len]`, padding kept.
    NewAxis,
}

/// The uniform block of `collective.wgsl`.
#[derive(Clone, Copy, Default)]
struct Params {
    dst_off: usize,
    src_off: usize,
    len: usize,
    src_len: usize,
    op: u32,
    first: bool,
    count: usize,
}

impl Params {
    fn uniform(&self) -> Uniform<[u32; 8]> {
        Uniform([
            self.dst_off as u32,
            self.src_off as u32,
            self.len as u32,
            self.src_len as u32,
            self.op,
            u32::from(self.first),
            self.count as u32,
            0,
        ])
    }
}

/// The kernel `entry` of `collective.wgsl` for `T`, or `None` when no replica is on a GPU.
fn kernel<T: Element>(rep: &Replication, entry: &str) -> Result<Option<Kernel>, RemoteError> {
    if !rep.devices().iter().any(|d| matches!(d, DeviceId::Gpu(_))) {
        return Ok(None);
    }
    let source = COLLECTIVE.replace("ELEM", T::WGSL);
    Ok(Some(rep.runtime().kernel(&source, entry)?))
}

/// A new output array (zero-filled; every collective overwrites all of it).
fn zeros<T: Element>(rep: &Replication, len: usize) -> Array<T> {
    rep.runtime().array(len)
}

/// Checks a collective's element counts fit the 32-bit indices of its kernels.
fn check_u32(what: &str, n: usize) -> Result<(), RemoteError> {
    if n > u32::MAX as usize / 2 {
        return Err(RemoteError::LengthMismatch {
            what: format!("{what}: tensors indexed by 32-bit kernels"),
            expected: u32::MAX as usize / 2,
            got: n,
        });
    }
    Ok(())
}

/// PopXL's `replicated_all_gather`: every replica gets every shard, concatenated (the whole
/// tensor, padding dropped) or stacked on a new axis.
///
/// ```
/// use hetflow::remote::{all_gather, sharded_slice, GatherAxis, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 2).unwrap();
/// let x = sharded_slice(&rep.replicated(vec![1.0f32, 2.0, 3.0])).unwrap();
/// let full = all_gather(&x, GatherAxis::Concat).unwrap();
/// assert_eq!(full.to_vec(1).unwrap(), vec![1.0, 2.0, 3.0]);
/// let stacked = all_gather(&x, GatherAxis::NewAxis).unwrap();
/// assert_eq!(stacked.replica(0).shape(), vec![2, 2]);
/// assert_eq!(stacked.to_vec(0).unwrap(), vec![1.0, 2.0, 3.0, 0.0]);
/// ```
pub fn all_gather<T: Element>(
    x: &Sharded<T>,
    axis: GatherAxis,
) -> Result<Replicated<T>, RemoteError> {
    let rep = &x.rep;
    let (r_count, s) = (rep.factor(), x.shard_len());
    let out_len = match axis {
        GatherAxis::Concat => x.len,
        GatherAxis::NewAxis => r_count * s,
    };
    check_u32("all_gather", out_len)?;
    let k = kernel::<T>(rep, "place")?;
    // Elements of shard j that land in the output.
    let pieces: Vec<(usize, usize)> = (0..r_count)
        .map(|j| (j * s, s.min(out_len.saturating_sub(j * s))))
        .collect();
    let mut arrays = Vec::with_capacity(r_count);
    for r in 0..r_count {
        let out = zeros::<T>(rep, out_len);
        let mut b = rep
            .runtime()
            .task(format!("all_gather[{r}]"))
            .on(rep.placement(r))
            .writes(&out);
        for shard in &x.shards {
            b = b.reads(shard);
        }
        let (shards, o, p) = (x.shards.clone(), out.clone(), pieces.clone());
        b = b.cpu(move |cx| {
            let dst = cx.write(&o);
            for (shard, &(start, len)) in shards.iter().zip(&p) {
                if len > 0 {
                    dst[start..start + len].copy_from_slice(&cx.read(shard)[..len]);
                }
            }
        });
        if let Some(k) = k.clone() {
            let (shards, o, p) = (x.shards.clone(), out.clone(), pieces.clone());
            b = b.gpu(move |cx| {
                for (shard, &(start, len)) in shards.iter().zip(&p) {
                    if len == 0 {
                        continue;
                    }
                    let u = Params {
                        dst_off: start,
                        len,
                        src_len: s,
                        ..Params::default()
                    }
                    .uniform();
                    cx.dispatch_dyn(&k, &[&u, shard, &o], k.groups_for(len));
                }
            });
        }
        drop(b.spawn());
        arrays.push(match axis {
            GatherAxis::Concat => out,
            GatherAxis::NewAxis => out.reshape(&[r_count, s])?,
        });
    }
    Ok(Replicated {
        rep: rep.clone(),
        arrays,
    })
}

/// PopXL's `replicated_reduce_scatter`: the replicas' tensors are combined with `op`
/// element-wise and replica r keeps shard r of the result (zero-padded).
///
/// ```
/// use hetflow::remote::{reduce_scatter, CollectiveOp, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 2).unwrap();
/// let a = rt.array_from(vec![1u32, 2, 3]);
/// let b = rt.array_from(vec![10u32, 20, 30]);
/// let s = reduce_scatter(&rep.per_replica(vec![a, b]).unwrap(), CollectiveOp::Add).unwrap();
/// assert_eq!(s.shard(1).to_vec().unwrap(), vec![33, 0]);
/// assert_eq!(s.to_vec().unwrap(), vec![11, 22, 33]);
/// ```
pub fn reduce_scatter<T: Element>(
    x: &Replicated<T>,
    op: CollectiveOp,
) -> Result<Sharded<T>, RemoteError> {
    let rep = &x.rep;
    let (r_count, n) = (rep.factor(), x.len());
    check_u32("reduce_scatter", n)?;
    let s = rep.shard_len(n);
    let k = kernel::<T>(rep, "combine")?;
    let scale = match op {
        CollectiveOp::Mean => kernel::<T>(rep, "scale_down")?,
        _ => None,
    };
    let mut shards = Vec::with_capacity(r_count);
    for r in 0..r_count {
        let out = zeros::<T>(rep, s);
        let lo = r * s;
        let mut b = rep
            .runtime()
            .task(format!("reduce_scatter[{r}]"))
            .on(rep.placement(r))
            .writes(&out);
        for a in &x.arrays {
            b = b.reads(a);
        }
        let (inputs, o) = (x.arrays.clone(), out.clone());
        b = b.cpu(move |cx| {
            let dst = cx.write(&o);
            // This replica's part of the data: empty for a shard that is all padding.
            let part = lo.min(n)..(lo + s).min(n);
            let (head, pad) = dst.split_at_mut(part.len());
            pad.fill(T::zeroed());
            head.copy_from_slice(&cx.read(&inputs[0])[part.clone()]);
            for a in &inputs[1..] {
                fold_into(head, &cx.read(a)[part.clone()], op);
            }
            if op == CollectiveOp::Mean {
                head.iter_mut().for_each(|d| *d = d.div_count(r_count));
            }
        });
        if let Some(k) = k.clone() {
            let (inputs, o, scale) = (x.arrays.clone(), out.clone(), scale.clone());
            b = b.gpu(move |cx| {
                for (j, a) in inputs.iter().enumerate() {
                    let u = Params {
                        src_off: lo,
                        len: s,
                        src_len: n,
                        op: op.code(),
                        first: j == 0,
                        ..Params::default()
                    }
                    .uniform();
                    cx.dispatch_dyn(&k, &[&u, a, &o], k.groups_for(s));
                }
                if let Some(sk) = &scale {
                    let u = Params {
                        len: s,
                        count: r_count,
                        ..Params::default()
                    }
                    .uniform();
                    cx.dispatch_dyn(sk, &[&u, &o], sk.groups_for(s));
                }
            });
        }
        drop(b.spawn());
        shards.push(out);
    }
    Ok(Sharded {
        rep: rep.clone(),
        shards,
        len: n,
    })
}

/// All-reduce: every replica gets the element-wise combination of all replicas' tensors,
/// computed as a reduce-scatter followed by an all-gather (each replica reduces only its
/// shard, the bandwidth-optimal split).
///
/// ```
/// use hetflow::remote::{all_reduce, CollectiveOp, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 3).unwrap();
/// let x = rep.per_replica((0..3).map(|r| rt.array_from(vec![r as f32; 5])).collect()).unwrap();
/// let y = all_reduce(&x, CollectiveOp::Max).unwrap();
/// assert_eq!(y.to_vec(0).unwrap(), vec![2.0; 5]);
/// ```
pub fn all_reduce<T: Element>(
    x: &Replicated<T>,
    op: CollectiveOp,
) -> Result<Replicated<T>, RemoteError> {
    all_gather(&reduce_scatter(x, op)?, GatherAxis::Concat)
}

/// PopXL's `replica_sharded_slice`: replica r keeps shard r of its own copy of a replicated
/// tensor (zero-padded), without communication.
///
/// ```
/// use hetflow::remote::{sharded_slice, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 2).unwrap();
/// let s = sharded_slice(&rep.replicated(vec![3i32, 4, 5])).unwrap();
/// assert_eq!(s.shard(1).to_vec().unwrap(), vec![5, 0]);
/// ```
pub fn sharded_slice<T: Element>(x: &Replicated<T>) -> Result<Sharded<T>, RemoteError> {
    let rep = &x.rep;
    let n = x.len();
    check_u32("sharded_slice", n)?;
    let s = rep.shard_len(n);
    let k = kernel::<T>(rep, "place")?;
    let mut shards = Vec::with_capacity(rep.factor());
    for (r, a) in x.arrays.iter().enumerate() {
        let out = zeros::<T>(rep, s);
        let lo = r * s;
        let (src, o) = (a.clone(), out.clone());
        let mut b = rep
            .runtime()
            .task(format!("sharded_slice[{r}]"))
            .on(rep.placement(r))
            .reads(a)
            .writes(&out)
            .cpu(move |cx| {
                let (src, dst) = (cx.read(&src), cx.write(&o));
                let part = lo.min(n)..(lo + s).min(n);
                let valid = part.len();
                dst[..valid].copy_from_slice(&src[part]);
                dst[valid..].fill(T::zeroed());
            });
        if let Some(k) = k.clone() {
            let (src, o) = (a.clone(), out.clone());
            b = b.gpu(move |cx| {
                let u = Params {
                    src_off: lo,
                    len: s,
                    src_len: n,
                    ..Params::default()
                }
                .uniform();
                cx.dispatch_dyn(&k, &[&u, &src, &o], k.groups_for(s));
            });
        }
        drop(b.spawn());
        shards.push(out);
    }
    Ok(Sharded {
        rep: rep.clone(),
        shards,
        len: n,
    })
}

/// `dst[r] += src[r]` for every replica r, each on its replica's device.
pub(crate) fn accumulate_replicas<T: Element>(
    rep: &Replication,
    dst: &[Array<T>],
    src: &[Array<T>],
) -> Result<(), RemoteError> {
    rep.check_count("accumulate: destination", dst.len())?;
    rep.check_count("accumulate: source", src.len())?;
    for (d, s) in dst.iter().zip(src) {
        if std::sync::Arc::ptr_eq(&d.raw, &s.raw) {
            return Err(RemoteError::Aliased {
                what: format!("accumulate `{}` into itself", d.label()),
            });
        }
        if d.len() != s.len() {
            return Err(RemoteError::LengthMismatch {
                what: format!("accumulate `{}` into `{}`", s.label(), d.label()),
                expected: d.len(),
                got: s.len(),
            });
        }
        check_u32("accumulate", d.len())?;
    }
    let k = kernel::<T>(rep, "accumulate")?;
    for (r, (d, s)) in dst.iter().zip(src).enumerate() {
        let n = d.len();
        let (dc, sc) = (d.clone(), s.clone());
        let mut b = rep
            .runtime()
            .task(format!("accumulate[{r}]"))
            .on(rep.placement(r))
            .read_write(d)
            .reads(s)
            .cpu(move |cx| {
                let (src, dst) = (cx.read(&sc), cx.write(&dc));
                fold_into(dst, src, CollectiveOp::Add);
            });
        if let Some(k) = k.clone() {
            let (dc, sc) = (d.clone(), s.clone());
            b = b.gpu(move |cx| {
                let u = Params {
                    len: n,
                    ..Params::default()
                }
                .uniform();
                cx.dispatch_dyn(&k, &[&u, &sc, &dc], k.groups_for(n));
            });
        }
        drop(b.spawn());
    }
    Ok(())
}

/// PopXL's `ops.var_updates.accumulate_` on one device: `dst += src`, as a task on `device`
/// ordered with every other access to both arrays.
///
/// ```
/// use hetflow::{remote::accumulate, DeviceId};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let x = rt.array_from(vec![1.0f32, 2.0]);
/// accumulate(&rt, &x, &rt.array_from(vec![3.0f32, 4.0]), DeviceId::Cpu).unwrap();
/// assert_eq!(x.to_vec().unwrap(), vec![4.0, 6.0]);
/// ```
pub fn accumulate<T: Element>(
    rt: &crate::RuntimeHandle,
    dst: &Array<T>,
    src: &Array<T>,
    device: DeviceId,
) -> Result<(), RemoteError> {
    let rep = Replication::on(rt, vec![device])?;
    accumulate_replicas(&rep, std::slice::from_ref(dst), std::slice::from_ref(src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_into_applies_each_op() {
        let src = [5i32, -1, 3];
        for (op, want) in [
            (CollectiveOp::Add, [7, 1, 6]),
            (CollectiveOp::Mean, [7, 1, 6]),
            (CollectiveOp::Mul, [10, -2, 9]),
            (CollectiveOp::Min, [2, -1, 3]),
            (CollectiveOp::Max, [5, 2, 3]),
        ] {
            let mut dst = [2i32, 2, 3];
            fold_into(&mut dst, &src, op);
            assert_eq!(dst, want, "{op:?}");
            assert_eq!(op.combine(2, 5), want[0], "{op:?}");
        }
    }

    #[test]
    fn op_codes_match_the_shader() {
        let shader = COLLECTIVE;
        assert!(shader.contains("case 2u: { return a * b; }"));
        assert!(shader.contains("case 3u: { return min(a, b); }"));
        assert!(shader.contains("case 4u: { return max(a, b); }"));
        assert_eq!(CollectiveOp::Mul.code(), 2);
        assert_eq!(CollectiveOp::Min.code(), 3);
        assert_eq!(CollectiveOp::Max.code(), 4);
        // Add and Mean fall to the default arm (add); Mean then runs scale_down.
        assert_eq!(
            (CollectiveOp::Add.code(), CollectiveOp::Mean.code()),
            (0, 1)
        );
    }
}
