//! The MPI transport (feature `mpi`): point-to-point `MPI_Isend` / `MPI_Irecv` on a
//! duplicate of `MPI_COMM_WORLD`, completed with `MPI_Testsome`.
//!
//! Thread level: `MPI_THREAD_FUNNELED`. MPI is initialised by the cluster's communication
//! thread, which makes every MPI call of the process (init, sends, receives, tests,
//! finalize); no other thread touches MPI. OpenMPI 4.1's `MPI_THREAD_MULTIPLE` over shared
//! memory is fragile, and one thread is all a progress loop needs.
//!
//! Buffers: a request's buffer is a `Vec<u8>` owned by this transport beside the request
//! until `MPI_Testsome` reports the request complete; the `Vec`'s heap block does not move
//! when the `Vec` value does, so MPI's pointer stays valid. Errors are returned
//! (`MPI_ERRORS_RETURN` on the communicator), never fatal to the process.

use std::os::raw::{c_int, c_void};

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::Communicator;

use super::error::DistError;
use super::transport::{BufferPool, Token, Transport};

fn check(call: &'static str, code: c_int) -> Result<(), DistError> {
    crate::comm::mpi::check(call, code).map_err(|e| DistError::Mpi(std::sync::Arc::new(e)))
}

/// An operation in flight: its token, its buffer, and whether it is a receive.
struct InFlight {
    token: Token,
    buf: Vec<u8>,
    recv: bool,
}

/// This rank's MPI transport. Create and use it on one thread only (funneled).
pub(crate) struct MpiTransport {
    comm: ffi::MPI_Comm,
    rank: usize,
    size: usize,
    /// Active requests, index-aligned with `ops`.
    reqs: Vec<ffi::MPI_Request>,
    ops: Vec<InFlight>,
    indices: Vec<c_int>,
    statuses: Vec<ffi::MPI_Status>,
    /// Where receive buffers come from and sent buffers go.
    pool: std::sync::Arc<BufferPool>,
    /// Dropped last: finalizes MPI.
    _universe: mpi::environment::Universe,
}

// SAFETY: the transport is created on the communication thread and moved nowhere else; the
// raw handles are plain integers or pointers that MPI allows to be used from the thread that
// initialised it (FUNNELED). `Send` is needed only to hand it to that thread's closure before
// any MPI call is made on it (it is built inside that closure).
unsafe impl Send for MpiTransport {}

impl MpiTransport {
    /// Initialises MPI (FUNNELED) on the calling thread.
    pub(crate) fn init(pool: std::sync::Arc<BufferPool>) -> Result<MpiTransport, DistError> {
        let (universe, _level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or(DistError::AlreadyInitialised)?;
        let world = universe.world();
        let mut comm: ffi::MPI_Comm = world.as_raw();
        // SAFETY: `world` is live; `comm` receives a new communicator handle.
        check("MPI_Comm_dup", unsafe {
            ffi::MPI_Comm_dup(world.as_raw(), &mut comm)
        })?;
        // SAFETY: `comm` is the live duplicate; ERRORS_RETURN is predefined.
        check("MPI_Comm_set_errhandler", unsafe {
            ffi::MPI_Comm_set_errhandler(comm, ffi::RSMPI_ERRORS_RETURN)
        })?;
        Ok(MpiTransport {
            comm,
            rank: world.rank() as usize,
            size: world.size() as usize,
            reqs: Vec::new(),
            ops: Vec::new(),
            indices: Vec::new(),
            statuses: Vec::new(),
            pool,
            _universe: universe,
        })
    }

    /// Keeps an active request beside its operation until `MPI_Testsome` reports it.
    fn track(&mut self, req: ffi::MPI_Request, op: InFlight) {
        self.reqs.push(req);
        self.ops.push(op);
    }

    fn count(len: usize) -> Result<c_int, DistError> {
        c_int::try_from(len).map_err(|_| DistError::TooLarge { bytes: len })
    }
}

impl Transport for MpiTransport {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }

