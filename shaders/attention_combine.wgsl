// The second half of split decode attention (attention_split.wgsl): per query head, the ranges'
// partial softmax sums rescaled to their common max and added, out = Σ_c e^(m_c - M) acc_c /
// Σ_c e^(m_c - M) s_c. One workgroup per query head.
struct AttentionParams { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: AttentionParams;
@group(0) @binding(3) var<uniform> step: Step;

{{SPLIT_CONSTS}}
// SPLITS ≤ WG: a thread per range (checked in Kernels).
const WG: u32 = 64u;
var<workgroup> weights: array<f32, SPLITS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let len = step.pos + 1u;
    let per = (len + SPLITS - 1u) / SPLITS;
    let used = (len + per - 1u) / per;
    let stride = p.hd + 2u;
    let base = h * SPLITS * stride;
    // Every thread finds the max (a load per range, no barrier), a thread per range its
    // rescaling weight.
    var mx = -3.0e38;
    for (var c = 0u; c < used; c++) { mx = max(mx, parts[base + c * stride]); }
    if (lid < used) { weights[lid] = exp(parts[base + lid * stride] - mx); }
    workgroupBarrier();
    var total = 0.0;
    for (var c = 0u; c < used; c++) { total += weights[c] * parts[base + c * stride + 1u]; }
    let inv = 1.0 / total;
    for (var i = lid; i < p.hd; i += WG) {
        var acc = 0.0;
        for (var c = 0u; c < used; c++) { acc += weights[c] * parts[base + c * stride + 2u + i]; }
        out[h * p.hd + i] = acc * inv;
    }
}
