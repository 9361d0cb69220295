// Bit-accurate fixed-point LIF (MODELS.md §3) with 32-bit integers only: the 64-bit products
// u * (4096 - du - 1) and v * (4096 - dv) are split so that every partial fits in 32 bits.
struct P { a: vec4<u32>, b: vec4<u32> }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a_in: array<i32>;
@group(0) @binding(2) var<storage, read_write> u: array<i32>;
@group(0) @binding(3) var<storage, read_write> v: array<i32>;
@group(0) @binding(4) var<storage, read> bias_mant: array<i32>;
@group(0) @binding(5) var<storage, read> bias_exp: array<i32>;
@group(0) @binding(6) var<storage, read_write> s: array<i32>;

const H: i32 = 8388608; // 2^23

// sign(x * f) * ((|x| * f) >> 12) for |x| <= 2^24 and 0 <= f <= 4096, exactly:
// |x| = hi * 4096 + lo gives (|x| * f) >> 12 = hi * f + ((lo * f) >> 12).
fn decay(x: i32, f: u32) -> i32 {
    let m = u32(abs(x));
    let r = i32((m >> 12u) * f + (((m & 4095u) * f) >> 12u));
    return select(r, -r, x < 0);
}

@compute @workgroup_size(64)
fn lif_fixed(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.a.x { return; }
    let fu = 4096u - (p.b.x + 1u);
    let fv = 4096u - p.b.y;
    let vth = bitcast<i32>(p.b.z);
    let be = bias_exp[i];
    var b: i32;
    if be >= 0 { b = bias_mant[i] << u32(be); } else { b = bias_mant[i] >> u32(-be); }
    var un = decay(u[i], fu) + (a_in[i] << 6u);
    if un > H { un = un - 2 * H; } else if un <= -H { un = un + 2 * H; }
    u[i] = un;
    let vn = clamp(decay(v[i], fv) + un + b, -(H - 1), H - 1);
    if vn > vth { v[i] = 0; s[i] = 1; } else { v[i] = vn; s[i] = 0; }
}
