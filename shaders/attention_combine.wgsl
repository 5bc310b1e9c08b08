// The second half of split decode attention (attention_split.wgsl): per query head, the ranges'
// partial softmax sums rescaled to their common max and added, out = Σ_c e^(m_c - M) acc_c /
// Σ_c e^(m_c - M) s_c. One workgroup per query head.
struct AttentionParams { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: AttentionParams;

{{SPLIT_CONSTS}}
// SPLITS ≤ WG: a thread per range (checked in Kernels).
const WG: u32 = 64u;
var<workgroup> weights: array<f32, SPLITS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let stride = p.hd + 2u;
    let base = h * SPLITS * stride;
    // Every range, empty ones included (attention_split writes them as adding nothing): every
    // thread finds the max (a load per range, no barrier), a thread per range its rescaling weight.
    var mx = -3.0e38;
    for (var c = 0u; c < SPLITS; c++) { mx = max(mx, parts[base + c * stride]); }
    if (lid < SPLITS) { weights[lid] = exp(parts[base + lid * stride] - mx); }
    workgroupBarrier();
    var total = 0.0;
    for (var c = 0u; c < SPLITS; c++) { total += weights[c] * parts[base + c * stride + 1u]; }
    let inv = 1.0 / total;
    for (var i = lid; i < p.hd; i += WG) {
        var acc = 0.0;
        for (var c = 0u; c < SPLITS; c++) { acc += weights[c] * parts[base + c * stride + 2u + i]; }
        out[h * p.hd + i] = acc * inv;
    }
}
