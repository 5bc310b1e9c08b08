// Rotary embedding (rotate-half layout) of each new token's q and k heads in the fused qkv rows,
// then k and v appended to this layer's cache at position step.pos + t. inv_freq and scale
// carry plain, longrope (short or long set) and llama3 tables alike.
struct Params { nh: u32, nkv: u32, hd: u32, rot_half: u32, scale: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let heads = p.nh + 2u * p.nkv;
    let head = gid.x / p.hd;
    let i = gid.x % p.hd;
    if (head >= heads || t >= step.n) { return; }
    let pos = step.pos + t;
    let kv_dim = p.nkv * p.hd;
    let base = t * heads * p.hd + head * p.hd;
    if (head >= p.nh + p.nkv) {           // a v head: copy to the cache
        v_cache[pos * kv_dim + (head - p.nh - p.nkv) * p.hd + i] = qkv[base + i];
        return;
    }
    let is_k = head >= p.nh;
    let cache_at = pos * kv_dim + (head - p.nh) * p.hd;
    if (i < p.rot_half) {
        let angle = f32(pos) * inv_freq[i];
        let c = cos(angle) * p.scale;
        let s = sin(angle) * p.scale;
        let a = qkv[base + i];
        let b = qkv[base + i + p.rot_half];
        let ra = a * c - b * s;
        let rb = b * c + a * s;
        qkv[base + i] = ra;
        qkv[base + i + p.rot_half] = rb;
        if (is_k) {
            k_cache[cache_at + i] = ra;
            k_cache[cache_at + i + p.rot_half] = rb;
        }
    } else if (i >= 2u * p.rot_half && is_k) {  // dimensions past the rotary part
        k_cache[cache_at + i] = qkv[base + i];
    }
}
