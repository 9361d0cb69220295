//! The only place that copies bytes between host memory and GPU memory, and the per-link
//! counters of those copies.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::coherence::MemorySpace;
use super::error::DataError;
use crate::device::GpuDevice;

/// Bytes and number of copies over one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Copies performed.
    pub moves: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Time spent copying, in nanoseconds.
    pub nanos: u64,
}

impl LinkStats {
    /// Measured bandwidth in bytes per nanosecond (GB/s), if anything was copied.
    pub fn bandwidth(&self) -> Option<f64> {
        (self.nanos > 0 && self.bytes > 0).then(|| self.bytes as f64 / self.nanos as f64)
    }
}

/// One copy, as recorded for a trace.
#[derive(Debug, Clone)]
pub struct MoveEvent {
    /// Source space.
    pub from: MemorySpace,
    /// Destination space.
    pub to: MemorySpace,
    /// Bytes copied.
    pub bytes: u64,
    /// The array's label.
    pub array: String,
    /// When the copy started.
    pub start: crate::time::Instant,
    /// When it finished.
    pub end: crate::time::Instant,
}

/// Transfer counters per (from, to) link, and, while a trace is recording, every copy.
#[derive(Debug, Default)]
pub struct TransferCounters {
    links: Mutex<BTreeMap<(MemorySpace, MemorySpace), LinkStats>>,
    trace: Mutex<Option<Vec<MoveEvent>>>,
}

impl TransferCounters {
    /// Counts a copy that started at `start` and has just finished.
    pub(crate) fn record(
        &self,
        from: MemorySpace,
        to: MemorySpace,
        bytes: u64,
        start: crate::time::Instant,
        array: &str,
    ) {
        let end = crate::time::Instant::now();
        {
            let mut links = self.links.lock();
            let e = links.entry((from, to)).or_default();
            e.moves += 1;
            e.bytes += bytes;
            e.nanos += end.saturating_duration_since(start).as_nanos() as u64;
        }
        if let Some(events) = self.trace.lock().as_mut() {
            events.push(MoveEvent {
                from,
                to,
                bytes,
                array: array.to_string(),
                start,
                end,
            });
        }
    }

    /// Starts recording every copy (clearing an earlier recording).
    pub(crate) fn start_trace(&self) {
        *self.trace.lock() = Some(Vec::new());
    }

    /// Stops recording and returns the copies recorded.
    pub(crate) fn take_trace(&self) -> Vec<MoveEvent> {
        self.trace.lock().take().unwrap_or_default()
    }

    /// Snapshot of every link used so far.
    pub fn snapshot(&self) -> BTreeMap<(MemorySpace, MemorySpace), LinkStats> {
        self.links.lock().clone()
    }
}

/// How host-to-GPU copies are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadPath {
    /// Mapped on unified-memory GPUs (integrated, software); elsewhere staging for arrays of
    /// 1 MiB or more and `queue.write_buffer` for smaller ones.
    #[default]
    Auto,
    /// Always `queue.write_buffer` (wgpu's internal staging; slow for large arrays).
    WriteBuffer,
    /// Always through reused MAP_WRITE staging buffers, copied in the task's command buffer.
    Staging,
    /// Map the array's own device buffer and write it directly (needs unified memory).
    Mapped,
}

/// Arrays at least this large go through staging buffers under [`UploadPath::Auto`].
const STAGING_THRESHOLD: usize = 1 << 20;

impl UploadPath {
    /// The concrete path for an array of `bytes` on `gpu`.
    pub(crate) fn resolve(self, gpu: &GpuDevice, bytes: usize, have_encoder: bool) -> UploadPath {
        let mappable = gpu
            .device
            .features()
            .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        match self {
            UploadPath::Mapped if mappable => UploadPath::Mapped,
            UploadPath::Auto if mappable && gpu.info.unified_memory => UploadPath::Mapped,
            UploadPath::Staging | UploadPath::Auto | UploadPath::Mapped
                if have_encoder && (self != UploadPath::Auto || bytes >= STAGING_THRESHOLD) =>
            {
                UploadPath::Staging
            }
            _ => UploadPath::WriteBuffer,
        }
    }

    /// Whether array buffers on `gpu` must be created mappable.
    pub(crate) fn maps_buffers(self, gpu: &GpuDevice) -> bool {
        self.resolve(gpu, 0, true) == UploadPath::Mapped
    }
}

