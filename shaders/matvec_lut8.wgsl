// y[row] (+)= scale[row] * Σ_c codebook[code[row][c]] * x[c]   — qins8 and lut8 (8-bit codes).
// One workgroup per row; the tensor is one buffer laid out as docs/FORMAT.md says
// (codebook at word 0, per-row f32 scales, code rows of stride_words u32 words, 4 codes each).
struct Params {
    rows: u32, cols: u32, stride_words: u32, scales_off: u32,
    codes_off: u32, x_off: u32, y_off: u32, accumulate: u32,
}
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> lut: array<f32, 256>;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < 256u; i += WG) { lut[i] = bitcast<f32>(w[i]); }
    workgroupBarrier();
    let row = min(wid.x + wid.y * nwg.x, p.rows - 1u);
    let base = p.codes_off + row * p.stride_words;
    let words = (p.cols + 3u) / 4u;
    var acc = 0.0;
    for (var wi = lid; wi < words; wi += WG) {
        let q = w[base + wi];
        let c = wi * 4u;
        if (c + 3u < p.cols) {
            acc += lut[q & 0xffu] * x[p.x_off + c] + lut[(q >> 8u) & 0xffu] * x[p.x_off + c + 1u]
                 + lut[(q >> 16u) & 0xffu] * x[p.x_off + c + 2u] + lut[q >> 24u] * x[p.x_off + c + 3u];
        } else {
            for (var j = 0u; c + j < p.cols; j++) {
                acc += lut[(q >> (8u * j)) & 0xffu] * x[p.x_off + c + j];
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    // Surplus workgroups of a 2-D grid (row clamped above) must not write.
    if (lid == 0u && wid.x + wid.y * nwg.x < p.rows) {
        var r = partial[0] * bitcast<f32>(w[p.scales_off + row]);
        if (p.accumulate != 0u) { r += y[p.y_off + row]; }
        y[p.y_off + row] = r;
    }
}
