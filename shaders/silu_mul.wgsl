// act[t][i] = silu(gate[t][i]) * up[t][i], with each gu row = [gate; up].
struct SiluMulParams { ff: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> act: array<f32>;
@group(0) @binding(2) var<uniform> p: SiluMulParams;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    if (i >= p.ff || t >= step.n) { return; }
    let g = gu[t * 2u * p.ff + i];
    act[t * p.ff + i] = g / (1.0 + exp(-g)) * gu[t * 2u * p.ff + p.ff + i];
}
