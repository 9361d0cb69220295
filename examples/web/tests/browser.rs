//! Browser tests: hetflow's engine in headless Chromium on WebGPU (run by `test.sh`).
//!
//! Each test fails when its expected value is wrong; none is skipped when WebGPU is missing
//! (`gpu()` fails the test instead), since the point is to prove the WebGPU path.

use std::sync::{Arc, Mutex};

use hetflow::{Coherence, DeviceError, MemorySpace, Placement, Runtime, TaskError};
use hetflow_web::{moved, quickstart, random_dag};
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
    assert_eq!(moved(&rt, MemorySpace::Host, MemorySpace::Gpu(0)), (2, 2 * bytes));
    assert_eq!(moved(&rt, MemorySpace::Gpu(0), MemorySpace::Host), (1, bytes));
}

#[wasm_bindgen_test]
async fn parla_data_movement_states_and_exact_bytes() {
    let rt = gpu().await;
    let k = rt
        .kernel(include_str!("../../../shaders/add_one_f32.wgsl"), "main")
        .unwrap();
    let a = rt.array_named("A", vec![1.0f32; 5]);
    type Seen = Arc<Mutex<Vec<(Coherence, Coherence)>>>;
    let seen: Seen = Arc::default();
    let record = |a: &hetflow::Array<f32>, seen: &Seen| {
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
    rt.task("T2")
        .reads(&a)
        .on(Placement::Gpu(0))
        .gpu(move |_| record(&a2, &s2))
        .spawn()
        .await
        .unwrap();
    use Coherence::*;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Shared, Shared), (Modified, Invalid), (Modified, Invalid)]
    );
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
