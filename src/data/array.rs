//! Managed arrays: typed handles over type-erased storage with one copy per memory space.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytemuck::Pod;
use parking_lot::Mutex;

use super::coherence::{CopyStates, MemorySpace};
use super::error::DataError;
use super::family::Family;
use super::reduce::{GpuPartial, Partial, Reduction};
use super::residency::Residency;
use super::transfer::{self, TransferCounters, UploadCtx, UploadPath};
use crate::device::GpuDevice;
use std::ops::Range;

/// How a task uses an array. Dependencies and coherence actions follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reads the current contents; runs concurrently with other readers.
    Read,
    /// Overwrites every element; the old contents are not fetched.
    Write,
    /// Reads then updates the contents.
    ReadWrite,
    /// Combines into the array with a commutative operation: the body sees a private partial
    /// filled with the operation's identity; reducers with the same operation run concurrently.
    Reduce(Reduction),
}

impl Access {
    /// Whether the task needs the current contents.
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    /// Whether the task changes the contents.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    /// The reduction, for [`Access::Reduce`].
    pub fn reduction(self) -> Option<Reduction> {
        match self {
            Access::Reduce(r) => Some(r),
            _ => None,
        }
    }

    /// The mode that covers both `self` and `other` (declaring an array twice merges; a
    /// reduction merged with anything else becomes read-write).
    pub fn merge(self, other: Access) -> Access {
        if self == other {
            self
        } else {
            Access::ReadWrite
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read_write",
            Access::Reduce(_) => "reduce",
        }
    }
}

/// Which runtime made an array: an id the runtime resolves (`runtime::core`), so this layer
/// holds no pointer into the layers above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct OwnerId(pub u64);

/// Copies and states of one array, guarded together.
pub(crate) struct ArrayState {
    pub copies: CopyStates,
    pub gpu_buffers: Vec<Option<wgpu::Buffer>>,
    /// The space of the most recent access (the owner shown while every copy is Shared).
    pub last_space: MemorySpace,
    /// Per GPU: tasks between preparation and completion that use the copy there.
    pub pins: Vec<u32>,
    /// Finished reducers' partials, folded in before the next non-reducing access.
    pub partials: Vec<(Reduction, Partial)>,
    /// Family epoch of the last write to this array (`family.rs`).
    pub written_epoch: u64,
    /// Family epoch this array's copies were last brought in line with.
    pub synced_epoch: u64,
}

/// What moving data needs: the devices, the transfer counters and the GPU residency.
#[derive(Clone, Copy)]
pub(crate) struct Memory<'a> {
    pub gpus: &'a [Arc<GpuDevice>],
    pub counters: &'a TransferCounters,
    pub residency: &'a Residency,
}

/// What a GPU task gets for one access: the buffer to bind, the pin that keeps the array's
/// copy resident, or (for a reduction) the private partial.
pub(crate) struct Prepared {
    pub buffer: wgpu::Buffer,
    pub pin: Option<GpuPin>,
    pub partial: Option<GpuPartial>,
}

/// Keeps an array's copy on one GPU from being evicted while a task uses it.
pub(crate) struct GpuPin {
    array: Arc<Member>,
    gpu: usize,
}

impl Drop for GpuPin {
    fn drop(&mut self) {
        let mut st = self.array.state.lock();
        if let Some(p) = st.pins.get_mut(self.gpu) {
            *p = p.saturating_sub(1);
        }
    }
}

impl ArrayState {
    fn new(spaces: usize, epoch: u64) -> Self {
        ArrayState {
            copies: CopyStates::new(spaces, MemorySpace::Host),
            gpu_buffers: vec![None; spaces.saturating_sub(1)],
            last_space: MemorySpace::Host,
            pins: vec![0; spaces.saturating_sub(1)],
            partials: Vec::new(),
            written_epoch: epoch,
            synced_epoch: epoch,
        }
    }
}

// SAFETY: `CopyStates` is plain data and `wgpu::Buffer` is Send + Sync
// (`crate::device::assert_wgpu_handles_are_thread_safe`).
unsafe impl Send for ArrayState {}

