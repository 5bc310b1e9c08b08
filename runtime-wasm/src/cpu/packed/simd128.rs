//! wasm32 kernels on SIMD128 (Chrome 91+, Firefox 89+, Safari 16.4+), compiled in when the
//! build enables `simd128`, as .cargo/config.toml does for every wasm32 build: WebAssembly
//! has no run-time feature detection, and a module using an instruction the browser lacks
//! does not load at all.
//!
//! WebAssembly has no gather and no byte permute over more than 16 entries: 8-bit codes are
//! looked up one by one into vectors (i16 levels for the integer kernel, f32 weights for the
//! f32 one). 4-bit codes look up 16 levels at once with `i8x16.swizzle` (the integer kernel)
//! or 16 weights on the codebook's four byte planes, put back together into f32 lanes.
//! Written with intrinsics because no maintained crate offers LUT dot products.

use core::arch::wasm32::*;

use super::kernels::{
    self, each_row, one_pass, row4_q16_blocks, scales_and_base, CodeRows, Codebook8, Kernels,
    Levels4, Levels8, OneRow, Q16Blocks, Row4Codes,
};

pub fn kernels() -> Kernels {
    Kernels {
        name: "simd128",
        row8,
        row4,
        decode8: Kernels::PORTABLE.decode8,
        dot_f16,
        dot_f32,
        scores_f32: |q, k, stride, out| kernels::scores_by_dot(dot_f32, q, k, stride, out),
        weighted_sum_f32: Kernels::PORTABLE.weighted_sum_f32,
        scores_f16: |q, k, stride, out| kernels::scores_by_dot(dot_f16, q, k, stride, out),
        weighted_sum_f16,
        row4_q16: Some(rows4_q16),
        row8_q16: Some(rows8_q16),
        // Prompts of 8-bit codes: 80 tok/s through f32 tiles against 53 through this kernel
        // (SmolLM2 lut8g in Chromium, 42 tokens); single tokens 14 against 19.
        row8_q16_prompts_below: 0,
        rows8_expanded: Some(rows8_expanded),
        prompt_tiles_from: usize::MAX,
    }
}

fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// Four values of `x` from column `c`.
///
/// # Safety
/// `c + 4 <= x.len()`.
#[inline]
unsafe fn load4(x: &[f32], c: usize) -> v128 {
    v128_load(x.as_ptr().add(c) as *const v128)
}

fn row8(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let cb = &cb.values;
    let n = x.len().min(codes.len());
    let sixteen = |c: usize| {
        let q = &codes[c..c + 16];
        let w = |i: usize| {
            f32x4(
                cb[q[i] as usize],
                cb[q[i + 1] as usize],
                cb[q[i + 2] as usize],
                cb[q[i + 3] as usize],
            )
        };
        [w(0), w(4), w(8), w(12)]
    };
    grouped(x, n, group, scales, sixteen, |c| cb[codes[c] as usize])
}

/// 4-bit codes times i16 activations: 16 levels per `i8x16.swizzle`, widened to i16 and
/// multiplied pairwise by `i32x4.dot_i16x8_s` (exact integers within each block of 32).
fn row4_q16(row: Row4Codes, levels: &Levels4, a: &Q16Blocks, scratch: &mut Vec<f32>) -> f32 {
    let base = scales_and_base(row, levels, a, scratch);
    let blocks = row4_q16_blocks(row, a);
    // SAFETY: `levels` is 16 bytes; block b reads code bytes 16b .. 16b + 16 and activations
    // 32b .. 32b + 32, inside both slices (b < blocks).
    let table = unsafe { v128_load(levels.levels.as_ptr() as *const v128) };
    let nibble = u8x16_splat(15);
    let mut acc = f32x4_splat(0.0);
    for (b, &factor) in scratch[..blocks].iter().enumerate() {
        let q = unsafe { v128_load(row.codes.as_ptr().add(16 * b) as *const v128) };
        let v =
            |i: usize| unsafe { v128_load(a.values.as_ptr().add(32 * b + 8 * i) as *const v128) };
        let lo = u8x16_swizzle(table, v128_and(q, nibble));
        let hi = u8x16_swizzle(table, u8x16_shr(q, 4));
        let sum = i32x4_add(
            i32x4_add(
                i32x4_dot_i16x8(u16x8_extend_low_u8x16(lo), v(0)),
                i32x4_dot_i16x8(u16x8_extend_high_u8x16(lo), v(1)),
            ),
            i32x4_add(
                i32x4_dot_i16x8(u16x8_extend_low_u8x16(hi), v(2)),
                i32x4_dot_i16x8(u16x8_extend_high_u8x16(hi), v(3)),
            ),
        );
        let sd = f32x4_splat(factor);
        acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sum), sd));
    }
    levels.step * hsum(acc) + base
}

