//! The MPI backend (cargo feature `mpi`): one instance per MPI rank, one-sided through MPI
//! windows.
//!
//! Each exchanged slot gets two windows, created collectively in the same order on every
//! rank: a data window over its bytes and a meta window over its counter block (sent,
//! received, lock). Puts and gets are `MPI_Put` / `MPI_Get` completed by `MPI_Win_flush`;
//! counters and the lock word move with `MPI_Fetch_and_op`. The
//! protocol is in `src/comm/PROTOCOL.md`; the raw calls are wrapped in `rma.rs`.

pub(crate) mod rma;

use std::collections::HashMap;

use mpi::collective::CommunicatorCollectives;
use mpi::datatype::PartitionMut;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Count;

use super::backend::CommBackend;
use super::error::CommError;
use super::manager::CommunicationManager;
use super::slot::{read_into, write_from, GlobalSlot, LocalSlot, MessageCounts, Remote, Storage};
use super::{InstanceId, SlotKey, Tag};
use crate::data::MemorySpace;
use rma::Window;

/// Byte offsets in a slot's meta window.
const SENT: usize = 0;
const RECV: usize = 8;
const LOCK: usize = 16;
const META_BYTES: usize = 24;

/// The two windows of one exchanged slot.
struct SlotWindows {
    tag: Tag,
    owner: i32,
    data: Window,
    meta: Window,
    /// The exposed slot on its owner (keeps the memory alive while the windows exist).
    local: Option<LocalSlot>,
}

/// One MPI rank as an instance.
pub struct MpiBackend {
    /// Windows by index (`Remote::Window(i)`); `None` once destroyed.
    windows: Vec<Option<SlotWindows>>,
    /// Local slot id → index of a live window pair exposing it (its counters live there).
    exposed: HashMap<u64, usize>,
    /// Window indices whose global lock this rank holds.
    held: std::cell::RefCell<std::collections::HashSet<usize>>,
    rank: i32,
    size: i32,
    world: SimpleCommunicator,
    /// Dropped last: finalizes MPI after every window is freed.
    _universe: mpi::environment::Universe,
}

/// Starts the MPI backend (HiCR's instance manager for MPI): one instance per rank, rank 0
/// the root.
pub struct MpiInstances;

impl MpiInstances {
    /// Initialises MPI and returns this rank's communication manager. Fails if MPI was
    /// already initialised in this process.
    pub fn init() -> Result<CommunicationManager<MpiBackend>, CommError> {
        let universe = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .map(|(u, _)| u)
            .ok_or(CommError::Unsupported {
                backend: MpiBackend::NAME,
                what: "initialising MPI twice in one process".into(),
            })?;
        let world = universe.world();
        // Errors on the world communicator (window creation among them) come back as codes.
        // SAFETY: `world` is the live MPI_COMM_WORLD; ERRORS_RETURN is a predefined handler.
        rma::check("MPI_Comm_set_errhandler", unsafe {
            mpi::ffi::MPI_Comm_set_errhandler(world.as_raw(), mpi::ffi::RSMPI_ERRORS_RETURN)
        })?;
        Ok(CommunicationManager::new(MpiBackend {
            windows: Vec::new(),
            exposed: HashMap::new(),
            held: Default::default(),
            rank: world.rank(),
            size: world.size(),
            world,
            _universe: universe,
        }))
    }

    /// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`).
    pub fn launched_by_mpirun() -> bool {
        [
            "OMPI_COMM_WORLD_SIZE",
            "PMI_SIZE",
            "PMIX_RANK",
            "MPI_LOCALNRANKS",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    }
}

fn space_code(space: MemorySpace) -> u64 {
    match space {
        MemorySpace::Host => 0,
        MemorySpace::Gpu(i) => 1 + i as u64,
    }
}

fn space_of_code(code: u64) -> MemorySpace {
    match code {
        0 => MemorySpace::Host,
        c => MemorySpace::Gpu(c as usize - 1),
    }
}

impl MpiBackend {
    fn windows(&self, slot: &GlobalSlot) -> Result<&SlotWindows, CommError> {
        let gone = || CommError::UnknownKey {
            tag: slot.tag,
            key: slot.key,
            known: Vec::new(),
            hint: " (its tag was destroyed)".into(),
        };
        match &slot.remote {
            Remote::Window(i) => self
                .windows
                .get(*i)
                .and_then(Option::as_ref)
                .ok_or_else(gone),
            Remote::Shared(_) => Err(CommError::Unsupported {
                backend: Self::NAME,
                what: "a global slot of the thread backend".into(),
            }),
        }
    }

    /// The meta window holding `slot`'s counters, if it is exposed.
    fn meta_of(&self, slot: &LocalSlot) -> Option<&Window> {
        self.exposed
            .get(&slot.id())
            .and_then(|&i| self.windows.get(i))
            .and_then(Option::as_ref)
            .map(|w| &w.meta)
    }

