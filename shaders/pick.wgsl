// The choice of a row on the GPU, after select.wgsl left its candidates in `out`, so that the
// engine can queue the next decoded token's step before it reads this one back
// (`GpuModel::forward_select`). Greedy (k = 1: the candidates are the tokens whose penalised
// value ties the largest, whose key is out[1]): the lowest id among them, which is what the
// sampler picks from them (chat/sampler.rs sorts ties by id); where more tie than the
// candidates hold (CAP), the whole row is scanned for the lowest id with the largest key.
// Sampling (q.sample = 1): `Sampler::sample_with`'s draw with the host's uniform number q.u,
// operation for operation in the same order; its `exp` and division may round otherwise than
// the CPU's, so the host draws too and its choice decides (a mismatch costs the queued step).
// Writes the choice and its value's bits to out[2] and out[3] (out[2] = NONE where more than
// CAP candidates left nothing to draw from), as the next step's token (tokens[0]), and into
// the penalised tokens' bitset (a chosen token is seen from the next step on). One workgroup.
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> seen: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: SelectParams;
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>;
struct PickParams { temperature: f32, top_p: f32, min_p: f32, u: f32, sample: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(5) var<uniform> q: PickParams;
{{SELECT_COMMON}}
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
var<workgroup> lowest: atomic<u32>;
var<workgroup> candidates: u32;
// The candidates by descending key, ties by id, and their probabilities.
var<workgroup> sorted_ids: array<u32, CAP>;
var<workgroup> sorted_keys: array<u32, CAP>;
var<workgroup> probs: array<f32, CAP>;

fn greedy(lid: u32, count: u32, top: u32) -> u32 {
    if (lid == 0u) { atomicStore(&lowest, NONE); }
    workgroupBarrier();
    var mine = NONE;
    if (count <= CAP) {
        for (var j = lid; j < count; j += WG) { mine = min(mine, out[4u + 2u * j]); }
    } else {
        for (var i = lid; i < p.n; i += WG) {
            if (key(value(i)) == top) { mine = min(mine, i); }
        }
    }
    atomicMin(&lowest, mine);
    workgroupBarrier();
    return atomicLoad(&lowest);
}

fn candidate_key(j: u32) -> u32 {
    return key(bitcast<f32>(out[5u + 2u * j]));
}

// Candidate j's place in the sampler's order: how many come before it.
fn rank(j: u32, count: u32) -> u32 {
    let kj = candidate_key(j);
    let ij = out[4u + 2u * j];
    var r = 0u;
    for (var i = 0u; i < count; i++) {
        let ki = candidate_key(i);
        if (ki > kj || (ki == kj && out[4u + 2u * i] < ij)) { r++; }
    }
    return r;
}

// The draw of sampler.rs's `sample_with` over the sorted candidates (one thread).
fn draw(count: u32) -> u32 {
    let m = min(count, max(p.k, 1u));
    let top = unkey(sorted_keys[0]);
    for (var i = 0u; i < m; i++) {
        probs[i] = exp((unkey(sorted_keys[i]) - top) / q.temperature);
    }
    var sum = 0.0;
    for (var i = 0u; i < m; i++) { sum += probs[i]; }
    for (var i = 0u; i < m; i++) { probs[i] = probs[i] / sum; }
    var keep = m;
    if (q.min_p > 0.0) {
        var n = 0u;
        while (n < m && probs[n] >= q.min_p * probs[0]) { n++; }
        keep = max(n, 1u);
    }
    if (q.top_p < 1.0) {
        var acc = 0.0;
        var n = 0u;
        while (n < m && acc < q.top_p) {
            acc += probs[n];
            n++;
        }
        keep = min(keep, max(n, 1u));
    }
    var total = 0.0;
    for (var i = 0u; i < keep; i++) { total += probs[i]; }
    var r = q.u * total;
    for (var i = 0u; i < keep; i++) {
        r -= probs[i];
        if (r <= 0.0) { return i; }
    }
    return keep - 1u;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    // The count as a value every thread holds alike: a branch on it may precede a barrier.
    if (lid == 0u) { candidates = out[0]; }
    let count = workgroupUniformLoad(&candidates);
    if (q.sample == 0u) {
        let id = greedy(lid, count, out[1]);
        if (lid == 0u) { choose(id, out[1]); }
        return;
    }
    if (count > CAP) {
        if (lid == 0u) {
            out[2] = NONE;
            tokens[0] = 0u;
        }
        return;
    }
    for (var j = lid; j < count; j += WG) {
        let r = rank(j, count);
        sorted_ids[r] = out[4u + 2u * j];
        sorted_keys[r] = candidate_key(j);
    }
    workgroupBarrier();
    if (lid == 0u) {
        let i = draw(count);
        choose(sorted_ids[i], sorted_keys[i]);
    }
}

// Writes the choice `id`, whose value's key is `k` (one thread).
fn choose(id: u32, k: u32) {
    out[2] = id;
    out[3] = bitcast<u32>(unkey(k));
    tokens[0] = id;
    if (p.penalty != 1.0) { seen[id / 32u] |= 1u << (id % 32u); }
}
