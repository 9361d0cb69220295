// Remote-buffer load with the offset held in a one-element array on the device
// (src/remote/buffer.rs; stores run on the host, which reads the offset there). Elements
// are copied as 32-bit words, whatever their type. Slot (offset, replica) starts at element
// (offset * replicas + replica) * numel of the buffer.
struct Params {
    numel: u32,
    entries: u32,
    replicas: u32,
    replica: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> offset: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;

// dst = buffer slot: src is the whole buffer. An offset out of range copies nothing (the
// runtime fails the load before it runs; this guard keeps the kernel in bounds regardless).
@compute @workgroup_size(256)
fn load(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    let o = offset[0];
    if i >= p.numel || o >= p.entries { return; }
    dst[i] = src[(o * p.replicas + p.replica) * p.numel + i];
}
