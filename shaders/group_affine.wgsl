// Not a kernel: a stored tensor's f16 group scales and offsets as every kernel that reads them
// decodes them (weights.wgsl for the mat-vecs and tiled mat-muls, embed.wgsl), spliced in at
// their GROUP_AFFINE placeholder. `w` binds the tensor's codebook, scales and offsets.

// Entry i of an array of f16 pairs starting at word `off`.
fn half_at(off: u32, i: u32) -> f32 {
    let pair = unpack2x16float(w[off + i / 2u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// (scale, offset) of group g of a tensor whose scales start at word `scales_off`: one word a
// group where `paired` (the loader wrote the codec's scales and offsets as f16 pairs), else an
// f16 scale and no offset.
fn group_affine(scales_off: u32, paired: u32, g: u32) -> vec2<f32> {
    if (paired != 0u) { return unpack2x16float(w[scales_off + g]); }
    return vec2<f32>(half_at(scales_off, g), 0.0);
}
