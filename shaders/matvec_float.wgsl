// y[row] (+)= Σ_c w[row][c] * x[c] for f32 or f16 weights (rows contiguous, no padding).
// The element type is chosen by the preprocessor: ELEM_F16 is 1 for f16, 0 for f32.
struct Params {
    rows: u32, cols: u32, stride_words: u32, scales_off: u32,
    codes_off: u32, x_off: u32, y_off: u32, accumulate: u32,
}
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
const ELEM_F16: u32 = {{ELEM_F16}}u;
var<workgroup> partial: array<f32, WG>;

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
    let row = min(wid.x + wid.y * nwg.x, p.rows - 1u);
    var acc = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        acc += weight(row * p.cols + c) * x[p.x_off + c];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u && wid.x + wid.y * nwg.x < p.rows) {
        var r = partial[0];
        if (p.accumulate != 0u) { r += y[p.y_off + row]; }
        y[p.y_off + row] = r;
    }
}