/// Host bytes, 16-byte aligned, allocated once and never moved, so a task may hold a slice
/// into them while it runs.
struct HostBytes(UnsafeCell<Box<[u128]>>);

/// What a family keeps of each of its arrays: identity, the place of its bytes and its
/// copies. Held by the array's handles (through [`RawArray`]) and by its family, which keeps it
/// after the last handle is gone for as long as it holds data that no other copy has (a GPU
/// copy newer than the host, pending reduction partials: `family.rs`), so dropping a slice
/// handle never loses its writes.
pub(crate) struct Member {
    pub id: u64,
    pub label: String,
    pub bytes: usize,
    /// Byte range within the family's root (and within the shared host memory).
    pub range: Range<usize>,
    /// The family's host memory, shared with the parent and sibling slices.
    host: Arc<HostBytes>,
    pub state: Mutex<ArrayState>,
}

/// The type-erased part of an array, shared by every handle and by the tasks that use it.
pub(crate) struct RawArray {
    member: Arc<Member>,
    pub len: usize,
    /// For a slice: the parent's id and the element range taken from it.
    pub parent: Option<(u64, Range<usize>)>,
    pub family: Arc<Family>,
    /// The runtime that made the array.
    pub(crate) owner: OwnerId,
}

impl std::ops::Deref for RawArray {
    type Target = Member;

    fn deref(&self) -> &Member {
        &self.member
    }
}

// SAFETY: the bytes are read or written only (a) by task bodies, which the dependency graph
// orders so that a writer of a range never runs concurrently with another reader or writer of
// an overlapping range, and (b) by transfers, which hold the owning array's state lock (and,
// for families, the family's sync lock) and write a range only while that array's host copy
// is Invalid, i.e. while no task reads it (`family.rs` explains the slice case). The
// allocation itself never changes after creation.
unsafe impl Sync for HostBytes {}
// SAFETY: a boxed slice of integers may move between threads.
unsafe impl Send for HostBytes {}

static NEXT_ARRAY: AtomicU64 = AtomicU64::new(1);

impl RawArray {
    /// Parla's `print_overview` of this array (see [`Array::overview`]).
    pub(crate) fn overview(&self) -> String {
        let st = self.state.lock();
        let owner = st.copies.owner().unwrap_or(st.last_space);
        let (parent, slice) = match &self.parent {
            Some((id, r)) => (id.to_string(), format!("{}..{}", r.start, r.end)),
            None => ("None".to_string(), "None".to_string()),
        };
        let mut s = format!(
            "---Overview of Array\nID: {}, Name: {}, Parent_ID: {parent}, Slice: {slice}, Bytes: {}, Owner: {}\n",
            self.id,
            self.label,
            self.bytes,
            space_name(owner)
        );
        let mut spaces: Vec<_> = st.copies.iter().collect();
        spaces.rotate_left(1); // GPUs first, then the host, as Parla prints them
        for (space, state) in spaces {
            s += &format!("At {}: state: {}\n", space_name(space), state_name(state));
        }
        s += "---End of Overview";
        s
    }

