//! Element types of remote tensors and PopXL-style host tensors (shape + dtype + data).

use std::fmt;

use crate::data::Reducible;

use super::error::RemoteError;

/// The element type of a remote tensor, checked at run time where a value arrives untyped
/// (a [`HostTensor`]); typed calls (`RemoteBuffer<T>::store(&Array<T>)`) check it at compile
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementType::F32 => "float32",
            ElementType::I32 => "int32",
            ElementType::U32 => "uint32",
        })
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for i32 {}
    impl Sealed for u32 {}
}

/// A type that remote buffers and collectives hold: the 32-bit numbers WGSL has.
pub trait Element: Reducible + PartialOrd + fmt::Debug + Send + Sync + sealed::Sealed {
    /// The run-time tag.
    const DTYPE: ElementType;
    /// The WGSL scalar type (`f32`, `i32`, `u32`).
    const WGSL: &'static str;
    /// `self / count`, the last step of a mean (integer division for integer types).
    fn div_count(self, count: usize) -> Self;
}

impl Element for f32 {
    const DTYPE: ElementType = ElementType::F32;
    const WGSL: &'static str = "f32";
    fn div_count(self, count: usize) -> Self {
        self / count as f32
    }
}

impl Element for i32 {
    const DTYPE: ElementType = ElementType::I32;
    const WGSL: &'static str = "i32";
    fn div_count(self, count: usize) -> Self {
        self / count as i32
    }
}

impl Element for u32 {
    const DTYPE: ElementType = ElementType::U32;
    const WGSL: &'static str = "u32";
    fn div_count(self, count: usize) -> Self {
        self / count as u32
    }
}

/// Host data with a shape and an element type, like the numpy arrays PopXL takes as a
/// variable's initial value. A scalar has shape `[]`.
///
/// ```
/// use hetflow::remote::{ElementType, HostTensor};
/// let x = HostTensor::from(1.0f32);
/// assert_eq!((x.shape(), x.dtype()), (&[][..], ElementType::F32));
/// let m = HostTensor::new(&[2, 2], vec![1u32, 2, 3, 4]).unwrap();
/// assert_eq!(m.numel(), 4);
/// assert!(HostTensor::new(&[3], vec![1u32, 2]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    dtype: ElementType,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    /// A tensor of `shape` holding `data` (row-major); the element count must match.
    pub fn new<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Self, RemoteError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(RemoteError::LengthMismatch {
                what: format!("host tensor of shape {shape:?}"),
                expected: shape.iter().product(),
                got: data.len(),
            });
        }
        Ok(HostTensor {
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            bytes: bytemuck::cast_slice(&data).to_vec(),
        })
    }

    /// The element type.
    pub fn dtype(&self) -> ElementType {
        self.dtype
    }

    /// The shape (`[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The data as `T`, or [`RemoteError::DTypeMismatch`] naming `buffer`.
    pub(crate) fn values<T: Element>(&self, buffer: &str) -> Result<Vec<T>, RemoteError> {
        if self.dtype != T::DTYPE {
            return Err(RemoteError::DTypeMismatch {
                buffer: buffer.to_string(),
                expected: T::DTYPE,
                got: self.dtype,
            });
        }
        let mut v = vec![<T as bytemuck::Zeroable>::zeroed(); self.numel()];
        bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&self.bytes);
        Ok(v)
    }
}

impl<T: Element> From<Vec<T>> for HostTensor {
    fn from(data: Vec<T>) -> Self {
        HostTensor {
            dtype: T::DTYPE,
            shape: vec![data.len()],
            bytes: bytemuck::cast_slice(&data).to_vec(),
        }
    }
}

impl<T: Element, const N: usize> From<[T; N]> for HostTensor {
    fn from(data: [T; N]) -> Self {
        HostTensor::from(data.to_vec())
    }
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for HostTensor {
            fn from(v: $t) -> Self {
                HostTensor { dtype: <$t as Element>::DTYPE, shape: Vec::new(), bytes: v.to_ne_bytes().to_vec() }
            }
        }
    )*};
}
scalar!(f32, i32, u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tensors_carry_shape_and_dtype() {
        let s = HostTensor::from(7u32);
        assert_eq!(
            (s.shape(), s.numel(), s.dtype()),
            (&[][..], 1, ElementType::U32)
        );
        assert_eq!(s.values::<u32>("b").unwrap(), vec![7]);
        let v = HostTensor::from([1.5f32, -2.0]);
        assert_eq!(v.shape(), &[2]);
        assert_eq!(v.values::<f32>("b").unwrap(), vec![1.5, -2.0]);
        match v.values::<i32>("buf") {
            Err(RemoteError::DTypeMismatch {
                buffer,
                expected: ElementType::I32,
                got: ElementType::F32,
            }) => assert_eq!(buffer, "buf"),
            other => panic!("expected DTypeMismatch, got {other:?}"),
        }
        assert!(matches!(
            HostTensor::new(&[2, 2], vec![1i32; 3]),
            Err(RemoteError::LengthMismatch {
                expected: 4,
                got: 3,
                ..
            })
        ));
    }

    #[test]
    fn mean_divides_like_the_kernels() {
        assert_eq!(7i32.div_count(2), 3);
        assert_eq!((-7i32).div_count(2), -3); // truncation, as WGSL's i32 division
        assert_eq!(7u32.div_count(2), 3);
        assert_eq!(7.0f32.div_count(2), 3.5);
    }
}
