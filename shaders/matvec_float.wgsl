// Y[t][row] (+)= Σ_c W[row][c] * X[t][c] for f32 or f16 weights (rows contiguous), one row and
// up to 8 tokens per workgroup. ELEM_F16 (preprocessed) is 1 for f16, 0 for f32.
struct Params {
    rows: u32, cols: u32, stride_words: u32, scales_off: u32,
    codes_off: u32, x_stride: u32, y_stride: u32, accumulate: u32,
    last_only: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const WG: u32 = 64u;
const TB: u32 = 8u;
const ELEM_F16: u32 = {{ELEM_F16}}u;
var<workgroup> partial: array<f32, 512>;

fn weight(i: u32) -> f32 {
    if (ELEM_F16 == 1u) {
        let pair = unpack2x16float(w[p.codes_off + i / 2u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(w[p.codes_off + i]);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = select(step.n, 1u, p.last_only == 1u);
    let t0 = wid.z * TB;
    let row_id = wid.x + wid.y * nwg.x;
    if (t0 >= n || row_id >= p.rows) { return; }
    let tb = min(TB, n - t0);
    var acc: array<f32, 8>;
    for (var c = lid; c < p.cols; c += WG) {
        let v = weight(row_id * p.cols + c);
        for (var t = 0u; t < tb; t++) {
            acc[t] += v * x[(t0 + t) * p.x_stride + c];
        }
    }
    for (var t = 0u; t < tb; t++) { partial[t * WG + lid] = acc[t]; }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var t = 0u; t < tb; t++) { partial[t * WG + lid] += partial[t * WG + lid + s]; }
        }
        workgroupBarrier();
    }
    if (lid < tb) {
        let at = (t0 + lid) * p.y_stride + row_id;
        var r = partial[lid * WG];
        if (p.accumulate != 0u) { r += y[at]; }
        y[at] = r;
    }
}
