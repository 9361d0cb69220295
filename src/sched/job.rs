//! The one job abstraction both executors run: the CPU pool runs [`CpuJob`]s, each GPU driver
//! encodes and completes [`GpuJob`]s (as rayon-core's `job.rs`). What a job is (a task node,
//! a prefetch) belongs to the layer above; the pool and the drivers know only these traits,
//! and neither imports the other: a job that heterogeneous stealing moves between them turns
//! itself into the other kind ([`CpuJob::into_gpu_job`], [`GpuJob::into_cpu_job`]).

use std::sync::Arc;

use super::gpu::GpuDriver;
use crate::data::transfer::BatchTransfers;

/// A unit of CPU work.
pub(crate) trait CpuJob: Send + Sync {
    /// Runs the job. Called exactly once, by the worker that took it from a queue; the
    /// worker then keeps its reference and gives it back through [`CpuJob::retire`].
    fn run_on_cpu(&self);
    /// The job's priority among ready CPU jobs (0 by default; tiers in `ranked.rs`).
    fn priority(&self) -> i32;
    /// Heterogeneous stealing: whether idle GPU `gpu` should run this queued job instead. When
    /// it returns true the job has been retargeted and the caller must take it.
    fn move_to_gpu(&self, gpu: usize) -> bool;
    /// The same job as GPU work (after [`CpuJob::move_to_gpu`] said yes).
    fn into_gpu_job(self: Arc<Self>) -> GpuJobRef;
    /// Takes back the reference a CPU worker ran the job with, instead of a drop: a job may
    /// keep its allocation for reuse (a task's node: `task/recycle.rs`). Called outside any
    /// of the pool's borrows, as a drop would be.
    fn retire(self: Arc<Self>) {}
    /// In the browser: the GPU-to-host copies the job's preparation will need, as a future
    /// the pump awaits before [`CpuJob::run_on_cpu`] (WebGPU maps buffers only through the
    /// event loop).
    #[cfg(target_arch = "wasm32")]
    fn host_fetch(&self) -> Option<HostFetch> {
        None
    }
}

/// The GPU buffers a job's preparation reads on the host, being fetched (browser only).
#[cfg(target_arch = "wasm32")]
pub(crate) type HostFetch =
    std::pin::Pin<Box<dyn std::future::Future<Output = crate::data::transfer::Fetched>>>;

pub(crate) type CpuJobRef = Arc<dyn CpuJob>;

/// Asked by a worker that found every queue empty for work queued on a GPU that would finish
/// sooner on the CPU (heterogeneous stealing; installed by the task layer).
pub(crate) type CpuStealHook = Box<dyn Fn() -> Option<CpuJobRef> + Send + Sync>;

/// Why a whole GPU batch failed: handed to every job of the batch.
#[derive(Debug, Clone)]
pub(crate) struct BatchFailure {
    /// The GPU's index.
    pub gpu: usize,
    /// The batch's sequence number.
    pub seq: u64,
    /// How many jobs the batch held.
    pub jobs: usize,
    /// wgpu's error (submit validation, polling), or why an earlier failure took this batch.
    pub cause: Arc<dyn std::error::Error + Send + Sync>,
}

/// The command encoder a batch's jobs record into, and the command buffers cut from it.
///
/// Jobs whose commands hetflow validates before recording (kernel dispatches) share one
/// encoder, so a batch is one command buffer however many tasks it holds (a command buffer
/// per task costs lavapipe about as much as the dispatch itself). A job that records raw
/// commands cuts the shared encoder first ([`BatchEncoder::cut`]) and brings its own
/// command buffer ([`Encoded::Commands`]): queue order is the order of the cuts.
pub(crate) struct BatchEncoder {
    device: wgpu::Device,
    current: Option<wgpu::CommandEncoder>,
    buffers: Vec<wgpu::CommandBuffer>,
    /// Bind groups made for this batch, by pipeline and bound buffers: a task that dispatches
    /// a kernel on the same arrays as one before it in the batch (a chain of steps) reuses
    /// the group. They live as long as the batch's encoding; the buffers they hold are pinned
    /// by the batch's tasks anyway, so no evicted copy is kept alive.
    bind_groups: BindGroups,
    /// The uniform values of the batch's dispatches, packed into shared buffers.
    uniforms: Vec<UniformChunk>,
    /// The device's uniform offset alignment.
    uniform_align: u64,
    queue: wgpu::Queue,
}

