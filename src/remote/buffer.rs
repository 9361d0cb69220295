//! Remote buffers: fixed-shape slots in host ("streaming") memory, loaded to and stored from
//! devices by tasks (PopXL's `remote_buffer`, `remote_load`, `remote_store`).

use std::sync::Arc;

use crate::data::Array;
use crate::device::DeviceId;
use crate::runtime::RuntimeHandle;
use crate::sched::Placement;
use crate::task::{TaskHandle, Uniform};

use super::element::{Element, ElementType};
use super::error::RemoteError;
use super::replication::{Replication, Sharded};

const REMOTE_COPY: &str = include_str!("../../shaders/remote_copy.wgsl");

/// Which entry of a remote buffer an operation addresses.
#[derive(Debug, Clone)]
pub enum Offset {
    /// An offset known on the host, checked when the operation is spawned.
    Host(usize),
    /// A one-element `u32` array read where the operation runs (e.g. computed on a GPU).
    /// It is checked by a small host task before the access; a bad value fails the access
    /// with [`RemoteError::OffsetOutOfRange`] as the root cause.
    Device(Array<u32>),
}

impl From<usize> for Offset {
    fn from(o: usize) -> Self {
        Offset::Host(o)
    }
}

impl From<&Array<u32>> for Offset {
    fn from(a: &Array<u32>) -> Self {
        Offset::Device(a.clone())
    }
}

impl From<Array<u32>> for Offset {
    fn from(a: Array<u32>) -> Self {
        Offset::Device(a)
    }
}

struct Inner<T: Element> {
    rt: RuntimeHandle,
    name: String,
    shape: Vec<usize>,
    numel: usize,
    entries: usize,
    /// The replicas of a replicated buffer (each has its own slot per entry).
    rep: Option<Replication>,
    /// All slots, `entries * replicas * numel` elements, entry-major.
    root: Array<T>,
    /// Slot `(offset, replica)` at index `offset * replicas + replica`: a slice of `root`.
    slots: Vec<Array<T>>,
    /// Per entry, the slice covering every replica's slot (the slot itself without
    /// replication).
    rows: Vec<Array<T>>,
}

/// A remote buffer: `entries` slots of one shape and element type in host memory.
///
/// Each slot is a slice of one managed array, so it is a coherent object tracked by the data
/// layer like any array: [`RemoteBuffer::load`] is a task that reads the slot where it runs
/// (a load to a GPU moves the slot there) and [`RemoteBuffer::store`] a task that writes it
/// back on the host. Both are ordered with every other access to the same slot, so a load
/// after a store sees the stored data without manual sequencing (see `PROTOCOL.md`).
///
/// A replicated buffer (made with [`RemoteBuffer::replicated`]) holds one slot per entry and
/// replica, like PopXL's per-shard buffers that share one representation.
///
/// ```
/// use hetflow::remote::RemoteBuffer;
/// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
/// let buffer = RemoteBuffer::<f32>::new(&rt, &[2], 3).unwrap();
/// let x = rt.array_from(vec![1.0f32, 2.0]);
/// buffer.store(2, &x).unwrap();
/// assert_eq!(buffer.load(2).unwrap().to_vec().unwrap(), vec![1.0, 2.0]);
/// assert!(buffer.load(3).is_err());
/// ```
pub struct RemoteBuffer<T: Element> {
    inner: Arc<Inner<T>>,
}

impl<T: Element> Clone for RemoteBuffer<T> {
    fn clone(&self) -> Self {
        RemoteBuffer {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Element> std::fmt::Debug for RemoteBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBuffer")
            .field("name", &self.inner.name)
            .field("shape", &self.inner.shape)
            .field("dtype", &T::DTYPE)
            .field("entries", &self.inner.entries)
            .field("replicas", &self.replicas())
            .finish()
    }
}

fn placement(d: DeviceId) -> Placement {
    d.into()
}

impl<T: Element> RemoteBuffer<T> {
    /// A buffer of `entries` slots of `shape` (`&[]` for scalars), zero-filled.
    ///
    /// # Errors
    /// [`RemoteError::ZeroEntries`]; [`RemoteError::SizeOverflow`] when the element or byte
    /// count does not fit in `usize`; [`RemoteError::Allocation`] when the host cannot
    /// allocate it.
    pub fn new(rt: &RuntimeHandle, shape: &[usize], entries: usize) -> Result<Self, RemoteError> {
        Self::build(rt, None, shape, entries)
    }

