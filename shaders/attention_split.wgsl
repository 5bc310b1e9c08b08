// Decode attention split over the context (as flash-decoding does): the cached positions are cut
// into SPLITS ranges of equal length, one workgroup per (KV head, range), each taking every
// query head of its KV head in turn. A decoded token's attention then spreads over
// nkv × SPLITS workgroups at any context length instead of one per query head (nine for
// SmolLM2) walking the whole context, and a KV head's keys are read from memory once for its
// group of query heads. Each writes, per query head and range, its scores' max m,
// Σ exp(score - m) and Σ exp(score - m) · v; attention_combine.wgsl rescales and sums the
// ranges. Decode only (one token at step.pos; batches take attention.wgsl, whose scores row and
// caches this shares).
{{ATTENTION_COMMON}}
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;

{{SPLIT_CONSTS}}
const WG: u32 = 64u;
var<workgroup> maxes: array<f32, WG>;
var<workgroup> sums: array<f32, WG>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x;
    let c = wid.y;
    let len = step.pos + 1u;
    let per = (len + SPLITS - 1u) / SPLITS;
    let group = p.nh / p.nkv;
    let j0 = c * per;
    if (j0 >= len) {
        // An empty range (contexts shorter than SPLITS ranges of `per`) adds nothing: max -3e38
        // weighs it by exp(-3e38 - M) = 0 in the combine, which then sums every range with a
        // constant bound (a bound read from a uniform made lavapipe's combine 100× slower).
        for (var hh = 0u; hh < group; hh++) {
            let at = ((g * group + hh) * SPLITS + c) * (p.hd + 2u);
            for (var i = lid; i < p.hd + 2u; i += WG) { parts[at + i] = select(0.0, -3.0e38, i == 0u); }
        }
        return;
    }
    let j1 = min(j0 + per, len);
    let last = len - 1u;
    // The range that holds the decoded token stages its key and value and appends them.
    if (fused() && j1 == len) {
        stage_new(lid, WG, g, last);
        workgroupBarrier();
        append_new(lid, WG, g, last);
    }
    // Ranges of up to WG positions (contexts up to 2048): a position a thread, its score in a
    // register and its weight in local_scores (see attention.wgsl).
    let local = j1 - j0 <= WG;
    for (var hh = 0u; hh < group; hh++) {
        let h = g * group + hh;
        stage_query(lid, WG, h, 0u, last);
        workgroupBarrier();
        // Scores of the range (a thread per position), then its max: every thread reads the
        // WG threads' maxes (one barrier, where a tree reduction takes six).
        let sbase = h * p.max_ctx;
        var mx = -3.0e38;
        for (var j = j0 + lid; j < j1; j += WG) {
            let d = score_at(j, last, g);
            if (!local) { scores[sbase + j] = d; }
            mx = max(mx, d);
        }
        maxes[lid] = mx;
        workgroupBarrier();
        var m = maxes[0];
        for (var i = 1u; i < WG; i++) { m = max(m, maxes[i]); }
        var sum = 0.0;
        if (local) {
            // A thread's one position: its max is its score.
            if (j0 + lid < j1) { sum = exp(mx - m); }
            local_scores[lid] = sum;
        } else {
            for (var j = j0 + lid; j < j1; j += WG) {
                let e = exp(scores[sbase + j] - m);
                scores[sbase + j] = e;
                sum += e;
            }
        }
        sums[lid] = sum;
        if (!local) { storageBarrier(); }
        workgroupBarrier();
        // The range's weighted values: a thread per dimension, consecutive dimensions' values
        // read side by side.
        let at = ((h * SPLITS) + c) * (p.hd + 2u);
        let wt = Weights(local, select(sbase, j0, local));
        for (var i = lid; i < p.hd; i += WG) {
            parts[at + 2u + i] = weighted_values_at(wt, j0, j1, 1u, g, i, last, true);
        }
        if (lid == 0u) {
            var s = 0.0;
            for (var i = 0u; i < WG; i++) { s += sums[i]; }
            parts[at] = m;
            parts[at + 1u] = s;
        }
        // qs, maxes and sums are rewritten for the next head.
        workgroupBarrier();
    }
}