/// The staging copies of one GPU batch: recorded in their own encoder, which the driver
/// submits first in the batch whatever becomes of the tasks that asked for them (a task that
/// fails or is retried after its upload must not lose it: the copy's state already says
/// valid). An upload only targets a copy that is Invalid on that GPU, which no earlier task of
/// the batch uses, so running all uploads first is safe — the same order `write_buffer` has.
pub(crate) struct BatchTransfers {
    pub encoder: wgpu::CommandEncoder,
    /// Staging buffers the copies read, recycled once the batch has finished.
    pub staging: Vec<wgpu::Buffer>,
}

impl BatchTransfers {
    pub(crate) fn new(gpu: &GpuDevice) -> Self {
        BatchTransfers {
            encoder: gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("hetflow batch uploads"),
                }),
            staging: Vec::new(),
        }
    }
}

/// Where an upload may record commands.
pub(crate) struct UploadCtx<'a> {
    pub path: UploadPath,
    pub batch: Option<&'a mut BatchTransfers>,
}

/// Returns staging buffers to `gpu`'s pool once the GPU is done with them (call after the
/// submission that used them has completed).
pub(crate) fn recycle_staging(gpu: &std::sync::Arc<GpuDevice>, buffers: Vec<wgpu::Buffer>) {
    for b in buffers {
        let pool = gpu.clone();
        let buf = b.clone();
        b.map_async(wgpu::MapMode::Write, .., move |r| {
            if r.is_ok() {
                pool.write_staging.lock().push(buf);
            }
        });
    }
}

/// Rounds up to wgpu's copy alignment (4 bytes); empty arrays still get a 4-byte buffer.
pub(crate) fn padded(bytes: usize) -> u64 {
    (bytes.max(4) as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
}

/// Creates the device buffer of an array.
pub(crate) fn create_buffer(
    gpu: &GpuDevice,
    label: &str,
    bytes: usize,
    mappable: bool,
) -> wgpu::Buffer {
    let mut usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    if mappable {
        usage |= wgpu::BufferUsages::MAP_WRITE;
    }
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded(bytes),
        usage,
        mapped_at_creation: false,
    })
}

/// A new device buffer holding `contents` (written before the next submission).
pub(crate) fn create_filled(gpu: &GpuDevice, label: &str, contents: &[u8]) -> wgpu::Buffer {
    let buf = create_buffer(gpu, label, contents.len(), false);
    let mut padded_contents = contents.to_vec();
    padded_contents.resize(padded(contents.len()) as usize, 0);
    gpu.queue.write_buffer(&buf, 0, &padded_contents);
    buf
}

/// Host → GPU, by the path in `up`. Every path orders the copy before the task's commands:
/// `write_buffer` runs before the next submission, a staging copy is recorded in the task's
/// own encoder, and a mapped write is complete when this returns.
pub(crate) fn upload(
    gpu: &GpuDevice,
    dst: &wgpu::Buffer,
    src: &[u8],
    up: &mut UploadCtx<'_>,
    array: &str,
) -> Result<(), DataError> {
    if src.is_empty() {
        return Ok(());
    }
    let size = padded(src.len());
    let fail = |message: String| DataError::Transfer {
        array: array.to_string(),
        link: format!("host->gpu{}", gpu.info.index),
        message,
    };
    match (up.path, up.batch.as_deref_mut()) {
        (UploadPath::Mapped, _) => {
            let (tx, rx) = std::sync::mpsc::channel();
            dst.map_async(wgpu::MapMode::Write, 0..size, move |r| {
                let _ = tx.send(r);
            });
            // The copy being written is Invalid, so no queued GPU work uses this buffer and the
            // mapping resolves at the next poll.
            let mapped = loop {
                gpu.device
                    .poll(wgpu::PollType::Poll)
                    .map_err(|e| fail(e.to_string()))?;
                match rx.try_recv() {
                    Ok(r) => break r,
                    Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                    Err(e) => return Err(fail(e.to_string())),
                }
            };
            mapped.map_err(|e| fail(e.to_string()))?;
            {
                let mut view = dst
                    .get_mapped_range_mut(0..size)
                    .map_err(|e| fail(e.to_string()))?;
                view.slice(..src.len()).copy_from_slice(src);
            }
            dst.unmap();
        }
        (UploadPath::Staging, Some(batch)) => {
            let staging = {
                let mut pool = gpu.write_staging.lock();
                match pool.iter().position(|b| b.size() >= size) {
                    Some(i) => pool.swap_remove(i),
                    None => gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("hetflow upload staging"),
                        size: size.next_power_of_two(),
                        usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: true,
                    }),
                }
            };
            {
                let mut view = staging
                    .get_mapped_range_mut(0..size)
                    .map_err(|e| fail(e.to_string()))?;
                view.slice(..src.len()).copy_from_slice(src);
            }
            staging.unmap();
            batch
                .encoder
                .copy_buffer_to_buffer(&staging, 0, dst, 0, size);
            batch.staging.push(staging);
        }
        _ => {
            if src.len().is_multiple_of(4) {
                gpu.queue.write_buffer(dst, 0, src);
            } else {
                let mut tmp = src.to_vec();
                tmp.resize(size as usize, 0);
                gpu.queue.write_buffer(dst, 0, &tmp);
            }
        }
    }
    Ok(())
}

