//! Shared helpers for integration tests.
#![allow(dead_code, unused_imports)]

use std::sync::OnceLock;

use hetflow::Runtime;

pub mod parla;
pub mod random_dag;
pub mod rng;
pub use random_dag::ADD_UNIFORM;
pub use rng::Rng;

/// One runtime with every GPU per test process (creating many Vulkan devices concurrently is
/// unreliable). `None` when there is no GPU; panics instead when `HETFLOW_REQUIRE_GPU=1`.
///
/// Eager placement without a model file: these tests exercise the GPU paths, which the
/// default policy avoids on a software adapter, and must not depend on what earlier runs
/// taught a persisted model.
pub fn gpu_runtime() -> Option<&'static Runtime> {
    static RT: OnceLock<Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        Runtime::builder()
            .cpu_workers(2)
            .policy(hetflow::Policy::Eager)
            .perf_model_persistence(hetflow::ModelPersistence::Off)
            .build()
            .expect("runtime")
    });
    if rt.gpu_count() == 0 {
        if std::env::var("HETFLOW_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!(
                "HETFLOW_REQUIRE_GPU=1 but no GPU adapter was found (install mesa-vulkan-drivers)"
            );
        }
        eprintln!("!!! NO GPU ADAPTER FOUND: skipping a GPU test (set HETFLOW_REQUIRE_GPU=1 to fail instead)");
        return None;
    }
    Some(rt)
}

pub const SAXPY: &str = include_str!("../../shaders/saxpy.wgsl");

pub const ADD_ONE: &str = "
@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = a[id.x] + 1u; }
}";
