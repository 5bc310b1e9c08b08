// Shared by attention.wgsl and attention_split.wgsl (spliced in at their ATTENTION_COMMON
// placeholder): parameters, the bindings both have (each adds binding 4, its output), cache
// reads, and a decoded token's own bias, rotation and cache append. The caches hold f32 bits, or with
// kv_f16 two f16 values per word (see rope_store.wgsl); head_dim is even (the engine checks), so
// keys are read in pairs.
struct AttentionParams { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, kv_f16: u32, rope_fused: u32, bias: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<uniform> p: AttentionParams;
@group(0) @binding(6) var<uniform> step: Step;
// The qkv projection's bias (p.bias: Qwen2's), added here to a decoded token's row.
@group(0) @binding(9) var<storage, read> qkv_bias: array<f32>;
{{ROPE_COMMON}}

// Keys i and i + 1 (i even).
fn k_pair(i: u32) -> vec2<f32> {
    if (p.kv_f16 != 0u) { return unpack2x16float(k_cache[i / 2u]); }
    return vec2<f32>(bitcast<f32>(k_cache[i]), bitcast<f32>(k_cache[i + 1u]));
}

fn v_at(i: u32) -> f32 {
    if (p.kv_f16 != 0u) {
        let pair = unpack2x16float(v_cache[i / 2u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(v_cache[i]);
}

// Four positions' values at i (each i's own dimension), loaded together.
fn v4(i: vec4<u32>) -> vec4<f32> {
    if (p.kv_f16 != 0u) {
        let w = vec4<u32>(v_cache[i.x / 2u], v_cache[i.y / 2u], v_cache[i.z / 2u], v_cache[i.w / 2u]);
        let a = unpack2x16float(w.x);
        let b = unpack2x16float(w.y);
        let c = unpack2x16float(w.z);
        let d = unpack2x16float(w.w);
        let odd = (i & vec4<u32>(1u)) == vec4<u32>(1u);
        return select(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y), odd);
    }
    return bitcast<vec4<f32>>(vec4<u32>(v_cache[i.x], v_cache[i.y], v_cache[i.z], v_cache[i.w]));
}

// The weights of a context (attention.wgsl, up to 256 positions) or of a range of it
// (attention_split.wgsl, up to 64) in workgroup memory, a position a thread, where the
// workgroup holds them all, instead of a row of `scores` written, read back and rewritten
// across a storage barrier.
var<workgroup> local_scores: array<f32, 256>;

// Where weighted_values reads the weights: a row of `scores` from `at`, or (`local`)
// local_scores, whose entry 0 is position `at`.
struct Weights { local: bool, at: u32 }

fn weight(wt: Weights, j: u32) -> f32 {
    if (wt.local) { return local_scores[j - wt.at]; }
    return scores[wt.at + j];
}

// Σ weight j · the value of dimension vb at position j, for j from `first` below `end` in steps
// of `stride`: four positions a turn, their weights and values loaded together (one a turn
// waited on memory each time).
fn weighted_values(wt: Weights, first: u32, end: u32, stride: u32, kv_dim: u32, vb: u32) -> f32 {
    var acc = 0.0;
    var j = first;
    for (; j + 3u * stride < end; j += 4u * stride) {
        let js = vec4<u32>(j) + vec4<u32>(0u, 1u, 2u, 3u) * stride;
        let s = vec4<f32>(weight(wt, js.x), weight(wt, js.y), weight(wt, js.z), weight(wt, js.w));
        acc += dot(s, v4(js * kv_dim + vb));
    }
    for (; j < end; j += stride) { acc += weight(wt, j) * v_at(j * kv_dim + vb); }
    return acc;
}

// The query head being scored, staged by the kernel (head_dim ≤ 256, as the engine checks).
var<workgroup> qs: array<f32, 256>;

fn q4(i: u32) -> vec4<f32> {
    return vec4<f32>(qs[i], qs[i + 1u], qs[i + 2u], qs[i + 3u]);
}

// The staged query head's score against the key row at k_at: 16 dimensions a turn (8 from an
// f32 cache), their cache words loaded together before any is used, then pairs. A pair a turn
// waited on memory once a pair (on the H200 SmolLM2's attention at ~100 positions took 25 µs a
// layer, a quarter of its token).
fn score(k_at: u32) -> f32 {
    var d = 0.0;
    var i = 0u;
    if (p.kv_f16 != 0u) {
        for (; i + 16u <= p.hd; i += 16u) {
            let w = (k_at + i) / 2u;
            let a = vec4<u32>(k_cache[w], k_cache[w + 1u], k_cache[w + 2u], k_cache[w + 3u]);
            let b = vec4<u32>(k_cache[w + 4u], k_cache[w + 5u], k_cache[w + 6u], k_cache[w + 7u]);
            d += dot(q4(i), vec4<f32>(unpack2x16float(a.x), unpack2x16float(a.y)))
               + dot(q4(i + 4u), vec4<f32>(unpack2x16float(a.z), unpack2x16float(a.w)))
               + dot(q4(i + 8u), vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y)))
               + dot(q4(i + 12u), vec4<f32>(unpack2x16float(b.z), unpack2x16float(b.w)));
        }
    } else {
        for (; i + 8u <= p.hd; i += 8u) {
            let w = k_at + i;
            let a = vec4<u32>(k_cache[w], k_cache[w + 1u], k_cache[w + 2u], k_cache[w + 3u]);
            let b = vec4<u32>(k_cache[w + 4u], k_cache[w + 5u], k_cache[w + 6u], k_cache[w + 7u]);
            d += dot(q4(i), bitcast<vec4<f32>>(a)) + dot(q4(i + 4u), bitcast<vec4<f32>>(b));
        }
    }
    for (; i < p.hd; i += 2u) {
        let k = k_pair(k_at + i);
        d += qs[i] * k.x + qs[i + 1u] * k.y;
    }
    return d * p.scale;
}

// A decoded token's attention adds the qkv bias, rotates its own q and k (rope_common.wgsl) and
// appends its k and v to the cache, one workgroup per KV head writing them, where fusion is on
// (one-token batches): the dispatches of add_bias and rope_store saved, which cost ≈ 8 µs each
// on the H200 whatever their work (rope_store: 4-8 % of a token). Nothing in the dispatch reads
// the cache row it writes: the token's own key and value come from k_new and v_new.
fn fused() -> bool { return step.n == 1u && p.rope_fused != 0u; }

// Value i of a decoded token's qkv row (fused() only), its bias added.
fn qkv_in(i: u32) -> f32 {
    if (p.bias != 0u) { return qkv[i] + qkv_bias[i]; }
    return qkv[i];
}

// The decoded token's key (rotated) and value of one KV head, rounded as the cache holds them.
var<workgroup> k_new: array<f32, 256>;
var<workgroup> v_new: array<f32, 256>;

fn as_cached(x: f32) -> f32 {
    if (p.kv_f16 != 0u) { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }
    return x;
}

// Stages query head h of token t (position pos) into qs, rotated here when fused() (else
// rope_store has rotated it in qkv), by threads lid, lid + wg, ….
fn stage_query(lid: u32, wg: u32, h: u32, t: u32, pos: u32) {
    let q_at = t * (p.nh + 2u * p.nkv) * p.hd + h * p.hd;
    for (var i = lid; i < p.hd; i += wg) {
        if (fused()) { qs[i] = rotated(q_at, i, pos); } else { qs[i] = qkv[q_at + i]; }
    }
}

// Stages the decoded token's key and value of KV head g into k_new and v_new (fused() only).
fn stage_new(lid: u32, wg: u32, g: u32, pos: u32) {
    let k_at = (p.nh + g) * p.hd;
    let v_at = (p.nh + p.nkv + g) * p.hd;
    for (var i = lid; i < p.hd; i += wg) {
        k_new[i] = as_cached(rotated(k_at, i, pos));
        v_new[i] = as_cached(qkv_in(v_at + i));
    }
}

// Appends k_new and v_new to the caches at pos (after the barrier that follows stage_new).
fn append_new(lid: u32, wg: u32, g: u32, pos: u32) {
    let at = pos * p.nkv * p.hd + g * p.hd;
    if (p.kv_f16 != 0u) {
        for (var i = 2u * lid; i < p.hd; i += 2u * wg) {
            k_cache[(at + i) / 2u] = pack2x16float(vec2<f32>(k_new[i], k_new[i + 1u]));
            v_cache[(at + i) / 2u] = pack2x16float(vec2<f32>(v_new[i], v_new[i + 1u]));
        }
    } else {
        for (var i = lid; i < p.hd; i += wg) {
            k_cache[at + i] = bitcast<u32>(k_new[i]);
            v_cache[at + i] = bitcast<u32>(v_new[i]);
        }
    }
}

// The staged query's score against position j of KV head g; with fused(), the decoded token's
// own position (`last`) against k_new.
fn score_at(j: u32, last: u32, g: u32) -> f32 {
    if (fused() && j == last) {
        var d = 0.0;
        for (var i = 0u; i < p.hd; i += 2u) { d += qs[i] * k_new[i] + qs[i + 1u] * k_new[i + 1u]; }
        return d * p.scale;
    }
    return score(j * p.nkv * p.hd + g * p.hd);
}

// weighted_values of dimension i of KV head g over positions first..end; with fused() and a
// range that ends at the decoded token's own position (`last`), that position's value comes
// from v_new, added by the one thread of the dimension that `owns` it.
fn weighted_values_at(
    wt: Weights, first: u32, end: u32, stride: u32, g: u32, i: u32, last: u32, owns: bool,
) -> f32 {
    let kv_dim = p.nkv * p.hd;
    if (fused() && end == last + 1u) {
        var acc = weighted_values(wt, first, last, stride, kv_dim, g * p.hd + i);
        if (owns) { acc += weight(wt, last) * v_new[i]; }
        return acc;
    }
    return weighted_values(wt, first, end, stride, kv_dim, g * p.hd + i);
}
