// out[t] = x[t] * rsqrt(mean(x[t]²) + eps) * weight, one token row per workgroup. With
// last_only, only the batch's last row is normalized, into out row 0 (logits for it alone).
struct RmsnormParams { n: u32, eps: f32, last_only: u32, _pad: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: RmsnormParams;
@group(0) @binding(4) var<uniform> step: Step;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rows = select(step.n, 1u, p.last_only == 1u);
    if (wid.x >= rows) { return; }
    let src = select(wid.x, step.n - 1u, p.last_only == 1u) * p.n;
    let dst = wid.x * p.n;
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) { acc += x[src + i] * x[src + i]; }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(partial[0] / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += WG) { out[dst + i] = x[src + i] * inv * weight[i]; }
}