    /// A replicated buffer: every replica of `rep` has its own `entries` slots of `shape`.
    pub fn replicated(
        rep: &Replication,
        shape: &[usize],
        entries: usize,
    ) -> Result<Self, RemoteError> {
        Self::build(rep.runtime(), Some(rep.clone()), shape, entries)
    }

    fn build(
        rt: &RuntimeHandle,
        rep: Option<Replication>,
        shape: &[usize],
        entries: usize,
    ) -> Result<Self, RemoteError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let name = format!(
            "remote_buffer#{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if entries == 0 {
            return Err(RemoteError::ZeroEntries { buffer: name });
        }
        let replicas = rep.as_ref().map_or(1, Replication::factor);
        let overflow = || RemoteError::SizeOverflow {
            buffer: name.clone(),
            shape: shape.to_vec(),
            entries,
            replicas,
            element_bytes: std::mem::size_of::<T>(),
        };
        // Checked: a product that wraps would make a buffer of the wrong (often 0) size.
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?;
        let total = entries
            .checked_mul(replicas)
            .and_then(|x| x.checked_mul(numel))
            .ok_or_else(overflow)?;
        let bytes = total
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(overflow)?;
        // Fallible: a buffer larger than memory is an error, not an aborted process.
        let mut data = Vec::new();
        data.try_reserve_exact(total)
            .map_err(|source| RemoteError::Allocation {
                buffer: name.clone(),
                elements: total,
                bytes,
                source,
            })?;
        data.resize(total, T::zeroed());
        let root = rt.array_named(name.clone(), data);
        let mut slots = Vec::with_capacity(entries * replicas);
        let mut rows = Vec::with_capacity(entries);
        for o in 0..entries {
            let base = o * replicas * numel;
            for r in 0..replicas {
                let start = base + r * numel;
                slots.push(root.slice(start..start + numel)?);
            }
            rows.push(if replicas == 1 {
                slots[o].clone()
            } else {
                root.slice(base..base + replicas * numel)?
            });
        }
        tracing::debug!(buffer = %name, ?shape, entries, replicas, "remote buffer created");
        Ok(RemoteBuffer {
            inner: Arc::new(Inner {
                rt: rt.clone(),
                name,
                shape: shape.to_vec(),
                numel,
                entries,
                rep,
                root,
                slots,
                rows,
            }),
        })
    }

    /// The buffer's name (used in errors and task names).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The shape of every slot.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// Elements per slot.
    pub fn numel(&self) -> usize {
        self.inner.numel
    }

    /// The element type.
    pub fn dtype(&self) -> ElementType {
        T::DTYPE
    }

    /// Number of entries.
    pub fn entries(&self) -> usize {
        self.inner.entries
    }

    /// Number of replicas (1 for a plain buffer).
    pub fn replicas(&self) -> usize {
        self.inner.rep.as_ref().map_or(1, Replication::factor)
    }

    /// The replication of a replicated buffer.
    pub fn replication(&self) -> Option<&Replication> {
        self.inner.rep.as_ref()
    }

    /// The runtime.
    pub fn runtime(&self) -> &RuntimeHandle {
        &self.inner.rt
    }

    pub(crate) fn check_offset(&self, offset: usize) -> Result<(), RemoteError> {
        if offset >= self.inner.entries {
            return Err(RemoteError::OffsetOutOfRange {
                buffer: self.inner.name.clone(),
                offset,
                entries: self.inner.entries,
            });
        }
        Ok(())
    }

