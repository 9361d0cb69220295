// Collectives across replicas (src/remote/collective.rs). `ELEM` is replaced by f32, i32 or
// u32 before compiling. One task per replica dispatches these entry points, one pass per
// source replica; passes in one command buffer run in order.
struct Params {
    dst_off: u32,  // first element of dst written
    src_off: u32,  // first element of src read
    len: u32,      // elements written
    src_len: u32,  // elements of src that hold data; beyond it is padding (reads as 0)
    op: u32,       // 0 add, 1 mean (add, then scale_down), 2 mul, 3 min, 4 max
    first: u32,    // 1: this pass starts the reduction (dst = src)
    count: u32,    // scale_down: the divisor
    _pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<ELEM>;
@group(0) @binding(2) var<storage, read_write> dst: array<ELEM>;

fn source(i: u32) -> ELEM {
    let s = p.src_off + i;
    if s < p.src_len { return src[s]; }
    return ELEM(0);
}

fn apply(op: u32, a: ELEM, b: ELEM) -> ELEM {
    switch op {
        case 2u: { return a * b; }
        case 3u: { return min(a, b); }
        case 4u: { return max(a, b); }
        default: { return a + b; }
    }
}

// dst[dst_off + i] = src[src_off + i], zero past src_len: all-gather and sharded slice.
@compute @workgroup_size(256)
fn place(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.len { return; }
    dst[p.dst_off + i] = source(i);
}

// dst[dst_off + i] = op(dst[dst_off + i], src[src_off + i]): one step of a reduce-scatter.
// Padding positions (past src_len) are set to 0 whatever the op.
@compute @workgroup_size(256)
fn combine(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.len { return; }
    let d = p.dst_off + i;
    if p.src_off + i >= p.src_len {
        dst[d] = ELEM(0);
    } else if p.first == 1u {
        dst[d] = src[p.src_off + i];
    } else {
        dst[d] = apply(p.op, dst[d], src[p.src_off + i]);
    }
}

// dst[i] = dst[i] / count: the last step of a mean.
@compute @workgroup_size(256)
fn scale_down(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.len { return; }
    dst[i] = dst[i] / ELEM(p.count);
}

// dst[i] = dst[i] + src[i]: PopXL's accumulate_ on every replica.
@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.len { return; }
    dst[i] = dst[i] + src[i];
}
