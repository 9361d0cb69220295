//! Replication: R replicas, each on a device, and the two ways a tensor lives on them —
//! whole on every replica ([`Replicated`]) or split into equal shards ([`Sharded`]).

use std::sync::Arc;

use crate::data::Array;
use crate::device::DeviceId;
use crate::runtime::RuntimeHandle;
use crate::sched::Placement;

use super::element::Element;
use super::error::RemoteError;

/// A replication factor R and the device of each replica (PopXL's `replication_factor`).
///
/// With fewer devices than replicas, replicas share devices; results do not depend on where
/// replicas run.
///
/// ```
/// use hetflow::{remote::Replication, DeviceId, Runtime};
/// let rt = Runtime::builder().no_gpu().build().unwrap();
/// let rep = Replication::new(&rt, 4).unwrap();
/// assert_eq!(rep.factor(), 4);
/// assert!(rep.devices().iter().all(|&d| d == DeviceId::Cpu));
/// assert_eq!(rep.shard_len(10), 3);
/// assert!(Replication::new(&rt, 0).is_err());
/// ```
#[derive(Clone)]
pub struct Replication {
    rt: RuntimeHandle,
    devices: Arc<[DeviceId]>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("devices", &self.devices)
            .finish()
    }
}

impl Replication {
    /// `factor` replicas spread round-robin over the runtime's GPUs, or all on the CPU when
    /// it has none.
    pub fn new(rt: &RuntimeHandle, factor: usize) -> Result<Self, RemoteError> {
        let gpus = rt.gpu_count();
        let devices = (0..factor)
            .map(|r| {
                if gpus == 0 {
                    DeviceId::Cpu
                } else {
                    DeviceId::Gpu(r % gpus)
                }
            })
            .collect();
        Self::on(rt, devices)
    }

    /// One replica per entry of `devices`, on that device.
    pub fn on(rt: &RuntimeHandle, devices: Vec<DeviceId>) -> Result<Self, RemoteError> {
        if devices.is_empty() {
            return Err(RemoteError::ZeroReplicas);
        }
        for (replica, d) in devices.iter().enumerate() {
            if let DeviceId::Gpu(gpu) = *d {
                if gpu >= rt.gpu_count() {
                    return Err(RemoteError::NoSuchGpu {
                        replica,
                        gpu,
                        available: rt.gpu_count(),
                    });
                }
            }
        }
        Ok(Replication {
            rt: rt.clone(),
            devices: devices.into(),
        })
    }

    /// The replication factor R.
    pub fn factor(&self) -> usize {
        self.devices.len()
    }

    /// The device of each replica.
    pub fn devices(&self) -> &[DeviceId] {
        &self.devices
    }

    /// The device of replica `r`.
    pub fn device(&self, r: usize) -> DeviceId {
        self.devices[r]
    }

    /// The placement of a task that runs on replica `r`.
    pub fn placement(&self, r: usize) -> Placement {
        self.devices[r].into()
    }

    /// The runtime.
    pub fn runtime(&self) -> &RuntimeHandle {
        &self.rt
    }

    /// Elements per shard of an `n`-element tensor: `ceil(n / R)`.
    pub fn shard_len(&self, n: usize) -> usize {
        n.div_ceil(self.factor())
    }

    /// Whether two replications put the same replicas on the same devices.
    pub fn same_as(&self, other: &Replication) -> bool {
        self.devices == other.devices
    }

    /// A variable with the same value on every replica (PopXL's `variable` under
    /// replication). Each replica gets its own array, moved to its device on first use.
    pub fn replicated<T: Element>(&self, data: Vec<T>) -> Replicated<T> {
        let arrays = (0..self.factor())
            .map(|r| self.rt.array_named(format!("replica{r}"), data.clone()))
            .collect();
        Replicated {
            rep: self.clone(),
            arrays,
        }
    }

    /// A replicated tensor from one array per replica (each may hold a different value, e.g.
    /// a replica's local gradient). All must have the same length.
    pub fn per_replica<T: Element>(
        &self,
        arrays: Vec<Array<T>>,
    ) -> Result<Replicated<T>, RemoteError> {
        self.check_count("per_replica", arrays.len())?;
        if let Some(bad) = arrays.iter().find(|a| a.len() != arrays[0].len()) {
            return Err(RemoteError::LengthMismatch {
                what: format!("per_replica: array `{}`", bad.label()),
                expected: arrays[0].len(),
                got: bad.len(),
            });
        }
        Ok(Replicated {
            rep: self.clone(),
            arrays,
        })
    }

    /// A sharded tensor of logical length `len` from one shard per replica, each
    /// `ceil(len / R)` elements.
    pub fn sharded<T: Element>(
        &self,
        shards: Vec<Array<T>>,
        len: usize,
    ) -> Result<Sharded<T>, RemoteError> {
        self.check_count("sharded", shards.len())?;
        let s = self.shard_len(len);
        if let Some(bad) = shards.iter().find(|a| a.len() != s) {
            return Err(RemoteError::LengthMismatch {
                what: format!("sharded tensor of {len} elements: shard `{}`", bad.label()),
                expected: s,
                got: bad.len(),
            });
        }
        Ok(Sharded {
            rep: self.clone(),
            shards,
            len,
        })
    }

