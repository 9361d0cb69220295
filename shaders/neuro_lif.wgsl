// LIF neurons, floating point (MODELS.md §2), ELEM = f64 where the device has SHADER_F64
// (then the numbers are Lava's), else f32. p.a.x = n; scal = (du, dv, vth).
struct P { a: vec4<u32>, b: vec4<u32> }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a_in: array<ELEM>;
@group(0) @binding(2) var<storage, read_write> u: array<ELEM>;
@group(0) @binding(3) var<storage, read_write> v: array<ELEM>;
@group(0) @binding(4) var<storage, read> bias: array<ELEM>;
@group(0) @binding(5) var<storage, read> scal: array<ELEM>;
@group(0) @binding(6) var<storage, read_write> s: array<ELEM>;

@compute @workgroup_size(64)
fn lif_float(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.a.x { return; }
    let one = ELEM(1);
    let un = u[i] * (one - scal[0]) + a_in[i];
    u[i] = un;
    let vn = v[i] * (one - scal[1]) + un + bias[i];
    if vn > scal[2] { v[i] = ELEM(0); s[i] = one; } else { v[i] = vn; s[i] = ELEM(0); }
}