/// GPU → host, through the device's reused MAP_READ staging buffer. Blocks until the copy is
/// done; earlier submissions that write `src` complete first (queue order).
pub(crate) fn download(
    gpu: &GpuDevice,
    src: &wgpu::Buffer,
    dst: &mut [u8],
    array: &str,
) -> Result<(), DataError> {
    download_range(gpu, src, 0, dst, array)
}

/// GPU `gpu` → host, counted on the `Gpu(gpu) → Host` link: the one way the data layer
/// brings an array's bytes (a copy, a write-back, a reduction partial) home.
pub(crate) fn download_counted(
    gpus: &[std::sync::Arc<GpuDevice>],
    gpu: usize,
    src: &wgpu::Buffer,
    dst: &mut [u8],
    counters: &TransferCounters,
    array: &str,
) -> Result<(), DataError> {
    let start = crate::time::Instant::now();
    download(&gpus[gpu], src, dst, array)?;
    counters.record(
        MemorySpace::Gpu(gpu),
        MemorySpace::Host,
        dst.len() as u64,
        start,
        array,
    );
    Ok(())
}

/// Host → GPU `gpu` by `up`'s path, counted on the `Host → Gpu(gpu)` link: the one way the
/// data layer sends an array's bytes to a device.
pub(crate) fn upload_counted(
    gpus: &[std::sync::Arc<GpuDevice>],
    gpu: usize,
    dst: &wgpu::Buffer,
    src: &[u8],
    up: &mut UploadCtx<'_>,
    counters: &TransferCounters,
    array: &str,
) -> Result<(), DataError> {
    let start = crate::time::Instant::now();
    upload(&gpus[gpu], dst, src, up, array)?;
    counters.record(
        MemorySpace::Host,
        MemorySpace::Gpu(gpu),
        src.len() as u64,
        start,
        array,
    );
    Ok(())
}

/// The 4-byte-aligned window `[start, end)` of a buffer that covers `offset..offset + len`.
fn aligned_cover(offset: u64, len: u64) -> (u64, u64) {
    let a = wgpu::COPY_BUFFER_ALIGNMENT;
    let start = offset - offset % a;
    let end = (offset + len).next_multiple_of(a);
    (start, end)
}

