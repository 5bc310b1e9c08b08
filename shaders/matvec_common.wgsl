// Shared by the mat-vec kernels (spliced in at their MATVEC_COMMON placeholder): the
// cross-thread reduction that writes the results (`stash4` and `slots` from
// reduce_subgroup.wgsl where the device has subgroups, else reduce_shared.wgsl, spliced in),
// and the x loads of the one-token and the 8-token paths. Parameters and bindings are
// weights.wgsl's, spliced in first.
{{WEIGHTS}}
// Threads a workgroup: 64, or in decode with subgroups 192 or 256 (`--decode-threads`): three
// or four times the threads per row, for tensors of few rows (Phi-3.5's o_proj and down give
// 384 workgroups of 8 rows, under three a multiprocessor on an H200). The workgroup-memory
// reduction keeps a slot per thread, so it takes 64.
const WG: u32 = {{WG}}u;
// A workgroup takes ROWS rows and, in prefill, a block of up to TB tokens: each code is decoded
// once for the TB tokens and each x value loaded once for the ROWS rows (an x load per weight
// and token made Phi-3.5's wide rows load-bound). Decode (one token) has its own vec4 path.
// ROWS (`--prefill-rows`) is 4, or 8 as two quads of rows sharing each load of the 8 tokens' x
// (half the x loads per weight, twice the accumulators).
const TB: u32 = 8u;
const ROWS: u32 = {{PREFILL_ROWS}}u;
// Rows per decode workgroup (`--decode-rows`): 4, or 8 as two quads of rows sharing each x
// load (a 4-row 8-bit workgroup loads as many bytes of x as of codes, a 4-bit one twice as
// many). The second quad's code is dead with 4.
const DROWS: u32 = {{DECODE_ROWS}}u;
// Built twice: the decode pipeline (one-token batches) and the prefill one (any batch).
const DECODE: bool = {{DECODE}};
// What the decode path computes x from (p.input): the x binding as it is, or the op that would
// have written it fused in (one dispatch fewer per decoded token, and no x buffer round trip):
// INPUT_NORM reads the residual rows and multiplies by the norm weight (the row's 1 / rms scales
// the sums in `finish`); INPUT_SILU reads [gate; up] rows of 2 × cols and takes silu(gate) · up.
{{INPUT_KINDS}}
// Part of the decode path's work left out where PROBE says: qins-bench's diagnosis of what
// bounds the kernel, never the engine's (gpu/params.rs's MatvecProbe). Exact on tensors whose
// codebook entry k is k / 256 - 0.5, scales 1 and offsets 0 (MatvecProbe::fit).
{{PROBES}}
@group(0) @binding(7) var<storage, read> norm_w: array<f32>;
// x and norm_w again as 16-byte vectors (the same buffers): where a row of x starts on 16
// bytes, one load per 4 columns. Four scalar loads of threads 16 bytes apart each touched every
// cache line of the four (on the H200 the fused norm, which doubles those loads, cost decode
// 10-30 % a mat-vec).
@group(0) @binding(8) var<storage, read> xv4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> norm4: array<vec4<f32>>;
// The item of a decode workgroup's stash that holds its threads' sums of squared residuals
// (after up to 8 rows' sums).
const SS_ITEM: u32 = 8u;
// Per-thread (or per-subgroup) shares of the ROWS × TB sums, item-minor so that the threads
// summing them read consecutive words: ITEMS a slot, a slot per thread or with subgroups per
// subgroup (at most WG / the adapter's smallest subgroup; `GpuContext::matvec_partial_len`).
const ITEMS: u32 = 32u;
var<workgroup> partial: array<f32, {{PARTIAL}}>;

// The entry point's per-invocation built-in inputs: the thread's index and, with subgroups, its
// lane, its subgroup and the subgroup count. The workgroup's id is passed apart: browsers'
// uniformity analysis counts a struct holding a per-thread value as per-thread in every field,
// and barriers after a return that depends on it are refused.
struct Ids {
    @builtin(local_invocation_index) lid: u32,
    {{LANE_ID}}
}

