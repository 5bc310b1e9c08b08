// Y[t][row] (+)= Σ_c W[row][c] * X[t][c] for f32 or f16 weights (rows contiguous), one row and
// up to 8 tokens per workgroup. ELEM_F16 (preprocessed) is 1 for f16, 0 for f32.
{{MATVEC_COMMON}}
const ELEM_F16: u32 = {{ELEM_F16}}u;

// Value i of the part (row-major from its first row).
fn weight(i: u32) -> f32 {
    if (ELEM_F16 == 1u) { return code_half(i); }
    return bitcast<f32>(codes[i]);
}

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
    var acc: array<f32, 8>;
    if (tb == 1u) {
        // Decode: one token.
        let xo = t0 * p.x_stride;
        var s = 0.0;
        for (var c = lid; c < p.cols; c += WG) { s += weight(local * p.cols + c) * x[xo + c]; }
        acc[0] = s;
    } else {
        let rows = rows8(t0, tb);
        var a = Acc8();
        for (var c = lid; c < p.cols; c += WG) {
            a = fma8(a, weight(local * p.cols + c), rows, c);
        }
        acc = acc_array(a);
    }
    reduce_and_store(acc, id, tb, t0, row_id, 1.0);
}
