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
}

/// Transfer counters per (from, to) link.
#[derive(Debug, Default)]
pub struct TransferCounters {
    links: Mutex<BTreeMap<(MemorySpace, MemorySpace), LinkStats>>,
}

impl TransferCounters {
    pub(crate) fn record(&self, from: MemorySpace, to: MemorySpace, bytes: u64) {
        let mut links = self.links.lock();
        let e = links.entry((from, to)).or_default();
        e.moves += 1;
        e.bytes += bytes;
    }

    /// Snapshot of every link used so far.
    pub fn snapshot(&self) -> BTreeMap<(MemorySpace, MemorySpace), LinkStats> {
        self.links.lock().clone()
    }
}

/// Rounds up to wgpu's copy alignment (4 bytes); empty arrays still get a 4-byte buffer.
pub(crate) fn padded(bytes: usize) -> u64 {
    (bytes.max(4) as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
}

/// Creates the device buffer of an array.
pub(crate) fn create_buffer(gpu: &GpuDevice, label: &str, bytes: usize) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded(bytes),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Host → GPU. The bytes are copied into wgpu's staging memory before this returns, and the
/// copy executes before the next submission on the queue.
pub(crate) fn upload(gpu: &GpuDevice, dst: &wgpu::Buffer, src: &[u8]) {
    if src.is_empty() {
        return;
    }
    if src.len().is_multiple_of(4) {
        gpu.queue.write_buffer(dst, 0, src);
    } else {
        let mut tmp = src.to_vec();
        tmp.resize(padded(src.len()) as usize, 0);
        gpu.queue.write_buffer(dst, 0, &tmp);
    }
}

/// GPU → host, through the device's reused MAP_READ staging buffer. Blocks until the copy is
/// done; earlier submissions that write `src` complete first (queue order).
pub(crate) fn download(
    gpu: &GpuDevice,
    src: &wgpu::Buffer,
    dst: &mut [u8],
    array: &str,
) -> Result<(), DataError> {
    if dst.is_empty() {
        return Ok(());
    }
    let size = padded(dst.len());
    let fail = |message: String| DataError::Transfer {
        array: array.to_string(),
        link: format!("gpu{}->host", gpu.info.index),
        message,
    };
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
    enc.copy_buffer_to_buffer(src, 0, staging, 0, size);
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
        dst.copy_from_slice(&view[..dst.len()]);
    }
    staging.unmap();
    Ok(())
}
