// Y[t] (+)= W·X[t] for a prefill batch of f32 or f16 weights (rows contiguous): the tiled kernel
// of matmul_common.wgsl with plain loads for its tile. Same weights and results as
// matvec_float.wgsl (f32 arithmetic; summed in another order). ELEM_F16 (preprocessed) is 1
// for f16, 0 for f32.
{{MATMUL_COMMON}}
const ELEM_F16: u32 = {{ELEM_F16}}u;

fn load_codebook(lid: u32) {}

// The tile's TM rows × TK columns from k0, zero past the columns; consecutive threads read
// consecutive values of a row, rows past the part repeat its last.
fn decode_tile(first: u32, k0: u32, lid: u32) {
    for (var i = lid; i < TM * TK; i += THREADS) {
        let r = i / TK;
        let k = i % TK;
        let row = min(first + r, p.rows - 1u);
        var v = 0.0;
        if (k0 + k < p.cols) {
            let at = row * p.cols + k0 + k;
            if (ELEM_F16 == 1u) { v = code_half(at); } else { v = bitcast<f32>(codes[at]); }
        }
        put_w(k, r, v);
    }
}
