// The sampling candidates of one logits row on the GPU, so a step reads back a few hundred
// bytes instead of the vocabulary's logits: every token whose value is at least the k-th
// largest (ties included, so at least k come back), where a token's value is its logit, or for
// tokens already seen with a repetition penalty: logit × 1/penalty if positive, × penalty if not
// (multiplications, which WGSL rounds exactly like the CPU sampler). One workgroup: a radix
// select over order-preserving keys, one 8-bit digit per round, finds the k-th largest key, then
// a last pass gathers. out = [count, threshold key, 0, 0, then (id, value bits) pairs, at most CAP].
struct SelectParams { n: u32, k: u32, penalty: f32, inv_penalty: f32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> seen: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: SelectParams;

const WG: u32 = 256u;
const CAP: u32 = 1024u;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> count: atomic<u32>;
// The key bits found so far, which of them are found, and how many of the k are still to find
// below the found prefix.
var<workgroup> prefix: u32;
var<workgroup> mask: u32;
var<workgroup> remaining: u32;

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

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        prefix = 0u;
        mask = 0u;
        remaining = p.k;
        atomicStore(&count, 0u);
    }
    for (var digit = 0u; digit < 4u; digit++) {
        let shift = 24u - 8u * digit;
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        let pre = prefix;
        let m = mask;
        for (var i = lid; i < p.n; i += WG) {
            let k = key(value(i));
            if ((k & m) == pre) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
        }
        workgroupBarrier();
        if (lid == 0u) {
            // The digit holding the remaining-th largest: walk the bins from the top.
            var above = 0u;
            var b = 255u;
            loop {
                let c = atomicLoad(&hist[b]);
                if (above + c >= remaining || b == 0u) { break; }
                above += c;
                b -= 1u;
            }
            remaining -= above;
            prefix |= b << shift;
            mask |= 255u << shift;
        }
        workgroupBarrier();
    }
    let threshold = prefix;
    for (var i = lid; i < p.n; i += WG) {
        let v = value(i);
        if (key(v) >= threshold) {
            let slot = atomicAdd(&count, 1u);
            if (slot < CAP) {
                out[4u + 2u * slot] = i;
                out[5u + 2u * slot] = bitcast<u32>(v);
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        out[0] = atomicLoad(&count);
        out[1] = threshold;
    }
}
