// Y[t][row] (+)= Σ_c W[row][c] * X[t][c] for f32 or f16 weights (rows contiguous), ROWS rows
// (and TB tokens) per workgroup as in matvec_lut8.wgsl. ELEM_F16 (preprocessed) is 1 for
// f16, 0 for f32.
{{MATVEC_COMMON}}
const ELEM_F16: u32 = {{ELEM_F16}}u;

// Value i of the part (row-major from its first row).
fn weight(i: u32) -> f32 {
    if (ELEM_F16 == 1u) { return code_half(i); }
    return bitcast<f32>(codes[i]);
}

// Column c of 4 rows starting at base.
fn weights4(base: vec4<u32>, c: u32) -> vec4<f32> {
    return vec4<f32>(weight(base.x + c), weight(base.y + c), weight(base.z + c), weight(base.w + c));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, id: Ids) {
    let n = select(step.n, 1u, p.last_only == 1u);
    let blk = block(wid, nwg);
    let t0 = blk.t0;
    let first = blk.first;
    if (t0 >= n || first >= p.rows) { return; }
    let tb = min(TB, n - t0);
    let nr = min(wg_rows(), p.rows - first);
    let base = rows4(first, nr) * p.cols;
    // The second quad of rows (b), against the same x where a workgroup takes 8.
    let base_b = quad_rows(first, 1u, nr) * p.cols;
    if (DECODE) {
        let xo = x_offset(t0);
        var a = vec4<f32>();
        var b = vec4<f32>();
        var ss = 0.0;
        for (var c = id.lid; c < p.cols; c += WG) {
            let xv = xin1(xo, c, &ss);
            a += weights4(base, c) * xv;
            if (DROWS == 8u) { b += weights4(base_b, c) * xv; }
        }
        finish_decode(id, a, b, ss, t0, first, nr);
        return;
    }
    let xrows = rows8(t0, tb);
    var a = Acc32();
    var b = Acc32();
    for (var c = id.lid; c < p.cols; c += WG) {
        let xv = x8(xrows, c);
        a = fma32(a, weights4(base, c), xv);
        if (ROWS == 8u) { b = fma32(b, weights4(base_b, c), xv); }
    }
    finish_quads(id, a, b, t0, first, nr, tb);
}
