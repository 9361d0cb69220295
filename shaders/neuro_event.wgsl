// Event-driven synapses (Dense/Sparse) of the neural GPU back end: only the columns of the
// presynaptic neurons that spiked are touched. ELEM = i32 (fixed point) or f32; ACC = the
// atomic accumulator's element (i32, or u32 holding f32 bits). One step is four dispatches:
// clear (acc = 0, count = 0), compact (the list of j with s[j] != 0), scatter (per listed
// column, atomic adds into acc), finish (a = acc, shifted by weight_exp in fixed point).
// Integer atomics are order-independent, so fixed point is bit-exact; f32 adds in the order
// the atomics land (rounding may differ from a sequential sum).
// p.a = (n, graded, weight_exp as i32 bits, fixed); n = n_out (clear, finish) or n_in.
struct P { a: vec4<u32>, b: vec4<u32> }
//--- clear
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> acc: array<ACC>;
@group(0) @binding(2) var<storage, read_write> count: array<u32>;

@compute @workgroup_size(64)
fn event_clear(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.a.x { acc[i] = ACC(0); }
    if i == 0u { count[0] = 0u; }
}
//--- compact
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> s: array<ELEM>;
@group(0) @binding(2) var<storage, read_write> fired: array<u32>;
@group(0) @binding(3) var<storage, read_write> count: atomic<u32>;

@compute @workgroup_size(64)
fn event_compact(@builtin(global_invocation_id) id: vec3<u32>) {
    let j = id.x;
    if j < p.a.x && s[j] != ELEM(0) {
        fired[atomicAdd(&count, 1u)] = j;
    }
}
//--- scatter
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> col_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<ELEM>;
@group(0) @binding(4) var<storage, read> s: array<ELEM>;
@group(0) @binding(5) var<storage, read> fired: array<u32>;
@group(0) @binding(6) var<storage, read> count: array<u32>;
@group(0) @binding(7) var<storage, read_write> acc: array<atomic<ACC>>;

@compute @workgroup_size(64)
fn event_scatter(@builtin(global_invocation_id) id: vec3<u32>) {
    let k = id.x;
    if k >= count[0] { return; }
    let j = fired[k];
    let sj = s[j];
    for (var e = col_ptr[j]; e < col_ptr[j + 1u]; e = e + 1u) {
        var w = vals[e];
        if p.a.y == 1u { w = w * sj; }
        ADD
    }
}
//--- finish
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> acc: array<ACC>;
@group(0) @binding(2) var<storage, read_write> a: array<ELEM>;

@compute @workgroup_size(64)
fn event_finish(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.a.x { a[i] = FINISH; }
}
