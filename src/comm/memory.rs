//! The memory manager: allocate, register, free and memset local memory slots in any memory
//! space of this machine (HiCR's `MemoryManager`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::data::MemorySpace;
use crate::device::{gpus, GpuDevice};

use super::error::{CommError, Side};
use super::slot::{CounterBlock, HostBytes, LocalSlot, SlotInner, Storage};

static NEXT_SLOT: AtomicU64 = AtomicU64::new(1);

/// Allocates and frees local memory slots in the host and in every GPU of this process
/// (`MemorySpace::Gpu(i)` is [`crate::device::gpus`]`()[i]`).
///
/// ```
/// use hetflow::comm::MemoryManager;
/// use hetflow::MemorySpace;
///
/// let mm = MemoryManager::new();
/// let slot = mm.allocate(MemorySpace::Host, 16).unwrap();
/// mm.memset(&slot, 0, 16, 7).unwrap();
/// assert_eq!(slot.to_vec().unwrap(), vec![7u8; 16]);
/// let wrapped = mm.register(MemorySpace::Host, b"hello".to_vec()).unwrap();
/// assert_eq!(mm.deregister(wrapped).unwrap(), b"hello");
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryManager {
    _private: (),
}

impl MemoryManager {
    /// A memory manager for this process's memory spaces.
    pub fn new() -> Self {
        MemoryManager { _private: () }
    }

    /// The memory space a topology entry names (`host`, `gpu<i>`), for code that picks its
    /// space from [`crate::Topology::devices`] as HiCR programs do.
    pub fn space_of(info: &crate::device::MemorySpaceInfo) -> Result<MemorySpace, CommError> {
        let space = match info.name.as_str() {
            "host" => MemorySpace::Host,
            name => name
                .strip_prefix("gpu")
                .and_then(|i| i.parse::<usize>().ok())
                .map(MemorySpace::Gpu)
                .ok_or_else(|| CommError::UnknownMemorySpaceName {
                    name: name.to_string(),
                })?,
        };
        Self::gpu(space)?;
        Ok(space)
    }

    fn gpu(space: MemorySpace) -> Result<Option<Arc<GpuDevice>>, CommError> {
        match space {
            MemorySpace::Host => Ok(None),
            MemorySpace::Gpu(i) => {
                gpus()
                    .get(i)
                    .cloned()
                    .map(Some)
                    .ok_or(CommError::NoSuchMemorySpace {
                        space,
                        gpus: gpus().len(),
                    })
            }
        }
    }

    fn make(space: MemorySpace, size: usize, storage: Storage) -> LocalSlot {
        LocalSlot {
            inner: Arc::new(SlotInner {
                id: NEXT_SLOT.fetch_add(1, Ordering::Relaxed),
                space,
                size,
                storage,
                counters: Box::new(CounterBlock::default()),
                fenced: Mutex::new((0, 0)),
            }),
        }
    }

    /// A new zero-filled slot of `size` bytes in `space`.
    pub fn allocate(&self, space: MemorySpace, size: usize) -> Result<LocalSlot, CommError> {
        match Self::gpu(space)? {
            None => {
                let mut bytes = Vec::new();
                bytes
                    .try_reserve_exact(size)
                    .map_err(|e| CommError::Allocation {
                        space,
                        size,
                        reason: e.to_string(),
                    })?;
                bytes.resize(size, 0);
                Ok(Self::make(
                    space,
                    size,
                    Storage::Host(HostBytes::from_vec(bytes)),
                ))
            }
            Some(gpu) => {
                let max = gpu.info().max_buffer_size;
                if crate::data::transfer::padded(size) > max {
                    return Err(CommError::Allocation {
                        space,
                        size,
                        reason: format!("the GPU's largest buffer is {max} bytes"),
                    });
                }
                let buffer =
                    crate::data::transfer::create_buffer(&gpu, "hetflow memory slot", size, false);
                Ok(Self::make(space, size, Storage::Gpu { gpu, buffer }))
            }
        }
    }

    /// Wraps existing bytes as a slot. In the host the slot takes the `Vec` itself (no copy;
    /// [`MemoryManager::deregister`] hands it back); in a GPU the bytes are uploaded into a
    /// new buffer.
    pub fn register(&self, space: MemorySpace, bytes: Vec<u8>) -> Result<LocalSlot, CommError> {
        match space {
            MemorySpace::Host => {
                let size = bytes.len();
                Ok(Self::make(
                    space,
                    size,
                    Storage::Host(HostBytes::from_vec(bytes)),
                ))
            }
            MemorySpace::Gpu(_) => {
                let slot = self.allocate(space, bytes.len())?;
                slot.write(0, &bytes)?;
                Ok(slot)
            }
        }
    }

    /// Hands back the bytes of a host slot. Fails while other handles to the slot exist
    /// (clones, or global slots of an exchange that was not destroyed).
    pub fn deregister(&self, slot: LocalSlot) -> Result<Vec<u8>, CommError> {
        let describe = slot.describe();
        let space = slot.space();
        let inner = Arc::try_unwrap(slot.inner).map_err(|arc| CommError::SlotShared {
            slot: describe.clone(),
            handles: Arc::strong_count(&arc),
        })?;
        match inner.storage {
            Storage::Host(h) => Ok(h.into_vec()),
            Storage::Gpu { .. } => Err(CommError::NotHostSlot {
                slot: describe,
                space,
            }),
        }
    }

    /// Frees a slot. Its memory is released when the last handle goes: global slots of an
    /// exchange keep it alive (remote instances may still write into it) until their tag is
    /// destroyed or the communication manager is dropped.
    pub fn free(&self, slot: LocalSlot) {
        drop(slot);
    }

    /// Sets `len` bytes at `offset` to `value`.
    pub fn memset(
        &self,
        slot: &LocalSlot,
        offset: usize,
        len: usize,
        value: u8,
    ) -> Result<(), CommError> {
        slot.check(Side::Destination, offset, len)?;
        match &slot.inner.storage {
            Storage::Host(h) => h.fill(offset, len, value),
            Storage::Gpu { .. } => slot.write(offset, &vec![value; len])?,
        }
        Ok(())
    }
}
