//! Browser tests: hetflow's engine in headless Chromium on WebGPU (run by `test.sh`).
//!
//! Each test fails when its expected value is wrong; none is skipped when WebGPU is missing
//! (`gpu()` fails the test instead), since the point is to prove the WebGPU path.

use hetflow::neuro::NeuroBackend;
use hetflow::{Coherence, DeviceError, MemorySpace, Placement, Runtime, TaskError};
use hetflow_web::{
    lava_golden, moved, parla, quickstart, random_dag, LAVA_FF_FIXED, LAVA_FF_FLOAT,
};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A runtime with the page's WebGPU device; fails the test if there is none.
async fn gpu() -> Runtime {
    let rt = Runtime::builder()
        .build_async()
        .await
        .expect("runtime builds");
    assert_eq!(
        rt.gpu_count(),
        1,
        "Chromium must expose a WebGPU adapter (--enable-unsafe-webgpu)"
    );
    rt
}

#[wasm_bindgen_test]
async fn quickstart_dag_runs_saxpy_on_webgpu_and_reductions_on_the_cpu() {
    let rt = gpu().await;
    let n = 1 << 14;
    let q = quickstart(&rt, n).await.expect("quickstart runs");
    assert!(q.verified(), "{}", q.report());
    let places: Vec<(&str, &str)> = q
        .placements
        .iter()
        .map(|(t, p)| (t.as_str(), p.split(' ').next().unwrap_or("")))
        .collect();
    assert_eq!(
        places,
        vec![
            ("init_x", "cpu"),
            ("init_y", "cpu"),
            ("saxpy", "gpu0"),
            ("sum", "cpu"),
            ("max", "cpu"),
        ]
    );
    // x and y go up once each; y comes back once for both reductions.
    let bytes = (n * 4) as u64;
    assert_eq!(
        moved(&rt, MemorySpace::Host, MemorySpace::Gpu(0)),
        (2, 2 * bytes)
    );
    assert_eq!(
        moved(&rt, MemorySpace::Gpu(0), MemorySpace::Host),
        (1, bytes)
    );
}

#[wasm_bindgen_test]
async fn parla_data_movement_states_and_exact_bytes() {
    let rt = gpu().await;
    let story = parla::spawn(&rt).unwrap();
    story.last.await.unwrap();
    assert_eq!(*story.seen.lock().unwrap(), parla::STATES);
    let a = story.array;
    use Coherence::*;
    assert_eq!(a.to_vec_async().await.unwrap(), vec![2.0; 5]);
    assert_eq!(a.states().get(MemorySpace::Host), Shared);
    assert_eq!(moved(&rt, MemorySpace::Host, MemorySpace::Gpu(0)), (1, 20));
    assert_eq!(moved(&rt, MemorySpace::Gpu(0), MemorySpace::Host), (1, 20));
    assert!(a.overview().contains("At GPU 0: state: SHARED"));
}

#[wasm_bindgen_test]
async fn random_dags_equal_sequential_execution() {
    let rt = gpu().await;
    for seed in 0..4 {
        let run = random_dag(&rt, seed, 600)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.tasks, 600);
        assert!(
            run.on_gpu > 50 && run.on_cpu > 50,
            "both devices ran tasks: {run:?}"
        );
        assert!(run.checked > 8, "{run:?}");
    }
}