    fn isend(&mut self, token: Token, dst: usize, tag: i32, buf: Vec<u8>) -> Result<(), DistError> {
        let count = Self::count(buf.len())?;
        // SAFETY: a constant MPI handle exported by rsmpi's C shim.
        let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: `buf`'s heap block stays alive and unmoved in `self.ops` until the request
        // completes; `comm` is live.
        check("MPI_Isend", unsafe {
            ffi::MPI_Isend(
                buf.as_ptr() as *const c_void,
                count,
                ffi::RSMPI_UINT8_T,
                dst as c_int,
                tag,
                self.comm,
                &mut req,
            )
        })?;
        self.track(
            req,
            InFlight {
                token,
                buf,
                recv: false,
            },
        );
        Ok(())
    }

    fn irecv(&mut self, token: Token, src: usize, tag: i32, max: usize) -> Result<(), DistError> {
        let count = Self::count(max)?;
        // Room for `max` bytes, left uninitialised: MPI writes the message there and the
        // length is set to what it wrote when the receive completes.
        let mut buf = self.pool.take(max);
        // SAFETY: a constant MPI handle exported by rsmpi's C shim.
        let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: as for isend; `buf` has capacity for `max` bytes and MPI writes at most
        // `max` bytes into it.
        check("MPI_Irecv", unsafe {
            ffi::MPI_Irecv(
                buf.as_mut_ptr() as *mut c_void,
                count,
                ffi::RSMPI_UINT8_T,
                src as c_int,
                tag,
                self.comm,
                &mut req,
            )
        })?;
        self.track(
            req,
            InFlight {
                token,
                buf,
                recv: true,
            },
        );
        Ok(())
    }

    fn progress(&mut self, done: &mut Vec<(Token, Option<Vec<u8>>)>) -> Result<(), DistError> {
        let n = self.reqs.len();
        if n == 0 {
            return Ok(());
        }
        self.indices.resize(n, 0);
        // SAFETY: MPI_Status is a plain C struct; all-zero is a valid value to overwrite.
        self.statuses.resize(n, unsafe { std::mem::zeroed() });
        let mut out: c_int = 0;
        // SAFETY: the three arrays hold `n` entries; every request in `reqs` is active.
        check("MPI_Testsome", unsafe {
            ffi::MPI_Testsome(
                n as c_int,
                self.reqs.as_mut_ptr(),
                &mut out,
                self.indices.as_mut_ptr(),
                self.statuses.as_mut_ptr(),
            )
        })?;
        if out <= 0 {
            return Ok(());
        }
        let mut finished: Vec<(usize, usize)> = (0..out as usize)
            .map(|k| (self.indices[k] as usize, k))
            .collect();
        // Remove from the back so the indices still to remove stay valid.
        finished.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        for (i, k) in finished {
            self.reqs.swap_remove(i);
            let op = self.ops.swap_remove(i);
            if !op.recv {
                self.pool.give(op.buf);
                done.push((op.token, None));
                continue;
            }
            let mut len: c_int = 0;
            // SAFETY: the status of a completed receive, filled by MPI_Testsome.
            check("MPI_Get_count", unsafe {
                ffi::MPI_Get_count(&self.statuses[k], ffi::RSMPI_UINT8_T, &mut len)
            })?;
            let mut buf = op.buf;
            let len = (len.max(0) as usize).min(buf.capacity());
            // SAFETY: the receive completed: MPI wrote `len` bytes (MPI_Get_count) at the
            // start of the buffer's capacity.
            unsafe { buf.set_len(len) };
            done.push((op.token, Some(buf)));
        }
        Ok(())
    }
}

impl Drop for MpiTransport {
    fn drop(&mut self) {
        // Receives still posted will never be needed: cancel them so finalize does not wait.
        for (mut req, op) in self.reqs.drain(..).zip(self.ops.drain(..)) {
            if op.recv {
                // SAFETY: an active request of this transport; waiting on a cancelled receive
                // returns at once (cancelled or matched), after which MPI no longer writes
                // into its buffer, dropped after this.
                unsafe {
                    ffi::MPI_Cancel(&mut req);
                    ffi::MPI_Wait(&mut req, ffi::RSMPI_STATUS_IGNORE);
                }
            } else {
                // A send still in flight (its peer stopped receiving): MPI may still read
                // its buffer, so it is leaked rather than freed under it.
                std::mem::forget(op.buf);
            }
        }
        // SAFETY: the duplicate made in `init`, no longer used.
        unsafe { ffi::MPI_Comm_free(&mut self.comm) };
    }
}
