// Y[t][row] (+)= scale[row] * Σ_c codebook[code[row][c]] * X[t][c]   — qins8, lut8, int8;
// with p.group > 0 (lut8g, lut8a): Σ_c (scale[g] * codebook[code[row][c]] + offset[g]) * X[t][c]
// over f16 group scales (and offsets), the group a multiple of 4 so each code word has one.
// Decode (one token) and prefill (many) alike: a workgroup takes one row and up to 8 tokens,
// decoding each weight once for all of them. The tensor is one buffer in its stored layout
// (docs/FORMAT.md): codebook at word 0 of w, then scales and offsets; code rows of stride_words
// words in `codes`.
{{MATVEC_COMMON}}
var<workgroup> lut: array<f32, 256>;

@compute @workgroup_size(64)
fn main(id: Ids) {
    let wid = id.wid;
    let lid = id.lid;
    let n = select(step.n, 1u, p.last_only == 1u);
    let t0 = wid.z * TB;
    let local = wid.x + wid.y * id.nwg.x;
    if (t0 >= n || local >= p.rows) { return; }
    let row_id = p.row0 + local;
    let tb = min(TB, n - t0);
    for (var i = lid; i < 256u; i += WG) { lut[i] = bitcast<f32>(w[i]); }
    workgroupBarrier();
    let base = local * p.stride_words;
    let words = (p.cols + 3u) / 4u;
    let grouped = p.group != 0u;
    var acc: array<f32, 8>;
    if (tb == 1u && grouped) {
        // Decode over group scales: the per-word partial dot product is scaled and offset.
        let xo = t0 * p.x_stride;
        var a = 0.0;
        for (var wi = lid; wi < words; wi += WG) {
            let q = codes[base + wi];
            let c = xo + wi * 4u;
            let k = min(4u, p.cols - wi * 4u);
            var dot = 0.0;
            var xs = 0.0;
            for (var j = 0u; j < k; j++) {
                let xv = x[c + j];
                dot += lut[(q >> (8u * j)) & 0xffu] * xv;
                xs += xv;
            }
            let sm = affine_at(row_id, wi * 4u);
            a += dot * sm.x + xs * sm.y;
        }
        acc[0] = a;
    } else if (tb == 1u) {
        // Decode: one token, four codes per word unrolled.
        let xo = t0 * p.x_stride;
        var a = 0.0;
        for (var wi = lid; wi < words; wi += WG) {
            let q = codes[base + wi];
            let c = xo + wi * 4u;
            if (wi * 4u + 3u < p.cols) {
                a += lut[q & 0xffu] * x[c] + lut[(q >> 8u) & 0xffu] * x[c + 1u]
                   + lut[(q >> 16u) & 0xffu] * x[c + 2u] + lut[q >> 24u] * x[c + 3u];
            } else {
                for (var j = 0u; wi * 4u + j < p.cols; j++) { a += lut[(q >> (8u * j)) & 0xffu] * x[c + j]; }
            }
        }
        acc[0] = a;
    } else {
        let rows = rows8(t0, tb);
        var a = Acc8();
        for (var wi = lid; wi < words; wi += WG) {
            let q = codes[base + wi];
            let c = wi * 4u;
            let k = min(4u, p.cols - c);
            var sm = vec2<f32>(1.0, 0.0);
            if (grouped) { sm = affine_at(row_id, c); }
            for (var j = 0u; j < k; j++) {
                a = fma8(a, sm.x * lut[(q >> (8u * j)) & 0xffu] + sm.y, rows, c + j);
            }
        }
        acc = acc_array(a);
    }
    var row_scale = 1.0;
    if (!grouped) { row_scale = bitcast<f32>(w[p.scales_off + row_id]); }
    reduce_and_store(acc, id, tb, t0, row_id, row_scale);
}
