// act[i] = silu(gate[i]) * up[i], with gu = [gate; up].
struct Params { ff: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> act: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.ff) { return; }
    let g = gu[i];
    act[i] = g / (1.0 + exp(-g)) * gu[p.ff + i];
}
