// Y[t][row] (+)= scale[row] * Σ_c codebook[code[row][c]] * X[t][c]   — qins8 and lut8.
// Decode (one token) and prefill (many) alike: a workgroup takes one row and up to 8 tokens,
// decoding each weight once for all of them. The tensor is one buffer in its stored layout
// (docs/FORMAT.md): codebook at word 0, per-row f32 scales, code rows of stride_words words.
{{MATVEC_COMMON}}
var<workgroup> lut: array<f32, 256>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = select(step.n, 1u, p.last_only == 1u);
    let t0 = wid.z * TB;
    let row_id = wid.x + wid.y * nwg.x;
    if (t0 >= n || row_id >= p.rows) { return; }
    let tb = min(TB, n - t0);
    for (var i = lid; i < 256u; i += WG) { lut[i] = bitcast<f32>(w[i]); }
    workgroupBarrier();
    let base = p.codes_off + row_id * p.stride_words;
    let words = (p.cols + 3u) / 4u;
    var acc: array<f32, 8>;
    if (tb == 1u) {
        // Decode: one token, four codes per word unrolled.
        let xo = t0 * p.x_stride;
        var a = 0.0;
        for (var wi = lid; wi < words; wi += WG) {
            let q = w[base + wi];
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
        for (var wi = lid; wi < words; wi += WG) {
            let q = w[base + wi];
            let c = wi * 4u;
            let k = min(4u, p.cols - c);
            for (var j = 0u; j < k; j++) {
                let v = lut[(q >> (8u * j)) & 0xffu];
                for (var t = 0u; t < tb; t++) {
                    acc[t] += v * x[(t0 + t) * p.x_stride + c + j];
                }
            }
        }
    }
    reduce_and_store(acc, lid, tb, t0, row_id, bitcast<f32>(w[p.scales_off + row_id]));
}
