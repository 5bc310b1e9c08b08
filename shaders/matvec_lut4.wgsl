// Y[t][row] (+)= Σ_c (scale[g] * codebook[code[row][c]] + offset[g]) * X[t][c], g = the group
// of (row, c) — lut4, lut4a, int4. ROWS rows per workgroup, decode and prefill as in
// matvec_lut8.wgsl. 8 codes per u32 word (column 2k in the low nibble of its byte), f16 group
// scales and offsets two per word, 16-entry codebook.
{{MATVEC_COMMON}}
// The codebook's type: f32, or f16 with f16 compute (see matvec_lut8.wgsl).
alias Lut = {{LUT_T}};
var<workgroup> lut: array<Lut, 16>;

// Codebook values of a word's eight codes, the low four and the high four.
fn values8(q: u32) -> mat2x4<Lut> {
    return mat2x4<Lut>(
        vec4<Lut>(lut[q & 0xfu], lut[(q >> 4u) & 0xfu], lut[(q >> 8u) & 0xfu], lut[(q >> 12u) & 0xfu]),
        vec4<Lut>(lut[(q >> 16u) & 0xfu], lut[(q >> 20u) & 0xfu], lut[(q >> 24u) & 0xfu], lut[q >> 28u]));
}

// Σ of a word's eight codebook values times x (multiplied and summed in Lut).
fn dot8(q: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    let v = values8(q);
    return f32(dot(v[0], vec4<Lut>(xa)) + dot(v[1], vec4<Lut>(xb)));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, id: Ids) {
    let n = select(step.n, 1u, p.last_only == 1u);
    let t0 = wid.z * TB;
    // ROWS rows per workgroup in decode, one in prefill (see matvec_common.wgsl).
    let first = (wid.x + wid.y * nwg.x) * select(1u, ROWS, n == 1u);
    if (t0 >= n || first >= p.rows) { return; }
    let tb = min(TB, n - t0);
    if (id.lid < 16u) { lut[id.lid] = Lut(bitcast<f32>(w[id.lid])); }
    workgroupBarrier();
    let words = (p.cols + 7u) / 8u;
    if (n == 1u && (p.group & 7u) == 0u) {
        // Decode with groups of whole words: one scale and offset per word and row.
        let nr = min(ROWS, p.rows - first);
        let rows = rows4(first, nr);
        let base = rows * p.stride_words;
        let tensor_rows = rows + vec4<u32>(p.row0);
        let xo = t0 * p.x_stride;
        var a = vec4<f32>();
        for (var wi = id.lid; wi < words; wi += WG) {
            let c = wi * 8u;
            let xa = x4(xo, c);
            let xb = x4(xo, c + 4u);
            let d = vec4<f32>(dot8(codes[base.x + wi], xa, xb), dot8(codes[base.y + wi], xa, xb),
                              dot8(codes[base.z + wi], xa, xb), dot8(codes[base.w + wi], xa, xb));
            let g = affine4(tensor_rows, c);
            a += d * g.scale + dot(xa + xb, vec4<f32>(1.0)) * g.offset;
        }
        reduce_and_store(items4(a), id, nr, Out(t0, p.row0 + first, true, 1.0));
        return;
    }
    let xrows = rows8(t0, tb);
    if (n == 1u) {
        // Decode with groups that split words (rare): the general path, row by row.
        for (var r = 0u; r < min(ROWS, p.rows - first); r++) {
            reduce_and_store(acc_array(sums(id.lid, first + r, words, xrows)), id, 1u,
                             Out(t0, p.row0 + first + r, false, 1.0));
            // partial is rewritten for the next row.
            workgroupBarrier();
        }
        return;
    }
    reduce_and_store(acc_array(sums(id.lid, first, words, xrows)), id, tb, Out(t0, p.row0 + first, false, 1.0));
}

// Part row `local`'s dot products (this thread's share, from word lid) with the block's token rows, code by code.
fn sums(lid: u32, local: u32, words: u32, xrows: Rows8) -> Acc8 {
    let row_id = p.row0 + local;
    let base = local * p.stride_words;
    var a = Acc8();
    for (var wi = lid; wi < words; wi += WG) {
        let q = codes[base + wi];
        let c = wi * 8u;
        let k = min(8u, p.cols - c);
        // Within a word the scale changes only where a group boundary falls.
        var sm = affine_at(row_id, c);
        for (var j = 0u; j < k; j++) {
            if (j > 0u && (c + j) % p.group == 0u) { sm = affine_at(row_id, c + j); }
            a = fma8(a, sm.x * f32(lut[(q >> (4u * j)) & 0xfu]) + sm.y, xrows, c + j);
        }
    }
    return a;
}
