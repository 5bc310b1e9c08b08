// Shared by the tiled prefill kernels (spliced in at their MATMUL_COMMON placeholder):
// Y[t] (+)= W·X[t] for a batch, each workgroup computing a tile of TM rows × TN tokens. Per step
// of TK columns the workgroup decodes the tile's weights once into workgroup memory (each weight
// decoded once per TN tokens; the mat-vec kernels decode it once per 8 and read x from global
// memory per weight) and stages the tokens' x values beside them; each thread then sums a block
// of BR rows × 4 tokens out of workgroup memory. The including file defines the codec's part:
// `load_codebook` and `decode_tile`. Parameters and bindings are weights.wgsl's.
//
// Two shapes (Kernels::tile, spliced in): 64 × 32 tiles, TK 32, 4 × 4 blocks (16 products per
// two vec4 loads from workgroup memory), and 64 × 64 tiles, TK 16, 8 × 4 blocks (32 products
// per three loads, each weight decoded once per 64 tokens; TK halved so that both tiles and an
// 8-bit codebook stay within WebGPU's 16 KiB of workgroup memory).
{{WEIGHTS}}
// x again as 16-byte vectors (the same buffer), for staging four columns of a token per load
// where its rows start on 16 bytes.
@group(0) @binding(8) var<storage, read> xv4: array<vec4<f32>>;
const THREADS: u32 = 128u;
const TM: u32 = 64u;
{{TILE}}
// ws[k * TM / 4 + slot(k, r / 4)][r % 4]: the weight of tile row r at column k0 + k;
// xs[k * TN / 4 + slot(k, t / 4)][t % 4] likewise for token t. Vectors of four rows (tokens) so
// that a thread's block takes one load of each per column and four rows.
var<workgroup> ws: array<vec4<f32>, WS_VECS>;
var<workgroup> xs: array<vec4<f32>, XS_VECS>;

// Where column k keeps its vector q of four rows (tokens): q with its low three bits XORed by a
// function of k, a permutation of each column's vectors (a thread's block still reads one
// vector). Unswizzled, the column-major stores put every store of a warp in the banks of one
// row: a thread stages a word's consecutive columns of one row, a warp's 32 threads span 32 / TK
// × 4 rows, and columns TM (TN) words apart share a bank, so the stores were 8- (codes) and
// 32-way (x) bank conflicts, as costly as the sums they feed. With the swizzle the warp's
// columns (TK / 4 words a row, 4 columns each) scatter its 32 / TK vectors of rows over all 8
// vectors of a 128-byte bank line: its 32 stores of one column offset each go to a bank of
// their own. Needs TK of 16 or 32 and 8 or more vectors a column.
fn slot(k: u32, q: u32) -> u32 {
    return q ^ (((k >> 2u) * (32u / TK)) & 7u);
}

// Word i of the tile's codes, of `per` codes a word (1: a float value): its tile row r, the tile column k of its
// first code, its row within the part (rows past the part repeat its last: their sums are
// dropped), and its word index within that row. Consecutive i are consecutive words of a row.
struct TileWord { r: u32, k: u32, row: u32, wi: u32 }

fn tile_word(i: u32, per: u32, first: u32, k0: u32) -> TileWord {
    let r = i / (TK / per);
    let k = per * (i % (TK / per));
    return TileWord(r, k, min(first + r, p.rows - 1u), (k0 + k) / per);
}

// The weight of tile row r at tile column k (zero past the columns: see decode_tile).
fn put_w(k: u32, r: u32, v: f32) {
    ws[k * (TM / 4u) + slot(k, r / 4u)][r % 4u] = v;
}

