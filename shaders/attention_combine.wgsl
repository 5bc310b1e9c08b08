// The second half of split decode attention (attention_split.wgsl): per query head, the ranges'
// partial softmax sums rescaled to their common max and added, out = Σ_c e^(m_c - M) acc_c /
// Σ_c e^(m_c - M) s_c. One workgroup per query head.
struct AttentionParams { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: AttentionParams;

{{SPLIT_CONSTS}}
// SPLITS ≤ WG: a thread per range; a multiple of 4 (checked in Kernels).
const WG: u32 = 64u;
var<workgroup> maxes: array<f32, SPLITS>;
var<workgroup> sums: array<f32, SPLITS>;
var<workgroup> weights: array<f32, SPLITS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let stride = p.hd + 2u;
    let base = h * SPLITS * stride;
    // Every range, empty ones included (attention_split writes them as adding nothing). A
    // thread per range loads its max and sum: with every thread looping over the ranges' loads
    // one at a time, this kernel's 32 workgroups (one per Phi-3.5 query head) took 30 µs a
    // layer on the H200, more than the ranges kernel.
    if (lid < SPLITS) {
        maxes[lid] = parts[base + lid * stride];
        sums[lid] = parts[base + lid * stride + 1u];
    }
    workgroupBarrier();
    var mx = -3.0e38;
    for (var c = 0u; c < SPLITS; c++) { mx = max(mx, maxes[c]); }
    if (lid < SPLITS) { weights[lid] = exp(maxes[lid] - mx); }
    workgroupBarrier();
    var total = 0.0;
    for (var c = 0u; c < SPLITS; c++) { total += weights[c] * sums[c]; }
    let inv = 1.0 / total;
    for (var i = lid; i < p.hd; i += WG) {
        // Four ranges a turn into four sums: four independent loads in flight.
        var acc = vec4<f32>();
        for (var c = 0u; c < SPLITS; c += 4u) {
            let at = base + c * stride + 2u + i;
            let w = vec4<f32>(weights[c], weights[c + 1u], weights[c + 2u], weights[c + 3u]);
            acc += w * vec4<f32>(parts[at], parts[at + stride], parts[at + 2u * stride], parts[at + 3u * stride]);
        }
        out[h * p.hd + i] = dot(acc, vec4<f32>(1.0)) * inv;
    }
}
