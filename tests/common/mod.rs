//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::sync::OnceLock;

use hetflow::Runtime;

/// One runtime with every GPU per test process (creating many Vulkan devices concurrently is
/// unreliable). `None` when there is no GPU; panics instead when `HETFLOW_REQUIRE_GPU=1`.
pub fn gpu_runtime() -> Option<&'static Runtime> {
    static RT: OnceLock<Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| Runtime::builder().cpu_workers(2).build().expect("runtime"));
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

/// `a[i] += v` with `v` in a uniform (binding 0), the array at binding 1.
pub const ADD_UNIFORM: &str = "
struct P { v: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) { a[id.x] = a[id.x] + p.v; }
}";

/// A small deterministic generator (splitmix64), so a failing seed replays exactly.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
