// Sums each token's 64 partial dot products with subgroupAdd, then the subgroups' sums through
// workgroup memory (one barrier instead of six), and stores scale × sum (+ y when accumulating).
// Each subgroup takes a slot from an atomic counter because WGSL does not say how lanes map to
// local_invocation_index, nor how many lanes a subgroup has (4 to 128; 8 on lavapipe).
var<workgroup> subgroups: atomic<u32>;

fn reduce_and_store(acc: array<f32, 8>, id: Ids, tb: u32, t0: u32, row: u32, scale: f32) {
    let lead = id.lane == 0u;
    var slot = 0u;
    if (lead) { slot = atomicAdd(&subgroups, 1u); }
    for (var t = 0u; t < tb; t++) {
        let s = subgroupAdd(acc[t]);
        if (lead) { partial[t * WG + slot] = s; }
    }
    workgroupBarrier();
    if (id.lid < tb) {
        let count = atomicLoad(&subgroups);
        var r = 0.0;
        for (var i = 0u; i < count; i++) { r += partial[id.lid * WG + i]; }
        store(id.lid, t0, row, r * scale);
    }
}
