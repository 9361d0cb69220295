//! Memory slots: a local slot owns (or wraps) bytes in one memory space; a global slot is a
//! handle to some instance's local slot, obtained by exchanging it under a (tag, key).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::data::MemorySpace;
use crate::device::GpuDevice;

use super::error::{CommError, Side};
use super::{InstanceId, SlotKey, Tag};

/// The bytes of a host slot: a heap allocation that never moves (MPI windows point into it),
/// read and written only by raw copies under `lock`.
pub(crate) struct HostBytes {
    ptr: *mut u8,
    len: usize,
    cap: usize,
    /// Orders local copies into and out of the bytes (remote MPI writes are ordered by the
    /// MPI epoch rules instead: see PROTOCOL.md).
    pub(crate) lock: Mutex<()>,
}

impl HostBytes {
    /// Takes ownership of `bytes`; its allocation is never resized again.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        HostBytes {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
            lock: Mutex::new(()),
        }
    }

    /// Start of the bytes (stable for the allocation's life).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Copies `dst.len()` bytes starting at `offset` out. The caller checked the range.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) {
        debug_assert!(offset + dst.len() <= self.len);
        let _g = self.lock.lock();
        // SAFETY: `offset + dst.len() <= len` (checked by every caller, asserted above), the
        // allocation lives as long as `self`, and `dst` is a distinct Rust borrow, so the
        // ranges cannot overlap. The lock orders this copy against local writers.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), dst.as_mut_ptr(), dst.len()) }
    }

    /// Copies `src` in at `offset`. The caller checked the range.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) {
        debug_assert!(offset + src.len() <= self.len);
        let _g = self.lock.lock();
        // SAFETY: as in `read`, with the roles swapped.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) }
    }

    /// Sets `len` bytes at `offset` to `value`. The caller checked the range.
    pub(crate) fn fill(&self, offset: usize, len: usize, value: u8) {
        debug_assert!(offset + len <= self.len);
        let _g = self.lock.lock();
        // SAFETY: the range lies inside the allocation (checked by the caller).
        unsafe { std::ptr::write_bytes(self.ptr.add(offset), value, len) }
    }

    /// Copies between two host slots (possibly the same one, possibly overlapping).
    pub(crate) fn copy(dst: &HostBytes, dst_off: usize, src: &HostBytes, src_off: usize, n: usize) {
        debug_assert!(dst_off + n <= dst.len && src_off + n <= src.len);
        if std::ptr::eq(dst, src) {
            let _g = dst.lock.lock();
            // SAFETY: both ranges lie inside one allocation; `ptr::copy` allows overlap.
            unsafe { std::ptr::copy(src.ptr.add(src_off), dst.ptr.add(dst_off), n) }
            return;
        }
        // Lock in address order so two opposite copies cannot deadlock.
        let (first, second) = if (dst as *const HostBytes) < (src as *const HostBytes) {
            (dst, src)
        } else {
            (src, dst)
        };
        let _a = first.lock.lock();
        let _b = second.lock.lock();
        // SAFETY: two distinct allocations (different `HostBytes`), ranges inside each.
        unsafe { std::ptr::copy_nonoverlapping(src.ptr.add(src_off), dst.ptr.add(dst_off), n) }
    }

    /// Runs `f` on `len` bytes at `offset` while holding the slot's lock (so an MPI call can
    /// read them in place). The caller checked the range.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn with_slice<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        debug_assert!(offset + len <= self.len);
        let _g = self.lock.lock();
        // SAFETY: the range lies inside the allocation (checked by the caller); the lock
        // excludes every local writer for the slice's life, and remote writers are excluded
        // by the MPI epoch rules the program follows (see PROTOCOL.md).
        let slice = unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) };
        f(slice)
    }

    /// Runs `f` on `len` mutable bytes at `offset` while holding the slot's lock.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn with_slice_mut<R>(
        &self,
        offset: usize,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        debug_assert!(offset + len <= self.len);
        let _g = self.lock.lock();
        // SAFETY: as in `with_slice`; the lock makes this the only local reference.
        let slice = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) };
        f(slice)
    }

    /// Gives the allocation back as a `Vec`.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: ptr/len/cap came from a `Vec<u8>` in `from_vec` and were never changed;
        // `ManuallyDrop` keeps `Drop` from freeing them a second time.
        unsafe { Vec::from_raw_parts(this.ptr, this.len, this.cap) }
    }
}

