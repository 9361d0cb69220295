//! The Parla data-movement story (a read, a read-write and a read of one array on GPU 0),
//! one file for both targets: `tests/data_movement.rs` and the browser's tests
//! (`examples/web`, included by path). [`spawn`] records the coherence states each task sees;
//! the callers wait their own way and check [`STATES`] and the bytes moved.

use std::sync::{Arc, Mutex};

use hetflow::{Array, Coherence, DeviceError, MemorySpace, Placement, Runtime, TaskHandle};

/// (GPU 0's state, the host's state) as each task saw them.
pub type Seen = Arc<Mutex<Vec<(Coherence, Coherence)>>>;

/// What T0 (read), T1 (read-write) and T2 (read) see: the read shares the host copy, the
/// write invalidates it, the next read finds the device copy modified.
pub const STATES: [(Coherence, Coherence); 3] = [
    (Coherence::Shared, Coherence::Shared),
    (Coherence::Modified, Coherence::Invalid),
    (Coherence::Modified, Coherence::Invalid),
];

/// The spawned story.
pub struct Story {
    /// `A`: five `1.0`, plus one from T1.
    pub array: Array<f32>,
    /// The states each task saw, in order.
    pub seen: Seen,
    /// T2, the last task.
    pub last: TaskHandle<()>,
}

/// Spawns T0, T1 and T2 on `rt`'s GPU 0 and returns at once.
pub fn spawn(rt: &Runtime) -> Result<Story, DeviceError> {
    let k = rt.kernel(include_str!("../../shaders/add_one_f32.wgsl"), "main")?;
    let a = rt.array_named("A", vec![1.0f32; 5]);
    let seen: Seen = Arc::default();
    let record = |a: &Array<f32>, seen: &Seen| {
        let s = a.states();
        seen.lock()
            .unwrap()
            .push((s.get(MemorySpace::Gpu(0)), s.get(MemorySpace::Host)));
    };
    let (a0, s0) = (a.clone(), seen.clone());
    rt.task("T0")
        .reads(&a)
        .on(Placement::Gpu(0))
        .gpu(move |_| record(&a0, &s0))
        .spawn();
    let (a1, s1, k1) = (a.clone(), seen.clone(), k.clone());
    rt.task("T1")
        .read_write(&a)
        .on(Placement::Gpu(0))
        .gpu(move |cx| {
            record(&a1, &s1);
            cx.dispatch_dyn(&k1, &[&a1], k1.groups_for(5))
        })
        .spawn();
    let (a2, s2) = (a.clone(), seen.clone());
    let last = rt
        .task("T2")
        .reads(&a)
        .on(Placement::Gpu(0))
        .gpu(move |_| record(&a2, &s2))
        .spawn();
    Ok(Story {
        array: a,
        seen,
        last,
    })
}
