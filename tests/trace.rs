//! The trace is valid Chrome trace JSON with one event per task and per move.

mod common;

use hetflow::{MemorySpace, Placement, Runtime};

#[test]
fn trace_has_one_event_per_task_and_per_move() {
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let has_gpu = rt.gpu_count() > 0;
    if !has_gpu {
        let _ = common::gpu_runtime(); // fails under HETFLOW_REQUIRE_GPU=1
    }
    let k = rt
        .kernel(include_str!("../shaders/add_one_f32.wgsl"), "main")
        .unwrap();
    rt.start_trace();
    let a = rt.array_named("traced \"array\"", vec![1.0f32; 1000]);
    let mut tasks = 0;
    for i in 0..10 {
        let a2 = a.clone();
        rt.task(format!("cpu-{i}"))
            .read_write(&a)
            .on(Placement::Cpu)
            .cpu(move |cx| cx.write(&a2)[0] += 1.0)
            .spawn();
        tasks += 1;
        if has_gpu {
            let (k2, a3) = (k.clone(), a.clone());
            rt.task(format!("gpu-{i}"))
                .read_write(&a)
                .on(Placement::Gpu(0))
                .gpu(move |cx| cx.dispatch_dyn(&k2, &[&a3], k2.groups_for(1000)))
                .spawn();
            tasks += 1;
        }
    }
    rt.wait_idle();
    let moves: u64 = rt.stats().links.values().map(|l| l.moves).sum();
    let trace = rt.take_trace();
    let json: serde_json::Value =
        serde_json::from_str(&trace.to_chrome_json()).expect("valid JSON");
    let events = json["traceEvents"].as_array().expect("traceEvents");
    let count = |cat: &str| {
        events
            .iter()
            .filter(|e| e["cat"] == cat && e["ph"] == "X")
            .count()
    };
    assert_eq!(count("task"), tasks);
    assert_eq!(count("move") as u64, moves);
    if has_gpu {
        assert_eq!(
            moves, 19,
            "10 uploads, 9 downloads (the first CPU task finds A on the host)"
        );
        assert!(trace.moves.iter().any(|m| m.from == MemorySpace::Gpu(0)));
    }
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert!(e["dur"].as_f64().unwrap() >= 0.0 && e["ts"].as_f64().unwrap() >= 0.0);
    }
    // Recording stopped: nothing more is collected.
    rt.task("after").cpu(|_| ()).spawn().wait().unwrap();
    assert!(rt.take_trace().tasks.is_empty());
    let path = std::env::temp_dir().join("hetflow-trace-test.json");
    trace.write_chrome_json(&path).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 100);
}
