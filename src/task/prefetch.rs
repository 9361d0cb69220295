//! Prefetch: moving a task's inputs to its GPU as soon as the task is placed, instead of when
//! it becomes ready, so the copies overlap the work it still waits for.
//!
//! A task is placed at spawn when its device is fixed (an explicit GPU, or a GPU body only and
//! one GPU). Each array it reads whose last writer has already finished is then queued on that
//! GPU's driver as a [`Prefetch`] job, which makes the copy valid there like a read would. The
//! task's own preparation later finds it valid and moves nothing. If the copy is evicted
//! meanwhile, or a writer invalidates it (writers of the array are ordered after the task), the
//! task simply fetches again: prefetching never changes results, only timing.

use std::sync::Arc;

use crate::data::array::{Memory, RawArray};
use crate::data::transfer::{BatchTransfers, UploadCtx};
use crate::data::Access;
use crate::runtime::core::Core;
use crate::sched::gpu::GpuDriver;
use crate::sched::job::{BatchFailure, Encoded, Encoding, GpuJob};

pub(crate) struct Prefetch {
    pub array: Arc<RawArray>,
    pub core: Arc<Core>,
}

impl GpuJob for Prefetch {
    fn encode(
        self: Arc<Self>,
        driver: &GpuDriver,
        _seq: u64,
        _may_overcommit: bool,
        transfers: &mut BatchTransfers,
        _batch: &mut crate::sched::job::BatchEncoder,
    ) -> Encoding {
        let core = &self.core;
        let mem = Memory {
            gpus: core.gpus(),
            counters: core.counters(),
            residency: &core.residency,
        };
        let mut up = UploadCtx {
            path: core.upload,
            batch: Some(transfers),
        };
        // Never overcommit for a prefetch: when memory is tight it is just skipped.
        if let Err(e) = self
            .array
            .prepare_gpu(Access::Read, driver.index, &mem, false, &mut up)
        {
            tracing::trace!(array = %self.array.label, error = %e, "prefetch skipped");
        }
        Encoding::Done(Encoded::Finished)
    }

    fn gpu_done(
        self: Arc<Self>,
        _driver: &GpuDriver,
        _result: Result<std::time::Duration, BatchFailure>,
    ) {
    }
}
