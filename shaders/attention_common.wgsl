// Shared by attention.wgsl and attention_split.wgsl (spliced in at their ATTENTION_COMMON
// placeholder): parameters, the bindings both have (each adds binding 4, its output), and cache
// reads. The caches hold f32 bits, or with kv_f16 two f16 values per word (see
// rope_store.wgsl); head_dim is even (the engine checks), so keys are read in pairs.
struct AttentionParams { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<uniform> p: AttentionParams;
@group(0) @binding(6) var<uniform> step: Step;

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