    pub(crate) fn new(
        label: Option<String>,
        len: usize,
        elem_size: usize,
        init: Option<&[u8]>,
        spaces: usize,
        owner: OwnerId,
    ) -> Arc<Self> {
        let id = NEXT_ARRAY.fetch_add(1, Ordering::Relaxed);
        let bytes = len * elem_size;
        let mut words = vec![0u128; bytes.div_ceil(16)].into_boxed_slice();
        if let Some(init) = init {
            bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes].copy_from_slice(init);
        }
        let member = Arc::new(Member {
            id,
            label: label.unwrap_or_else(|| format!("array#{id}")),
            bytes,
            range: 0..bytes,
            host: Arc::new(HostBytes(UnsafeCell::new(words))),
            state: Mutex::new(ArrayState::new(spaces, 0)),
        });
        let family = Family::new();
        let a = Arc::new(RawArray {
            member,
            len,
            parent: None,
            family: family.clone(),
            owner,
        });
        family.admit(&a);
        a
    }

    /// The member record the family and the residency keep.
    pub(crate) fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// A sub-array of `self`: elements `elems` (elements of `elem_size` bytes), sharing the
    /// host memory, with its own states and device copies.
    pub(crate) fn slice(self: &Arc<Self>, elems: Range<usize>, elem_size: usize) -> Arc<Self> {
        let id = NEXT_ARRAY.fetch_add(1, Ordering::Relaxed);
        let start = self.range.start + elems.start * elem_size;
        let len = elems.len();
        let spaces = self.state.lock().gpu_buffers.len() + 1;
        let epoch = self.family.epoch.load(Ordering::Acquire);
        let member = Arc::new(Member {
            id,
            label: format!("{}[{}..{}]", self.label, elems.start, elems.end),
            bytes: len * elem_size,
            range: start..start + len * elem_size,
            host: self.host.clone(),
            state: Mutex::new(ArrayState::new(spaces, epoch)),
        });
        let a = Arc::new(RawArray {
            member,
            len,
            parent: Some((self.id, elems)),
            family: self.family.clone(),
            owner: self.owner,
        });
        self.family.admit(&a);
        a
    }

    /// Brings the family in line before an access to `self` (the protocol of `family.rs`).
    fn sync_family(
        &self,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
    ) -> Result<(), DataError> {
        if !self.family.has_slices() {
            return Ok(());
        }
        let _sync = self.family.sync.lock();
        let relatives = self.family.overlapping(self.id, &self.range);
        if relatives.is_empty() {
            return Ok(());
        }
        let my_synced = self.state.lock().synced_epoch;
        let mut stale = false;
        let mut flush: Vec<(u64, &Member)> = Vec::new();
        for m in &relatives {
            let st = m.state.lock();
            // Pending reduction partials are a write that the flush below will make.
            stale |= st.written_epoch > my_synced || !st.partials.is_empty();
            if !st.copies.get(MemorySpace::Host).is_valid() || !st.partials.is_empty() {
                flush.push((st.written_epoch, m));
            }
        }
        if stale {
            let st = self.state.lock();
            if !st.copies.get(MemorySpace::Host).is_valid() || !st.partials.is_empty() {
                flush.push((st.written_epoch, self));
            }
        }
        flush.sort_by_key(|(epoch, _)| *epoch);
        for (_, m) in flush {
            let mut st = m.state.lock();
            m.fold_partials(&mut st, Access::Read, gpus, counters, &self.family)?;
            let moves = st.copies.plan_read(MemorySpace::Host);
            for mv in &moves {
                m.perform(&mut st, mv.from, mv.to, gpus, counters, None)?;
            }
            st.copies.apply_moves(&moves);
        }
        let mut st = self.state.lock();
        if stale {
            // The host holds every newer write of the overlap: the device copies are stale.
            st.copies.write(MemorySpace::Host);
        }
        st.synced_epoch = self.family.epoch.load(Ordering::Acquire);
        Ok(())
    }

    /// Records a write to `self` in the family's epochs.
    fn note_write(&self, st: &mut ArrayState) {
        self.member.note_write(st, &self.family);
    }

    /// Makes the host copy usable for `access`: fetches it from a GPU if a read needs it and
    /// updates the states. Runs right before a CPU task's body.
    pub(crate) fn prepare_host(
        &self,
        access: Access,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
    ) -> Result<(), DataError> {
        self.sync_family(gpus, counters)?;
        let mut st = self.state.lock();
        self.member
            .fold_partials(&mut st, access, gpus, counters, &self.family)?;
        if access.reduction().is_some() {
            // The body works on a private partial; the copies are untouched until the fold.
            return Ok(());
        }
        if access.reads() {
            let moves = st.copies.plan_read(MemorySpace::Host);
            for m in &moves {
                self.perform(&mut st, m.from, m.to, gpus, counters, None)?;
            }
            st.copies.apply_moves(&moves);
        }
        if access.writes() {
            st.copies.write(MemorySpace::Host);
            self.note_write(&mut st);
        }
        st.last_space = MemorySpace::Host;
        Ok(())
    }

    /// In the browser: the GPU buffers a task's preparation would copy to the host for
    /// `access` (with `on_host`, [`RawArray::prepare_host`]: the copy it reads and the
    /// partials it folds; else a GPU task's fold), so they can be fetched with an awaited
    /// mapping before the task runs.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn host_sources(&self, access: Access, on_host: bool) -> Vec<(usize, wgpu::Buffer)> {
        let st = self.state.lock();
        let mut out = Vec::new();
        let same_group = |r: &Reduction| access.reduction().is_some_and(|a| a.op == r.op);
        let folds = !st.partials.is_empty() && !st.partials.iter().all(|(r, _)| same_group(r));
        if folds {
            for (_, p) in &st.partials {
                if let Partial::Gpu(p) = p {
                    out.push((p.gpu, p.buffer.clone()));
                }
            }
        }
        if folds || (on_host && access.reads() && access.reduction().is_none()) {
            for m in st.copies.plan_read(MemorySpace::Host) {
                if let (MemorySpace::Gpu(g), MemorySpace::Host) = (m.from, m.to) {
                    if let Some(Some(b)) = st.gpu_buffers.get(g) {
                        out.push((g, b.clone()));
                    }
                }
            }
        }
        out
    }

    /// Records a finished CPU reducer's partial, combined into the pending host partial of the
    /// same reduction if there is one (so pending host partials stay one per reduction).
    pub(crate) fn deposit_host_partial(&self, r: Reduction, bytes: Vec<u8>) {
        let mut st = self.state.lock();
        let pending = st.partials.iter_mut().find_map(|(pr, p)| match p {
            Partial::Host(acc) if *pr == r => Some(acc),
            _ => None,
        });
        match pending {
            Some(acc) => (r.combine_into)(acc, &bytes, r.op),
            None => st.partials.push((r, Partial::Host(bytes))),
        }
    }

    /// Records a finished GPU reducer's partial. When its GPU could not hold one more partial
    /// of this size, it is spilled: brought to the host and combined there, which frees its
    /// GPU memory now rather than at the next fold.
    pub(crate) fn deposit_gpu_partial(
        &self,
        r: Reduction,
        p: GpuPartial,
        mem: &Memory<'_>,
    ) -> Result<(), DataError> {
        if !mem
            .residency
            .lacks_room(p.gpu, transfer::padded(self.bytes))
        {
            self.state.lock().partials.push((r, Partial::Gpu(p)));
            return Ok(());
        }
        let mut bytes = vec![0u8; self.bytes];
        transfer::download_counted(
            mem.gpus,
            p.gpu,
            &p.buffer,
            &mut bytes,
            mem.counters,
            &self.label,
        )?;
        drop(p);
        self.deposit_host_partial(r, bytes);
        Ok(())
    }

    /// A partial for a reducer on GPU `gpu`, filled with the identity and charged to the GPU's
    /// budget.
    fn gpu_partial(
        &self,
        r: Reduction,
        gpu: usize,
        mem: &Memory<'_>,
        may_overcommit: bool,
    ) -> Result<GpuPartial, DataError> {
        let charge =
            mem.residency
                .reserve_partial(gpu, self, mem.gpus, mem.counters, may_overcommit)?;
        let mut identity = vec![0u8; self.bytes];
        (r.fill_identity)(&mut identity, r.op);
        Ok(GpuPartial {
            gpu,
            buffer: transfer::create_filled(&mem.gpus[gpu], &self.label, &identity),
            _charge: charge,
        })
    }

    /// Makes the copy on GPU `gpu` usable for `access` and returns its buffer. Runs on the GPU
    /// driver while it encodes the task; uploads are ordered before the task's commands.
    pub(crate) fn prepare_gpu(
        self: &Arc<Self>,
        access: Access,
        gpu: usize,
        mem: &Memory<'_>,
        may_overcommit: bool,
        up: &mut UploadCtx<'_>,
    ) -> Result<Prepared, DataError> {
        let Memory {
            gpus,
            counters,
            residency,
        } = *mem;
        let dev = &gpus[gpu];
        let limit = dev.info.max_storage_binding.min(dev.info.max_buffer_size);
        if self.bytes as u64 > limit {
            return Err(DataError::TooLarge {
                array: self.label.clone(),
                bytes: self.bytes as u64,
                gpu,
                limit,
            });
        }
        self.sync_family(gpus, counters)?;
        self.member
            .fold_partials(&mut self.state.lock(), access, gpus, counters, &self.family)?;
        if let Some(r) = access.reduction() {
            // A private partial; the array's own copies are untouched until the fold.
            let partial = self.gpu_partial(r, gpu, mem, may_overcommit)?;
            return Ok(Prepared {
                buffer: partial.buffer.clone(),
                pin: None,
                partial: Some(partial),
            });
        }
        let space = MemorySpace::Gpu(gpu);
        // Pin first, so that making room below cannot evict this array itself.
        let resident = {
            let mut st = self.state.lock();
            if st.pins.len() <= gpu {
                st.pins.resize(gpu + 1, 0);
            }
            st.pins[gpu] += 1;
            st.gpu_buffers.get(gpu).is_some_and(Option::is_some)
        };
        let pin = GpuPin {
            array: self.member.clone(),
            gpu,
        };
        if resident {
            residency.touch(gpu, self);
        } else {
            residency.reserve(gpu, &self.member, gpus, counters, may_overcommit)?;
        }
        let mut st = self.state.lock();
        let mappable = up.path.maps_buffers(&gpus[gpu]);
        let buffer = self.buffer_on(&mut st, gpu, gpus, mappable);
        if access.reads() {
            let moves = st.copies.plan_read(space);
            for m in &moves {
                self.perform(&mut st, m.from, m.to, gpus, counters, Some(&mut *up))?;
            }
            st.copies.apply_moves(&moves);
        }
        if access.writes() {
            st.copies.write(space);
            self.note_write(&mut st);
        }
        st.last_space = space;
        Ok(Prepared {
            buffer,
            pin: Some(pin),
            partial: None,
        })
    }
}