impl Drop for HostBytes {
    fn drop(&mut self) {
        // SAFETY: as in `into_vec`; this is the only owner of the allocation.
        drop(unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) });
    }
}

// SAFETY: the allocation is owned by this value alone and every access goes through raw
// copies under `lock` (or through MPI, whose epochs order remote writes), so sharing the
// handle between threads cannot create unsynchronised Rust references to the bytes.
unsafe impl Send for HostBytes {}
// SAFETY: as above.
unsafe impl Sync for HostBytes {}

/// Where a slot's bytes live.
pub(crate) enum Storage {
    /// Host RAM.
    Host(HostBytes),
    /// A GPU buffer (padded to 4 bytes); moves go through staging (`data::transfer`).
    Gpu {
        gpu: Arc<GpuDevice>,
        buffer: wgpu::Buffer,
    },
}

/// Message counters of a slot and its global lock word, in one block at a stable address
/// (the MPI backend exposes it as a window of three `u64`s: sent, received, lock).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CounterBlock {
    pub(crate) sent: AtomicU64,
    pub(crate) recv: AtomicU64,
    /// 0 when free, `instance + 1` of the holder otherwise.
    pub(crate) lock: AtomicU64,
}

pub(crate) struct SlotInner {
    pub(crate) id: u64,
    pub(crate) space: MemorySpace,
    pub(crate) size: usize,
    pub(crate) storage: Storage,
    pub(crate) counters: Box<CounterBlock>,
    /// Messages already waited for by per-slot fences (sent, received).
    pub(crate) fenced: Mutex<(u64, u64)>,
}

/// A block of bytes in one memory space of this instance (HiCR's `LocalMemorySlot`).
///
/// Cheap to clone (a shared handle). Made by [`super::MemoryManager`]; read and written with
/// [`LocalSlot::read`] / [`LocalSlot::write`] and moved with the communication manager's
/// `memcpy`. Counts the messages it sent and received.
#[derive(Clone)]
pub struct LocalSlot {
    pub(crate) inner: Arc<SlotInner>,
}

impl std::fmt::Debug for LocalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl LocalSlot {
    /// The memory space the bytes live in.
    pub fn space(&self) -> MemorySpace {
        self.inner.space
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// A process-unique id (for printouts).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "local slot #{} ({} B in {:?})",
            self.inner.id, self.inner.size, self.inner.space
        )
    }

    pub(crate) fn check(&self, side: Side, offset: usize, size: usize) -> Result<(), CommError> {
        check_range(side, &self.describe(), offset, size, self.inner.size)
    }

    /// Copies `len` bytes starting at `offset` out of the slot (through staging for GPU
    /// slots).
    pub fn read(&self, offset: usize, len: usize) -> Result<Vec<u8>, CommError> {
        self.check(Side::Source, offset, len)?;
        let mut out = vec![0u8; len];
        read_into(self, offset, &mut out)?;
        Ok(out)
    }

    /// Every byte of the slot.
    pub fn to_vec(&self) -> Result<Vec<u8>, CommError> {
        self.read(0, self.size())
    }

    /// Writes `bytes` into the slot at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), CommError> {
        self.check(Side::Destination, offset, bytes.len())?;
        write_from(self, offset, bytes)
    }

    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn host(&self) -> Option<&HostBytes> {
        match &self.inner.storage {
            Storage::Host(h) => Some(h),
            Storage::Gpu { .. } => None,
        }
    }
}

/// Checks `offset + size <= slot_size` without overflow.
pub(crate) fn check_range(
    side: Side,
    slot: &str,
    offset: usize,
    size: usize,
    slot_size: usize,
) -> Result<(), CommError> {
    match offset.checked_add(size) {
        Some(end) if end <= slot_size => Ok(()),
        _ => Err(CommError::OutOfBounds {
            side,
            slot: slot.to_string(),
            offset,
            size,
            slot_size,
        }),
    }
}

/// Reads `dst.len()` bytes at `offset` (range already checked).
pub(crate) fn read_into(slot: &LocalSlot, offset: usize, dst: &mut [u8]) -> Result<(), CommError> {
    match &slot.inner.storage {
        Storage::Host(h) => h.read(offset, dst),
        Storage::Gpu { gpu, buffer } => crate::data::transfer::download_range(
            gpu,
            buffer,
            offset as u64,
            dst,
            &slot.describe(),
        )?,
    }
    Ok(())
}

