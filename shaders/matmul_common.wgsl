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
const THREADS: u32 = 128u;
const TM: u32 = 64u;
{{TILE}}
// ws[k * TM / 4 + r / 4][r % 4]: the weight of tile row r at column k0 + k; xs[k * TN / 4 +
// t / 4][t % 4] likewise for token t. Vectors of four rows (tokens) so that a thread's block
// takes one load of each per column and four rows.
var<workgroup> ws: array<vec4<f32>, WS_VECS>;
var<workgroup> xs: array<vec4<f32>, XS_VECS>;

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
    ws[k * (TM / 4u) + r / 4u][r % 4u] = v;
}

// x of the tile's tb tokens at columns k0 .. k0 + TK, zero past the columns and the batch (so
// code padding and missing tokens add nothing).
fn load_x(t0: u32, tb: u32, k0: u32, lid: u32) {
    for (var i = lid; i < TK * TN; i += THREADS) {
        let t = i / TK;
        let k = i % TK;
        var v = 0.0;
        if (t < tb && k0 + k < p.cols) { v = x[(t0 + t) * p.x_stride + k0 + k]; }
        xs[k * (TN / 4u) + t / 4u][t % 4u] = v;
    }
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
    // The thread's block: rows BR·rg .. BR·rg + BR - 1 and tokens 4·tg .. 4·tg + 3 of the
    // tile; with BR 8 its second four rows sum into b (dead code with BR 4).
    let rg = lid % (TM / BR);
    let tg = lid / (TM / BR);
    let wq = rg * (BR / 4u);
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
        for (var k = 0u; k < TK; k++) {
            let wv = ws[k * (TM / 4u) + wq];
            let xv = xs[k * (TN / 4u) + tg];
            a0 += wv.x * xv;
            a1 += wv.y * xv;
            a2 += wv.z * xv;
            a3 += wv.w * xv;
            if (BR == 8u) {
                let wu = ws[k * (TM / 4u) + wq + 1u];
                b0 += wu.x * xv;
                b1 += wu.y * xv;
                b2 += wu.z * xv;
                b3 += wu.w * xv;
            }
        }
    }
    let r = first + BR * rg;
    let t = t0 + 4u * tg;
    store_row(r, t, n, a0);
    store_row(r + 1u, t, n, a1);
    store_row(r + 2u, t, n, a2);
    store_row(r + 3u, t, n, a3);
    if (BR == 8u) {
        store_row(r + 4u, t, n, b0);
        store_row(r + 5u, t, n, b1);
        store_row(r + 6u, t, n, b2);
        store_row(r + 7u, t, n, b3);
    }
}
