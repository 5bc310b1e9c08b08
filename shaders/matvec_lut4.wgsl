// y[row] (+)= Σ_c scale[row][c / group] * codebook[code[row][c]] * x[c]   — lut4.
// 8 codes per u32 word (column 2k in the low nibble of its byte), f16 group scales packed two
// per word, 16-entry f32 codebook at word 0 (docs/FORMAT.md).
struct Params {
    rows: u32, cols: u32, stride_words: u32, scales_off: u32,
    codes_off: u32, x_off: u32, y_off: u32, accumulate: u32,
    group: u32, groups: u32, _pad0: u32, _pad1: u32,
}
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> lut: array<f32, 16>;
var<workgroup> partial: array<f32, WG>;

fn scale_at(row: u32, c: u32) -> f32 {
    let s = row * p.groups + c / p.group;
    let pair = unpack2x16float(w[p.scales_off + s / 2u]);
    return select(pair.x, pair.y, (s & 1u) == 1u);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    if (lid < 16u) { lut[lid] = bitcast<f32>(w[lid]); }
    workgroupBarrier();
    let row = min(wid.x + wid.y * nwg.x, p.rows - 1u);
    let base = p.codes_off + row * p.stride_words;
    let words = (p.cols + 7u) / 8u;
    var acc = 0.0;
    for (var wi = lid; wi < words; wi += WG) {
        let q = w[base + wi];
        let c = wi * 8u;
        // A word lies within one group when groups are multiples of 8 (the usual case).
        if (c + 7u < p.cols && (p.group & 7u) == 0u) {
            var dot = 0.0;
            for (var j = 0u; j < 8u; j++) {
                dot += lut[(q >> (4u * j)) & 0xfu] * x[p.x_off + c + j];
            }
            acc += dot * scale_at(row, c);
        } else {
            for (var j = 0u; j < 8u && c + j < p.cols; j++) {
                acc += scale_at(row, c + j) * lut[(q >> (4u * j)) & 0xfu] * x[p.x_off + c + j];
            }
        }
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
