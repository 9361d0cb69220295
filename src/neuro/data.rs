//! Element data of Vars and messages: float64 or int32 vectors, like Lava's numpy arrays.

use super::NeuroError;

/// The element type of a Var or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    /// 64-bit float (Lava's floating-point models).
    F64,
    /// 32-bit signed integer (Lava's bit-accurate models).
    I32,
}

impl VarType {
    /// The type's name.
    pub fn name(self) -> &'static str {
        match self {
            VarType::F64 => "float64",
            VarType::I32 => "int32",
        }
    }
}

/// A flat vector of elements (row-major when the owner has a multi-dimensional shape).
///
/// ```
/// use hetflow::neuro::Data;
/// let d = Data::I32(vec![5]);
/// assert_eq!(d.to_string(), "[5]");
/// assert_eq!(d.to_f64(), vec![5.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// float64 elements.
    F64(Vec<f64>),
    /// int32 elements.
    I32(Vec<i32>),
}

impl Data {
    /// `n` zeros of type `dtype`.
    pub fn zeros(dtype: VarType, n: usize) -> Data {
        match dtype {
            VarType::F64 => Data::F64(vec![0.0; n]),
            VarType::I32 => Data::I32(vec![0; n]),
        }
    }

    /// `n` zeros of `dtype`, or an error naming `what` when `n` values cannot be allocated
    /// (instead of aborting the process).
    pub fn try_zeros(dtype: VarType, n: usize, what: &str) -> Result<Data, NeuroError> {
        Ok(match dtype {
            VarType::F64 => Data::F64(try_zeroed(n, what)?),
            VarType::I32 => Data::I32(try_zeroed(n, what)?),
        })
    }

    /// The element type.
    pub fn dtype(&self) -> VarType {
        match self {
            Data::F64(_) => VarType::F64,
            Data::I32(_) => VarType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F64(v) => v.len(),
            Data::I32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as f64 (exact for int32).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Data::F64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The elements as i32 (floats truncate toward zero, as numpy's `astype(int32)`).
    pub fn to_i32(&self) -> Vec<i32> {
        match self {
            Data::F64(v) => v.iter().map(|&x| x as i32).collect(),
            Data::I32(v) => v.clone(),
        }
    }

    /// The same values converted to `dtype`.
    pub fn cast(&self, dtype: VarType) -> Data {
        match dtype {
            VarType::F64 => Data::F64(self.to_f64()),
            VarType::I32 => Data::I32(self.to_i32()),
        }
    }

    /// The f64 slice, or a typed error naming `what`.
    pub fn as_f64(&self, what: &str) -> Result<&[f64], NeuroError> {
        match self {
            Data::F64(v) => Ok(v),
            other => Err(wrong(what, "float64", other)),
        }
    }

    /// The mutable f64 slice, or a typed error naming `what`.
    pub fn as_f64_mut(&mut self, what: &str) -> Result<&mut [f64], NeuroError> {
        match self {
            Data::F64(v) => Ok(v),
            other => Err(wrong(what, "float64", other)),
        }
    }

    /// The i32 slice, or a typed error naming `what`.
    pub fn as_i32(&self, what: &str) -> Result<&[i32], NeuroError> {
        match self {
            Data::I32(v) => Ok(v),
            other => Err(wrong(what, "int32", other)),
        }
    }

    /// The mutable i32 slice, or a typed error naming `what`.
    pub fn as_i32_mut(&mut self, what: &str) -> Result<&mut [i32], NeuroError> {
        match self {
            Data::I32(v) => Ok(v),
            other => Err(wrong(what, "int32", other)),
        }
    }

    /// Copies `src` into `self`, converting the element type; lengths must match.
    pub fn assign(&mut self, src: &Data, what: &str) -> Result<(), NeuroError> {
        if src.len() != self.len() {
            return Err(NeuroError::Invalid {
                what: what.to_string(),
                reason: format!("{} elements given, {} expected", src.len(), self.len()),
            });
        }
        match (self, src) {
            (Data::F64(d), Data::F64(s)) => d.copy_from_slice(s),
            (Data::I32(d), Data::I32(s)) => d.copy_from_slice(s),
            (Data::F64(d), Data::I32(s)) => d.iter_mut().zip(s).for_each(|(d, &s)| *d = s as f64),
            (Data::I32(d), Data::F64(s)) => d.iter_mut().zip(s).for_each(|(d, &s)| *d = s as i32),
        }
        Ok(())
    }
}

fn wrong(what: &str, expected: &'static str, actual: &Data) -> NeuroError {
    NeuroError::WrongType {
        var: what.to_string(),
        expected,
        actual: actual.dtype().name(),
    }
}

impl std::fmt::Display for Data {
    /// numpy-like: `[5]`, `[1. 2.5]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        match self {
            Data::F64(v) => {
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    if x.fract() == 0.0 && x.is_finite() {
                        write!(f, "{x}.")?;
                    } else {
                        write!(f, "{x}")?;
                    }
                }
            }
            Data::I32(v) => {
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "{x}")?;
                }
            }
        }
        write!(f, "]")
    }
}

impl From<Vec<f64>> for Data {
    fn from(v: Vec<f64>) -> Data {
        Data::F64(v)
    }
}

impl From<Vec<i32>> for Data {
    fn from(v: Vec<i32>) -> Data {
        Data::I32(v)
    }
}

/// `n` zeros, or [`NeuroError::Allocation`] naming `what` when they cannot be allocated.
pub(crate) fn try_zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>, NeuroError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|source| NeuroError::Allocation {
            what: what.to_string(),
            values: n,
            source,
        })?;
    v.resize(n, T::default());
    Ok(v)
}
