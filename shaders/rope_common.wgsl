// Shared by rope_store.wgsl (a batch's tokens) and attention_common.wgsl (a decoded token,
// rotated inside its attention instead of by a dispatch of its own); spliced in at their
// ROPE_COMMON placeholder. Each defines `qkv_in(i)`, value i of the fused q, k, v rows as this
// reads them. inv_freq and scale carry plain, longrope (short or long set) and llama3 tables
// alike.
struct RopeParams { nh: u32, nkv: u32, hd: u32, rot_half: u32, scale: f32, kv_f16: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(7) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(8) var<uniform> rope: RopeParams;

// Dimension i of the head whose row starts at `base` in qkv, rotated for position `pos`
// (rotate-half layout: i pairs with i ± rot_half; dimensions from 2·rot_half on, partial
// rotary's, pass through).
fn rotated(base: u32, i: u32, pos: u32) -> f32 {
    if (i >= 2u * rope.rot_half) { return qkv_in(base + i); }
    let j = i % rope.rot_half;
    let angle = f32(pos) * inv_freq[j];
    let c = cos(angle) * rope.scale;
    let s = sin(angle) * rope.scale;
    let a = qkv_in(base + j);
    let b = qkv_in(base + j + rope.rot_half);
    return select(b * c + a * s, a * c - b * s, i < rope.rot_half);
}
