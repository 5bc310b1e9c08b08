// x[t] = row tokens[t] of the embedding table, dequantized from any codec (docs/FORMAT.md
// layouts) as `kind` says: one of the KIND_ constants, generated from gpu/params.rs's
// EmbedKind. Grouped kinds add the group's f16 offset where `paired` (group_affine.wgsl).
{{EMBED_KINDS}}
// Field for field gpu/params.rs's EmbedParams.
struct EmbedParams {
    kind: u32, cols: u32, row0: u32, rows: u32,
    stride_words: u32, scales_off: u32, group: u32, groups: u32,
    paired: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}
struct Step { pos: u32, n: u32, _pad0: u32, _pad1: u32 }
// The table's codebook, scales and offsets (w) and the code rows row0 .. row0 + rows of one part
// (codes): a table split across bindings is looked up once per part, each part writing the
// tokens whose rows it holds.
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> p: EmbedParams;
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(5) var<storage, read> codes: array<u32>;

{{GROUP_AFFINE}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= p.cols || t >= step.n) { return; }
    let r = tokens[t];
    if (r < p.row0 || r - p.row0 >= p.rows) { return; }
    let local = r - p.row0;
    let row = local * p.stride_words;
    let g = r * p.groups + c / max(p.group, 1u);
    var v = 0.0;
    switch p.kind {
        case KIND_LUT8_ROW: {
            let q = (codes[row + c / 4u] >> (8u * (c % 4u))) & 0xffu;
            v = bitcast<f32>(w[q]) * bitcast<f32>(w[p.scales_off + r]);
        }
        case KIND_LUT4: {
            let q = (codes[row + c / 8u] >> (4u * (c % 8u))) & 0xfu;
            let a = group_affine(p.scales_off, p.paired, g);
            v = bitcast<f32>(w[q]) * a.x + a.y;
        }
        case KIND_LUT8_GROUP: {
            let q = (codes[row + c / 4u] >> (8u * (c % 4u))) & 0xffu;
            let a = group_affine(p.scales_off, p.paired, g);
            v = bitcast<f32>(w[q]) * a.x + a.y;
        }
        case KIND_F32: { v = bitcast<f32>(codes[local * p.cols + c]); }
        case KIND_F16, default: {
            let i = local * p.cols + c;
            let pair = unpack2x16float(codes[i / 2u]);
            v = select(pair.x, pair.y, (i & 1u) == 1u);
        }
    }
    x[t * p.cols + c] = v;
}
