// Not a kernel: a stored tensor and its activations as the mat-vec (matvec_common.wgsl) and
// tiled mat-mul (matmul_common.wgsl) kernels bind them, spliced in at their WEIGHTS
// placeholder. A tensor is bound as `w` (codebook, scales and offsets: the bytes before its
// codes) and `codes`: the code rows row0 .. row0 + rows, one part of a tensor split across
// bindings when it exceeds maxStorageBufferBindingSize (docs/ARCHITECTURE.md). Workgroups index
// rows within the part; scales, offsets and y take the tensor's row (row0 + the part's row).
// Field for field gpu/params.rs's MatvecParams.
struct MatvecParams {
    rows: u32, cols: u32, row0: u32, x_stride: u32,
    y_stride: u32, accumulate: u32, last_only: u32, stride_words: u32,
    scales_off: u32, group: u32, groups: u32, paired: u32,
    input: u32, eps: f32, _pad0: u32, _pad1: u32,
}
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: MatvecParams;
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(5) var<storage, read> codes: array<u32>;

{{GROUP_AFFINE}}
// (scale, offset) of the group holding column c of a grouped codec's tensor row.
fn affine_at(row: u32, c: u32) -> vec2<f32> {
    return group_affine(p.scales_off, p.paired, row * p.groups + c / p.group);
}

// Value i of the part's codes read as f16 pairs (f16 weights).
fn code_half(i: u32) -> f32 {
    let pair = unpack2x16float(codes[i / 2u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}
