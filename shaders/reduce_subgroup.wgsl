// Sums each of `count` items' 64 partial dot products with subgroupAdd, then the subgroups'
// sums through workgroup memory (one barrier instead of six), and stores them (see `store`).
fn reduce_and_store(acc: array<f32, 8>, id: Ids, count: u32, out: Out) {
    for (var t = 0u; t < count; t++) {
        let s = subgroupAdd(acc[t]);
        if (id.lane == 0u) { partial[t * WG + id.subgroup] = s; }
    }
    workgroupBarrier();
    if (id.lid < count) {
        var r = 0.0;
        for (var i = 0u; i < id.subgroups; i++) { r += partial[id.lid * WG + i]; }
        store(out, id.lid, r);
    }
}
