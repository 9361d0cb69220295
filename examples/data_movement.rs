//! Parla's data-movement tutorial (tutorial/16_write_invalidation.py) with hetflow arrays.
//!
//! T0 reads A on the GPU, T1 adds one to A (read-write), T2 reads it; each task prints A's
//! overview as it runs, showing the coherence states: after T0 the GPU and CPU copies are
//! SHARED, after T1 the GPU copy is MODIFIED and the CPU copy INVALID. A comes home with
//! `to_vec` at the end: [2, 2, 2, 2, 2]. The bytes moved are checked against the counters:
//! one upload for T0 and one download for `to_vec`, nothing else.
//!
//! Run: `cargo run --release --example data_movement`

use hetflow::{DeviceId, MemorySpace, Placement, Runtime, TaskSpace};

#[path = "support/quiet.rs"]
mod quiet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let rt = Runtime::builder().build()?;
    let place = if rt.gpu_count() > 0 {
        Placement::Gpu(0)
    } else {
        println!("No GPU found: the tasks run on the CPU.");
        Placement::Cpu
    };
    let add_one = rt.kernel(include_str!("../shaders/add_one_f32.wgsl"), "main")?;
    let t = TaskSpace::new("T");
    let a = rt.array_named("A", vec![1.0f32; 5]);

    let show = |step: &str, overview: String, dev: String| {
        println!("Task({step}) running on {dev}\n{overview}");
    };
    let gpu_name = |i: usize| format!("GPU:{i}");

    rt.task("T_0")
        .key(&t, 0)
        .args(a.read())
        .on(place.clone())
        .cpu_with(move |cx, a| {
            show("T_0", cx.overviews(), "CPU".into());
            println!("{a:?}\n");
        })
        .gpu(move |cx, a| show("T_0", a.overview(), gpu_name(cx.gpu_index())))
        .spawn();

    rt.task("T_1")
        .key(&t, 1)
        .after_key(&t, 0)
        .args(a.read_write())
        .on(place.clone())
        .cpu_with(move |cx, a| {
            show("T_1", cx.overviews(), "CPU".into());
            a.iter_mut().for_each(|v| *v += 1.0);
        })
        .gpu(move |cx, a| {
            show("T_1", a.overview(), gpu_name(cx.gpu_index()));
            cx.dispatch(&add_one, (a,), add_one.groups_for(5));
        })
        .spawn();

    let t2 = rt
        .task("T_2")
        .key(&t, 2)
        .after_key(&t, 0)
        .after_key(&t, 1)
        .args(a.read())
        .on(place.clone())
        .cpu_with(move |cx, a| {
            show("T_2", cx.overviews(), "CPU".into());
            a.to_vec()
        })
        .gpu(move |cx, a| {
            show("T_2", a.overview(), gpu_name(cx.gpu_index()));
            Vec::new()
        })
        .spawn();
    let ran_on = t2.task_ref();
    t2.wait()?;

    let values = a.to_vec()?;
    println!("A after T_2: {values:?}");
    println!("{}", a.overview());
    if values != vec![2.0; 5] {
        return Err(format!("expected [2, 2, 2, 2, 2], got {values:?}").into());
    }
    if ran_on.device() == Some(DeviceId::Gpu(0)) {
        let s = rt.stats();
        let up = s.link(MemorySpace::Host, MemorySpace::Gpu(0));
        let down = s.link(MemorySpace::Gpu(0), MemorySpace::Host);
        println!(
            "moved host->gpu0: {} x, {} B; gpu0->host: {} x, {} B",
            up.moves, up.bytes, down.moves, down.bytes
        );
        if (up.moves, up.bytes, down.moves, down.bytes) != (1, 20, 1, 20) {
            return Err("expected exactly one 20-byte upload and one 20-byte download".into());
        }
    }
    Ok(())
}