// x of the tile's tb tokens at columns k0 .. k0 + TK, zero past the columns and the batch (so
// code padding and missing tokens add nothing): a thread stages four columns of a token, as
// decode_tile stages a word of a row (one vector load where the token's row starts on 16 bytes).
fn load_x(t0: u32, tb: u32, k0: u32, lid: u32) {
    for (var i = lid; i < TN * TK / 4u; i += THREADS) {
        let t = i / (TK / 4u);
        let k = 4u * (i % (TK / 4u));
        var v = vec4<f32>();
        if (t < tb) {
            let at = (t0 + t) * p.x_stride + k0 + k;
            if (k0 + k + 3u < p.cols && (p.x_stride & 3u) == 0u) {
                v = xv4[at / 4u];
            } else {
                for (var j = 0u; k0 + k + j < p.cols && j < 4u; j++) { v[j] = x[at + j]; }
            }
        }
        put_x(k, t, v.x);
        put_x(k + 1u, t, v.y);
        put_x(k + 2u, t, v.z);
        put_x(k + 3u, t, v.w);
    }
}

// x of tile token t at tile column k.
fn put_x(k: u32, t: u32, v: f32) {
    xs[k * (TN / 4u) + slot(k, t / 4u)][t % 4u] = v;
}

// Row `row` (within the part) of a thread's block: its four tokens' sums, stored or added to y.
fn store_row(row: u32, t0: u32, n: u32, a: vec4<f32>) {
    if (row >= p.rows) { return; }
    for (var t = 0u; t < 4u; t++) {
        if (t0 + t < n) {
            let at = (t0 + t) * p.y_stride + p.row0 + row;
            var s = a[t];
            if (p.accumulate != 0u) { s += y[at]; }
            y[at] = s;
        }
    }
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = step.n;
    let t0 = wid.z * TN;
    let first = (wid.x + wid.y * nwg.x) * TM;
    if (t0 >= n || first >= p.rows) { return; }
    let tb = min(TN, n - t0);
    load_codebook(lid);
    // The thread's block: rows 4·rg .. 4·rg + 3 and tokens 4·tg .. 4·tg + 3 of the tile; with
    // BR 8 also rows TM / 2 + 4·rg .. (b; dead code with BR 4), a vector of rows TM / 8 past the
    // first, so that the 8 threads of a quarter warp read 8 different vectors of a bank line.
    let rg = lid % (TM / BR);
    let tg = lid / (TM / BR);
    let qb = rg + TM / 8u;
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var b0 = vec4<f32>();
    var b1 = vec4<f32>();
    var b2 = vec4<f32>();
    var b3 = vec4<f32>();
    for (var k0 = 0u; k0 < p.cols; k0 += TK) {
        // The barrier also orders load_codebook before the first decode_tile's reads.
        workgroupBarrier();
        decode_tile(first, k0, lid);
        load_x(t0, tb, k0, lid);
        workgroupBarrier();
        // A word's four columns share their permutation (see slot): found once for them.
        for (var k4 = 0u; k4 < TK; k4 += 4u) {
            let f = slot(k4, 0u);
            let wa = rg ^ f;
            let wb = qb ^ f;
            let xa = tg ^ f;
            for (var k = k4; k < k4 + 4u; k++) {
                let wv = ws[k * (TM / 4u) + wa];
                let xv = xs[k * (TN / 4u) + xa];
                a0 += wv.x * xv;
                a1 += wv.y * xv;
                a2 += wv.z * xv;
                a3 += wv.w * xv;
                if (BR == 8u) {
                    let wu = ws[k * (TM / 4u) + wb];
                    b0 += wu.x * xv;
                    b1 += wu.y * xv;
                    b2 += wu.z * xv;
                    b3 += wu.w * xv;
                }
            }
        }
    }
    let r = first + 4u * rg;
    let t = t0 + 4u * tg;
    store_row(r, t, n, a0);
    store_row(r + 1u, t, n, a1);
    store_row(r + 2u, t, n, a2);
    store_row(r + 3u, t, n, a3);
    if (BR == 8u) {
        let rb = first + 4u * qb;
        store_row(rb, t, n, b0);
        store_row(rb + 1u, t, n, b1);
        store_row(rb + 2u, t, n, b2);
        store_row(rb + 3u, t, n, b3);
    }
}