/// GPU → host for a byte range: `dst.len()` bytes of `src` starting at `offset`, any alignment
/// (the aligned cover is copied through the read staging buffer and the range cut out).
/// Blocks until the copy is done. The caller checked that the range lies inside `src`'s
/// padded size.
pub(crate) fn download_range(
    gpu: &GpuDevice,
    src: &wgpu::Buffer,
    offset: u64,
    dst: &mut [u8],
    what: &str,
) -> Result<(), DataError> {
    if dst.is_empty() {
        return Ok(());
    }
    let (start, end) = aligned_cover(offset, dst.len() as u64);
    let size = end - start;
    let fail = |message: String| DataError::Transfer {
        array: what.to_string(),
        link: format!("gpu{}->host", gpu.info.index),
        message,
    };
    let skip = (offset - start) as usize;
    let mut cut = |view: &[u8]| dst.copy_from_slice(&view[skip..skip + dst.len()]);
    #[cfg(target_arch = "wasm32")]
    {
        let _ = gpu;
        web::take_fetched(src, start, size, &mut cut).ok_or_else(|| {
            fail(
                "in the browser a GPU-to-host copy happens only before a CPU task runs \
                 (fetched by the CPU pump, awaiting the mapping); this one (a sliced family's \
                 sync, an eviction's write-back or a spilled partial) was not fetched"
                    .into(),
            )
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let mut slot = gpu.read_staging.lock();
        if slot.as_ref().is_none_or(|b| b.size() < size) {
            *slot = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("hetflow read staging"),
                size: size.next_power_of_two(),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let Some(staging) = slot.as_ref() else {
            return Err(fail("no staging buffer".into()));
        };
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("hetflow download"),
            });
        enc.copy_buffer_to_buffer(src, start, staging, 0, size);
        let index = gpu.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| fail(e.to_string()))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail("map callback dropped".into())),
        }
        {
            let view = staging
                .get_mapped_range(0..size)
                .map_err(|e| fail(e.to_string()))?;
            cut(&view);
        }
        staging.unmap();
        Ok(())
    }
}

/// The browser's GPU-to-host path. WebGPU maps a buffer only through the page's event loop,
/// so a synchronous download cannot wait for it: the CPU pump fetches, with an awaited
/// mapping, every GPU buffer a CPU task's preparation will read (`fetch_for_host`), right
/// before the task runs, and the synchronous mover above takes the fetched bytes. The store
/// is cleared after each task, so fetched bytes are never reused once a later task may have
/// written the buffer.
#[cfg(target_arch = "wasm32")]
pub(crate) mod web {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use crate::data::array::RawArray;
    use crate::data::{Access, DataError};
    use crate::device::GpuDevice;

    /// Whole GPU buffers copied to the host for one task, before it runs.
    #[derive(Default)]
    pub(crate) struct Fetched(Vec<(wgpu::Buffer, Vec<u8>)>);

    /// The fetched buffers of the task running now (set only while it runs, synchronously).
    static CURRENT: Mutex<Option<Fetched>> = Mutex::new(None);

    /// Runs `f` (a task's synchronous preparation and body) with `fetched` available to the
    /// mover, then drops it: fetched bytes never outlive the task they were fetched for.
    pub(crate) fn with_fetched<R>(fetched: Fetched, f: impl FnOnce() -> R) -> R {
        let before = CURRENT.lock().replace(fetched);
        let r = f();
        *CURRENT.lock() = before;
        r
    }

