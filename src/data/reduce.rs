//! Reductions: tasks that combine into an array with a commutative operation, each into a
//! private partial, folded into the array before its next non-reducing access.
//!
//! Reducers with the same operation run concurrently (they depend only on what came before
//! the group); the partials are combined, in any order, by the first later access that reads
//! or writes the array, or reduces it with another operation.

use bytemuck::Pod;

/// A commutative, associative combining operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// `a + b`, identity 0.
    Add,
    /// `a * b`, identity 1.
    Mul,
    /// `min(a, b)`, identity: the type's largest value.
    Min,
    /// `max(a, b)`, identity: the type's smallest value.
    Max,
}

/// Element types that can be reduced: the primitive numbers.
pub trait Reducible: Pod {
    /// The identity of `op` (so a fresh partial changes nothing).
    fn identity(op: ReduceOp) -> Self;
    /// `op(a, b)`.
    fn combine(op: ReduceOp, a: Self, b: Self) -> Self;
}

macro_rules! reducible {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            fn identity(op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Add => 0 as $t,
                    ReduceOp::Mul => 1 as $t,
                    ReduceOp::Min => <$t>::MAX,
                    ReduceOp::Max => <$t>::MIN,
                }
            }
            fn combine(op: ReduceOp, a: Self, b: Self) -> Self {
                match op {
                    ReduceOp::Add => a + b,
                    ReduceOp::Mul => a * b,
                    ReduceOp::Min => if b < a { b } else { a },
                    ReduceOp::Max => if b > a { b } else { a },
                }
            }
        }
    )*};
}
reducible!(f32, f64, i32, u32, i64, u64);

/// A reduction as the untyped data layer sees it: the operation and the element type's
/// identity and combine functions over bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reduction {
    /// The operation.
    pub op: ReduceOp,
    elem: std::any::TypeId,
    pub(crate) fill_identity: fn(&mut [u8], ReduceOp),
    pub(crate) combine_into: fn(&mut [u8], &[u8], ReduceOp),
}

/// Two reductions are equal when operation and element type are (the functions follow).
impl PartialEq for Reduction {
    fn eq(&self, other: &Self) -> bool {
        (self.op, self.elem) == (other.op, other.elem)
    }
}

impl Eq for Reduction {}

impl std::hash::Hash for Reduction {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.op, self.elem).hash(h);
    }
}

fn fill_identity<T: Reducible>(bytes: &mut [u8], op: ReduceOp) {
    bytemuck::cast_slice_mut::<u8, T>(bytes).fill(T::identity(op));
}

fn combine_into<T: Reducible>(acc: &mut [u8], partial: &[u8], op: ReduceOp) {
    // Partials may come from unaligned temporary buffers: read elements unaligned.
    let acc: &mut [T] = bytemuck::cast_slice_mut(acc);
    for (i, a) in acc.iter_mut().enumerate() {
        let size = std::mem::size_of::<T>();
        let p: T = bytemuck::pod_read_unaligned(&partial[i * size..(i + 1) * size]);
        *a = T::combine(op, *a, p);
    }
}

impl Reduction {
    /// The reduction `op` over elements of type `T`.
    pub fn of<T: Reducible>(op: ReduceOp) -> Self {
        Reduction {
            op,
            elem: std::any::TypeId::of::<T>(),
            fill_identity: fill_identity::<T>,
            combine_into: combine_into::<T>,
        }
    }
}

/// A finished reducer's contribution, waiting to be folded into the array.
pub(crate) enum Partial {
    /// Bytes in host memory (the host partials of one reduction are combined as they arrive,
    /// so there is at most one per reduction).
    Host(Vec<u8>),
    /// A buffer on a GPU, counted against that GPU's memory budget while it lives.
    Gpu(GpuPartial),
}

/// A GPU reducer's private partial: a buffer the size of the array, charged to the GPU's
/// residency budget from its creation until it is folded (or spilled to the host) and dropped.
pub(crate) struct GpuPartial {
    pub(crate) gpu: usize,
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) _charge: super::residency::Charge,
}

/// A CPU reducer's private partial: 16-byte aligned, filled with the identity.
pub(crate) struct HostPartial {
    pub(crate) array_id: u64,
    bytes: usize,
    words: std::cell::UnsafeCell<Box<[u128]>>,
}

impl HostPartial {
    pub(crate) fn new(array_id: u64, bytes: usize, r: Reduction) -> Self {
        let mut words = vec![0u128; bytes.div_ceil(16)].into_boxed_slice();
        (r.fill_identity)(
            &mut bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes],
            r.op,
        );
        HostPartial {
            array_id,
            bytes,
            words: std::cell::UnsafeCell::new(words),
        }
    }

    /// # Safety
    /// At most one borrow of the partial may be alive (the body's borrow table ensures it).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self) -> &mut [u8] {
        // SAFETY: the allocation holds at least `bytes` bytes; exclusivity is the caller's.
        unsafe {
            std::slice::from_raw_parts_mut(
                (*self.words.get()).as_mut_ptr().cast::<u8>(),
                self.bytes,
            )
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let words = self.words.into_inner();
        bytemuck::cast_slice::<u128, u8>(&words)[..self.bytes].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_and_combine() {
        for op in [ReduceOp::Add, ReduceOp::Mul, ReduceOp::Min, ReduceOp::Max] {
            let r = Reduction::of::<f32>(op);
            let mut acc = bytemuck::cast_slice::<f32, u8>(&[3.0, -2.0]).to_vec();
            let mut id = vec![0u8; 8];
            (r.fill_identity)(&mut id, op);
            (r.combine_into)(&mut acc, &id, op);
            assert_eq!(
                bytemuck::cast_slice::<u8, f32>(&acc),
                &[3.0, -2.0],
                "{op:?}"
            );
        }
        let r = Reduction::of::<i32>(ReduceOp::Max);
        let mut acc = bytemuck::cast_slice::<i32, u8>(&[1, 9]).to_vec();
        (r.combine_into)(
            &mut acc,
            bytemuck::cast_slice::<i32, u8>(&[5, 5]),
            ReduceOp::Max,
        );
        assert_eq!(bytemuck::cast_slice::<u8, i32>(&acc), &[5, 9]);
    }
}
