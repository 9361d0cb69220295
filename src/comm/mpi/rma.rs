//! A small safe wrapper over MPI's one-sided (RMA) calls, which rsmpi's safe API lacks.
//!
//! A [`Window`] is created over memory the caller keeps alive and stays in one passive-target
//! epoch (`MPI_Win_lock_all` with `MPI_MODE_NOCHECK`) until [`Window::free`]. Every data
//! call is completed with `MPI_Win_flush` before it returns, so the Rust borrows it takes
//! (the source or destination bytes, the fetched value) end with the MPI operation — no
//! operation outlives a borrow. Errors are returned (the window's error handler is
//! `MPI_ERRORS_RETURN`), never fatal.

use std::os::raw::{c_char, c_int, c_void};

use mpi::ffi;

use crate::comm::error::CommError;

/// Turns an MPI return code into a result.
pub(crate) fn check(call: &'static str, code: c_int) -> Result<(), CommError> {
    if code == ffi::MPI_SUCCESS as c_int {
        return Ok(());
    }
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` holds MPI_MAX_ERROR_STRING characters as the standard requires.
    unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr(), &mut len) };
    let bytes: Vec<u8> = buf[..len.clamp(0, buf.len() as c_int) as usize]
        .iter()
        .map(|&c| c as u8)
        .collect();
    Err(CommError::Mpi {
        call,
        code,
        message: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Largest count one MPI call takes.
const CHUNK: usize = i32::MAX as usize;

/// One MPI window in a passive-target epoch.
pub(crate) struct Window {
    raw: ffi::MPI_Win,
}

impl Window {
    /// Collective over `comm`: exposes `size` bytes at `base` (displacement unit 1 byte).
    ///
    /// # Safety
    /// `base..base + size` must be valid for reads and writes by MPI until [`Window::free`]
    /// returns (for `size == 0`, `base` may be null), and `comm` must be a live communicator.
    pub(crate) unsafe fn create(
        comm: ffi::MPI_Comm,
        base: *mut u8,
        size: usize,
    ) -> Result<Window, CommError> {
        let mut raw: ffi::MPI_Win = ffi::RSMPI_WIN_NULL;
        let base = if size == 0 {
            std::ptr::null_mut()
        } else {
            base as *mut c_void
        };
        // SAFETY: the caller guarantees the memory and the communicator; `raw` is written
        // by MPI.
        check("MPI_Win_create", unsafe {
            ffi::MPI_Win_create(
                base,
                size as ffi::MPI_Aint,
                1,
                ffi::RSMPI_INFO_NULL,
                comm,
                &mut raw,
            )
        })?;
        let win = Window { raw };
        // SAFETY: `raw` is the live window just created.
        check("MPI_Win_set_errhandler", unsafe {
            ffi::MPI_Win_set_errhandler(win.raw, ffi::RSMPI_ERRORS_RETURN)
        })?;
        // SAFETY: as above; NOCHECK is valid because no rank ever takes an exclusive lock.
        check("MPI_Win_lock_all", unsafe {
            ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as c_int, win.raw)
        })?;
        Ok(win)
    }

    fn flush(&self, target: i32) -> Result<(), CommError> {
        // SAFETY: live window inside a lock_all epoch.
        check("MPI_Win_flush", unsafe {
            ffi::MPI_Win_flush(target, self.raw)
        })
    }

    /// Writes `src` into `target`'s window at byte `disp`; complete at the target on return.
    pub(crate) fn put(&self, src: &[u8], target: i32, disp: usize) -> Result<(), CommError> {
        for (i, chunk) in src.chunks(CHUNK).enumerate() {
            // SAFETY: `chunk` stays borrowed until the flush below completes the operation;
            // the target range was checked against the window's size by the caller.
            check("MPI_Put", unsafe {
                ffi::MPI_Put(
                    chunk.as_ptr() as *const c_void,
                    chunk.len() as c_int,
                    ffi::RSMPI_UINT8_T,
                    target,
                    (disp + i * CHUNK) as ffi::MPI_Aint,
                    chunk.len() as c_int,
                    ffi::RSMPI_UINT8_T,
                    self.raw,
                )
            })?;
        }
        self.flush(target)
    }

    /// Reads `dst.len()` bytes of `target`'s window at byte `disp` into `dst`.
    pub(crate) fn get(&self, dst: &mut [u8], target: i32, disp: usize) -> Result<(), CommError> {
        for (i, chunk) in dst.chunks_mut(CHUNK).enumerate() {
            // SAFETY: `chunk` stays mutably borrowed until the flush completes the operation.
            check("MPI_Get", unsafe {
                ffi::MPI_Get(
                    chunk.as_mut_ptr() as *mut c_void,
                    chunk.len() as c_int,
                    ffi::RSMPI_UINT8_T,
                    target,
                    (disp + i * CHUNK) as ffi::MPI_Aint,
                    chunk.len() as c_int,
                    ffi::RSMPI_UINT8_T,
                    self.raw,
                )
            })?;
        }
        self.flush(target)
    }

    /// Atomically adds `value` to the `u64` at byte `disp` of `target`'s window and returns
    /// the old value (`value == 0` is an atomic read).
    pub(crate) fn fetch_add(&self, target: i32, disp: usize, value: u64) -> Result<u64, CommError> {
        let mut old = 0u64;
        // SAFETY: `value` and `old` live until the flush completes the operation.
        check("MPI_Fetch_and_op", unsafe {
            ffi::MPI_Fetch_and_op(
                &value as *const u64 as *const c_void,
                &mut old as *mut u64 as *mut c_void,
                ffi::RSMPI_UINT64_T,
                target,
                disp as ffi::MPI_Aint,
                ffi::RSMPI_SUM,
                self.raw,
            )
        })?;
        self.flush(target)?;
        Ok(old)
    }

    /// Synchronises the public and private copies of this rank's window memory, so bytes
    /// remote ranks wrote are visible to local loads.
    pub(crate) fn sync(&self) -> Result<(), CommError> {
        // SAFETY: live window inside a lock_all epoch.
        check("MPI_Win_sync", unsafe { ffi::MPI_Win_sync(self.raw) })
    }

    /// Collective: ends the epoch and frees the window; the memory may be released after.
    pub(crate) fn free(mut self) -> Result<(), CommError> {
        // SAFETY: live window inside a lock_all epoch; after MPI_Win_free `raw` is
        // MPI_WIN_NULL and never used again (`self` is consumed).
        check("MPI_Win_unlock_all", unsafe {
            ffi::MPI_Win_unlock_all(self.raw)
        })?;
        check("MPI_Win_free", unsafe { ffi::MPI_Win_free(&mut self.raw) })
    }
}