    /// Calls `f` with bytes `start..start + size` of `src` if they were fetched.
    pub(crate) fn take_fetched(
        src: &wgpu::Buffer,
        start: u64,
        size: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Option<()> {
        let current = CURRENT.lock();
        let (_, bytes) = current.as_ref()?.0.iter().find(|(b, _)| b == src)?;
        let range = start as usize..(start + size) as usize;
        f(bytes.get(range)?);
        Some(())
    }

    /// Copies the whole of `src` to the host, awaiting the mapping.
    pub(crate) async fn fetch(
        gpu: &GpuDevice,
        src: &wgpu::Buffer,
        what: &str,
    ) -> Result<Vec<u8>, DataError> {
        let size = src.size();
        let fail = |message: String| DataError::Transfer {
            array: what.to_string(),
            link: format!("gpu{}->host", gpu.info.index),
            message,
        };
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hetflow fetch staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("hetflow fetch"),
            });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        gpu.queue.submit([enc.finish()]);
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail("the mapping's callback was dropped".into())),
        }
        let bytes = staging
            .get_mapped_range(0..size)
            .map_err(|e| fail(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Fetches every GPU buffer the preparation of `arrays` will read on the host (`on_host`:
    /// a CPU task's; else a GPU task's folds). A failed fetch is
    /// logged and left out: the task's preparation then fails with a typed transfer error.
    pub(crate) async fn fetch_for_host(
        arrays: &[(Arc<RawArray>, Access)],
        gpus: &[Arc<GpuDevice>],
        on_host: bool,
    ) -> Fetched {
        let mut out = Fetched::default();
        for (raw, access) in arrays {
            for (g, buffer) in raw.host_sources(*access, on_host) {
                let Some(gpu) = gpus.get(g) else { continue };
                if out.0.iter().any(|(b, _)| *b == buffer) {
                    continue;
                }
                match fetch(gpu, &buffer, &raw.label).await {
                    Ok(bytes) => out.0.push((buffer, bytes)),
                    Err(e) => tracing::warn!(array = %raw.label, error = %e, "fetch failed"),
                }
            }
        }
        out
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) use web::{fetch_for_host, with_fetched, Fetched};

/// Host → GPU for a byte range: writes `src` into `dst` at `offset`, any alignment. An
/// unaligned range is widened to its aligned cover by reading the bordering bytes first, so
/// the bytes around the range keep their values. The write is queued before any later
/// submission on the device (and submitted now), so every later copy or kernel sees it.
pub(crate) fn upload_range(
    gpu: &GpuDevice,
    dst: &wgpu::Buffer,
    offset: u64,
    src: &[u8],
    what: &str,
) -> Result<(), DataError> {
    if src.is_empty() {
        return Ok(());
    }
    let (start, end) = aligned_cover(offset, src.len() as u64);
    if start == offset && end == offset + src.len() as u64 {
        gpu.queue.write_buffer(dst, offset, src);
    } else {
        let mut cover = vec![0u8; (end - start) as usize];
        download_range(gpu, dst, start, &mut cover, what)?;
        let skip = (offset - start) as usize;
        cover[skip..skip + src.len()].copy_from_slice(src);
        gpu.queue.write_buffer(dst, start, &cover);
    }
    gpu.queue.submit([]);
    Ok(())
}

/// GPU → same GPU for a byte range. Aligned ranges are copied on the device; others go
/// through the host (download, then upload).
pub(crate) fn copy_range_on_device(
    gpu: &GpuDevice,
    src: &wgpu::Buffer,
    src_offset: u64,
    dst: &wgpu::Buffer,
    dst_offset: u64,
    len: u64,
    what: &str,
) -> Result<(), DataError> {
    if len == 0 {
        return Ok(());
    }
    let a = wgpu::COPY_BUFFER_ALIGNMENT;
    let overlapping = src == dst && src_offset < dst_offset + len && dst_offset < src_offset + len;
    if src_offset.is_multiple_of(a)
        && dst_offset.is_multiple_of(a)
        && len.is_multiple_of(a)
        && !overlapping
    {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("hetflow range copy"),
            });
        enc.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, len);
        gpu.queue.submit([enc.finish()]);
        return Ok(());
    }
    let mut tmp = vec![0u8; len as usize];
    download_range(gpu, src, src_offset, &mut tmp, what)?;
    upload_range(gpu, dst, dst_offset, &tmp, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_link_and_trace_only_while_recording() {
        let c = TransferCounters::default();
        let (h, g0) = (MemorySpace::Host, MemorySpace::Gpu(0));
        let t = crate::time::Instant::now();
        c.record(h, g0, 100, t, "a");
        c.start_trace();
        c.record(h, g0, 28, t, "b");
        c.record(g0, h, 64, t, "a");
        let events = c.take_trace();
        c.record(g0, h, 1, t, "c");
        let s = c.snapshot();
        assert_eq!((s[&(h, g0)].moves, s[&(h, g0)].bytes), (2, 128));
        assert_eq!((s[&(g0, h)].moves, s[&(g0, h)].bytes), (2, 65));
        let traced: Vec<(&str, u64)> = events.iter().map(|e| (e.array.as_str(), e.bytes)).collect();
        assert_eq!(traced, vec![("b", 28), ("a", 64)]);
        assert!(events.iter().all(|e| e.end >= e.start));
        assert!(
            c.take_trace().is_empty(),
            "nothing recorded after the trace stopped"
        );
        assert_eq!(LinkStats::default().bandwidth(), None);
    }

    #[test]
    fn copies_cover_whole_words() {
        assert_eq!(aligned_cover(0, 4), (0, 4));
        assert_eq!(aligned_cover(1, 1), (0, 4));
        assert_eq!(aligned_cover(6, 5), (4, 12));
        assert_eq!(aligned_cover(8, 0), (8, 8));
        assert!(padded(0).is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT));
        assert!(padded(5) >= 5 && padded(5).is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT));
    }
}