impl Member {
    /// Records a write in the family's epochs.
    fn note_write(&self, st: &mut ArrayState, family: &Family) {
        let e = family.next_epoch();
        st.written_epoch = e;
        st.synced_epoch = e;
    }

    /// Whether the member holds data no other copy has: a host copy that is not valid (the
    /// newest data is on a GPU) or reduction partials not folded yet.
    pub(crate) fn holds_unflushed_data(&self) -> bool {
        let st = self.state.lock();
        !st.copies.get(MemorySpace::Host).is_valid() || !st.partials.is_empty()
    }

    /// Pointer to the host bytes.
    pub(crate) fn host_ptr(&self) -> *mut u8 {
        // SAFETY: taking a raw pointer does not create a reference to the contents; the boxed
        // slice is never reallocated (see `HostBytes`), and `range` lies within it (a slice's
        // range is checked against its parent's when it is made).
        unsafe {
            (*self.host.0.get())
                .as_mut_ptr()
                .cast::<u8>()
                .add(self.range.start)
        }
    }

    /// # Safety
    /// The caller must be ordered (by task dependencies or the state lock) so that no writer
    /// of the host copy runs while the returned slice lives.
    pub(crate) unsafe fn host_bytes(&self) -> &[u8] {
        // SAFETY: pointer valid for `bytes` bytes; aliasing guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.host_ptr(), self.bytes) }
    }

