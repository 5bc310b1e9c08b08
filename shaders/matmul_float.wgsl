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
        let t = tile_word(i, 1u, first, k0);
        var v = 0.0;
        if (t.wi < p.cols) {
            let at = t.row * p.cols + t.wi;
            if (ELEM_F16 == 1u) { v = code_half(at); } else { v = bitcast<f32>(codes[at]); }
        }
        put_w(t.k, t.r, v);
    }
}