    /// Checks that a tensor of `shape` fits a slot: the same shape, or a flat tensor with the
    /// slot's element count.
    pub(crate) fn check_shape(&self, shape: &[usize]) -> Result<(), RemoteError> {
        let flat_ok = shape.len() == 1 && shape[0] == self.inner.numel;
        if shape != self.inner.shape.as_slice() && !flat_ok {
            return Err(RemoteError::ShapeMismatch {
                buffer: self.inner.name.clone(),
                expected: self.inner.shape.clone(),
                got: shape.to_vec(),
            });
        }
        Ok(())
    }

    /// The slot of `(offset, replica)`: the coherent array behind the entry.
    pub(crate) fn slot(&self, offset: usize, replica: usize) -> &Array<T> {
        &self.inner.slots[offset * self.replicas() + replica]
    }

    /// Every replica's slot of entry `offset`, as one array.
    pub(crate) fn row(&self, offset: usize) -> &Array<T> {
        &self.inner.rows[offset]
    }

    fn check_offset_array(buffer: &str, off: &Array<u32>) -> Result<(), RemoteError> {
        if off.len() != 1 {
            return Err(RemoteError::OffsetArrayLength {
                buffer: buffer.to_string(),
                array: off.label().to_string(),
                len: off.len(),
            });
        }
        Ok(())
    }

    /// A host task that fails unless the offset array holds a valid entry index, after
    /// `after` if given. It writes nothing, so its failure fails only what waits for it.
    fn offset_check(
        &self,
        off: &Array<u32>,
        after: Option<&TaskHandle<()>>,
    ) -> Result<TaskHandle<()>, RemoteError> {
        Self::check_offset_array(&self.inner.name, off)?;
        let (o, name, entries) = (off.clone(), self.inner.name.clone(), self.inner.entries);
        let mut b = self
            .inner
            .rt
            .task(format!("check_offset({})", self.inner.name))
            .reads(off)
            .on(Placement::Cpu);
        if let Some(a) = after {
            b = b.after(a);
        }
        Ok(b.cpu_try(move |cx| {
            let offset = cx.read(&o)[0] as usize;
            if offset >= entries {
                return Err(RemoteError::OffsetOutOfRange {
                    buffer: name,
                    offset,
                    entries,
                });
            }
            Ok(())
        })
        .spawn())
    }

    fn unreplicated(&self, what: &str) -> Result<(), RemoteError> {
        if self.replicas() != 1 {
            return Err(RemoteError::ReplicaMismatch {
                what: format!(
                    "{what} on replicated buffer `{}` (use the _sharded form)",
                    self.inner.name
                ),
                expected: 1,
                got: self.replicas(),
            });
        }
        Ok(())
    }

    /// PopXL's `remote_store`: a task that copies `array` into entry `offset`, on the host
    /// (the streaming memory). It runs after every earlier access to that entry and to
    /// `array`, and every later access to the entry runs after it.
    ///
    /// The element type is checked at compile time (an untyped [`super::HostTensor`] is
    /// checked at run time by [`super::remote_variable`]):
    /// ```compile_fail
    /// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
    /// let b = hetflow::remote::remote_buffer::<f32>(&rt, &[1], 1).unwrap();
    /// b.store(0, &rt.array_from(vec![1u32])).unwrap();
    /// ```
    pub fn store(
        &self,
        offset: impl Into<Offset>,
        array: &Array<T>,
    ) -> Result<TaskHandle<()>, RemoteError> {
        self.unreplicated("store")?;
        self.store_slot(&offset.into(), 0, array)
    }

    /// PopXL's `remote_load` to the default device: GPU 0 if the runtime has a GPU, else the
    /// CPU. Returns a new array holding a copy of entry `offset`.
    pub fn load(&self, offset: impl Into<Offset>) -> Result<Array<T>, RemoteError> {
        let device = if self.inner.rt.gpu_count() > 0 {
            DeviceId::Gpu(0)
        } else {
            DeviceId::Cpu
        };
        self.load_to(offset, device)
    }

    /// `remote_load` onto `device`: the entry moves there (it stays valid on the host too)
    /// and is copied into a new array valid on `device`.
    pub fn load_to(
        &self,
        offset: impl Into<Offset>,
        device: DeviceId,
    ) -> Result<Array<T>, RemoteError> {
        self.unreplicated("load")?;
        self.load_slot(&offset.into(), 0, device, None)
    }

