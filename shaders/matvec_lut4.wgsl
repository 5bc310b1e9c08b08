// Y[t][row] (+)= Σ_c (scale[g] * codebook[code[row][c]] + offset[g]) * X[t][c], g = the group
// of (row, c) — lut4, lut4a, int4. One row and up to 8 tokens per workgroup (see
// matvec_lut8.wgsl). 8 codes per u32 word (column 2k in the low nibble of its byte), f16 group
// scales and offsets two per word, 16-entry codebook.
{{MATVEC_COMMON}}
var<workgroup> lut: array<f32, 16>;

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
    if (lid < 16u) { lut[lid] = bitcast<f32>(w[lid]); }
    workgroupBarrier();
    let base = local * p.stride_words;
    let words = (p.cols + 7u) / 8u;
    var acc: array<f32, 8>;
    if (tb == 1u && (p.group & 7u) == 0u) {
        // Decode with groups of whole words: one scale and offset per word, one token.
        let xo = t0 * p.x_stride;
        var a = 0.0;
        for (var wi = lid; wi < words; wi += WG) {
            let q = codes[base + wi];
            let c = wi * 8u;
            let k = min(8u, p.cols - c);
            var dot = 0.0;
            var xs = 0.0;
            for (var j = 0u; j < k; j++) {
                let xv = x[xo + c + j];
                dot += lut[(q >> (4u * j)) & 0xfu] * xv;
                xs += xv;
            }
            let sm = affine_at(row_id, c);
            a += dot * sm.x + xs * sm.y;
        }
        acc[0] = a;
    } else {
        let rows = rows8(t0, tb);
        var a = Acc8();
        for (var wi = lid; wi < words; wi += WG) {
            let q = codes[base + wi];
            let c = wi * 8u;
            let k = min(8u, p.cols - c);
            // Within a word the scale changes only where a group boundary falls.
            var sm = affine_at(row_id, c);
            for (var j = 0u; j < k; j++) {
                if (j > 0u && (c + j) % p.group == 0u) { sm = affine_at(row_id, c + j); }
                a = fma8(a, sm.x * lut[(q >> (4u * j)) & 0xfu] + sm.y, rows, c + j);
            }
        }
        acc = acc_array(a);
    }
    reduce_and_store(acc, id, tb, t0, row_id, 1.0);
}