// Offsets in x of a block's 8 token rows. Rows past the batch repeat its last row: their sums
// are computed and dropped, so every load and add below has a constant token index and the
// accumulators stay in registers (a dynamically indexed private array goes to scratch memory
// on most GPU compilers, lavapipe's included).
struct Rows8 { lo: vec4<u32>, hi: vec4<u32> }
struct Acc8 { lo: vec4<f32>, hi: vec4<f32> }

fn rows8(t0: u32, tb: u32) -> Rows8 {
    let last = tb - 1u;
    let r = vec4<u32>(t0) + min(vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let s = vec4<u32>(t0) + min(vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(last));
    return Rows8(r * p.x_stride, s * p.x_stride);
}

// X[t][c] for the block's 8 tokens.
fn x8(r: Rows8, c: u32) -> Acc8 {
    return Acc8(vec4<f32>(x[r.lo.x + c], x[r.lo.y + c], x[r.lo.z + c], x[r.lo.w + c]),
                vec4<f32>(x[r.hi.x + c], x[r.hi.y + c], x[r.hi.z + c], x[r.hi.w + c]));
}

// Whether the block's rows of x start on 16 bytes, so that `xword8` may read them.
fn x_aligned() -> bool {
    return (p.x_stride & 3u) == 0u;
}

// X[t][c .. c + 4] of the block's 8 tokens (c + 3 < cols, rows aligned), one vec4 load a token
// instead of four scalar ones, transposed: column j is column c + j's x of tokens 0-3 (lo) and
// 4-7 (hi).
struct XWord8 { lo: mat4x4<f32>, hi: mat4x4<f32> }

fn xword8(r: Rows8, c: u32) -> XWord8 {
    let lo = mat4x4<f32>(xv4[(r.lo.x + c) / 4u], xv4[(r.lo.y + c) / 4u], xv4[(r.lo.z + c) / 4u], xv4[(r.lo.w + c) / 4u]);
    let hi = mat4x4<f32>(xv4[(r.hi.x + c) / 4u], xv4[(r.hi.y + c) / 4u], xv4[(r.hi.z + c) / 4u], xv4[(r.hi.w + c) / 4u]);
    return XWord8(transpose(lo), transpose(hi));
}

// The prefill sums of a workgroup: 4 rows × the block's 8 tokens.
struct Acc32 { r0: Acc8, r1: Acc8, r2: Acc8, r3: Acc8 }

// a + v × xv for one row.
fn fma8(a: Acc8, v: f32, xv: Acc8) -> Acc8 {
    return Acc8(a.lo + v * xv.lo, a.hi + v * xv.hi);
}

// a + w[r] × xv for the 4 rows: one weight per row, the same x values.
fn fma32(a: Acc32, w: vec4<f32>, xv: Acc8) -> Acc32 {
    return Acc32(fma8(a.r0, w.x, xv), fma8(a.r1, w.y, xv), fma8(a.r2, w.z, xv), fma8(a.r3, w.w, xv));
}

// Stashes the 32 sums (items row × TB + t) and stores them: see `finish`.
fn finish32(id: Ids, a: Acc32, out: Out) {
    stash8(id, 0u, a.r0);
    stash8(id, 1u, a.r1);
    stash8(id, 2u, a.r2);
    stash8(id, 3u, a.r3);
    finish(id, out);
}

// Stores the sums of a workgroup's quads of rows (b: the second, where it takes 8 rows) for the
// block's tokens, one quad after the other: the second's shares are stashed once the first's
// are read out of `partial`.
fn finish_quads(id: Ids, a: Acc32, b: Acc32, t0: u32, first: u32, nr: u32, tb: u32) {
    finish32(id, a, Out(t0, first, TB, min(nr, 4u), tb));
    if (wg_rows() == 8u) {
        workgroupBarrier();
        finish32(id, b, Out(t0, first + 4u, TB, select(0u, nr - 4u, nr > 4u), tb));
    }
}

// The block's sums of one row, items row × TB + t.
fn stash8(id: Ids, row: u32, a: Acc8) {
    stash4(id, row * TB, a.lo);
    stash4(id, row * TB + 4u, a.hi);
}

// Where a workgroup's items go: item i is (row first + i / per, token t0 + i % per), with per =
// TB in prefill and 1 in decode; items past `rows` rows or `tokens` tokens are dropped.
struct Out { t0: u32, first: u32, per: u32, rows: u32, tokens: u32 }

// Once every thread has stashed its shares: sums each item's shares (one thread per item) and
// stores it, or adds it to y when accumulating (the residual adds). One barrier in all.
fn finish(id: Ids, out: Out) {
    workgroupBarrier();
    let i = id.lid;
    let r = i / out.per;
    let t = i % out.per;
    if (i < ITEMS && r < out.rows && t < out.tokens) {
        var s = 0.0;
        for (var k = 0u; k < slots(id); k++) { s += partial[k * ITEMS + i]; }
        if (p.input == INPUT_NORM) {
            var ss = 0.0;
            for (var k = 0u; k < slots(id); k++) { ss += partial[k * ITEMS + SS_ITEM]; }
            s *= 1.0 / sqrt(ss / f32(p.cols) + p.eps);
        }
        let at = (out.t0 + t) * p.y_stride + p.row0 + out.first + r;
        if (p.accumulate != 0u) { s += y[at]; }
        y[at] = s;
    }
}

{{REDUCE}}

// x[xo + c .. xo + c + 4], zero past the columns (code padding then adds nothing); c is a
// multiple of 4.
fn x4(xo: u32, c: u32) -> vec4<f32> {
    if (c + 3u < p.cols) {
        if ((xo & 3u) == 0u) { return xv4[(xo + c) / 4u]; }
        return vec4<f32>(x[xo + c], x[xo + c + 1u], x[xo + c + 2u], x[xo + c + 3u]);
    }
    var v = vec4<f32>();
    for (var j = 0u; c + j < p.cols; j++) { v[j] = x[xo + c + j]; }
    return v;
}

// x[xo + c .. xo + c + 4] as the decode path multiplies it (see INPUT_NORM), the raw values'
// squares added to ss.
fn xin4(xo: u32, c: u32, ss: ptr<function, f32>) -> vec4<f32> {
    let xr = x4(xo, c);
    *ss += dot(xr, xr);
    if (p.input == INPUT_NORM) {
        if (c + 3u < p.cols) { return xr * norm4[c / 4u]; }
        var g = vec4<f32>();
        for (var j = 0u; c + j < p.cols; j++) { g[j] = norm_w[c + j]; }
        return xr * g;
    }
    if (p.input == INPUT_SILU) { return xr / (1.0 + exp(-xr)) * x4(xo + p.cols, c); }
    return xr;
}

// The same for one column c < p.cols.
fn xin1(xo: u32, c: u32, ss: ptr<function, f32>) -> f32 {
    let xr = x[xo + c];
    *ss += xr * xr;
    if (p.input == INPUT_NORM) { return xr * norm_w[c]; }
    if (p.input == INPUT_SILU) { return xr / (1.0 + exp(-xr)) * x[xo + p.cols + c]; }
    return xr;
}

// Where the decode path's x row starts: the workgroup's token's, or with last_only and a fused
// input the batch's last token's (unfused, the norm wrote that row into row 0).
fn x_offset(t0: u32) -> u32 {
    if (p.last_only == 1u && p.input != INPUT_PLAIN) { return (step.n - 1u) * p.x_stride; }
    return t0 * p.x_stride;
}

// The decode path's last step: stashes the rows' sums (a: the first quad, b: the second with
// DROWS 8) and the squares for the fused norm, and stores them.
fn finish_decode(id: Ids, a: vec4<f32>, b: vec4<f32>, ss: f32, t0: u32, first: u32, nr: u32) {
    stash4(id, 0u, a);
    if (DROWS == 8u) { stash4(id, 4u, b); }
    stash4(id, SS_ITEM, vec4<f32>(ss, 0.0, 0.0, 0.0));
    finish(id, Out(t0, first, 1u, nr, 1u));
}

// A workgroup's first token and first row. Prefill grids have the token blocks on x, the axis
// GPUs start workgroups along first, so the blocks that read the same rows' codes run side by
// side and share them in the cache: with the rows first, every block of a batch streamed the
// whole tensor (Phi-3.5's gate_up, 48 MiB in lut8g, about the H200's L2), 8 times for 64
// tokens. Decode grids hold rows alone, on x and y.
struct Block { t0: u32, first: u32 }

fn block(wid: vec3<u32>, nwg: vec3<u32>) -> Block {
    if (DECODE) { return Block(0u, (wid.x + wid.y * nwg.x) * DROWS); }
    return Block(wid.x * TB, (wid.y + wid.z * nwg.y) * ROWS);
}

// Rows a workgroup takes: ROWS in prefill, DROWS in decode.
fn wg_rows() -> u32 {
    return select(ROWS, DROWS, DECODE);
}

// Quad q of a workgroup's rows within the part: first + 4q .. first + 4q + 3 of first ..
// first + count, rows past the part repeating its last (their sums are computed and dropped)
// so that every row index is constant.
fn quad_rows(first: u32, q: u32, count: u32) -> vec4<u32> {
    return vec4<u32>(first) + min(vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(count - 1u));
}

fn rows4(first: u32, count: u32) -> vec4<u32> {
    return quad_rows(first, 0u, count);
}

// A LUT workgroup's quads of rows: the first's code rows (word offsets) and tensor rows, and
// the second's (b), which only workgroups of 8 rows use.
struct Quads { base: vec4<u32>, rows: vec4<u32>, base_b: vec4<u32>, rows_b: vec4<u32> }

fn quads(first: u32, count: u32) -> Quads {
    let a = rows4(first, count);
    let b = quad_rows(first, 1u, count);
    return Quads(a * p.stride_words, a + vec4<u32>(p.row0), b * p.stride_words, b + vec4<u32>(p.row0));
}

// Word wi of 4 code rows starting at words base (the LUT kernels).
fn words4(base: vec4<u32>, wi: u32) -> vec4<u32> {
    return vec4<u32>(codes[base.x + wi], codes[base.y + wi], codes[base.z + wi], codes[base.w + wi]);
}

// Four rows' dot products d at column c as the sums take them: scaled and offset by the rows'
// groups (sum of the x values times the offset) where the tensor has groups.
fn with_groups(d: vec4<f32>, rows: vec4<u32>, c: u32, xsum: f32) -> vec4<f32> {
    return apply_groups(d, groups_at(rows, c), xsum);
}

// Whether the sums take group scales and offsets (see with_groups).
fn uses_groups() -> bool {
    return p.group != 0u && PROBE != PROBE_NO_GROUPS;
}

// The group scales and offsets with_groups applies at column c of 4 rows (none read where it
// applies none): loaded apart, so that the decode loops load a turn's ahead with its codes.
fn groups_at(rows: vec4<u32>, c: u32) -> Affine4 {
    if (!uses_groups()) { return Affine4(); }
    return affine4(rows, c);
}

// with_groups with the groups g loaded by groups_at.
fn apply_groups(d: vec4<f32>, g: Affine4, xsum: f32) -> vec4<f32> {
    if (!uses_groups()) { return d; }
    return d * g.scale + xsum * g.offset;
}

// Group scales and offsets of 4 tensor rows at column c (see affine_at).
struct Affine4 { scale: vec4<f32>, offset: vec4<f32> }

fn affine4(rows: vec4<u32>, c: u32) -> Affine4 {
    let a = affine_at(rows.x, c);
    let b = affine_at(rows.y, c);
    let d = affine_at(rows.z, c);
    let e = affine_at(rows.w, c);
    return Affine4(vec4<f32>(a.x, b.x, d.x, e.x), vec4<f32>(a.y, b.y, d.y, e.y));
}

// Codebook values of codes k as PROBE_ARITHMETIC computes them instead of looking them up.
fn probe_values(k: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(k) / 256.0 - 0.5;
}
