// Y[t][row] (+)= Σ_c (scale[g] * codebook[code[row][c]] + offset[g]) * X[t][c], g = the group
// of (row, c) — lut4, lut4a, int4. ROWS rows (and TB tokens) per workgroup as in
// matvec_lut8.wgsl. 8 codes per u32 word (column 2k in the low nibble of its byte), f16 group
// scales and offsets two per word, 16-entry codebook.
{{MATVEC_COMMON}}
// The codebook's type: f32, or f16 with f16 compute (see matvec_lut8.wgsl).
alias Lut = {{LUT_T}};
var<workgroup> lut: array<Lut, 16>;
// The same code rows read 32 codes at a time (decode with `--decode-loads vec4`, where rows
// start on 16 bytes and a group holds whole vectors), as in matvec_lut8.wgsl.
@group(0) @binding(6) var<storage, read> codes4: array<vec4<u32>>;
const WIDE: bool = {{WIDE}};

// Codebook values of a word's eight codes, the low four and the high four.
fn values8(q: u32) -> mat2x4<Lut> {
    if (PROBE == PROBE_ARITHMETIC) {
        let lo = (vec4<u32>(q) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(0xfu);
        let hi = (vec4<u32>(q) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(0xfu);
        return mat2x4<Lut>(vec4<Lut>(probe_values(lo)), vec4<Lut>(probe_values(hi)));
    }
    return mat2x4<Lut>(
        vec4<Lut>(lut[q & 0xfu], lut[(q >> 4u) & 0xfu], lut[(q >> 8u) & 0xfu], lut[(q >> 12u) & 0xfu]),
        vec4<Lut>(lut[(q >> 16u) & 0xfu], lut[(q >> 20u) & 0xfu], lut[(q >> 24u) & 0xfu], lut[q >> 28u]));
}

// Σ of a word's eight codebook values times x (multiplied and summed in Lut).
fn dot8(q: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    let v = values8(q);
    return f32(dot(v[0], vec4<Lut>(xa)) + dot(v[1], vec4<Lut>(xb)));
}

// dot8 over a vector's four words: xa[j] and xb[j] are word j's low and high four x values.
fn dot32(q: vec4<u32>, xa: mat4x4<f32>, xb: mat4x4<f32>) -> f32 {
    return dot8(q.x, xa[0], xb[0]) + dot8(q.y, xa[1], xb[1]) + dot8(q.z, xa[2], xb[2]) + dot8(q.w, xa[3], xb[3]);
}

// dot8 of 4 rows' words q.
fn word_dots(q: vec4<u32>, xa: vec4<f32>, xb: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot8(q.x, xa, xb), dot8(q.y, xa, xb), dot8(q.z, xa, xb), dot8(q.w, xa, xb));
}

// dot32 of 4 rows' code vector v (32 codes).
fn wide_dots(base4: vec4<u32>, v: u32, xa: mat4x4<f32>, xb: mat4x4<f32>) -> vec4<f32> {
    return vec4<f32>(dot32(codes4[base4.x + v], xa, xb), dot32(codes4[base4.y + v], xa, xb),
                     dot32(codes4[base4.z + v], xa, xb), dot32(codes4[base4.w + v], xa, xb));
}

// A decode turn's loads for both quads of rows: their code words wi and group scales (loaded a
// turn ahead: see the decode path).
struct Turn { a: vec4<u32>, b: vec4<u32>, ga: Affine4, gb: Affine4 }

fn turn_at(qd: Quads, wi: u32) -> Turn {
    var t = Turn();
    t.a = words4(qd.base, wi);
    t.ga = groups_at(qd.rows, wi * 8u);
    if (DROWS == 8u) {
        t.b = words4(qd.base_b, wi);
        t.gb = groups_at(qd.rows_b, wi * 8u);
    }
    return t;
}

// The codebook into workgroup memory for the lookups, and the barrier after which they may
// read it (the probe's decode paths compute the values instead and skip both; groups that split
// words still look them up).
fn load_codebook(lid: u32) {
    if (DECODE && PROBE == PROBE_ARITHMETIC && (p.group & 7u) == 0u) { return; }
    if (lid < 16u) { lut[lid] = Lut(bitcast<f32>(w[lid])); }
    workgroupBarrier();
}

// a + the 4 rows' code j of their words q (scaled and offset by g) times the tokens' x.
fn code_fma(a: Acc32, q: vec4<u32>, j: u32, g: Affine4, xv: Acc8) -> Acc32 {
    let k = (q >> vec4<u32>(4u * j)) & vec4<u32>(0xfu);
    let v = g.scale * vec4<f32>(f32(lut[k.x]), f32(lut[k.y]), f32(lut[k.z]), f32(lut[k.w])) + g.offset;
    return fma32(a, v, xv);
}

// a + the 4 rows' whole words q against the tokens' x vectors (xw: codes 0-3, xv: 4-7), the
// eight codes unrolled so that every index is constant.
fn word_fma(a: Acc32, q: vec4<u32>, g: Affine4, xw: XWord8, xv: XWord8) -> Acc32 {
    let a1 = code_fma(a, q, 0u, g, Acc8(xw.lo[0], xw.hi[0]));
    let a2 = code_fma(a1, q, 1u, g, Acc8(xw.lo[1], xw.hi[1]));
    let a3 = code_fma(a2, q, 2u, g, Acc8(xw.lo[2], xw.hi[2]));
    let a4 = code_fma(a3, q, 3u, g, Acc8(xw.lo[3], xw.hi[3]));
    let a5 = code_fma(a4, q, 4u, g, Acc8(xv.lo[0], xv.hi[0]));
    let a6 = code_fma(a5, q, 5u, g, Acc8(xv.lo[1], xv.hi[1]));
    let a7 = code_fma(a6, q, 6u, g, Acc8(xv.lo[2], xv.hi[2]));
    return code_fma(a7, q, 7u, g, Acc8(xv.lo[3], xv.hi[3]));
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
    let words = (p.cols + 7u) / 8u;
    let qd = quads(first, nr);
    let base = qd.base;
    let tensor_rows = qd.rows;
    let base_b = qd.base_b;
    let tensor_rows_b = qd.rows_b;
    if (DECODE && (p.group & 7u) == 0u) {
        // Decode with groups of whole words: one scale and offset per word and row; with
        // DROWS 8 a second quad of rows (b) against the same x.
        let xo = x_offset(t0);
        var a = vec4<f32>();
        var b = vec4<f32>();
        var ss = 0.0;
        let wide = WIDE && p.stride_words % 4u == 0u && p.group % 32u == 0u;
        let wide_words = select(0u, words, wide);
        // The word loop's first turn of codes and group scales, loaded before the codebook and
        // its barrier (see matvec_lut8.wgsl's decode path; unmeasured on a GPU).
        var wi = wide_words + id.lid;
        let last = max(words, 1u) - 1u;
        var turn = Turn();
        if (wi < words) { turn = turn_at(qd, wi); }
        load_codebook(id.lid);
        if (wide) {
            for (var v = id.lid; v < words / 4u; v += WG) {
                let c = v * 32u;
                let xa = mat4x4<f32>(xin4(xo, c, &ss), xin4(xo, c + 8u, &ss), xin4(xo, c + 16u, &ss), xin4(xo, c + 24u, &ss));
                let xb = mat4x4<f32>(xin4(xo, c + 4u, &ss), xin4(xo, c + 12u, &ss), xin4(xo, c + 20u, &ss), xin4(xo, c + 28u, &ss));
                let s = xa[0] + xa[1] + xa[2] + xa[3] + xb[0] + xb[1] + xb[2] + xb[3];
                let xsum = dot(s, vec4<f32>(1.0));
                a += with_groups(wide_dots(base / 4u, v, xa, xb), tensor_rows, c, xsum);
                if (DROWS == 8u) { b += with_groups(wide_dots(base_b / 4u, v, xa, xb), tensor_rows_b, c, xsum); }
            }
        }
        // Word by word where the vectors were not used (a row is whole vectors when they were:
        // its stride, a multiple of 4 words, is its word count), the next turn's words and
        // group scales loaded before this turn's are decoded, so that a thread's loads overlap
        // its arithmetic instead of each turn waiting on its 32 bytes of codes (the 4-bit
        // kernels ran at 15-25 % of the copy kernel's bandwidth on the H200 with the L2 holding
        // the tensor; not yet measured on a GPU). The turn after a thread's last loads its last
        // word again, unused.
        for (; wi < words; wi += WG) {
            let next = turn_at(qd, min(wi + WG, last));
            let c = wi * 8u;
            let xa = xin4(xo, c, &ss);
            let xb = xin4(xo, c + 4u, &ss);
            let xsum = dot(xa + xb, vec4<f32>(1.0));
            a += apply_groups(word_dots(turn.a, xa, xb), turn.ga, xsum);
            if (DROWS == 8u) { b += apply_groups(word_dots(turn.b, xa, xb), turn.gb, xsum); }
            turn = next;
        }
        finish_decode(id, a, b, ss, t0, first, nr);
        return;
    }
    // Prefill (and decode with groups that split words, which takes no fused input: see
    // GpuTensor::fuses): code by code, as in matvec_lut8.wgsl, with 8 rows a workgroup (ROWS 8,
    // or DROWS 8 in decode) two quads, a and b, against the same x.
    load_codebook(id.lid);
    let xrows = rows8(t0, tb);
    let two = wg_rows() == 8u;
    var a = Acc32();
    var b = Acc32();
    for (var wi = id.lid; wi < words; wi += WG) {
        let c = wi * 8u;
        let q = words4(base, wi);
        // Within a word the scales change only where a group boundary falls.
        var g = affine4(tensor_rows, c);
        var qb = vec4<u32>();
        var gb = Affine4();
        if (two) {
            qb = words4(base_b, wi);
            gb = affine4(tensor_rows_b, c);
        }
        if (c + 7u < p.cols && x_aligned() && (p.group & 7u) == 0u) {
            // Whole words in one group (all but a row's last with groups of whole words): the
            // tokens' x as vectors.
            let xw = xword8(xrows, c);
            let xv = xword8(xrows, c + 4u);
            a = word_fma(a, q, g, xw, xv);
            if (two) { b = word_fma(b, qb, gb, xw, xv); }
            continue;
        }
        for (var j = 0u; j < min(8u, p.cols - c); j++) {
            if (j > 0u && (c + j) % p.group == 0u) {
                g = affine4(tensor_rows, c + j);
                if (two) { gb = affine4(tensor_rows_b, c + j); }
            }
            let xj = x8(xrows, c + j);
            a = code_fma(a, q, j, g, xj);
            if (two) { b = code_fma(b, qb, j, gb, xj); }
        }
    }
    finish_quads(id, a, b, t0, first, nr, tb);
}
