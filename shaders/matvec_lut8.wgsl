// Y[t][row] (+)= scale[row] * Σ_c codebook[code[row][c]] * X[t][c]   — qins8, lut8, int8;
// with p.group > 0 (lut8g, lut8a): Σ_c (scale[g] * codebook[code[row][c]] + offset[g]) * X[t][c]
// over f16 group scales (and offsets), the group a multiple of 4 so each code word has one.
// In decode (one token) a workgroup takes ROWS rows, reading each x value once for all of them
// and loading the codebook into workgroup memory once per ROWS rows; in prefill it takes one row
// and up to 8 tokens, decoding each weight once for all of them. The tensor
// is in its stored layout (docs/FORMAT.md): codebook at word 0 of w, then scales and offsets;
// code rows of stride_words words in `codes`.
{{MATVEC_COMMON}}
// The codebook's type: f32, or f16 where the device has shader-f16 and f16 compute was asked
// for (decode then multiplies in f16 and sums each word's four products into f32).
alias Lut = {{LUT_T}};
var<workgroup> lut: array<Lut, 256>;

// Codebook values of a word's four codes.
fn values4(q: u32) -> vec4<Lut> {
    return vec4<Lut>(lut[q & 0xffu], lut[(q >> 8u) & 0xffu], lut[(q >> 16u) & 0xffu], lut[q >> 24u]);
}

fn row_scale(row: u32) -> f32 {
    if (p.group != 0u) { return 1.0; }
    return bitcast<f32>(w[p.scales_off + row]);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, id: Ids) {
    let n = select(step.n, 1u, p.last_only == 1u);
    let t0 = wid.z * TB;
    // ROWS rows per workgroup in decode, one in prefill (see matvec_common.wgsl).
    let first = (wid.x + wid.y * nwg.x) * select(1u, ROWS, n == 1u);
    if (t0 >= n || first >= p.rows) { return; }
    let tb = min(TB, n - t0);
    for (var i = id.lid; i < 256u; i += WG) { lut[i] = Lut(bitcast<f32>(w[i])); }
    workgroupBarrier();
    let words = (p.cols + 3u) / 4u;
    let grouped = p.group != 0u;
    if (n == 1u) {
        let nr = min(ROWS, p.rows - first);
        let rows = rows4(first, nr);
        let base = rows * p.stride_words;
        let tensor_rows = rows + vec4<u32>(p.row0);
        let xo = t0 * p.x_stride;
        var a = vec4<f32>();
        for (var wi = id.lid; wi < words; wi += WG) {
            let c = wi * 4u;
            let xv = x4(xo, c);
            let xl = vec4<Lut>(xv);
            let d = vec4<f32>(f32(dot(values4(codes[base.x + wi]), xl)), f32(dot(values4(codes[base.y + wi]), xl)),
                              f32(dot(values4(codes[base.z + wi]), xl)), f32(dot(values4(codes[base.w + wi]), xl)));
            if (grouped) {
                let g = affine4(tensor_rows, c);
                a += d * g.scale + dot(xv, vec4<f32>(1.0)) * g.offset;
            } else {
                a += d;
            }
        }
        a *= vec4<f32>(row_scale(tensor_rows.x), row_scale(tensor_rows.y),
                       row_scale(tensor_rows.z), row_scale(tensor_rows.w));
        reduce_and_store(items4(a), id, nr, Out(t0, p.row0 + first, true, 1.0));
        return;
    }
    let xrows = rows8(t0, tb);
    let row_id = p.row0 + first;
    let base = first * p.stride_words;
    var a = Acc8();
    for (var wi = id.lid; wi < words; wi += WG) {
        let q = codes[base + wi];
        let c = wi * 4u;
        let k = min(4u, p.cols - c);
        var sm = vec2<f32>(1.0, 0.0);
        if (grouped) { sm = affine_at(row_id, c); }
        for (var j = 0u; j < k; j++) {
            a = fma8(a, sm.x * f32(lut[(q >> (8u * j)) & 0xffu]) + sm.y, xrows, c + j);
        }
    }
    reduce_and_store(acc_array(a), id, tb, Out(t0, row_id, false, row_scale(row_id)));
}
