// Y[t][row] (+)= Σ_c W[row][c] * X[t][c] for f32 or f16 weights (rows contiguous), ROWS rows
// per workgroup, decode and prefill as in matvec_lut8.wgsl. ELEM_F16 (preprocessed) is 1 for
// f16, 0 for f32.
{{MATVEC_COMMON}}
const ELEM_F16: u32 = {{ELEM_F16}}u;

// Value i of the part (row-major from its first row).
fn weight(i: u32) -> f32 {
    if (ELEM_F16 == 1u) { return code_half(i); }
    return bitcast<f32>(codes[i]);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, id: Ids) {
    let n = select(step.n, 1u, p.last_only == 1u);
    let t0 = wid.z * TB;
    // ROWS rows per workgroup in decode, one in prefill (see matvec_common.wgsl).
    let first = (wid.x + wid.y * nwg.x) * select(1u, ROWS, n == 1u);
    if (t0 >= n || first >= p.rows) { return; }
    let tb = min(TB, n - t0);
    if (n == 1u) {
        let nr = min(ROWS, p.rows - first);
        let base = rows4(first, nr) * p.cols;
        let xo = t0 * p.x_stride;
        var a = vec4<f32>();
        for (var c = id.lid; c < p.cols; c += WG) {
            let wv = vec4<f32>(weight(base.x + c), weight(base.y + c), weight(base.z + c), weight(base.w + c));
            a += wv * x[xo + c];
        }
        reduce_and_store(items4(a), id, nr, Out(t0, p.row0 + first, true, 1.0));
        return;
    }
    let xrows = rows8(t0, tb);
    let base = first * p.cols;
    var a = Acc8();
    for (var c = id.lid; c < p.cols; c += WG) { a = fma8(a, weight(base + c), xrows, c); }
    reduce_and_store(acc_array(a), id, tb, Out(t0, p.row0 + first, false, 1.0));
}
