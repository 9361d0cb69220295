// One Jacobi step of a 2-D heat stencil on one strip of rows of a row-major grid:
//   next = c + 0.25 * ((n + s + e + w) - 4 c)
// written exactly as the CPU body in examples/heat.rs (same operations in the same order;
// the factors 0.25 and 4 are powers of two, so a fused multiply-add changes nothing), so
// both give the same bits. Edge cells of the grid keep their value.
//
// `src` is the strip's rows plus one halo row above and below where the grid has them;
// `dst` is the strip's own rows. Two entry points: `step`, and `step_and_check`, which also
// folds max |next - c| into `change[0]` (a ReduceOp::Max partial of u32 bit patterns).

struct Params {
    width: u32,     // columns of the grid
    height: u32,    // rows of the grid
    first_row: u32, // the strip's first row in the grid
    halo_top: u32,  // 1 when `src` starts one row above the strip, else 0
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> change: array<atomic<u32>>;

// Updates cell (x, y) of the strip; returns |next - c|, or 0 outside the strip.
fn relax(x: u32, y: u32) -> f32 {
    let rows = arrayLength(&dst) / p.width;
    if x >= p.width || y >= rows {
        return 0.0;
    }
    let row = p.first_row + y;
    let i = (y + p.halo_top) * p.width + x;
    let c = src[i];
    var next = c;
    if row > 0u && row + 1u < p.height && x > 0u && x + 1u < p.width {
        let sum = src[i - p.width] + src[i + p.width] + src[i + 1u] + src[i - 1u];
        next = c + 0.25 * (sum - 4.0 * c);
    }
    dst[y * p.width + x] = next;
    return abs(next - c);
}

@compute @workgroup_size(16, 16)
fn step(@builtin(global_invocation_id) id: vec3<u32>) {
    _ = relax(id.x, id.y);
}

// ANCHOR: check
// The reduction: a tree in workgroup memory, then one atomicMax per workgroup. The values
// are |change| >= 0, whose f32 bit patterns order like the floats as u32; the partial is
// an Array<u32> reduced with Max, so it starts at u32's identity 0, the bits of +0.0.
var<workgroup> biggest: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn step_and_check(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    biggest[lid] = relax(id.x, id.y);
    for (var half = 128u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if lid < half {
            biggest[lid] = max(biggest[lid], biggest[lid + half]);
        }
    }
    if lid == 0u {
        atomicMax(&change[0], bitcast<u32>(biggest[0]));
    }
}
// ANCHOR_END: check
