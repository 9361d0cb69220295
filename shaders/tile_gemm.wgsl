// Tile GEMMs for square row-major tiles of side p.t, tiled in 16x16 workgroup memory.
// Dispatch ceil(t/16) x ceil(t/16) workgroups. Entry points:
//   nt_sub: C -= A * B^T   (Cholesky's SYRK and GEMM updates)
//   nn_add: C += A * B     (tiled GEMM)
struct Params {
    t: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> sa: array<array<f32, 16>, 16>;
var<workgroup> sb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn nt_sub(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) g: vec3<u32>) {
    let t = p.t;
    let row = g.y * 16u + l.y;
    let col = g.x * 16u + l.x;
    let brow = g.x * 16u + l.y;
    var acc = 0.0;
    for (var k0 = 0u; k0 < t; k0 = k0 + 16u) {
        let k = k0 + l.x;
        var va = 0.0;
        if row < t && k < t { va = a[row * t + k]; }
        var vb = 0.0;
        if brow < t && k < t { vb = b[brow * t + k]; }
        sa[l.y][l.x] = va;
        sb[l.y][l.x] = vb;
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk = kk + 1u) {
            acc = acc + sa[l.y][kk] * sb[l.x][kk];
        }
        workgroupBarrier();
    }
    if row < t && col < t {
        c[row * t + col] = c[row * t + col] - acc;
    }
}

@compute @workgroup_size(16, 16)
fn nn_add(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) g: vec3<u32>) {
    let t = p.t;
    let row = g.y * 16u + l.y;
    let col = g.x * 16u + l.x;
    var acc = 0.0;
    for (var k0 = 0u; k0 < t; k0 = k0 + 16u) {
        var va = 0.0;
        if row < t && k0 + l.x < t { va = a[row * t + k0 + l.x]; }
        var vb = 0.0;
        if k0 + l.y < t && col < t { vb = b[(k0 + l.y) * t + col]; }
        sa[l.y][l.x] = va;
        sb[l.y][l.x] = vb;
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk = kk + 1u) {
            acc = acc + sa[l.y][kk] * sb[kk][l.x];
        }
        workgroupBarrier();
    }
    if row < t && col < t {
        c[row * t + col] = c[row * t + col] + acc;
    }
}
