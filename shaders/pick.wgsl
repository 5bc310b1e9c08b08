// The greedy choice of a row on the GPU, after select.wgsl with k = 1 left its candidates in
// `out` (the tokens whose penalised value ties the largest, whose key is out[1]): the lowest id
// among them, which is what the sampler picks from them (chat/sampler.rs sorts ties by id).
// Writes it and its value's bits to out[2] and out[3], as the next step's token (tokens[0]),
// and into the penalised tokens' bitset (a chosen token is seen from the next step on), so the
// engine can queue the next decoded token's step before it reads this one back
// (`GpuModel::forward_select`). Where more tokens tie than the candidates hold (CAP), the
// whole row is scanned for the lowest id with the largest key. One workgroup.
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> seen: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: SelectParams;
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>;
{{SELECT_COMMON}}
const WG: u32 = 256u;
var<workgroup> lowest: atomic<u32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    let count = out[0];
    let top = out[1];
    if (lid == 0u) { atomicStore(&lowest, 0xffffffffu); }
    workgroupBarrier();
    var mine = 0xffffffffu;
    if (count <= CAP) {
        for (var j = lid; j < count; j += WG) { mine = min(mine, out[4u + 2u * j]); }
    } else {
        for (var i = lid; i < p.n; i += WG) {
            if (key(value(i)) == top) { mine = min(mine, i); }
        }
    }
    atomicMin(&lowest, mine);
    workgroupBarrier();
    if (lid == 0u) {
        let id = atomicLoad(&lowest);
        out[2] = id;
        out[3] = bitcast<u32>(unkey(top));
        tokens[0] = id;
        if (p.penalty != 1.0) { seen[id / 32u] |= 1u << (id % 32u); }
    }
}
