// Sums each token's 64 partial dot products through workgroup memory (a tree, one barrier per
// level) and stores scale × sum (+ y when accumulating). For adapters without subgroups.
fn reduce_and_store(acc: array<f32, 8>, id: Ids, tb: u32, t0: u32, row: u32, scale: f32) {
    let lid = id.lid;
    for (var t = 0u; t < tb; t++) { partial[t * WG + lid] = acc[t]; }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var t = 0u; t < tb; t++) { partial[t * WG + lid] += partial[t * WG + lid + s]; }
        }
        workgroupBarrier();
    }
    if (lid < tb) { store(lid, t0, row, partial[lid * WG] * scale); }
}