    /// Stores one shard per replica into that replica's slot of entry `offset`.
    pub fn store_sharded(
        &self,
        offset: impl Into<Offset>,
        x: &Sharded<T>,
    ) -> Result<Vec<TaskHandle<()>>, RemoteError> {
        let offset = offset.into();
        let rep = self.replicated_as(x.replication(), "store_sharded")?;
        (0..rep.factor())
            .map(|r| self.store_slot(&offset, r, x.shard(r)))
            .collect()
    }

    /// Loads every replica's slot of entry `offset` onto that replica's device. The result's
    /// logical length is `replicas * numel`; set the true one with [`Sharded::with_len`].
    pub fn load_sharded(&self, offset: impl Into<Offset>) -> Result<Sharded<T>, RemoteError> {
        let offset = offset.into();
        let Some(rep) = self.inner.rep.clone() else {
            return Err(RemoteError::ReplicaMismatch {
                what: format!(
                    "load_sharded on buffer `{}` made without replication",
                    self.inner.name
                ),
                expected: 2,
                got: 1,
            });
        };
        let guard = match &offset {
            Offset::Device(a) => Some(self.offset_check(a, None)?),
            Offset::Host(_) => None,
        };
        let shards = (0..rep.factor())
            .map(|r| self.load_slot(&offset, r, rep.device(r), guard.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        rep.sharded(shards, rep.factor() * self.inner.numel)
    }

    fn replicated_as(&self, rep: &Replication, what: &str) -> Result<Replication, RemoteError> {
        match &self.inner.rep {
            Some(mine) => {
                mine.check_same(what, rep)?;
                Ok(mine.clone())
            }
            None => Err(RemoteError::ReplicaMismatch {
                what: format!(
                    "{what} on buffer `{}` made without replication",
                    self.inner.name
                ),
                expected: 1,
                got: rep.factor(),
            }),
        }
    }

    fn store_slot(
        &self,
        offset: &Offset,
        replica: usize,
        array: &Array<T>,
    ) -> Result<TaskHandle<()>, RemoteError> {
        self.check_shape(&array.shape())?;
        let rt = &self.inner.rt;
        let src = array.clone();
        match offset {
            Offset::Host(o) => {
                self.check_offset(*o)?;
                let slot = self.slot(*o, replica).clone();
                Ok(rt
                    .task(format!(
                        "remote_store({}[{o}], replica {replica})",
                        self.inner.name
                    ))
                    .reads(array)
                    .writes(&slot)
                    .on(Placement::Cpu)
                    .cpu(move |cx| cx.write(&slot).copy_from_slice(cx.read(&src)))
                    .spawn())
            }
            Offset::Device(off) => {
                // The write of the whole buffer must not fail on a bad offset: a failed
                // writer of `root` would fail every later access to every entry. So the
                // copy skips a bad offset and succeeds, and the handle returned is a check
                // after it that fails with the offset error (and writes nothing).
                Self::check_offset_array(&self.inner.name, off)?;
                let (root, o) = (self.inner.root.clone(), off.clone());
                let (numel, replicas, entries) =
                    (self.inner.numel, self.replicas(), self.inner.entries);
                let copy = rt
                    .task(format!(
                        "remote_store({}[device offset], replica {replica})",
                        self.inner.name
                    ))
                    .reads(array)
                    .reads(off)
                    .read_write(&self.inner.root)
                    .on(Placement::Cpu)
                    .cpu(move |cx| {
                        let offset = cx.read(&o)[0] as usize;
                        if offset < entries {
                            let at = (offset * replicas + replica) * numel;
                            cx.write(&root)[at..at + numel].copy_from_slice(cx.read(&src));
                        }
                    })
                    .spawn();
                self.offset_check(off, Some(&copy))
            }
        }
    }

    fn load_slot(
        &self,
        offset: &Offset,
        replica: usize,
        device: DeviceId,
        guard: Option<&TaskHandle<()>>,
    ) -> Result<Array<T>, RemoteError> {
        let rt = &self.inner.rt;
        let numel = self.inner.numel;
        let out = rt.array_named(
            format!("{}@{device}", self.inner.name),
            vec![T::zeroed(); numel],
        );
        let out = if self.inner.shape.len() > 1 {
            out.reshape(&self.inner.shape)?
        } else {
            out
        };
        match offset {
            Offset::Host(o) => {
                self.check_offset(*o)?;
                let slot = self.slot(*o, replica).clone();
                let (s1, d1, s2, d2) = (slot.clone(), out.clone(), slot.clone(), out.clone());
                let bytes = crate::data::transfer::padded(slot.bytes());
                drop(
                    rt.task(format!(
                        "remote_load({}[{o}], replica {replica})",
                        self.inner.name
                    ))
                    .reads(&slot)
                    .writes(&out)
                    .on(placement(device))
                    .cpu(move |cx| cx.write(&d1).copy_from_slice(cx.read(&s1)))
                    .gpu(move |cx| {
                        if let (Some(s), Some(d)) =
                            (cx.buffer(&s2).cloned(), cx.buffer(&d2).cloned())
                        {
                            cx.encoder().copy_buffer_to_buffer(&s, 0, &d, 0, bytes);
                        }
                    })
                    .spawn(),
                );
            }
            Offset::Device(off) => {
                let own_guard;
                let guard = match guard {
                    Some(g) => g,
                    None => {
                        own_guard = self.offset_check(off, None)?;
                        &own_guard
                    }
                };
                let replicas = self.replicas();
                let entries = self.inner.entries;
                let mut b = rt
                    .task(format!(
                        "remote_load({}[device offset], replica {replica})",
                        self.inner.name
                    ))
                    .after(guard)
                    .reads(&self.inner.root)
                    .reads(off)
                    .writes(&out)
                    .on(placement(device));
                let (root, o, d) = (self.inner.root.clone(), off.clone(), out.clone());
                b = b.cpu(move |cx| {
                    let at = (cx.read(&o)[0] as usize * replicas + replica) * numel;
                    cx.write(&d)
                        .copy_from_slice(&cx.read(&root)[at..at + numel]);
                });
                if let DeviceId::Gpu(_) = device {
                    // It copies 32-bit words whatever the element type.
                    let k = rt.kernel(REMOTE_COPY, "load")?.untyped();
                    let (root, o, d) = (self.inner.root.clone(), off.clone(), out.clone());
                    let u = Uniform([
                        numel as u32,
                        entries as u32,
                        replicas as u32,
                        replica as u32,
                    ]);
                    b = b.gpu(move |cx| {
                        cx.dispatch_dyn(&k, &[&u, &o, &root, &d], k.groups_for(numel))
                    });
                }
                drop(b.spawn());
            }
        }
        Ok(out)
    }

    /// The coherent array behind the slot of `(offset, replica)` (replica 0 without
    /// replication): tasks may use it like any array, ordered with loads and stores.
    pub fn entry(&self, offset: usize, replica: usize) -> Result<Array<T>, RemoteError> {
        self.check_offset(offset)?;
        if replica >= self.replicas() {
            return Err(RemoteError::ReplicaMismatch {
                what: format!("replica {replica} of buffer `{}`", self.inner.name),
                expected: self.replicas(),
                got: replica + 1,
            });
        }
        Ok(self.slot(offset, replica).clone())
    }

    /// Entry `offset` on the host (every replica's slot, in replica order, for a replicated
    /// buffer), after every earlier store to it.
    pub fn read(&self, offset: usize) -> Result<Vec<T>, RemoteError> {
        self.check_offset(offset)?;
        Ok(self.row(offset).to_vec()?)
    }
}

/// PopXL's `remote_buffer(tensor_shape, tensor_dtype, entries)`; the dtype is `T`.
pub fn remote_buffer<T: Element>(
    rt: &RuntimeHandle,
    shape: &[usize],
    entries: usize,
) -> Result<RemoteBuffer<T>, RemoteError> {
    RemoteBuffer::new(rt, shape, entries)
}