#[wasm_bindgen_test]
async fn a_wgsl_error_is_a_typed_error() {
    let rt = gpu().await;
    let bad = "@compute @workgroup_size(1) fn main() { let x: u32 = ; }";
    match rt.kernel(bad, "main") {
        Err(DeviceError::Compile { message, .. }) => {
            assert!(message.contains("expected"), "{message}")
        }
        other => panic!("expected a WGSL compile error, got {other:?}"),
    }
    match rt.kernel("@compute @workgroup_size(1) fn main() {}", "other") {
        Err(DeviceError::EntryPointNotFound { entry, .. }) => assert_eq!(entry, "other"),
        other => panic!("expected a missing entry point, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn a_failing_task_fails_its_dependents_naming_it() {
    let rt = gpu().await;
    let a = rt.array_from(vec![0u32; 4]);
    let k = rt
        .kernel(
            "@group(0) @binding(0) var<storage, read_write> a: array<u32>;
             @compute @workgroup_size(4) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                 a[id.x] = a[id.x] + 1u;
             }",
            "main",
        )
        .unwrap();
    rt.task("broken")
        .read_write(&a)
        .on(Placement::Cpu)
        .cpu_try(|_| Err::<(), _>(std::io::Error::other("no input")))
        .spawn();
    let a2 = a.clone();
    let dependent = rt
        .task("next")
        .read_write(&a)
        .on(Placement::Gpu(0))
        .gpu(move |cx| cx.dispatch_dyn(&k, &[&a2], [1, 1, 1]))
        .spawn();
    match dependent.await {
        Err(TaskError::DependencyFailed { root, cause, .. }) => {
            assert_eq!(root, "broken");
            assert!(cause.to_string().contains("no input"), "{cause}");
        }
        other => panic!("expected the dependency's failure, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn lava_lif_dense_fixed_point_is_bit_exact_on_webgpu() {
    let rt = gpu().await;
    let r = lava_golden(&rt, LAVA_FF_FIXED, NeuroBackend::Gpu)
        .await
        .expect("the network runs");
    assert!(
        r.process_graph.contains("back end: Gpu"),
        "{}",
        r.process_graph
    );
    assert!(
        r.process_graph.contains("GPU element type: I32"),
        "{}",
        r.process_graph
    );
    assert!(
        r.process_graph.contains("GPU synapses: event-driven"),
        "{}",
        r.process_graph
    );
    assert_eq!(r.tag, "fixed_pt");
    assert_eq!(r.num_steps, 100);
    // spikes, u and v of 20 + 10 neurons for 100 steps, the final u and v, the weights.
    assert_eq!(r.compared, 3 * 30 * 100 + 2 * 30 + 20 * 10);
    assert_eq!(r.mismatch, None, "{}", r.mismatch.as_ref().unwrap());
}

#[wasm_bindgen_test]
async fn a_wrong_lava_recording_is_named_by_step_and_neuron() {
    let mut json: serde_json::Value = serde_json::from_str(LAVA_FF_FIXED).unwrap();
    let v = &mut json["result"]["populations"]["post"]["v"][49][3];
    *v = serde_json::json!(v.as_f64().unwrap() + 1.0);
    let rt = gpu().await;
    let r = lava_golden(&rt, &json.to_string(), NeuroBackend::Gpu)
        .await
        .expect("the network runs");
    let m = r.mismatch.expect("the changed value differs");
    assert_eq!(
        (m.step, m.population.as_str(), m.neuron, m.quantity.as_str()),
        (50, "post", 3, "v")
    );
    assert_eq!(m.expected, m.got + 1.0);
}

#[wasm_bindgen_test]
async fn lava_floating_point_runs_in_f32_within_1e4_on_webgpu() {
    let rt = gpu().await;
    let r = lava_golden(&rt, LAVA_FF_FLOAT, NeuroBackend::Gpu)
        .await
        .expect("the network runs");
    // WebGPU has no f64 in shaders here: the f64 kernels are refused by validation (typed)
    // and the network runs in f32.
    assert!(
        r.process_graph.contains("GPU element type: F32"),
        "{}",
        r.process_graph
    );
    // f32 has atomics: the event-driven synapses (lavapipe runs floating point in f64,
    // which has none, so this is where the f32 event path is checked against Lava).
    assert!(
        r.process_graph.contains("GPU synapses: event-driven"),
        "{}",
        r.process_graph
    );
    assert!(r.compared > 9000, "{}", r.compared);
    assert_eq!(r.mismatch, None, "{}", r.mismatch.as_ref().unwrap());
}

#[wasm_bindgen_test]
async fn an_f64_shader_without_shader_f64_is_a_typed_compile_error() {
    let rt = gpu().await;
    match rt.kernel(
        "@group(0) @binding(0) var<storage, read_write> a: array<f64>;
         @compute @workgroup_size(1) fn main() { a[0] = a[0] * 2.0lf; }",
        "main",
    ) {
        Err(DeviceError::Compile { message, .. }) => assert!(message.contains("64"), "{message}"),
        other => panic!("expected a compile error naming f64, got {other:?}"),
    }
}