/// Writes `src` at `offset` (range already checked).
pub(crate) fn write_from(slot: &LocalSlot, offset: usize, src: &[u8]) -> Result<(), CommError> {
    match &slot.inner.storage {
        Storage::Host(h) => h.write(offset, src),
        Storage::Gpu { gpu, buffer } => {
            crate::data::transfer::upload_range(gpu, buffer, offset as u64, src, &slot.describe())?
        }
    }
    Ok(())
}

/// Copies bytes between two slots of this process (ranges already checked): host↔host
/// directly, GPU↔GPU on the device when aligned and on one device, everything else through
/// a host buffer (the staging helpers of `data::transfer`).
pub(crate) fn copy_bytes(
    dst: &LocalSlot,
    dst_off: usize,
    src: &LocalSlot,
    src_off: usize,
    n: usize,
) -> Result<(), CommError> {
    if n == 0 {
        return Ok(());
    }
    match (&dst.inner.storage, &src.inner.storage) {
        (Storage::Host(d), Storage::Host(s)) => HostBytes::copy(d, dst_off, s, src_off, n),
        (Storage::Host(d), Storage::Gpu { .. }) => {
            let mut tmp = vec![0u8; n];
            read_into(src, src_off, &mut tmp)?;
            d.write(dst_off, &tmp);
        }
        (Storage::Gpu { .. }, Storage::Host(s)) => {
            let mut tmp = vec![0u8; n];
            s.read(src_off, &mut tmp);
            write_from(dst, dst_off, &tmp)?;
        }
        (
            Storage::Gpu {
                gpu: dg,
                buffer: db,
            },
            Storage::Gpu {
                gpu: sg,
                buffer: sb,
            },
        ) if Arc::ptr_eq(dg, sg) => crate::data::transfer::copy_range_on_device(
            dg,
            sb,
            src_off as u64,
            db,
            dst_off as u64,
            n as u64,
            &dst.describe(),
        )?,
        (Storage::Gpu { .. }, Storage::Gpu { .. }) => {
            let mut tmp = vec![0u8; n];
            read_into(src, src_off, &mut tmp)?;
            write_from(dst, dst_off, &tmp)?;
        }
    }
    Ok(())
}

/// Sent and received message counts of a local slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Messages this slot was the source of.
    pub sent: u64,
    /// Messages this slot was the destination of.
    pub received: u64,
}

impl LocalSlot {
    pub(crate) fn local_counts(&self) -> MessageCounts {
        MessageCounts {
            sent: self.inner.counters.sent.load(Ordering::Acquire),
            received: self.inner.counters.recv.load(Ordering::Acquire),
        }
    }

    pub(crate) fn add_local_counts(&self, sent: u64, recv: u64) {
        if sent > 0 {
            self.inner.counters.sent.fetch_add(sent, Ordering::AcqRel);
        }
        if recv > 0 {
            self.inner.counters.recv.fetch_add(recv, Ordering::AcqRel);
        }
    }
}

/// A slot of some instance, known to every instance after an exchange and a fence (HiCR's
/// `GlobalMemorySlot`). Cheap to clone.
#[derive(Clone)]
pub struct GlobalSlot {
    pub(crate) tag: Tag,
    pub(crate) key: SlotKey,
    pub(crate) owner: InstanceId,
    pub(crate) size: usize,
    pub(crate) space: MemorySpace,
    pub(crate) remote: Remote,
}

/// How a backend reaches the owner's bytes.
#[derive(Clone)]
pub(crate) enum Remote {
    /// Same process: the owner's slot itself.
    Shared(LocalSlot),
    /// Index of the slot's windows in the MPI backend's window table.
    #[cfg(feature = "mpi")]
    Window(usize),
}

impl std::fmt::Debug for GlobalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl GlobalSlot {
    /// The tag it was exchanged under.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// Its key within the tag.
    pub fn key(&self) -> SlotKey {
        self.key
    }

    /// The instance that owns the bytes.
    pub fn owner(&self) -> InstanceId {
        self.owner
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The owner's memory space.
    pub fn space(&self) -> MemorySpace {
        self.space
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "global slot (tag {}, key {}) of instance {}: {} B in {:?}",
            self.tag, self.key, self.owner, self.size, self.space
        )
    }

    pub(crate) fn check(&self, side: Side, offset: usize, size: usize) -> Result<(), CommError> {
        check_range(side, &self.describe(), offset, size, self.size)
    }
}
