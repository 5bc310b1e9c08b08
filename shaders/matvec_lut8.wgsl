// Y[t][row] (+)= scale[row] * Σ_c codebook[code[row][c]] * X[t][c]   — qins8, lut8, int8;
// with p.group > 0 (lut8g, lut8a): Σ_c (scale[g] * codebook[code[row][c]] + offset[g]) * X[t][c]
// over f16 group scales (and offsets), the group a multiple of 4 so each code word has one.
// A workgroup takes ROWS rows (and in prefill a block of up to TB tokens; see matvec_common.wgsl),
// the codebook loaded into workgroup memory once for them. The tensor
// is in its stored layout (docs/FORMAT.md): codebook at word 0 of w, then scales and offsets;
// code rows of stride_words words in `codes`.
{{MATVEC_COMMON}}
// The codebook's type: f32, or f16 where the device has shader-f16 and f16 compute was asked
// for (decode then multiplies in f16 and sums each word's four products into f32).
alias Lut = {{LUT_T}};
var<workgroup> lut: array<Lut, 256>;
// The same code rows read 16 codes at a time (decode with `--decode-loads vec4`, where rows
// start on 16 bytes and a group holds whole vectors): one 16-byte load per row instead of four
// 4-byte ones, the group's scale read once for them.
@group(0) @binding(6) var<storage, read> codes4: array<vec4<u32>>;
const WIDE: bool = {{WIDE}};

// Codebook values of a word's four codes.
fn values4(q: u32) -> vec4<Lut> {
    if (PROBE == PROBE_ARITHMETIC) {
        return vec4<Lut>(probe_values(vec4<u32>(q & 0xffu, (q >> 8u) & 0xffu, (q >> 16u) & 0xffu, q >> 24u)));
    }
    return vec4<Lut>(lut[q & 0xffu], lut[(q >> 8u) & 0xffu], lut[(q >> 16u) & 0xffu], lut[q >> 24u]);
}

// Σ of 16 codes' codebook values times x: xs's columns are the four words' x vectors.
// (each word's four products summed in Lut, as in the word loop, then in f32).
fn dot16(q: vec4<u32>, xs: mat4x4<f32>) -> f32 {
    return f32(dot(values4(q.x), vec4<Lut>(xs[0]))) + f32(dot(values4(q.y), vec4<Lut>(xs[1])))
         + f32(dot(values4(q.z), vec4<Lut>(xs[2]))) + f32(dot(values4(q.w), vec4<Lut>(xs[3])));
}

// The word-loop dot products of 4 rows' word wi with one x vector.
fn word_dots(base: vec4<u32>, wi: u32, xl: vec4<Lut>) -> vec4<f32> {
    return vec4<f32>(f32(dot(values4(codes[base.x + wi]), xl)), f32(dot(values4(codes[base.y + wi]), xl)),
                     f32(dot(values4(codes[base.z + wi]), xl)), f32(dot(values4(codes[base.w + wi]), xl)));
}

// 4 rows' code vector v (16 codes each), rows at vectors base4.
struct Codes16 { r0: vec4<u32>, r1: vec4<u32>, r2: vec4<u32>, r3: vec4<u32> }

fn codes16(base4: vec4<u32>, v: u32) -> Codes16 {
    return Codes16(codes4[base4.x + v], codes4[base4.y + v], codes4[base4.z + v], codes4[base4.w + v]);
}

// A decode turn's loads for both quads of rows: their code vectors v and group scales (loaded a
// turn ahead: see the decode path).
struct Turn { a: Codes16, b: Codes16, ga: Affine4, gb: Affine4 }

fn turn_at(qd: Quads, v: u32) -> Turn {
    var t = Turn();
    t.a = codes16(qd.base / 4u, v);
    t.ga = groups_at(qd.rows, v * 16u);
    if (DROWS == 8u) {
        t.b = codes16(qd.base_b / 4u, v);
        t.gb = groups_at(qd.rows_b, v * 16u);
    }
    return t;
}

// The dot products of 4 rows' code vectors q with the x vectors xs (see dot16).
fn wide_dots(q: Codes16, xs: mat4x4<f32>) -> vec4<f32> {
    return vec4<f32>(dot16(q.r0, xs), dot16(q.r1, xs), dot16(q.r2, xs), dot16(q.r3, xs));
}

// The codebook into workgroup memory for the lookups, and the barrier after which they may
// read it (the probe's decode paths compute the values instead, and skip both).
fn load_codebook(lid: u32) {
    if (DECODE && PROBE == PROBE_ARITHMETIC) { return; }
    for (var i = lid; i < 256u; i += WG) { lut[i] = Lut(bitcast<f32>(w[i])); }
    workgroupBarrier();
}

// Per-row scales of 4 rows (1 with group scales).
fn row_scales(rows: vec4<u32>) -> vec4<f32> {
    if (p.group != 0u) { return vec4<f32>(1.0); }
    let s = p.scales_off;
    return vec4<f32>(bitcast<f32>(w[s + rows.x]), bitcast<f32>(w[s + rows.y]),
                     bitcast<f32>(w[s + rows.z]), bitcast<f32>(w[s + rows.w]));
}

