//! Remote variables and replicated-tensor-sharding (RTS) variables: named values that live in
//! a remote buffer's entry and can be read from the host at any time.

use crate::task::TaskHandle;

use super::buffer::RemoteBuffer;
use super::element::{Element, HostTensor};
use super::error::RemoteError;
use super::replication::{Replication, Sharded};

/// A variable held in entry `offset` of a remote buffer (PopXL's `remote_variable`).
///
/// Load it with `buffer.load(offset)`, store new values with `buffer.store(offset, ..)`;
/// [`RemoteVariable::get`] reads its current value on the host, after every store spawned
/// before it (PopXL's `session.get_tensor_data`).
#[derive(Debug, Clone)]
pub struct RemoteVariable<T: Element> {
    buffer: RemoteBuffer<T>,
    offset: usize,
}

impl<T: Element> RemoteVariable<T> {
    /// The buffer holding the variable.
    pub fn buffer(&self) -> &RemoteBuffer<T> {
        &self.buffer
    }

    /// Its entry.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The current value on the host (like PopXL's `session.get_tensor_data`).
    pub fn get(&self) -> Result<Vec<T>, RemoteError> {
        self.buffer.read(self.offset)
    }
}

/// Writes `values` into `array` on the host.
fn init<T: Element>(
    buffer: &RemoteBuffer<T>,
    array: &crate::Array<T>,
    values: Vec<T>,
) -> TaskHandle<()> {
    let a = array.clone();
    buffer
        .runtime()
        .task(format!("init({})", array.label()))
        .writes(array)
        .on(crate::Placement::Cpu)
        .cpu(move |cx| cx.write(&a).copy_from_slice(&values))
        .spawn()
}

/// PopXL's `remote_variable(data, remote_buffer, offset)`: a variable with value `data`
/// placed at entry `offset` of `buffer`. `data`'s shape and element type must be the
/// buffer's.
///
/// ```
/// use hetflow::remote::{remote_buffer, remote_variable};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let buffer = remote_buffer::<f32>(&rt, &[], 1).unwrap();
/// let x = remote_variable(1.0f32, &buffer, 0).unwrap();
/// assert_eq!(x.get().unwrap(), vec![1.0]);
/// assert!(remote_variable(1i32, &buffer, 0).is_err()); // int32 into a float32 buffer
/// ```
pub fn remote_variable<T: Element>(
    data: impl Into<HostTensor>,
    buffer: &RemoteBuffer<T>,
    offset: usize,
) -> Result<RemoteVariable<T>, RemoteError> {
    let data = data.into();
    if buffer.replicas() != 1 {
        return Err(RemoteError::ReplicaMismatch {
            what: format!(
                "remote_variable in replicated buffer `{}` (use remote_replica_sharded_variable)",
                buffer.name()
            ),
            expected: 1,
            got: buffer.replicas(),
        });
    }
    buffer.check_offset(offset)?;
    let values = data.values::<T>(buffer.name())?;
    if data.shape() != buffer.shape() {
        return Err(RemoteError::ShapeMismatch {
            buffer: buffer.name().to_string(),
            expected: buffer.shape().to_vec(),
            got: data.shape().to_vec(),
        });
    }
    drop(init(buffer, buffer.slot(offset, 0), values));
    Ok(RemoteVariable {
        buffer: buffer.clone(),
        offset,
    })
}

/// A replicated-tensor-sharding variable: `len` elements split over the buffer's replicas,
/// replica r's shard (`ceil(len / R)` elements, zero-padded) in its own slot of entry
/// `offset`.
#[derive(Debug, Clone)]
pub struct RtsVariable<T: Element> {
    buffer: RemoteBuffer<T>,
    offset: usize,
    len: usize,
}

impl<T: Element> RtsVariable<T> {
    /// The buffer holding the shards.
    pub fn buffer(&self) -> &RemoteBuffer<T> {
        &self.buffer
    }

