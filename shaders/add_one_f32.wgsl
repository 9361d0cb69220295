// a[i] = a[i] + 1.0
@group(0) @binding(0) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // Linear index over a 2-D grid of workgroups, so arrays beyond 65535 * 64 elements work.
    let i = id.x + id.y * groups.x * 64u;
    if i < arrayLength(&a) {
        a[i] = a[i] + 1.0;
    }
}
