// Y[t] (+)= W·X[t] for a prefill batch of 8-bit LUT codes (qins8, lut8, lut8g/lut8a, int8): the
// tiled kernel of matmul_common.wgsl with this codec's tile decode. Same weights and results as
// matvec_lut8.wgsl (f32 arithmetic; summed in another order).
{{MATMUL_COMMON}}
var<workgroup> lut: array<f32, 256>;

fn load_codebook(lid: u32) {
    for (var i = lid; i < 256u; i += THREADS) { lut[i] = bitcast<f32>(w[i]); }
}

// The tile's TM rows × TK columns from k0: a word's four codes through the codebook, times the
// row's scale or its group's (scale, offset) (groups are a multiple of 4 columns, so a word has
// one). Words past the row are zero.
fn decode_tile(first: u32, k0: u32, lid: u32) {
    let words = (p.cols + 3u) / 4u;
    for (var i = lid; i < TM * TK / 4u; i += THREADS) {
        let t = tile_word(i, 4u, first, k0);
        var v = vec4<f32>();
        if (t.wi < words) {
            let q = codes[t.row * p.stride_words + t.wi];
            let tensor_row = t.row + p.row0;
            var g = vec2<f32>(0.0);
            if (p.group != 0u) {
                g = affine_at(tensor_row, 4u * t.wi);
            } else {
                g.x = bitcast<f32>(w[p.scales_off + tensor_row]);
            }
            let l = vec4<f32>(lut[q & 0xffu], lut[(q >> 8u) & 0xffu], lut[(q >> 16u) & 0xffu], lut[q >> 24u]);
            v = g.x * l + g.y;
        }
        put_w(t.k, t.r, v.x);
        put_w(t.k + 1u, t.r, v.y);
        put_w(t.k + 2u, t.r, v.z);
        put_w(t.k + 3u, t.r, v.w);
    }
}
