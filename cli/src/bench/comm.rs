//! Put and get latency and bandwidth, 8 B to 64 MiB, against baselines in the same run:
//! a plain `memcpy` (always) and raw MPI RMA (`MPI_Put`/`MPI_Get` + `MPI_Win_flush` on one
//! window, with the MPI backend). `hetflow bench comm` prints the table.
//!
//! Each figure is the median over 5 batches of the mean time per operation in a batch; a
//! batch runs long enough (a few ms × scale) to swamp the clock's resolution.

use std::time::Instant;

use hetflow::data::MemorySpace;

use hetflow::comm::{
    CommBackend, CommError, CommunicationManager, LocalSlot, MemoryManager, ThreadInstances,
};

/// One measured figure.
#[derive(Debug, Clone)]
pub struct CommRow {
    /// What moved the bytes: `hetflow threads`, `hetflow mpi`, `raw MPI RMA`, `memcpy`.
    pub implementation: String,
    /// `put` or `get` (`memcpy` rows are listed under both).
    pub op: &'static str,
    /// Bytes per operation.
    pub bytes: usize,
    /// Median time per operation, in nanoseconds.
    pub nanos: f64,
}

impl CommRow {
    /// Bandwidth in GB/s (bytes per nanosecond).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.nanos
    }
}

/// The message sizes measured: 8 B, then ×8 up to 64 MiB.
pub fn sizes() -> Vec<usize> {
    let mut v = vec![8usize];
    while *v.last().unwrap_or(&0) < 64 << 20 {
        let next = v[v.len() - 1] * 8;
        v.push(next.min(64 << 20));
    }
    v
}

/// A measured operation: `(implementation, op, body)`.
type Op<'a> = (
    &'a str,
    &'static str,
    Box<dyn FnMut() -> Result<(), CommError> + 'a>,
);

/// Times each operation of `ops` for `bytes` per call, in alternating batches (so a change of
/// machine load hits every implementation alike), and returns one row per operation: the
/// median over 5 batches of the mean ns per call.
pub fn measure_alternating(
    scale: usize,
    bytes: usize,
    ops: Vec<Op<'_>>,
) -> Result<Vec<CommRow>, CommError> {
    let mut ops = ops;
    let budget = 4e6 * scale.max(1) as f64; // ns per batch
    let mut reps = Vec::with_capacity(ops.len());
    for (_, _, op) in ops.iter_mut() {
        op()?; // warm up (first touch, staging, caches)
        let t = Instant::now();
        op()?;
        let one = t.elapsed().as_nanos().max(1) as f64;
        reps.push(((budget / one) as usize).clamp(1, 200_000));
    }
    let mut times = vec![Vec::with_capacity(5); ops.len()];
    for _ in 0..5 {
        for (i, (_, _, op)) in ops.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..reps[i] {
                op()?;
            }
            times[i].push(t.elapsed().as_nanos() as f64 / reps[i] as f64);
        }
    }
    Ok(ops
        .iter()
        .zip(times)
        .map(|((name, op, _), mut t)| {
            t.sort_by(|a, b| a.total_cmp(b));
            CommRow {
                implementation: name.to_string(),
                op,
                bytes,
                nanos: t[2],
            }
        })
        .collect())
}

/// A plain `memcpy` of `n` bytes between two host buffers (the in-process baseline).
fn memcpy_op<'a>(src: &'a [u8], dst: &'a mut [u8], n: usize, op: &'static str) -> Op<'a> {
    (
        "memcpy",
        op,
        Box::new(move || {
            dst[..n].copy_from_slice(std::hint::black_box(&src[..n]));
            std::hint::black_box(&mut *dst);
            Ok(())
        }),
    )
}

/// Extra operations measured beside hetflow's for one size (raw MPI, say).
pub type Extra<'e> = dyn FnMut(usize, &'static str) -> Vec<Op<'e>> + 'e;

/// Root puts into and gets from instance 1's slot (the only one exposed) while the others
/// wait in a fence, alternating with memcpy and `extra`'s operations; the root returns the
/// rows, the others `None`. The root calls `progress` with each step's name before it.
pub fn slot_suite<B: CommBackend>(
    comm: &mut CommunicationManager<B>,
    name: &str,
    scale: usize,
    extra: &mut Extra<'_>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Option<Vec<CommRow>>, CommError> {
    const TAG: u64 = 0xBE7C;
    let max = *sizes().last().unwrap_or(&8);
    let mm = MemoryManager::new();
    let local = mm.allocate(MemorySpace::Host, max)?;
    mm.memset(&local, 0, max, 1)?;
    let me = comm.instance_id().0;
    // Only the target exposes its slot, as in the seed: the root's source stays local.
    let mine: Vec<(u64, &LocalSlot)> = if me == 1 {
        vec![(1, &local)]
    } else {
        Vec::new()
    };
    comm.exchange_global_slots(TAG, &mine)?;
    comm.fence(TAG)?;
    let target = comm.global_slot(TAG, 1)?;
    let mut rows = Vec::new();
    if me == 0 {
        let src = vec![1u8; max];
        let mut dst = vec![0u8; max];
        for n in sizes() {
            let c = &*comm;
            let (t, l) = (&target, &local);
            progress(&format!("{name} put, {}", human(n)));
            let mut ops: Vec<Op<'_>> =
                vec![(name, "put", Box::new(move || c.memcpy(t, 0, l, 0, n)))];
            ops.extend(extra(n, "put"));
            ops.push(memcpy_op(&src, &mut dst, n, "put"));
            rows.extend(measure_alternating(scale, n, ops)?);
            progress(&format!("{name} get, {}", human(n)));
            let mut ops: Vec<Op<'_>> =
                vec![(name, "get", Box::new(move || c.memcpy(l, 0, t, 0, n)))];
            ops.extend(extra(n, "get"));
            ops.push(memcpy_op(&src, &mut dst, n, "get"));
            rows.extend(measure_alternating(scale, n, ops)?);
        }
    }
    comm.fence(TAG)?;
    comm.destroy_global_slots(TAG)?;
    Ok((me == 0).then_some(rows))
}