/// Rows times tokens with the integer kernel (as kernels::Rows4Q16). Where groups are
/// blocks (32 columns, the usual) a row is one pass per four tokens: no per-row scale pass,
/// and each block's levels are looked up once for the four; other groups go row by row and
/// token by token.
fn rows4_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels4,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    // SAFETY: `levels` is 16 bytes.
    let table = unsafe { v128_load(levels.levels.as_ptr() as *const v128) };
    let nibble = u8x16_splat(15);
    let done = one_pass(rows, first, tokens, out, 16, |row, a, o| {
        let lookup = |b: usize| {
            // SAFETY: block b's 16 code bytes are inside the row (`whole_rows`).
            let q = unsafe { v128_load(row.codes.add(16 * b) as *const v128) };
            let lo = u8x16_swizzle(table, v128_and(q, nibble));
            let hi = u8x16_swizzle(table, u8x16_shr(q, 4));
            [
                u16x8_extend_low_u8x16(lo),
                u16x8_extend_high_u8x16(lo),
                u16x8_extend_low_u8x16(hi),
                u16x8_extend_high_u8x16(hi),
            ]
        };
        row_tokens(row, (levels.min, levels.step), a, o, lookup, sum_small)
    });
    if !done {
        each_row(rows, first, levels, tokens, out, row4_q16);
    }
}

/// Rows of 8-bit codes times tokens (as kernels::Rows8Q16): each block's 32 levels read one
/// by one (the 512-byte table stays in cache) into i16 lanes, then multiplied as the 4-bit
/// ones, once for up to four tokens; groups of more than one block take the portable kernel.
fn rows8_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels8,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    let l = &levels.levels;
    let done = one_pass(rows, first, tokens, out, 32, |row, a, o| {
        let lookup = |b: usize| {
            // SAFETY: block b's 32 code bytes are inside the row (`whole_rows`).
            let q: &[u8; 32] = unsafe { &*(row.codes.add(32 * b) as *const [u8; 32]) };
            // Columns k, k + 2, …, k + 14: the even ones from 0 and 16, the odd from 1 and 17.
            let lanes = |k: usize| {
                i16x8(
                    l[q[k] as usize],
                    l[q[k + 2] as usize],
                    l[q[k + 4] as usize],
                    l[q[k + 6] as usize],
                    l[q[k + 8] as usize],
                    l[q[k + 10] as usize],
                    l[q[k + 12] as usize],
                    l[q[k + 14] as usize],
                )
            };
            [lanes(0), lanes(16), lanes(1), lanes(17)]
        };
        row_tokens(row, (0.0, levels.step), a, o, lookup, sum_wide)
    });
    if !done {
        kernels::rows8_q16(rows, first, levels, tokens, out);
    }
}

/// Grouped 8-bit rows expanded to their levels (as kernels::Rows8Expanded): [`rows8_q16`]
/// with each block's 32 levels loaded (64 bytes) instead of looked up one by one, which made
/// lut8g decode 2.5× slower than lut4a in the browser (RESULTS.md, session 41).
fn rows8_expanded(
    rows: CodeRows,
    first: usize,
    step: f32,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) -> bool {
    one_pass(rows, first, tokens, out, 64, |row, a, o| {
        let load = |b: usize| {
            // SAFETY: `one_pass` hands whole rows: block b's 64 bytes of levels are the row's,
            // already in the activations' order.
            let p = unsafe { row.codes.add(64 * b) } as *const v128;
            std::array::from_fn(|i| unsafe { v128_load(p.add(i)) })
        };
        row_tokens(row, (0.0, step), a, o, load, sum_wide)
    })
}

/// One row times the first of `tokens`: four, two or one of them; returns how many.
#[inline(always)]
fn row_tokens(
    row: OneRow,
    codebook: (f32, f32),
    tokens: &[Q16Blocks],
    out: &mut [f32],
    lookup: impl Fn(usize) -> [v128; 4],
    sum: impl Fn([v128; 4]) -> v128,
) -> usize {
    match tokens.len() {
        1 => row_t_tokens::<1>(row, codebook, tokens, out, lookup, sum),
        2 | 3 => row_t_tokens::<2>(row, codebook, tokens, out, lookup, sum),
        _ => row_t_tokens::<4>(row, codebook, tokens, out, lookup, sum),
    }
}

/// A block's four i32x4 dot products as one f32x4, for 4-bit levels (0..16): their
/// integer sum fits i32.
#[inline(always)]
fn sum_small([a, b, c, d]: [v128; 4]) -> v128 {
    f32x4_convert_i32x4(i32x4_add(i32x4_add(a, b), i32x4_add(c, d)))
}

