// What select.wgsl and pick.wgsl share (spliced in at SELECT_COMMON, after each one's
// bindings `logits`, `seen` and `p`): a token's penalised value and the key it is ordered by.
struct SelectParams { n: u32, k: u32, penalty: f32, inv_penalty: f32 }

// Most candidates select.wgsl returns.
const CAP: u32 = 1024u;

fn value(i: u32) -> f32 {
    let v = logits[i];
    if (p.penalty != 1.0 && ((seen[i / 32u] >> (i % 32u)) & 1u) == 1u) {
        return select(v * p.penalty, v * p.inv_penalty, v > 0.0);
    }
    return v;
}

// An unsigned key that orders like the float.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b >> 31u) == 1u);
}

// The float a key orders (key's inverse).
fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k >> 31u) == 1u));
}