    /// Its entry.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Logical length (padding excluded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the variable has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Loads every replica's shard onto its device (`remote_load` under replication).
    pub fn load(&self) -> Result<Sharded<T>, RemoteError> {
        self.buffer.load_sharded(self.offset)?.with_len(self.len)
    }

    /// The whole value on the host: the shards concatenated, padding dropped.
    pub fn get(&self) -> Result<Vec<T>, RemoteError> {
        let mut v = self.buffer.read(self.offset)?;
        v.truncate(self.len);
        Ok(v)
    }
}

/// PopXL's `remote_replica_sharded_variable(data, remote_buffer, offset)`: an RTS variable
/// of value `data` whose shards live in entry `offset` of the replicated `buffer`, whose
/// slot shape must hold `ceil(n / R)` elements.
///
/// ```
/// use hetflow::remote::{remote_replica_sharded_variable, RemoteBuffer, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 2).unwrap();
/// let buffer = RemoteBuffer::<f32>::replicated(&rep, &[2], 1).unwrap();
/// let x = remote_replica_sharded_variable(vec![1.0f32, 2.0, 3.0], &buffer, 0).unwrap();
/// assert_eq!(x.load().unwrap().shard(1).to_vec().unwrap(), vec![3.0, 0.0]);
/// assert_eq!(x.get().unwrap(), vec![1.0, 2.0, 3.0]);
/// ```
pub fn remote_replica_sharded_variable<T: Element>(
    data: impl Into<HostTensor>,
    buffer: &RemoteBuffer<T>,
    offset: usize,
) -> Result<RtsVariable<T>, RemoteError> {
    let data = data.into();
    let Some(rep) = buffer.replication() else {
        return Err(RemoteError::ReplicaMismatch {
            what: format!(
                "remote_replica_sharded_variable in buffer `{}` made without replication",
                buffer.name()
            ),
            expected: 2,
            got: 1,
        });
    };
    buffer.check_offset(offset)?;
    let mut values = data.values::<T>(buffer.name())?;
    let (n, s) = (values.len(), rep.shard_len(values.len()));
    if buffer.numel() != s {
        return Err(RemoteError::ShapeMismatch {
            buffer: buffer.name().to_string(),
            expected: buffer.shape().to_vec(),
            got: vec![s],
        });
    }
    values.resize(rep.factor() * s, T::zeroed());
    drop(init(buffer, buffer.row(offset), values));
    Ok(RtsVariable {
        buffer: buffer.clone(),
        offset,
        len: n,
    })
}

/// PopXL's `replica_sharded_variable(data)`: an RTS variable in a hidden one-entry buffer,
/// and its shards. The shards *are* the buffer's slots (coherent arrays), so updating them
/// on the replicas' devices updates the variable: no explicit load or store.
///
/// ```
/// use hetflow::remote::{replica_sharded_variable, sharded_slice, Replication};
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 2).unwrap();
/// let (x, shards) = replica_sharded_variable(vec![1u32, 2, 3], &rep).unwrap();
/// let ones = sharded_slice(&rep.replicated(vec![1u32; 3])).unwrap();
/// shards.accumulate(&ones).unwrap();
/// assert_eq!(x.get().unwrap(), vec![2, 3, 4]);
/// ```
pub fn replica_sharded_variable<T: Element>(
    data: impl Into<HostTensor>,
    rep: &Replication,
) -> Result<(RtsVariable<T>, Sharded<T>), RemoteError> {
    let data = data.into();
    let s = rep.shard_len(data.numel());
    let buffer = RemoteBuffer::<T>::replicated(rep, &[s], 1)?;
    let var = remote_replica_sharded_variable(data, &buffer, 0)?;
    let shards = (0..rep.factor())
        .map(|r| buffer.slot(0, r).clone())
        .collect();
    let shards = rep.sharded(shards, var.len())?;
    Ok((var, shards))
}