/// As [`sum_small`] for 8-bit levels (up to ±16383 times activations up to ±32767): two
/// lanes' pairs fit i32 (4 · 16383 · 32767 < 2³¹, as in the AVX2 kernel's `dot`), four do
/// not, so the two halves are converted before they are added.
#[inline(always)]
fn sum_wide([a, b, c, d]: [v128; 4]) -> v128 {
    let half = |x, y| f32x4_convert_i32x4(i32x4_add(x, y));
    f32x4_add(half(a, b), half(c, d))
}

/// Every f16's f32 value (256 KiB, made at the first use). WebAssembly has no f16
/// conversion; the half crate's software one is a dozen instructions with branches, and the
/// 4-bit kernels convert a scale and an offset per block of 32 weights. A model's scales use
/// a few exponents, so only a few KiB of the table are ever read.
fn f16_table() -> &'static [f32; 65536] {
    static TABLE: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let values: Box<[f32]> = (0..=u16::MAX)
            .map(|h| half::f16::from_bits(h).to_f32())
            .collect();
        values.try_into().expect("65536 values")
    })
}

/// One row times the first T tokens into `out[..T]`; returns T. `lookup(b)` is block b's
/// levels as i16 lanes: even columns 0–14, 16–30, odd 1–15, 17–31, as the activations have
/// them. Weights are `scale · (min + step · level) + offset`; scales (converted through
/// [`f16_table`]) and factors are scalars here.
#[inline(always)]
fn row_t_tokens<const T: usize>(
    row: OneRow,
    (min, step): (f32, f32),
    tokens: &[Q16Blocks],
    out: &mut [f32],
    lookup: impl Fn(usize) -> [v128; 4],
    sum: impl Fn([v128; 4]) -> v128,
) -> usize {
    let f16 = f16_table();
    // SAFETY: b < row.blocks, inside the row's scales or offsets (`whole_rows`).
    let f32_of = |p: *const u16, b: usize| f16[unsafe { *p.add(b) } as usize];
    let (mut sums, mut base) = ([f32x4_splat(0.0); T], [0f32; T]);
    for b in 0..row.blocks {
        let s = f32_of(row.scales, b);
        let codes_free = s * min + row.offsets.map_or(0.0, |o| f32_of(o, b));
        let w = lookup(b);
        for t in 0..T {
            let a = &tokens[t];
            // SAFETY: each token's 32 activations of block b are inside it (`whole_rows`).
            let v = |i: usize| unsafe {
                v128_load(a.values.as_ptr().add(32 * b + 8 * i) as *const v128)
            };
            let products = std::array::from_fn(|i| i32x4_dot_i16x8(w[i], v(i)));
            let factor = f32x4_splat(s * a.scales[b]);
            sums[t] = f32x4_add(sums[t], f32x4_mul(sum(products), factor));
            base[t] += codes_free * a.group_sums[b];
        }
    }
    for t in 0..T {
        out[t] = step * hsum(sums[t]) + base[t];
    }
    T
}

fn row4(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let n = x.len().min(codes.len() * 2);
    // Byte p of each of the 16 codebook values: a swizzle table per plane.
    // SAFETY: each plane has 256 bytes; the first 16 are read.
    let planes = cb
        .planes
        .each_ref()
        .map(|p| unsafe { v128_load(p.as_ptr() as *const v128) });
    let low_nibble = u8x16_splat(15);
    let sixteen = |c: usize| {
        // SAFETY: `grouped` asks for c + 16 <= n, and c is even (groups are): the 8 bytes
        // c/2 .. c/2 + 8 exist.
        let b = unsafe { v128_load64_zero(codes.as_ptr().add(c / 2) as *const u64) };
        // The 16 codes in column order: byte i's low nibble, then its high one.
        let (lo, hi) = (v128_and(b, low_nibble), u8x16_shr(b, 4));
        let idx = u8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(lo, hi);
        let [p0, p1, p2, p3] = planes.map(|p| u8x16_swizzle(p, idx));
        // Bytes 0 and 1, then 2 and 3, of weights 0–7 and 8–15; then whole weights.
        let b01 = u8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>;
        let b01_hi = u8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>;
        let (lo01, hi01, lo23, hi23) = (b01(p0, p1), b01_hi(p0, p1), b01(p2, p3), b01_hi(p2, p3));
        let first = u16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>;
        let second = u16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>;
        [
            first(lo01, lo23),
            second(lo01, lo23),
            first(hi01, hi23),
            second(hi01, hi23),
        ]
    };
    let one = |c: usize| cb.values[((codes[c / 2] >> (4 * (c & 1))) & 15) as usize];
    grouped(x, n, group, scales, sixteen, one)
}

