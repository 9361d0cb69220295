// Data-parallel SGD of a linear model, one replica's share (src/remote/sgd.rs).
// Loss = (1/N) * sum_i (x_i . w - y_i)^2 over all N samples; each replica holds `rows` of them.
struct Params {
    rows: u32,      // samples on this replica
    features: u32,  // d
    scale: f32,     // 2 / N (gradient of the mean squared error)
    inv_n: f32,     // 1 / N
    lr: f32,
    mu: f32,        // momentum
    len: u32,       // momentum: shard length
    _pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> resid: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;
@group(0) @binding(7) var<storage, read> g: array<f32>;
@group(0) @binding(8) var<storage, read_write> m: array<f32>;
@group(0) @binding(9) var<storage, read_write> ws: array<f32>;

// resid[i] = x_i . w - y_i
@compute @workgroup_size(64)
fn residual(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= p.rows { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.features; k++) { acc += x[i * p.features + k] * w[k]; }
    resid[i] = acc - y[i];
}

// grad[j] = (2/N) * sum_i x_ij * resid[i]: this replica's part of the full gradient.
@compute @workgroup_size(64)
fn gradient(@builtin(global_invocation_id) id: vec3<u32>) {
    let j = id.x;
    if j >= p.features { return; }
    var acc = 0.0;
    for (var i = 0u; i < p.rows; i++) { acc += x[i * p.features + j] * resid[i]; }
    grad[j] = p.scale * acc;
}

// loss[0] = (1/N) * sum_i resid[i]^2: this replica's part of the loss.
@compute @workgroup_size(1)
fn sq_loss() {
    var acc = 0.0;
    for (var i = 0u; i < p.rows; i++) { acc += resid[i] * resid[i]; }
    loss[0] = p.inv_n * acc;
}

// Momentum step on this replica's shard: m = mu * m + g; ws -= lr * m.
@compute @workgroup_size(64)
fn momentum(@builtin(global_invocation_id) id: vec3<u32>) {
    let k = id.x;
    if k >= p.len { return; }
    let v = p.mu * m[k] + g[k];
    m[k] = v;
    ws[k] = ws[k] - p.lr * v;
}