/// One buffer of uniform slots and the bytes to write into it before the batch runs.
struct UniformChunk {
    buffer: wgpu::Buffer,
    data: Vec<u8>,
}

/// The size of a uniform buffer shared by a batch's dispatches.
const UNIFORM_CHUNK: u64 = 64 << 10;

/// Bind groups by (pipeline, (binding, buffer) pairs).
type BindGroups =
    std::collections::HashMap<(wgpu::ComputePipeline, Vec<(u32, wgpu::Buffer)>), wgpu::BindGroup>;

impl BatchEncoder {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        BatchEncoder {
            device: device.clone(),
            current: None,
            buffers: Vec::new(),
            bind_groups: BindGroups::new(),
            uniforms: Vec::new(),
            uniform_align: u64::from(device.limits().min_uniform_buffer_offset_alignment).max(16),
            queue: queue.clone(),
        }
    }

    /// A slot holding `bytes` (padded to 16) in one of the batch's uniform buffers: the
    /// buffer, the offset and the size to bind. A uniform larger than a chunk gets a buffer
    /// of its own.
    pub(crate) fn uniform(&mut self, bytes: &[u8]) -> (wgpu::Buffer, u64, u64) {
        let size = (bytes.len().max(16) as u64).next_multiple_of(16);
        let align = self.uniform_align;
        let fits = |c: &UniformChunk| {
            (c.data.len() as u64).next_multiple_of(align) + size <= c.buffer.size()
        };
        if !self.uniforms.last().is_some_and(fits) {
            // Not `create_buffer_init`: it panics when the device is lost, where this must
            // stay an error of the task (reported through its error scope).
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("hetflow uniforms"),
                size: size.max(UNIFORM_CHUNK),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.uniforms.push(UniformChunk {
                buffer,
                data: Vec::new(),
            });
        }
        let chunk = self.uniforms.last_mut().expect("a chunk was just ensured");
        let offset = (chunk.data.len() as u64).next_multiple_of(align);
        chunk.data.resize(offset as usize, 0);
        chunk.data.extend_from_slice(bytes);
        chunk.data.resize((offset + size) as usize, 0);
        (chunk.buffer.clone(), offset, size)
    }

    /// The bind group of `pipeline` with these buffers, made by `make` the first time in this
    /// batch.
    pub(crate) fn bind_group(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        buffers: Vec<(u32, wgpu::Buffer)>,
        make: impl FnOnce() -> wgpu::BindGroup,
    ) -> wgpu::BindGroup {
        self.bind_groups
            .entry((pipeline.clone(), buffers))
            .or_insert_with(make)
            .clone()
    }

    /// The shared encoder, opened on first use.
    pub(crate) fn shared(&mut self) -> &mut wgpu::CommandEncoder {
        self.current.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("hetflow batch"),
                })
        })
    }

    /// Ends the shared command buffer here: later commands go to a new one, after it.
    pub(crate) fn cut(&mut self) {
        if let Some(e) = self.current.take() {
            self.buffers.push(e.finish());
        }
    }

    /// Appends a job's own command buffer (after a [`BatchEncoder::cut`]).
    pub(crate) fn push(&mut self, commands: wgpu::CommandBuffer) {
        self.buffers.push(commands);
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.current.is_none() && self.buffers.is_empty()
    }

    /// The batch's command buffers, in queue order, with its uniform values written (they
    /// reach the GPU before the command buffers of the next submit, this batch's).
    pub(crate) fn finish(mut self) -> Vec<wgpu::CommandBuffer> {
        for c in &self.uniforms {
            self.queue.write_buffer(&c.buffer, 0, &c.data);
        }
        self.cut();
        self.buffers
    }
}

/// What encoding a job gave.
pub(crate) enum Encoded {
    /// The job recorded its commands in the batch's shared encoder.
    Recorded,
    /// The job's own command buffer, to submit after what the batch recorded so far.
    Commands(wgpu::CommandBuffer),
    /// The job finished without GPU work (it failed before any command).
    Finished,
    /// The GPU's memory is held by copies pinned by jobs already encoded: submit, wait for
    /// them, and encode this job again (then with `may_overcommit`).
    Retry,
}

/// What [`GpuJob::encode`] gives: its outcome, or the error scope its commands were recorded
/// in, to resolve before the outcome is known. A scope resolves at once on native wgpu and
/// through the page's event loop on WebGPU, so the driver awaits it rather than blocking.
pub(crate) enum Encoding {
    /// Encoding is over.
    Done(Encoded),
    /// Pop the scope, then hand its error (if any) to the rest of the job's encoding.
    Check(wgpu::ErrorScopeGuard, Box<dyn ScopedEncode>),
}

