// Causal grouped-query attention of each new token over the cache: token t (position
// step.pos + t) sees positions 0..=step.pos + t; query head h reads KV head h / (nh / nkv).
// One workgroup per (head, token): decode is the one-token case. The caches hold f32 bits, or
// with kv_f16 two f16 values per word (see rope_store.wgsl).
struct AttentionParams { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: AttentionParams;
@group(0) @binding(6) var<uniform> step: Step;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

fn v_at(i: u32) -> f32 {
    if (p.kv_f16 != 0u) {
        let pair = unpack2x16float(v_cache[i / 2u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(v_cache[i]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    if (t >= step.n) { return; }
    let len = step.pos + t + 1u;
    let g = h / (p.nh / p.nkv);
    let kv_dim = p.nkv * p.hd;
    let q_at = t * (p.nh + 2u * p.nkv) * p.hd + h * p.hd;
    let sbase = (t * p.nh + h) * p.max_ctx;
    var mx = -3.0e38;
    for (var j = lid; j < len; j += WG) {
        var d = 0.0;
        let k_at = j * kv_dim + g * p.hd;
        if (p.kv_f16 != 0u) {
            for (var i = 0u; i < p.hd; i += 2u) {
                let k = unpack2x16float(k_cache[(k_at + i) / 2u]);
                d += qkv[q_at + i] * k.x + qkv[q_at + i + 1u] * k.y;
            }
        } else {
            for (var i = 0u; i < p.hd; i++) { d += qkv[q_at + i] * bitcast<f32>(k_cache[k_at + i]); }
        }
        d *= p.scale;
        scores[sbase + j] = d;
        mx = max(mx, d);
    }
    red[lid] = mx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var j = lid; j < len; j += WG) {
        let e = exp(scores[sbase + j] - m);
        scores[sbase + j] = e;
        sum += e;
    }
    red[lid] = sum;
    storageBarrier();
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let total = red[0];
    // The weighted sum of values: thread lid takes dimension lid % hd over every groups-th
    // position from lid / hd, so all WG threads work even on one long row (head_dim ≤ WG, as
    // the engine checks), and the groups' sums meet in workgroup memory.
    let groups = WG / p.hd;
    let gi = lid / p.hd;
    let i = lid % p.hd;
    var acc = 0.0;
    if (gi < groups) {
        for (var j = gi; j < len; j += groups) {
            acc += scores[sbase + j] * v_at(j * kv_dim + g * p.hd + i);
        }
    }
    workgroupBarrier();
    red[lid] = acc;
    workgroupBarrier();
    if (lid < p.hd) {
        var s = 0.0;
        for (var k = 0u; k < groups; k++) { s += red[k * p.hd + lid]; }
        out[t * p.nh * p.hd + h * p.hd + lid] = s / total;
    }
}
