// a[i] = a[i] + 1.0
@group(0) @binding(0) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&a) {
        a[id.x] = a[id.x] + 1.0;
    }
}