    fn free_window(&mut self, index: usize) -> Result<(), CommError> {
        let Some(w) = self.windows.get_mut(index).and_then(Option::take) else {
            return Ok(());
        };
        if let Some(local) = &w.local {
            let id = local.id();
            if self.exposed.get(&id) == Some(&index) {
                self.exposed.remove(&id);
                // Another live exposure of the same slot takes over its counters.
                if let Some(j) = self.windows.iter().position(|x| {
                    x.as_ref()
                        .and_then(|x| x.local.as_ref())
                        .is_some_and(|l| l.id() == id)
                }) {
                    self.exposed.insert(id, j);
                }
            }
        }
        w.data.free()?;
        w.meta.free()
    }
}

impl CommBackend for MpiBackend {
    const NAME: &'static str = "mpi";

    fn instance_id(&self) -> InstanceId {
        InstanceId(self.rank as usize)
    }

    fn instance_count(&self) -> usize {
        self.size as usize
    }

    fn root_instance(&self) -> InstanceId {
        InstanceId(0)
    }

    fn barrier(&mut self) -> Result<(), CommError> {
        self.world.barrier();
        Ok(())
    }

    fn exchange(
        &mut self,
        tag: Tag,
        entries: &[(SlotKey, LocalSlot)],
    ) -> Result<Vec<GlobalSlot>, CommError> {
        // 1. Everyone learns everyone's (key, size, space).
        let mine: Vec<u64> = entries
            .iter()
            .flat_map(|(k, s)| [*k, s.size() as u64, space_code(s.space())])
            .collect();
        let n = self.size as usize;
        let mut counts = vec![0 as Count; n];
        self.world
            .all_gather_into(&(mine.len() as Count), &mut counts[..]);
        let displs: Vec<Count> = counts
            .iter()
            .scan(0, |acc, &c| {
                let d = *acc;
                *acc += c;
                Some(d)
            })
            .collect();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut all = vec![0u64; total];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(&mine[..], &mut part);
        }
        // 2. Checks on the identical list: every rank fails alike.
        for (owner, (&c, &d)) in counts.iter().zip(&displs).enumerate() {
            for e in all[d as usize..(d + c) as usize].chunks(3) {
                if e[2] != 0 {
                    return Err(CommError::Unsupported {
                        backend: Self::NAME,
                        what: format!(
                            "exposing a GPU slot (key {} of instance {owner}, {:?}) in an MPI window: MPI needs host memory; exchange a host slot and copy to the GPU locally",
                            e[0],
                            space_of_code(e[2])
                        ),
                    });
                }
            }
        }
        // 3. Two windows per entry, in list order on every rank.
        let comm = self.world.as_raw();
        let mut out = Vec::with_capacity(total / 3);
        for (owner, (&c, &d)) in counts.iter().zip(&displs).enumerate() {
            for (j, e) in all[d as usize..(d + c) as usize].chunks(3).enumerate() {
                let local = (owner as i32 == self.rank).then(|| entries[j].1.clone());
                let (base, size, meta_base) = match &local {
                    Some(slot) => {
                        let base = match &slot.inner.storage {
                            Storage::Host(h) => h.as_ptr(),
                            Storage::Gpu { .. } => std::ptr::null_mut(),
                        };
                        let meta = &*slot.inner.counters as *const _ as *mut u8;
                        (base, slot.size(), meta)
                    }
                    None => (std::ptr::null_mut(), 0, std::ptr::null_mut()),
                };
                let single = self.size == 1;
                let hint = |e: CommError| {
                    match e {
                    CommError::Mpi { call, code, message } if single => CommError::Mpi {
                        call,
                        code,
                        message: format!("{message} (a single rank has no one-sided transport in OpenMPI's default osc/rdma; run at least 2 ranks, or set OMPI_MCA_osc=ucx)"),
                    },
                    e => e,
                }
                };
                // SAFETY: on the owner, `base..base+size` is the slot's host allocation and
                // `meta_base` its boxed counter block, both kept alive by `local` in the
                // window table until the windows are freed; other ranks expose 0 bytes.
                let data = unsafe { Window::create(comm, base, size) }.map_err(hint)?;
                let meta_size = if local.is_some() { META_BYTES } else { 0 };
                // SAFETY: as above.
                let meta = unsafe { Window::create(comm, meta_base, meta_size) }.map_err(hint)?;
                let index = self.windows.len();
                if let Some(slot) = &local {
                    self.exposed.entry(slot.id()).or_insert(index);
                }
                self.windows.push(Some(SlotWindows {
                    tag,
                    owner: owner as i32,
                    data,
                    meta,
                    local,
                }));
                out.push(GlobalSlot {
                    tag,
                    key: e[0],
                    owner: InstanceId(owner),
                    size: e[1] as usize,
                    space: space_of_code(e[2]),
                    remote: Remote::Window(index),
                });
            }
        }
        Ok(out)
    }

    fn fence(&mut self, tag: Tag) -> Result<(), CommError> {
        // Every put/get was flushed when it returned; make remote writes into our windows
        // visible, then wait for everyone.
        for w in self.windows.iter().flatten().filter(|w| w.tag == tag) {
            w.data.sync()?;
        }
        self.world.barrier();
        for w in self.windows.iter().flatten().filter(|w| w.tag == tag) {
            w.data.sync()?;
        }
        Ok(())
    }