/// Σ_g scale_g · Σ_{c∈g} w_c · x_c over the first `n` columns: 16 weights at a time from
/// `sixteen(c)` (called with c + 16 <= n), the rest of each group one by one from `one(c)`.
#[inline]
fn grouped(
    x: &[f32],
    n: usize,
    group: usize,
    scales: &[f32],
    sixteen: impl Fn(usize) -> [v128; 4],
    one: impl Fn(usize) -> f32,
) -> f32 {
    let (mut total, mut tail) = (f32x4_splat(0.0), 0f32);
    for (g, &s) in scales.iter().enumerate() {
        let (mut c, end) = (g * group, ((g + 1) * group).min(n));
        // Two accumulators: one add's latency hides behind the other's.
        let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        while c + 16 <= end {
            let w = sixteen(c);
            // SAFETY: c + 16 <= end <= n <= x.len().
            let xs = unsafe {
                [
                    load4(x, c),
                    load4(x, c + 4),
                    load4(x, c + 8),
                    load4(x, c + 12),
                ]
            };
            a0 = f32x4_add(a0, f32x4_mul(w[0], xs[0]));
            a1 = f32x4_add(a1, f32x4_mul(w[1], xs[1]));
            a0 = f32x4_add(a0, f32x4_mul(w[2], xs[2]));
            a1 = f32x4_add(a1, f32x4_mul(w[3], xs[3]));
            c += 16;
        }
        let rest: f32 = (c..end).map(|c| one(c) * x[c]).sum();
        total = f32x4_add(total, f32x4_mul(f32x4_add(a0, a1), f32x4_splat(s)));
        tail += s * rest;
    }
    hsum(total) + tail
}

/// Four f16 values (the low halves of 32-bit lanes) as f32: exponent and mantissa moved into
/// place and scaled by 2^112, which rebiases the exponent exactly (subnormals included);
/// infinities and NaNs get the all-ones exponent. WebAssembly has no f16 conversion.
fn f16_to_f32(h: v128) -> v128 {
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let bits = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
    let value = f32x4_mul(bits, f32x4_splat(f32::from_bits(0x7780_0000)));
    let inf_nan = u32x4_ge(bits, u32x4_splat(0x7c00 << 13));
    v128_or(
        v128_or(value, v128_and(inf_nan, u32x4_splat(0x7f80_0000))),
        sign,
    )
}

fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut c = 0;
    while c + 8 <= n {
        // SAFETY: c + 8 <= n bounds both reads.
        let (h, x0, x1) = unsafe {
            let h = v128_load(w.as_ptr().add(c) as *const v128);
            (h, load4(x, c), load4(x, c + 4))
        };
        a0 = f32x4_add(a0, f32x4_mul(f16_to_f32(u32x4_extend_low_u16x8(h)), x0));
        a1 = f32x4_add(a1, f32x4_mul(f16_to_f32(u32x4_extend_high_u16x8(h)), x1));
        c += 8;
    }
    let rest: f32 = (c..n)
        .map(|c| half::f16::from_bits(w[c]).to_f32() * x[c])
        .sum();
    hsum(f32x4_add(a0, a1)) + rest
}

/// Attention's weighted sum over f16 values (as kernels::WeightedSumF16): the portable
/// loop would convert each value in software.
fn weighted_sum_f16(p: &[f32], v: &[u16], stride: usize, out: &mut [f32]) {
    let d = out.len();
    for (j, &pj) in p.iter().enumerate() {
        let (pv, row) = (f32x4_splat(pj), &v[j * stride..][..d]);
        let mut c = 0;
        while c + 8 <= d {
            // SAFETY: c + 8 <= d bounds the reads of the row and of out, and the writes.
            unsafe {
                let h = v128_load(row.as_ptr().add(c) as *const v128);
                let o = out.as_mut_ptr().add(c) as *mut v128;
                let lo = f32x4_mul(pv, f16_to_f32(u32x4_extend_low_u16x8(h)));
                let hi = f32x4_mul(pv, f16_to_f32(u32x4_extend_high_u16x8(h)));
                v128_store(o, f32x4_add(v128_load(o), lo));
                v128_store(o.add(1), f32x4_add(v128_load(o.add(1)), hi));
            }
            c += 8;
        }
        for (o, &h) in out[c..].iter_mut().zip(&row[c..]) {
            *o += pj * half::f16::from_bits(h).to_f32();
        }
    }
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut c = 0;
    while c + 8 <= n {
        // SAFETY: c + 8 <= n bounds all four reads.
        unsafe {
            a0 = f32x4_add(a0, f32x4_mul(load4(w, c), load4(x, c)));
            a1 = f32x4_add(a1, f32x4_mul(load4(w, c + 4), load4(x, c + 4)));
        }
        c += 8;
    }
    let rest: f32 = (c..n).map(|c| w[c] * x[c]).sum();
    hsum(f32x4_add(a0, a1)) + rest
}
