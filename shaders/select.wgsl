// The sampling candidates of one logits row on the GPU, so a step reads back a few hundred
// bytes instead of the vocabulary's logits: every token whose value is at least the k-th
// largest (ties included, so at least k come back), where a token's value is its logit, or for
// tokens already seen with a repetition penalty: logit × 1/penalty if positive, × penalty if not
// (multiplications, which WGSL rounds exactly like the CPU sampler). A radix select over
// order-preserving keys, one 8-bit digit per round, finds the k-th largest key, then a last
// pass gathers. out = [count, threshold key, pick.wgsl's greedy choice (id, value bits), then
// (id, value bits) pairs, at most CAP].
//
// Five dispatches of this kernel (`round.r` 0-4), each in workgroups of SLICE tokens over the
// row: round r < 4 counts digit r of the keys that match the digits found so far into its
// histogram in `work`, round 4 gathers. Each round from 1 first finds the previous round's
// digit from that round's histogram (every workgroup the same, so none waits on another).
// One workgroup for the whole row took the H200 128-234 µs a token: its 256 threads read the
// row five times, every key's first digit in the same few bins of one histogram's atomics.
struct Round { r: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> seen: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: SelectParams;
// Words 256 r .. 256 r + 255: round r's histogram (cleared by the round before it, round 0's
// by round 3, for the next row); STATE + 4 r: the found digits, their mask and how many of the
// k are still to find below them, for round r + 1 (written by round r's first workgroup).
@group(0) @binding(4) var<storage, read_write> work: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> round: Round;
{{SELECT_COMMON}}

const WG: u32 = 256u;
// Tokens a workgroup takes: PER a thread.
const PER: u32 = 4u;
const SLICE: u32 = WG * PER;
const STATE: u32 = 1024u;
var<workgroup> hist: array<atomic<u32>, 256>;
// Sums of the previous round's bins from each bin up, and the digit they pick.
var<workgroup> suffix: array<u32, 256>;
var<workgroup> digit: u32;

struct State { prefix: u32, mask: u32, remaining: u32 }

fn shift_of(r: u32) -> u32 {
    return 24u - 8u * r;
}

// The state after round r's digit: the bin holding the remaining-th largest of the keys that
// matched, found as a walk from the top bin would (the highest bin whose count from there up
// reaches it; bin 0 if none does), and the keys above it taken off what remains.
fn pick(lid: u32, r: u32, st: State) -> State {
    suffix[lid] = atomicLoad(&work[256u * r + lid]);
    if (lid == 0u) { digit = 0u; }
    workgroupBarrier();
    for (var d = 1u; d < 256u; d <<= 1u) {
        var add = 0u;
        if (lid + d < 256u) { add = suffix[lid + d]; }
        workgroupBarrier();
        suffix[lid] += add;
        workgroupBarrier();
    }
    let above = select(0u, suffix[min(lid + 1u, 255u)], lid < 255u);
    if (suffix[lid] >= st.remaining && above < st.remaining) { digit = lid; }
    workgroupBarrier();
    let b = digit;
    let taken = select(0u, suffix[min(b + 1u, 255u)], b < 255u);
    let shift = shift_of(r);
    return State(st.prefix | (b << shift), st.mask | (255u << shift), st.remaining - taken);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = round.r;
    let g = wid.x + wid.y * nwg.x;
    let first = g == 0u && lid == 0u;
    var st = State(0u, 0u, p.k);
    if (r >= 1u) {
        if (r >= 2u) {
            let at = STATE + 4u * (r - 1u);
            st = State(atomicLoad(&work[at]), atomicLoad(&work[at + 1u]), atomicLoad(&work[at + 2u]));
        }
        st = pick(lid, r - 1u, st);
        if (first && r < 4u) {
            let at = STATE + 4u * r;
            atomicStore(&work[at], st.prefix);
            atomicStore(&work[at + 1u], st.mask);
            atomicStore(&work[at + 2u], st.remaining);
        }
    }
    let base = g * SLICE;
    if (r == 4u) {
        let threshold = st.prefix;
        for (var j = 0u; j < PER; j++) {
            let i = base + j * WG + lid;
            if (i < p.n) {
                let v = value(i);
                if (key(v) >= threshold) {
                    let slot = atomicAdd(&out[0], 1u);
                    if (slot < CAP) {
                        atomicStore(&out[4u + 2u * slot], i);
                        atomicStore(&out[5u + 2u * slot], bitcast<u32>(v));
                    }
                }
            }
        }
        if (first) { atomicStore(&out[1], threshold); }
        return;
    }
    // The next round's histogram is free (round 0's, which round 3 clears for the next row,
    // was read by round 1), and before round 4 the count.
    if (g == 0u) {
        atomicStore(&work[256u * ((r + 1u) % 4u) + lid], 0u);
        if (r == 3u && lid == 0u) { atomicStore(&out[0], 0u); }
    }
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
    let shift = shift_of(r);
    for (var j = 0u; j < PER; j++) {
        let i = base + j * WG + lid;
        if (i < p.n) {
            let k = key(value(i));
            if ((k & st.mask) == st.prefix) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&hist[lid]);
    if (c > 0u) { atomicAdd(&work[256u * r + lid], c); }
}