    /// # Safety
    /// The caller must have exclusive access to the host copy while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn host_bytes_mut(&self) -> &mut [u8] {
        // SAFETY: pointer valid for `bytes` bytes; exclusivity guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.host_ptr(), self.bytes) }
    }

    /// Folds finished reducers' partials into the host copy before an access that needs the
    /// combined value: anything but a reduction with the same operation.
    fn fold_partials(
        &self,
        st: &mut ArrayState,
        access: Access,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
        family: &Family,
    ) -> Result<(), DataError> {
        let same_group = |r: &Reduction| access.reduction().is_some_and(|a| a.op == r.op);
        if st.partials.is_empty() || st.partials.iter().all(|(r, _)| same_group(r)) {
            return Ok(());
        }
        let moves = st.copies.plan_read(MemorySpace::Host);
        for m in &moves {
            self.perform(st, m.from, m.to, gpus, counters, None)?;
        }
        st.copies.apply_moves(&moves);
        // SAFETY: every reducer has finished (the folding access depends on them) and no other
        // task uses the array until this access runs; we hold the state lock against transfers.
        let host = unsafe { self.host_bytes_mut() };
        for (r, partial) in std::mem::take(&mut st.partials) {
            match partial {
                Partial::Host(bytes) => (r.combine_into)(host, &bytes, r.op),
                Partial::Gpu(p) => {
                    let mut bytes = vec![0u8; self.bytes];
                    transfer::download_counted(
                        gpus,
                        p.gpu,
                        &p.buffer,
                        &mut bytes,
                        counters,
                        &self.label,
                    )?;
                    (r.combine_into)(host, &bytes, r.op);
                }
            }
        }
        st.copies.write(MemorySpace::Host);
        self.note_write(st, family);
        Ok(())
    }

    fn buffer_on(
        &self,
        st: &mut ArrayState,
        gpu: usize,
        gpus: &[Arc<GpuDevice>],
        mappable: bool,
    ) -> wgpu::Buffer {
        if st.gpu_buffers.len() <= gpu {
            st.gpu_buffers.resize(gpu + 1, None);
        }
        st.gpu_buffers[gpu]
            .get_or_insert_with(|| {
                transfer::create_buffer(&gpus[gpu], &self.label, self.bytes, mappable)
            })
            .clone()
    }

    fn perform(
        &self,
        st: &mut ArrayState,
        from: MemorySpace,
        to: MemorySpace,
        gpus: &[Arc<GpuDevice>],
        counters: &TransferCounters,
        up: Option<&mut UploadCtx<'_>>,
    ) -> Result<(), DataError> {
        match (from, to) {
            (MemorySpace::Gpu(g), MemorySpace::Host) => {
                let src = self.buffer_on(st, g, gpus, false);
                // SAFETY: the host copy is Invalid (that is why it is fetched), so no task
                // reads it, and we hold the state lock, so no other transfer writes it.
                let dst = unsafe { self.host_bytes_mut() };
                transfer::download_counted(gpus, g, &src, dst, counters, &self.label)?;
            }
            (MemorySpace::Host, MemorySpace::Gpu(g)) => {
                let dst = self.buffer_on(st, g, gpus, false);
                // SAFETY: the host copy is valid and only read here; writers of the host copy
                // are ordered after this task by the dependency graph.
                let src = unsafe { self.host_bytes() };
                let mut fallback = UploadCtx {
                    path: UploadPath::WriteBuffer,
                    batch: None,
                };
                let up = up.unwrap_or(&mut fallback);
                let has_encoder = up.batch.is_some();
                let saved = up.path;
                up.path = saved.resolve(&gpus[g], self.bytes, has_encoder);
                if up.path == UploadPath::Mapped
                    && !dst.usage().contains(wgpu::BufferUsages::MAP_WRITE)
                {
                    up.path = UploadPath::WriteBuffer;
                }
                let r = transfer::upload_counted(gpus, g, &dst, src, up, counters, &self.label);
                up.path = saved;
                r?;
            }
            (a, b) => {
                return Err(DataError::Transfer {
                    array: self.label.clone(),
                    link: format!("{a}->{b}"),
                    message: "no direct path between these spaces".into(),
                })
            }
        }
        tracing::trace!(array = %self.label, %from, %to, bytes = self.bytes, "moved");
        Ok(())
    }
}