/// The part of a job's encoding that follows its error scope.
pub(crate) trait ScopedEncode {
    /// Finishes encoding given wgpu's first validation error in the job's scope, if any.
    fn finish(self: Box<Self>, scope_error: Option<wgpu::Error>) -> Encoded;
}

/// A unit of GPU work.
pub(crate) trait GpuJob: Send + Sync {
    /// Encodes the job for batch `seq`. With `may_overcommit`, nothing else is encoded or in
    /// flight on this GPU, and the job may exceed the memory budget rather than retry.
    fn encode(
        self: Arc<Self>,
        driver: &GpuDriver,
        seq: u64,
        may_overcommit: bool,
        transfers: &mut BatchTransfers,
        batch: &mut BatchEncoder,
    ) -> Encoding;
    /// The batch holding this job finished on the device, or failed as a whole (rejected at
    /// submit, or the device failed while running it). Called exactly once per encoded job.
    ///
    /// On success it carries the job's share of the batch's device time: the batch's time on
    /// the device divided by its jobs, what one of them cost the GPU as a performance model
    /// should learn it (a job's own latency, from its encoding to its batch's end, would
    /// charge every job of a batch for all of it).
    fn gpu_done(
        self: Arc<Self>,
        driver: &GpuDriver,
        result: Result<std::time::Duration, BatchFailure>,
    );
    /// Predicted run time on this GPU in nanoseconds (0 when unknown).
    fn predicted_ns(&self) -> u64 {
        0
    }
    /// Heterogeneous stealing: whether an idle CPU worker should run this job, queued on GPU
    /// `gpu` behind `ahead_ns` of predicted work, instead. Called under the driver's inbox
    /// lock; when it returns true the job has been retargeted and the caller must take it.
    /// Jobs that only make sense on this GPU keep the default, false.
    fn move_to_cpu(&self, _gpu: usize, _ahead_ns: u64) -> bool {
        false
    }
    /// The same job as CPU work (after [`GpuJob::move_to_cpu`] said yes).
    fn into_cpu_job(self: Arc<Self>) -> Option<CpuJobRef> {
        None
    }
    /// In the browser: host copies the job's preparation needs (folding reduction partials
    /// on the host), awaited by the driver before [`GpuJob::encode`].
    #[cfg(target_arch = "wasm32")]
    fn host_fetch(&self) -> Option<HostFetch> {
        None
    }
}

/// Asked by an idle driver for work queued elsewhere that would finish sooner on its GPU
/// (heterogeneous stealing; installed by the task layer).
pub(crate) type GpuStealHook = Box<dyn Fn(usize) -> Option<GpuJobRef> + Send + Sync>;

pub(crate) type GpuJobRef = Arc<dyn GpuJob>;

/// A GPU batch a job must not start before (unless it runs on that GPU, whose queue orders
/// it): the batch `seq` of GPU `gpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub gpu: usize,
    pub seq: u64,
}

/// A job for the pool's and the scheduler's unit tests: runs its closure on the CPU; as GPU
/// work it finishes without recording anything.
#[cfg(test)]
pub(crate) struct FnJob(pub(crate) Box<dyn Fn() + Send + Sync>);

#[cfg(test)]
impl CpuJob for FnJob {
    fn run_on_cpu(&self) {
        (self.0)()
    }
    fn priority(&self) -> i32 {
        0
    }
    fn move_to_gpu(&self, _gpu: usize) -> bool {
        false
    }
    fn into_gpu_job(self: Arc<Self>) -> GpuJobRef {
        self
    }
}

#[cfg(test)]
impl GpuJob for FnJob {
    fn encode(
        self: Arc<Self>,
        _driver: &GpuDriver,
        _seq: u64,
        _may_overcommit: bool,
        _transfers: &mut BatchTransfers,
        _batch: &mut BatchEncoder,
    ) -> Encoding {
        Encoding::Done(Encoded::Finished)
    }
    fn gpu_done(
        self: Arc<Self>,
        _driver: &GpuDriver,
        _result: Result<std::time::Duration, BatchFailure>,
    ) {
    }
    fn into_cpu_job(self: Arc<Self>) -> Option<CpuJobRef> {
        Some(self)
    }
}
