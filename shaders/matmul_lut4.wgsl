// Y[t] (+)= W·X[t] for a prefill batch of 4-bit LUT codes (lut4, lut4a, int4): the tiled kernel
// of matmul_common.wgsl with this codec's tile decode. Same weights and results as
// matvec_lut4.wgsl (f32 arithmetic; summed in another order).
{{MATMUL_COMMON}}
var<workgroup> lut: array<f32, 16>;

fn load_codebook(lid: u32) {
    if (lid < 16u) { lut[lid] = bitcast<f32>(w[lid]); }
}

// The tile's TM rows × TK columns from k0: a word's eight nibbles (column 2j in the low nibble
// of byte j) through the codebook, each times its group's scale plus its offset (a group may
// start inside a word). Words past the row are zero.
fn decode_tile(first: u32, k0: u32, lid: u32) {
    let words = (p.cols + 7u) / 8u;
    for (var i = lid; i < TM * TK / 8u; i += THREADS) {
        let t = tile_word(i, 8u, first, k0);
        if (t.wi >= words) {
            for (var j = 0u; j < 8u; j++) { put_w(t.k + j, t.r, 0.0); }
            continue;
        }
        let c = k0 + t.k;
        let q = codes[t.row * p.stride_words + t.wi];
        let tensor_row = t.row + p.row0;
        var g = affine_at(tensor_row, c);
        for (var j = 0u; j < 8u; j++) {
            if (j > 0u && (c + j) % p.group == 0u && c + j < p.cols) { g = affine_at(tensor_row, c + j); }
            put_w(t.k + j, t.r, g.x * lut[(q >> (4u * j)) & 0xfu] + g.y);
        }
    }
}
