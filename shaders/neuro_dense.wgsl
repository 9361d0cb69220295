// Dense synapses (MODELS.md §4, §5), ELEM = f32 or i32. The weights are compressed by rows
// (only non-zero weights): row i is cols/vals[ptr[i] .. ptr[i+1]]. One invocation per
// postsynaptic neuron sums the weights of the presynaptic neurons that spiked (binary) or
// w * s (graded), then (fixed point) shifts by weight_exp.
// p.a = (n_out, graded, weight_exp as i32 bits, fixed).
struct P { a: vec4<u32>, b: vec4<u32> }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> cols: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<ELEM>;
@group(0) @binding(4) var<storage, read> s: array<ELEM>;
@group(0) @binding(5) var<storage, read_write> a: array<ELEM>;

@compute @workgroup_size(64)
fn dense(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.a.x { return; }
    var acc: ELEM = ELEM(0);
    let zero = ELEM(0);
    for (var k = row_ptr[i]; k < row_ptr[i + 1u]; k = k + 1u) {
        let sj = s[cols[k]];
        if sj != zero {
            if p.a.y == 1u { acc = acc + vals[k] * sj; } else { acc = acc + vals[k]; }
        }
    }
    a[i] = SHIFT;
}