/// The thread backend with two instances against memcpy; `progress` gets each step's name.
pub fn thread_suite(
    scale: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<CommRow>, CommError> {
    let rows = ThreadInstances::run(2, |mut comm| {
        slot_suite(
            &mut comm,
            "hetflow threads",
            scale,
            &mut |_, _| Vec::new(),
            progress,
        )
    })?
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .flatten()
    .flatten()
    .collect::<Vec<_>>();
    Ok(rows)
}

/// The MPI backend against raw MPI RMA and memcpy on rank 0 (needs at least 2 ranks);
/// other ranks return `None`. Rank 0 calls `progress` with each step's name.
#[cfg(feature = "mpi")]
pub fn mpi_suite(
    comm: &mut CommunicationManager<hetflow::comm::MpiBackend>,
    scale: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Option<Vec<CommRow>>, CommError> {
    comm.require_instances(2)?;
    let max = *sizes().last().unwrap_or(&8);
    let raw = RawWindow::new(comm, max)?;
    let mut local = vec![1u8; max];
    let local_ptr = local.as_mut_ptr();
    let rows = {
        let raw = &raw;
        let mut extra = move |n: usize, op: &'static str| -> Vec<Op<'_>> {
            let body: Box<dyn FnMut() -> Result<(), CommError>> = if op == "put" {
                // SAFETY: `local` holds `max >= n` bytes and outlives every call (dropped
                // after the suite); nothing else touches it meanwhile.
                Box::new(move || unsafe { raw.put(local_ptr, n) })
            } else {
                // SAFETY: as above.
                Box::new(move || unsafe { raw.get(local_ptr, n) })
            };
            vec![("raw MPI RMA", op, body)]
        };
        slot_suite(comm, "hetflow mpi", scale, &mut extra, progress)?
    };
    raw.free(comm)?;
    drop(local);
    Ok(rows)
}

#[cfg(feature = "mpi")]
mod raw_mpi {
    use hetflow::comm::mpi::check;
    use hetflow::comm::{CommError, CommunicationManager, MpiBackend};
    use mpi::raw::AsRaw;

    /// The raw-MPI baseline of `hetflow bench comm`: one window over `bytes` on rank 1 in a
    /// passive-target epoch; bare `MPI_Put` / `MPI_Get` + `MPI_Win_flush` (no checks, no
    /// counters).
    pub struct RawWindow {
        win: mpi::ffi::MPI_Win,
        exposed: Vec<u8>,
    }

    impl RawWindow {
        /// Collective.
        pub fn new(
            comm: &mut CommunicationManager<MpiBackend>,
            bytes: usize,
        ) -> Result<Self, CommError> {
            use mpi::ffi;
            let me = comm.instance_id().0;
            let mut exposed = if me == 1 {
                vec![0u8; bytes]
            } else {
                Vec::new()
            };
            // SAFETY: reading a constant handle rsmpi's C shim defines.
            let mut win: ffi::MPI_Win = unsafe { ffi::RSMPI_WIN_NULL };
            let base = if exposed.is_empty() {
                std::ptr::null_mut()
            } else {
                exposed.as_mut_ptr() as *mut std::os::raw::c_void
            };
            // SAFETY: `exposed` moves into the returned value with its heap buffer unchanged and
            // is dropped only after `free`; `world` is live.
            check("MPI_Win_create", unsafe {
                ffi::MPI_Win_create(
                    base,
                    exposed.len() as ffi::MPI_Aint,
                    1,
                    ffi::RSMPI_INFO_NULL,
                    comm.backend().world().as_raw(),
                    &mut win,
                )
            })?;
            // SAFETY: `win` was just created.
            check("MPI_Win_lock_all", unsafe {
                ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as std::os::raw::c_int, win)
            })?;
            Ok(RawWindow { win, exposed })
        }

        /// `MPI_Put` of `n` bytes at `src` to rank 1, then `MPI_Win_flush`.
        ///
        /// # Safety
        /// `src..src + n` must be readable and `n` at most the window's size.
        pub unsafe fn put(&self, src: *const u8, n: usize) -> Result<(), CommError> {
            use mpi::ffi;
            let c = n as std::os::raw::c_int;
            // SAFETY: the caller guarantees the source range; rank 1 exposes at least `n` bytes.
            check("MPI_Put", unsafe {
                ffi::MPI_Put(
                    src as *const _,
                    c,
                    ffi::RSMPI_UINT8_T,
                    1,
                    0,
                    c,
                    ffi::RSMPI_UINT8_T,
                    self.win,
                )
            })?;
            // SAFETY: live window in a lock_all epoch.
            check("MPI_Win_flush", unsafe { ffi::MPI_Win_flush(1, self.win) })
        }

        /// `MPI_Get` of `n` bytes from rank 1 into `dst`, then `MPI_Win_flush`.
        ///
        /// # Safety
        /// `dst..dst + n` must be writable and unused by anything else until this returns.
        pub unsafe fn get(&self, dst: *mut u8, n: usize) -> Result<(), CommError> {
            use mpi::ffi;
            let c = n as std::os::raw::c_int;
            // SAFETY: the caller guarantees the destination range.
            check("MPI_Get", unsafe {
                ffi::MPI_Get(
                    dst as *mut _,
                    c,
                    ffi::RSMPI_UINT8_T,
                    1,
                    0,
                    c,
                    ffi::RSMPI_UINT8_T,
                    self.win,
                )
            })?;
            // SAFETY: live window in a lock_all epoch.
            check("MPI_Win_flush", unsafe { ffi::MPI_Win_flush(1, self.win) })
        }

        /// Collective: waits for every rank, then frees the window.
        pub fn free(
            mut self,
            comm: &mut CommunicationManager<MpiBackend>,
        ) -> Result<(), CommError> {
            comm.barrier()?;
            // SAFETY: live window; freed once, after every rank's operations completed.
            check("MPI_Win_unlock_all", unsafe {
                mpi::ffi::MPI_Win_unlock_all(self.win)
            })?;
            // SAFETY: as above.
            check("MPI_Win_free", unsafe {
                mpi::ffi::MPI_Win_free(&mut self.win)
            })?;
            drop(std::mem::take(&mut self.exposed));
            Ok(())
        }
    }
}
#[cfg(feature = "mpi")]
use raw_mpi::RawWindow;

/// The rows as a table: per op and size, each implementation's µs/op and GB/s, and the
/// ratio of hetflow's time to the baseline's (raw MPI RMA when present, else memcpy).
pub fn table(rows: &[CommRow]) -> String {
    let mut impls: Vec<String> = Vec::new();
    for r in rows {
        if !impls.contains(&r.implementation) {
            impls.push(r.implementation.clone());
        }
    }
    let hetflow = impls.iter().find(|i| i.starts_with("hetflow")).cloned();
    let baseline = if impls.iter().any(|i| i == "raw MPI RMA") {
        "raw MPI RMA"
    } else {
        "memcpy"
    };
    let mut out = String::from("| op | bytes |");
    for i in &impls {
        out += &format!(" {i} µs/op | {i} GB/s |");
    }
    out += &format!(" ratio hetflow / {baseline} |\n|---|---:|");
    for _ in &impls {
        out += "---:|---:|";
    }
    out += "---:|\n";
    for op in ["put", "get"] {
        for n in sizes() {
            let find = |i: &str| {
                rows.iter()
                    .find(|r| r.op == op && r.bytes == n && r.implementation == i)
            };
            out += &format!("| {op} | {} |", human(n));
            for i in &impls {
                match find(i) {
                    Some(r) => out += &format!(" {:.3} | {:.3} |", r.nanos / 1e3, r.gbps()),
                    None => out += " – | – |",
                }
            }
            match (hetflow.as_deref().and_then(find), find(baseline)) {
                (Some(h), Some(b)) => out += &format!(" {:.2}× |\n", h.nanos / b.nanos),
                _ => out += " – |\n",
            }
        }
    }
    out
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_span_8_bytes_to_64_mib() {
        let s = sizes();
        assert_eq!(s.first(), Some(&8));
        assert_eq!(s.last(), Some(&(64 << 20)));
        assert!(s.windows(2).all(|w| w[1] > w[0] && w[1] <= w[0] * 8));
    }

    #[test]
    fn table_has_a_row_per_op_and_size_with_ratios() {
        let rows: Vec<CommRow> = sizes()
            .into_iter()
            .flat_map(|n| {
                ["put", "get"].into_iter().flat_map(move |op| {
                    [("hetflow threads", 2.0), ("memcpy", 1.0)].map(|(i, t)| CommRow {
                        implementation: i.into(),
                        op,
                        bytes: n,
                        nanos: t * n as f64,
                    })
                })
            })
            .collect();
        let t = table(&rows);
        assert_eq!(t.lines().count(), 2 + 2 * sizes().len());
        assert!(t.contains("| put | 64 MiB |"));
        assert!(t.lines().skip(2).all(|l| l.ends_with("2.00× |")));
    }
}