fn space_name(s: MemorySpace) -> String {
    match s {
        MemorySpace::Host => "CPU".into(),
        MemorySpace::Gpu(i) => format!("GPU {i}"),
    }
}

fn state_name(c: super::Coherence) -> &'static str {
    match c {
        super::Coherence::Modified => "MODIFIED",
        super::Coherence::Exclusive => "EXCLUSIVE",
        super::Coherence::Shared => "SHARED",
        super::Coherence::Invalid => "INVALID",
    }
}

/// A managed array of `T`, valid in one or more memory spaces; the runtime moves it to where
/// the tasks that use it run and keeps its copies coherent.
///
/// Create one with [`crate::RuntimeHandle::array_from`] or [`crate::RuntimeHandle::array`];
/// declare how each task uses it (`a.read()`, `a.write()`, `a.read_write()`,
/// `a.reduce(op)` as the task's [`args`](crate::TaskBuilder::args)), and read it back with
/// [`Array::to_vec`]. Cloning an `Array` clones the handle, not the data.
///
/// ```
/// let rt = hetflow::Runtime::builder().build().unwrap();
/// let a = rt.array_from(vec![1.0f32, 2.0, 3.0]);
/// rt.task("double")
///     .args(a.read_write())
///     .cpu(|a| a.iter_mut().for_each(|v| *v *= 2.0))
///     .spawn()
///     .wait()
///     .unwrap();
/// assert_eq!(a.to_vec().unwrap(), vec![2.0, 4.0, 6.0]);
/// ```
pub struct Array<T: Pod> {
    pub(crate) raw: Arc<RawArray>,
    /// Optional n-d shape of this handle (row-major); the data is always flat.
    shape: Option<Arc<[usize]>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            shape: self.shape.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Array<{}>({}, len {})",
            std::any::type_name::<T>(),
            self.raw.label,
            self.raw.len
        )
    }
}