    pub(crate) fn check_count(&self, what: &str, got: usize) -> Result<(), RemoteError> {
        if got != self.factor() {
            return Err(RemoteError::ReplicaMismatch {
                what: what.to_string(),
                expected: self.factor(),
                got,
            });
        }
        Ok(())
    }

    pub(crate) fn check_same(&self, what: &str, other: &Replication) -> Result<(), RemoteError> {
        if !self.same_as(other) {
            return Err(RemoteError::ReplicaMismatch {
                what: format!("{what} (operands on different replications)"),
                expected: self.factor(),
                got: other.factor(),
            });
        }
        Ok(())
    }
}

/// A tensor held whole on every replica: one array per replica.
#[derive(Clone)]
pub struct Replicated<T: Element> {
    pub(crate) rep: Replication,
    pub(crate) arrays: Vec<Array<T>>,
}

impl<T: Element> std::fmt::Debug for Replicated<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated")
            .field("replicas", &self.arrays)
            .finish()
    }
}

impl<T: Element> Replicated<T> {
    /// The replication.
    pub fn replication(&self) -> &Replication {
        &self.rep
    }

    /// Elements per replica.
    pub fn len(&self) -> usize {
        self.arrays[0].len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replica `r`'s array.
    pub fn replica(&self, r: usize) -> &Array<T> {
        &self.arrays[r]
    }

    /// Every replica's array, in replica order.
    pub fn arrays(&self) -> &[Array<T>] {
        &self.arrays
    }

    /// Replica `r`'s value on the host (after every task spawned earlier that writes it).
    pub fn to_vec(&self, r: usize) -> Result<Vec<T>, RemoteError> {
        Ok(self.arrays[r].to_vec()?)
    }

    /// `self += other` on every replica, on the replica's device (PopXL's `accumulate_`).
    pub fn accumulate(&self, other: &Replicated<T>) -> Result<(), RemoteError> {
        self.rep.check_same("accumulate", &other.rep)?;
        super::collective::accumulate_replicas(&self.rep, &self.arrays, &other.arrays)
    }
}

/// A tensor of logical length `len` split over R replicas: replica r holds elements
/// `r*s .. (r+1)*s` with `s = ceil(len / R)`, zero-padded past `len`.
#[derive(Clone)]
pub struct Sharded<T: Element> {
    pub(crate) rep: Replication,
    pub(crate) shards: Vec<Array<T>>,
    pub(crate) len: usize,
}

impl<T: Element> std::fmt::Debug for Sharded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded")
            .field("len", &self.len)
            .field("shards", &self.shards)
            .finish()
    }
}

impl<T: Element> Sharded<T> {
    /// The replication.
    pub fn replication(&self) -> &Replication {
        &self.rep
    }

    /// Logical length of the whole tensor (padding excluded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the whole tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements per shard, `ceil(len / R)`.
    pub fn shard_len(&self) -> usize {
        self.rep.shard_len(self.len)
    }

    /// Replica `r`'s shard.
    pub fn shard(&self, r: usize) -> &Array<T> {
        &self.shards[r]
    }

    /// Every shard, in replica order.
    pub fn shards(&self) -> &[Array<T>] {
        &self.shards
    }

    /// The same shards with another logical length (e.g. after a remote load, whose buffer
    /// knows only the shard shape). `len` must need exactly these shards.
    pub fn with_len(mut self, len: usize) -> Result<Self, RemoteError> {
        if self.rep.shard_len(len) != self.shard_len() {
            return Err(RemoteError::LengthMismatch {
                what: format!(
                    "sharded tensor of {len} elements over {} replicas: shard length",
                    self.rep.factor()
                ),
                expected: self.rep.shard_len(len),
                got: self.shard_len(),
            });
        }
        self.len = len;
        Ok(self)
    }

    /// The whole tensor on the host: the shards concatenated, padding dropped.
    pub fn to_vec(&self) -> Result<Vec<T>, RemoteError> {
        let mut out = Vec::with_capacity(self.shards.len() * self.shard_len());
        for s in &self.shards {
            out.extend(s.to_vec()?);
        }
        out.truncate(self.len);
        Ok(out)
    }

    /// `self += other` shard by shard, each on its replica's device.
    pub fn accumulate(&self, other: &Sharded<T>) -> Result<(), RemoteError> {
        self.rep.check_same("accumulate", &other.rep)?;
        if other.len != self.len {
            return Err(RemoteError::LengthMismatch {
                what: "accumulate: sharded operand".into(),
                expected: self.len,
                got: other.len,
            });
        }
        super::collective::accumulate_replicas(&self.rep, &self.shards, &other.shards)
    }
}