    fn put(
        &self,
        dst: &GlobalSlot,
        dst_off: usize,
        src: &LocalSlot,
        src_off: usize,
        n: usize,
    ) -> Result<(), CommError> {
        let w = self.windows(dst)?;
        match src.host() {
            Some(h) => h.with_slice(src_off, n, |bytes| w.data.put(bytes, w.owner, dst_off))?,
            None => {
                let mut tmp = vec![0u8; n];
                read_into(src, src_off, &mut tmp)?;
                w.data.put(&tmp, w.owner, dst_off)?;
            }
        }
        w.meta.fetch_add(w.owner, RECV, 1)?;
        self.add_counts(src, 1, 0)
    }

    fn get(
        &self,
        dst: &LocalSlot,
        dst_off: usize,
        src: &GlobalSlot,
        src_off: usize,
        n: usize,
    ) -> Result<(), CommError> {
        let w = self.windows(src)?;
        match dst.host() {
            Some(h) => h.with_slice_mut(dst_off, n, |bytes| w.data.get(bytes, w.owner, src_off))?,
            None => {
                let mut tmp = vec![0u8; n];
                w.data.get(&mut tmp, w.owner, src_off)?;
                write_from(dst, dst_off, &tmp)?;
            }
        }
        w.meta.fetch_add(w.owner, SENT, 1)?;
        self.add_counts(dst, 0, 1)
    }

    fn add_counts(&self, slot: &LocalSlot, sent: u64, received: u64) -> Result<(), CommError> {
        match self.meta_of(slot) {
            Some(meta) => {
                if sent > 0 {
                    meta.fetch_add(self.rank, SENT, sent)?;
                }
                if received > 0 {
                    meta.fetch_add(self.rank, RECV, received)?;
                }
            }
            None => slot.add_local_counts(sent, received),
        }
        Ok(())
    }

    fn counts(&self, slot: &LocalSlot) -> Result<MessageCounts, CommError> {
        match self.meta_of(slot) {
            Some(meta) => Ok(MessageCounts {
                sent: meta.fetch_add(self.rank, SENT, 0)?,
                received: meta.fetch_add(self.rank, RECV, 0)?,
            }),
            None => Ok(slot.local_counts()),
        }
    }

    fn sync_slot(&self, slot: &LocalSlot) -> Result<(), CommError> {
        for w in self.windows.iter().flatten() {
            if w.local.as_ref().is_some_and(|l| l.id() == slot.id()) {
                w.data.sync()?;
            }
        }
        Ok(())
    }

    fn try_lock(&self, slot: &GlobalSlot) -> Result<bool, CommError> {
        // A test-and-increment lock on fetch-and-op alone: OpenMPI 4.1's shared-memory
        // transport crashes in MPI_Compare_and_swap aimed at the calling rank itself (its
        // emulated atomic sends to a self endpoint it does not have), while fetch-and-op
        // works for every target. The word counts the holder plus attempts in flight; an
        // attempt that finds it non-zero takes its increment back.
        let w = self.windows(slot)?;
        let Remote::Window(index) = slot.remote else {
            return Ok(false);
        };
        if w.meta.fetch_add(w.owner, LOCK, 1)? == 0 {
            self.held.borrow_mut().insert(index);
            return Ok(true);
        }
        w.meta.fetch_add(w.owner, LOCK, u64::MAX)?; // wrapping -1
        Ok(false)
    }

    fn unlock(&self, slot: &GlobalSlot) -> Result<bool, CommError> {
        let w = self.windows(slot)?;
        let Remote::Window(index) = slot.remote else {
            return Ok(false);
        };
        if !self.held.borrow_mut().remove(&index) {
            return Ok(false);
        }
        w.meta.fetch_add(w.owner, LOCK, u64::MAX)?; // wrapping -1
        Ok(true)
    }

    fn destroy(&mut self, _tag: Tag, slots: Vec<GlobalSlot>) -> Result<(), CommError> {
        // Every rank holds the same list in the same order, so the collective frees match.
        for s in &slots {
            if let Remote::Window(i) = s.remote {
                self.free_window(i)?;
            }
        }
        self.world.barrier();
        Ok(())
    }
}

impl MpiBackend {
    /// The world communicator, for raw MPI calls beside hetflow's (the raw-RMA baseline of
    /// `hetflow bench comm`, say). Errors on it are returned as codes (`MPI_ERRORS_RETURN`):
    /// turn them into a [`CommError`] with [`check`].
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }
}

/// Turns an MPI return code of call `call` into a result: [`CommError::Mpi`] with MPI's
/// error string unless it is `MPI_SUCCESS`.
pub fn check(call: &'static str, code: std::os::raw::c_int) -> Result<(), CommError> {
    rma::check(call, code)
}

impl Drop for MpiBackend {
    fn drop(&mut self) {
        // Collective on every rank in creation order, before the universe finalizes MPI.
        for i in 0..self.windows.len() {
            if let Err(e) = self.free_window(i) {
                tracing::error!(error = %e, "freeing an MPI window failed");
            }
        }
    }
}