impl<T: Pod> Array<T> {
    pub(crate) fn from_raw(raw: Arc<RawArray>) -> Self {
        Array {
            raw,
            shape: None,
            _t: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.raw.bytes
    }

    /// The array's label (given at creation, or `array#<id>`).
    pub fn label(&self) -> &str {
        &self.raw.label
    }

    /// State of the copy in each memory space.
    pub fn states(&self) -> CopyStates {
        self.raw.state.lock().copies.clone()
    }

    /// The array's copies, in the format of Parla's `print_overview`: its id, name, size and
    /// owner (the space holding the Modified/Exclusive copy, else the last space that used
    /// it), then one line per memory space, GPUs first.
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
    /// let a = rt.array_named("A", vec![1.0f32; 5]);
    /// assert!(a.overview().contains("Bytes: 20, Owner: CPU"));
    /// assert!(a.overview().contains("At CPU: state: EXCLUSIVE"));
    /// ```
    pub fn overview(&self) -> String {
        self.raw.overview()
    }

    /// A sub-array of elements `range`, sharing this array's memory, with its own coherence
    /// states: tasks may use it like any array. Writes to a slice are seen by later reads of
    /// the parent and of overlapping slices; disjoint slices are independent, so they can be
    /// written on different devices at the same time.
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
    /// let a = rt.array_from(vec![0u32; 8]);
    /// let right = a.slice(4..8).unwrap();
    /// rt.task("fill").args(right.write()).cpu(|r| r.fill(7)).spawn();
    /// assert_eq!(a.to_vec().unwrap(), vec![0, 0, 0, 0, 7, 7, 7, 7]);
    /// assert!(a.slice(6..9).is_err());
    /// ```
    pub fn slice(&self, range: impl std::ops::RangeBounds<usize>) -> Result<Array<T>, DataError> {
        use std::ops::Bound;
        let len = self.raw.len;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        };
        if start > end || end > len {
            return Err(DataError::SliceOutOfRange {
                array: self.raw.label.clone(),
                start,
                end,
                len,
            });
        }
        Ok(Array::from_raw(
            self.raw.slice(start..end, std::mem::size_of::<T>()),
        ))
    }

    /// The n-d shape (row-major), `[len]` unless one was given with [`Array::reshape`].
    pub fn shape(&self) -> Vec<usize> {
        self.shape
            .as_deref()
            .map_or_else(|| vec![self.raw.len], <[usize]>::to_vec)
    }

    /// The same array viewed with an n-d shape whose product is its length (no copy).
    ///
    /// ```
    /// let rt = hetflow::Runtime::builder().no_gpu().build().unwrap();
    /// let m = rt.array::<f32>(6).reshape(&[2, 3]).unwrap();
    /// assert_eq!(m.shape(), vec![2, 3]);
    /// assert!(m.reshape(&[4, 2]).is_err());
    /// ```
    pub fn reshape(&self, shape: &[usize]) -> Result<Array<T>, DataError> {
        let product: usize = shape.iter().product();
        if product != self.raw.len {
            return Err(DataError::ShapeMismatch {
                array: self.raw.label.clone(),
                shape: shape.to_vec(),
                len: self.raw.len,
            });
        }
        let mut a = self.clone();
        a.shape = Some(shape.into());
        Ok(a)
    }
}
