// Message plumbing of the neural GPU backend, for ELEM = f32 (floating point) or i32
// (fixed point). p.a = (n, offset, stride, first).
struct P { a: vec4<u32>, b: vec4<u32> }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<ELEM>;
@group(0) @binding(2) var<storage, read_write> dst: array<ELEM>;

// dst[i] = src[offset + i * stride]: an OutPort send, a source's column.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.a.x { dst[i] = src[p.a.y + i * p.a.z]; }
}

// dst[offset + i * stride] = src[i]: a monitor row, a sink's column.
@compute @workgroup_size(64)
fn scatter(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.a.x { dst[p.a.y + i * p.a.z] = src[i]; }
}

// An InPort's receive: the first connection copies, the others add (i32 wraps, as numpy).
@compute @workgroup_size(64)
fn accum(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.a.x {
        if p.a.w == 1u { dst[i] = src[i]; } else { dst[i] = dst[i] + src[i]; }
    }
}
