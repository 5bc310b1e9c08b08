// Causal grouped-query attention of each new token over the cache: token t (position
// step.pos + t) sees positions 0..=step.pos + t; query head h reads KV head h / (nh / nkv).
// One workgroup per (head, token): decode is the one-token case (unless split:
// attention_split.wgsl).
{{ATTENTION_COMMON}}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

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
    for (var i = lid; i < p.hd; i += WG) { qs[i] = qkv[q_at + i]; }
    workgroupBarrier();
    var mx = -3.0e38;
    for (var j = lid; j < len; j += WG) {
        let d = score(j * kv_dim + g * p.hd);
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
    if (gi < groups) { acc = weighted_values(sbase, gi, len, groups, kv_dim, g * p.hd + i); }
    workgroupBarrier();
    red[lid] = acc;
    workgroupBarrier();
    if (lid < p.hd) {
        var s = 0.0;
        for (var k = 0u; k < groups; k++) { s += red[k * p.hd + lid]; }
        out[t * p.nh * p.hd + h * p.hd + lid] = s / total;
    }
}