// a + the 4 rows' code j of their words q (scaled and offset by g) times the tokens' x.
fn code_fma(a: Acc32, q: vec4<u32>, j: u32, g: Affine4, xv: Acc8) -> Acc32 {
    let k = (q >> vec4<u32>(8u * j)) & vec4<u32>(0xffu);
    let v = g.scale * vec4<f32>(f32(lut[k.x]), f32(lut[k.y]), f32(lut[k.z]), f32(lut[k.w])) + g.offset;
    return fma32(a, v, xv);
}

// The scales (and offsets) of 4 tensor rows' word at column c: the groups', or the rows'.
fn word_affine(rows: vec4<u32>, c: u32, grouped: bool) -> Affine4 {
    if (grouped) { return affine4(rows, c); }
    return Affine4(row_scales(rows), vec4<f32>());
}

// a + the 4 rows' whole words q against the tokens' x vectors xw, the four codes unrolled so
// that every index is constant.
fn word_fma(a: Acc32, q: vec4<u32>, g: Affine4, xw: XWord8) -> Acc32 {
    let a1 = code_fma(a, q, 0u, g, Acc8(xw.lo[0], xw.hi[0]));
    let a2 = code_fma(a1, q, 1u, g, Acc8(xw.lo[1], xw.hi[1]));
    let a3 = code_fma(a2, q, 2u, g, Acc8(xw.lo[2], xw.hi[2]));
    return code_fma(a3, q, 3u, g, Acc8(xw.lo[3], xw.hi[3]));
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
    let words = (p.cols + 3u) / 4u;
    let grouped = p.group != 0u;
    let qd = quads(first, nr);
    let base = qd.base;
    let tensor_rows = qd.rows;
    let base_b = qd.base_b;
    let tensor_rows_b = qd.rows_b;
    if (DECODE) {
        // Decode: the rows' four codes of a word against one vec4 of x; with DROWS 8 a second
        // quad of rows (b) against the same x.
        let xo = x_offset(t0);
        var a = vec4<f32>();
        var b = vec4<f32>();
        var ss = 0.0;
        let wide = WIDE && p.stride_words % 4u == 0u && p.group % 16u == 0u;
        let vectors = select(0u, words / 4u, wide);
        let wide_words = select(0u, words, wide);
        let last = max(vectors, 1u) - 1u;
        // A thread's first turn of codes and group scales is loaded before the codebook and its
        // barrier, and each next turn's before this turn's are decoded: a workgroup of
        // Phi-3.5's qkv or o_proj takes its rows in one turn, and waited on the codebook's load,
        // the barrier, then its codes and scales, one after the other (a fixed 9-12 µs a
        // dispatch by the H200's fit, against 2 for the copy kernel; unmeasured on a GPU). The
        // turn after a thread's last loads its last vector again, unused.
        var v = id.lid;
        var turn = Turn();
        if (v < vectors) { turn = turn_at(qd, v); }
        load_codebook(id.lid);
        for (; v < vectors; v += WG) {
            let next = turn_at(qd, min(v + WG, last));
            let c = v * 16u;
            let xs = mat4x4<f32>(xin4(xo, c, &ss), xin4(xo, c + 4u, &ss), xin4(xo, c + 8u, &ss), xin4(xo, c + 12u, &ss));
            let xsum = dot(xs[0] + xs[1] + xs[2] + xs[3], vec4<f32>(1.0));
            a += apply_groups(wide_dots(turn.a, xs), turn.ga, xsum);
            if (DROWS == 8u) { b += apply_groups(wide_dots(turn.b, xs), turn.gb, xsum); }
            turn = next;
        }
        // Word by word where the vectors were not used (a row is whole vectors when they were:
        // its stride, a multiple of 4 words, is its word count).
        for (var wi = wide_words + id.lid; wi < words; wi += WG) {
            let c = wi * 4u;
            let xv = xin4(xo, c, &ss);
            let xl = vec4<Lut>(xv);
            let xsum = dot(xv, vec4<f32>(1.0));
            a += with_groups(word_dots(base, wi, xl), tensor_rows, c, xsum);
            if (DROWS == 8u) { b += with_groups(word_dots(base_b, wi, xl), tensor_rows_b, c, xsum); }
        }
        finish_decode(id, a * row_scales(tensor_rows), b * row_scales(tensor_rows_b), ss, t0, first, nr);
        return;
    }
    // Prefill: each code decoded once for the block's tokens, each x value loaded once for the
    // rows (with ROWS 8, a second quad b against the same x).
    load_codebook(id.lid);
    let xrows = rows8(t0, tb);
    var a = Acc32();
    var b = Acc32();
    for (var wi = id.lid; wi < words; wi += WG) {
        let c = wi * 4u;
        let q = words4(base, wi);
        let g = word_affine(tensor_rows, c, grouped);
        var qb = vec4<u32>();
        var gb = Affine4();
        if (ROWS == 8u) {
            qb = words4(base_b, wi);
            gb = word_affine(tensor_rows_b, c, grouped);
        }
        if (c + 3u < p.cols && x_aligned()) {
            // Whole words (all but a row's last): the tokens' x as vectors.
            let xw = xword8(xrows, c);
            a = word_fma(a, q, g, xw);
            if (ROWS == 8u) { b = word_fma(b, qb, gb, xw); }
            continue;
        }
        for (var j = 0u; j < min(4u, p.cols - c); j++) {
            let xv = x8(xrows, c + j);
            a = code_fma(a, q, j, g, xv);
            if (ROWS == 8u) { b = code_fma(b, qb, j, gb, xv); }
        }
    }
    finish_quads(id, a, b, t0, first, nr, tb);
}
