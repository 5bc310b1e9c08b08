// Causal grouped-query attention of each new token over the cache: token t (position
// step.pos + t) sees positions 0..=step.pos + t; query head h reads KV head h / (nh / nkv).
// One workgroup per (head, token): decode is the one-token case (unless split:
// attention_split.wgsl), which rotates and appends its own q, k and v where fusion is on
// (attention_common.wgsl); batches read what rope_store.wgsl wrote.
{{ATTENTION_COMMON}}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
// The reductions' partial results: a thread per 16 of the WG values, then every thread over
// the 16 partials.
const SPAN: u32 = 16u;
var<workgroup> red: array<f32, WG>;
var<workgroup> red16: array<f32, SPAN>;

// The workgroup's max (is_max) or sum of every thread's v, in two barriers where a tree over
// the 256 threads took eight, each a wait of the whole workgroup (twice a head). Thread k < 16
// takes values k, k + 16, … so that the 16 read consecutive words. `red` and `red16` are free
// again once it returns: every read of `red` precedes the second barrier, and a next call
// writes `red16` only after its first.
fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    if (lid < SPAN) {
        var r = red[lid];
        for (var k = 1u; k < WG / SPAN; k++) {
            let x = red[k * SPAN + lid];
            r = select(r + x, max(r, x), is_max);
        }
        red16[lid] = r;
    }
    workgroupBarrier();
    var r = red16[0];
    for (var k = 1u; k < SPAN; k++) { r = select(r + red16[k], max(r, red16[k]), is_max); }
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    if (t >= step.n) { return; }
    let len = step.pos + t + 1u;
    let last = len - 1u;
    let group = p.nh / p.nkv;
    let g = h / group;
    let sbase = (t * p.nh + h) * p.max_ctx;
    stage_query(lid, WG, h, t, last);
    if (fused()) { stage_new(lid, WG, g, last); }
    workgroupBarrier();
    // The last query head of each KV head appends the decoded token's key and value (the
    // last, so that where workgroups run in order, as on lavapipe, a read of the row before it
    // is written fails the tests).
    if (fused() && h % group == group - 1u) { append_new(lid, WG, g, last); }
    // Up to WG positions (every decoded token's below the split, which takes longer contexts):
    // a position a thread, its score kept in a register and its weight in local_scores.
    let local = len <= WG;
    var total = 0.0;
    if (local) {
        var d = -3.0e38;
        if (lid < len) { d = score_at(lid, last, g); }
        let m = reduce(lid, d, true);
        var e = 0.0;
        if (lid < len) { e = exp(d - m); }
        local_scores[lid] = e;
        // Its barriers also show every thread the weights.
        total = reduce(lid, e, false);
    } else {
        var mx = -3.0e38;
        for (var j = lid; j < len; j += WG) {
            let d = score_at(j, last, g);
            scores[sbase + j] = d;
            mx = max(mx, d);
        }
        let m = reduce(lid, mx, true);
        var sum = 0.0;
        for (var j = lid; j < len; j += WG) {
            let e = exp(scores[sbase + j] - m);
            scores[sbase + j] = e;
            sum += e;
        }
        storageBarrier();
        total = reduce(lid, sum, false);
    }
    // The weighted sum of values: thread lid takes dimension lid % hd over every groups-th
    // position from lid / hd, so all WG threads work even on one long row (head_dim ≤ WG, as
    // the engine checks), and the groups' sums meet in workgroup memory (`red`, free since
    // the last reduce).
    let groups = WG / p.hd;
    let gi = lid / p.hd;
    let i = lid % p.hd;
    var acc = 0.0;
    let wt = Weights(local, select(sbase, 0u, local));
    if (gi < groups) { acc = weighted_values_at(wt, gi, len, groups, g, i, last, gi == 0u); }
    red[lid] = acc;
    workgroupBarrier();
    if (lid < p.hd) {
        var s = 0.0;
        for (var k = 0u; k < groups; k++) { s += red[k * p.hd + lid]; }
        out[t * p.nh * p.hd + h * p.hd + lid] = s / total;
    }
}
