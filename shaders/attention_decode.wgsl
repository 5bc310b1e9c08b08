// Attention of the new token's query heads over the cache (positions 0..len), grouped-query:
// head h reads KV head h / (nh / nkv). One workgroup per query head.
struct Params { nh: u32, nkv: u32, hd: u32, max_ctx: u32, scale: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
struct Step { pos: u32, len: u32, token: u32, _pad: u32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let g = h / (p.nh / p.nkv);
    let kv_dim = p.nkv * p.hd;
    let sbase = h * p.max_ctx;
    var mx = -3.0e38;
    for (var j = lid; j < step.len; j += WG) {
        var d = 0.0;
        for (var t = 0u; t < p.hd; t++) {
            d += qkv[h * p.hd + t] * k_cache[j * kv_dim + g * p.hd + t];
        }
        d *= p.scale;
        scores[sbase + j] = d;
        mx = max(mx, d);
    }
    red[lid] = mx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var j = lid; j < step.len; j += WG) {
        let e = exp(scores[sbase + j] - m);
        scores[sbase + j] = e;
        sum += e;
    }
    red[lid] = sum;
    storageBarrier();
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let total = red[0];
    for (var t = lid; t < p.hd; t += WG) {
        var acc = 0.0;
        for (var j = 0u; j < step.len; j++) {
            acc += scores[sbase + j] * v_cache[j * kv_dim + g * p.hd + t];
        }
        out[h * p.hd + t] = acc / total;
    }
}
