// Sums each of `count` items' 64 partial dot products through workgroup memory (a tree, one
// barrier per level) and stores them (see `store`). For adapters without subgroups.
fn reduce_and_store(acc: array<f32, 8>, id: Ids, count: u32, out: Out) {
    let lid = id.lid;
    for (var t = 0u; t < count; t++) { partial[t * WG + lid] = acc[t]; }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var t = 0u; t < count; t++) { partial[t * WG + lid] += partial[t * WG + lid + s]; }
        }
        workgroupBarrier();
    }
    if (lid < count) { store(out, lid, partial[lid * WG]); }
}
