// With subgroups: subgroupAdd sums the subgroup's shares of items i .. i + 3, its first lane
// keeps them in the subgroup's slot of workgroup memory, and `finish` sums the subgroups' slots.
fn stash4(id: Ids, i: u32, v: vec4<f32>) {
    let s = subgroupAdd(v);
    if (id.lane == 0u) {
        let at = id.subgroup * ITEMS + i;
        partial[at] = s.x;
        partial[at + 1u] = s.y;
        partial[at + 2u] = s.z;
        partial[at + 3u] = s.w;
    }
}

fn slots(id: Ids) -> u32 { return id.subgroups; }
