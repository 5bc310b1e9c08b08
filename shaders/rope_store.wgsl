// Rotary embedding (rotate-half layout) of each new token's q and k heads in the fused qkv rows,
// then k and v appended to this layer's cache at position step.pos + t: batches of more than
// one token (a decoded token's attention does both itself unless fusion is off, see
// attention_common.wgsl). One workgroup per (head, token): every rotated value is computed
// before any is written back, since each reads its partner half a rotation away.
// The caches are u32 words: f32 bits, or with kv_f16 two f16 values per word (pack2x16float,
// core WGSL, so adapters without shader-f16 halve their cache too).
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(6) var<uniform> step: Step;
{{ROPE_COMMON}}

// The rows as they are (add_bias.wgsl has added a bias before this).
fn qkv_in(i: u32) -> f32 { return qkv[i]; }

const WG: u32 = 64u;
// The longest head this kernel takes (the engine checks head_dim against it).
const MAX_HD: u32 = 256u;
var<workgroup> vals: array<f32, 256>;

fn store(is_k: bool, at: u32, i: u32) {
    if (rope.kv_f16 != 0u) {
        let word = pack2x16float(vec2<f32>(vals[i], vals[i + 1u]));
        if (is_k) { k_cache[(at + i) / 2u] = word; } else { v_cache[(at + i) / 2u] = word; }
    } else {
        if (is_k) { k_cache[at + i] = bitcast<u32>(vals[i]); } else { v_cache[at + i] = bitcast<u32>(vals[i]); }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let head = wid.x;
    let t = wid.y;
    let heads = rope.nh + 2u * rope.nkv;
    if (head >= heads || t >= step.n) { return; }
    let pos = step.pos + t;
    let base = t * heads * rope.hd + head * rope.hd;
    let is_rotated = head < rope.nh + rope.nkv;
    for (var i = lid; i < rope.hd; i += WG) {
        if (is_rotated) { vals[i] = rotated(base, i, pos); } else { vals[i] = qkv_in(base + i); }
    }
    workgroupBarrier();
    if (is_rotated) {
        for (var i = lid; i < rope.hd; i += WG) { qkv[base + i] = vals[i]; }
    }
    if (head < rope.nh) { return; }
    let kv_dim = rope.nkv * rope.hd;
    let is_k = head < rope.nh + rope.nkv;
    let at = pos * kv_dim + (head - rope.nh - select(rope.nkv, 0u, is_k)) * rope.hd;
    let per = select(1u, 2u, rope.kv_f16 != 0u);
    for (var i = lid * per; i < rope.hd; i += WG * per) { store(is_k, at, i); }
}
