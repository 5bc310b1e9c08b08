// Rotary embedding (rotate-half layout) of each new token's q and k heads in the fused qkv rows,
// then k and v appended to this layer's cache at position step.pos + t. inv_freq and scale
// carry plain, longrope (short or long set) and llama3 tables alike. One workgroup per (head,
// token): every rotated value is computed before any is written back, since each reads its
// partner half a rotation away.
// The caches are u32 words: f32 bits, or with kv_f16 two f16 values per word (pack2x16float,
// core WGSL, so adapters without shader-f16 halve their cache too).
struct RopeParams { nh: u32, nkv: u32, hd: u32, rot_half: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(4) var<uniform> p: RopeParams;
@group(0) @binding(5) var<uniform> step: Step;

const WG: u32 = 64u;
// The longest head this kernel takes (the engine checks head_dim against it).
const MAX_HD: u32 = 256u;
var<workgroup> vals: array<f32, 256>;

fn store(is_k: bool, at: u32, i: u32) {
    if (p.kv_f16 != 0u) {
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
    let heads = p.nh + 2u * p.nkv;
    if (head >= heads || t >= step.n) { return; }
    let pos = step.pos + t;
    let base = t * heads * p.hd + head * p.hd;
    let rotated = head < p.nh + p.nkv;
    for (var i = lid; i < p.hd; i += WG) {
        var v = qkv[base + i];
        if (rotated && i < 2u * p.rot_half) {
            let j = i % p.rot_half;
            let angle = f32(pos) * inv_freq[j];
            let c = cos(angle) * p.scale;
            let s = sin(angle) * p.scale;
            let a = qkv[base + j];
            let b = qkv[base + j + p.rot_half];
            v = select(b * c + a * s, a * c - b * s, i < p.rot_half);
        }
        vals[i] = v;
    }
    workgroupBarrier();
    if (rotated) {
        for (var i = lid; i < p.hd; i += WG) { qkv[base + i] = vals[i]; }
    }
    if (head < p.nh) { return; }
    let kv_dim = p.nkv * p.hd;
    let is_k = head < p.nh + p.nkv;
    let at = pos * kv_dim + (head - p.nh - select(p.nkv, 0u, is_k)) * p.hd;
    let per = select(1u, 2u, p.kv_f16 != 0u);
    for (var i = lid * per; i < p.hd; i += WG * per) { store(is_k, at, i); }
}
