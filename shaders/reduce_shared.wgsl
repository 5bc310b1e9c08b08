// Without subgroups: each thread keeps its shares of items i .. i + 3 in its own slot of
// workgroup memory, and `finish` sums the WG slots.
fn stash4(id: Ids, i: u32, v: vec4<f32>) {
    let at = id.lid * ITEMS + i;
    partial[at] = v.x;
    partial[at + 1u] = v.y;
    partial[at + 2u] = v.z;
    partial[at + 3u] = v.w;
}

fn slots(id: Ids) -> u32 { return WG; }
