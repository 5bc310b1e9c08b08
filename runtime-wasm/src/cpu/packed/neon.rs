//! aarch64 kernels on NEON (every aarch64 CPU, the M4 included; no run-time check needed).
//! 8-bit codes look up 16 weights at once in the codebook's four byte planes: `tbl` on the
//! first 64 entries, then `tbx` on each next 64 (an index out of a table's range keeps what
//! the previous lookup found); 4-bit codes need one `tbl` per plane. Zips put the bytes back
//! together into f32 lanes. Written with intrinsics because no maintained crate offers LUT
//! dot products.

use std::arch::aarch64::*;

use super::kernels::{
    self, each_row, one_pass, row4_q16_blocks, scales_and_base, two_sums, CodeRows, Codebook8,
    Kernels, Levels4, OneRow, Q16Blocks, Row4Codes,
};

pub fn kernels() -> Kernels {
    // SAFETY (for every wrapper below): NEON is part of the aarch64 baseline.
    Kernels {
        name: "neon",
        row8: |q, cb, x, g, s| unsafe { row8(q, cb, x, g, s) },
        row4: |q, cb, x, g, s| unsafe { row4(q, cb, x, g, s) },
        decode8: Kernels::PORTABLE.decode8,
        dot_f16: |w, x| unsafe { dot_f16(w, x) },
        dot_f32: |w, x| unsafe { dot_f32(w, x) },
        scores_f32: |q, k, stride, out| {
            kernels::scores_by_dot(|w, x| unsafe { dot_f32(w, x) }, q, k, stride, out)
        },
        weighted_sum_f32: Kernels::PORTABLE.weighted_sum_f32,
        scores_f16: |q, k, stride, out| {
            kernels::scores_by_dot(|w, x| unsafe { dot_f16(w, x) }, q, k, stride, out)
        },
        weighted_sum_f16: |p, v, stride, out| unsafe { weighted_sum_f16(p, v, stride, out) },
        row4_q16: Some(|rows, first, l, a, out| unsafe { rows4_q16(rows, first, l, a, out) }),
        row8_q16: None,
        row8_q16_prompts_below: 0,
        rows8_expanded: None,
        prompt_tiles_from: usize::MAX,
    }
}

/// The f32 lanes of 16 weights whose bytes are `b0..b3` (byte p of weight i in lane i of bp):
/// interleave bytes, then byte pairs.
#[inline]
#[target_feature(enable = "neon")]
fn assemble(b0: uint8x16_t, b1: uint8x16_t, b2: uint8x16_t, b3: uint8x16_t) -> [float32x4_t; 4] {
    let (lo01, hi01) = (vzip1q_u8(b0, b1), vzip2q_u8(b0, b1));
    let (lo23, hi23) = (vzip1q_u8(b2, b3), vzip2q_u8(b2, b3));
    let (lo01, hi01) = (vreinterpretq_u16_u8(lo01), vreinterpretq_u16_u8(hi01));
    let (lo23, hi23) = (vreinterpretq_u16_u8(lo23), vreinterpretq_u16_u8(hi23));
    [
        vreinterpretq_f32_u16(vzip1q_u16(lo01, lo23)),
        vreinterpretq_f32_u16(vzip2q_u16(lo01, lo23)),
        vreinterpretq_f32_u16(vzip1q_u16(hi01, hi23)),
        vreinterpretq_f32_u16(vzip2q_u16(hi01, hi23)),
    ]
}

/// Σ of `w[k] · x[c + 4k]` into two accumulators.
///
/// # Safety
/// `c + 16 <= x.len()`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn fma16(
    w: [float32x4_t; 4],
    x: &[f32],
    c: usize,
    a: (float32x4_t, float32x4_t),
) -> (float32x4_t, float32x4_t) {
    let p = x.as_ptr().add(c);
    let a0 = vfmaq_f32(a.0, w[0], vld1q_f32(p));
    let a1 = vfmaq_f32(a.1, w[1], vld1q_f32(p.add(4)));
    let a0 = vfmaq_f32(a0, w[2], vld1q_f32(p.add(8)));
    let a1 = vfmaq_f32(a1, w[3], vld1q_f32(p.add(12)));
    (a0, a1)
}

#[target_feature(enable = "neon")]
unsafe fn row8(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let n = x.len().min(codes.len());
    // SAFETY: each plane has 256 bytes: four 64-byte tables.
    let tables: [[uint8x16x4_t; 4]; 4] = std::array::from_fn(|p| {
        std::array::from_fn(|t| vld1q_u8_x4(cb.planes[p].as_ptr().add(64 * t)))
    });
    let lookup = |p: usize, idx: [uint8x16_t; 4]| {
        let r = vqtbl4q_u8(tables[p][0], idx[0]);
        let r = vqtbx4q_u8(r, tables[p][1], idx[1]);
        let r = vqtbx4q_u8(r, tables[p][2], idx[2]);
        vqtbx4q_u8(r, tables[p][3], idx[3])
    };
    let sixteen = |c: usize| {
        // SAFETY: `grouped` asks for c + 16 <= n.
        let q = vld1q_u8(codes.as_ptr().add(c));
        // Each table sees its 64 entries at 0..64; other codes wrap out of its range.
        let idx = [
            q,
            vsubq_u8(q, vdupq_n_u8(64)),
            vsubq_u8(q, vdupq_n_u8(128)),
            vsubq_u8(q, vdupq_n_u8(192)),
        ];
        assemble(
            lookup(0, idx),
            lookup(1, idx),
            lookup(2, idx),
            lookup(3, idx),
        )
    };
    grouped(x, n, group, scales, sixteen, |c| {
        cb.values[codes[c] as usize]
    })
}

/// 4-bit codes times i16 activations: 16 levels per `tbl`, widened to i16 and multiplied
/// into i32 lanes by `smull`/`smlal` (exact integers within each block of 32).
/// A block's 32 codes as their i16 levels (two table lookups, widened): even columns, then
/// odd ones, as the activations have them.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_levels(codes: *const u8, table: uint8x16_t) -> [int16x8_t; 4] {
    let q = vld1q_u8(codes);
    let lo = vqtbl1q_u8(table, vandq_u8(q, vdupq_n_u8(15)));
    let hi = vqtbl1q_u8(table, vshrq_n_u8::<4>(q));
    let wide = |w: uint8x8_t| vreinterpretq_s16_u16(vmovl_u8(w));
    [
        wide(vget_low_u8(lo)),
        wide(vget_high_u8(lo)),
        wide(vget_low_u8(hi)),
        wide(vget_high_u8(hi)),
    ]
}

/// A block's levels times its 32 activations (widening multiply-adds), as f32s.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_dot(w: [int16x8_t; 4], values: *const i16) -> float32x4_t {
    let v = |i: usize| vld1q_s16(values.add(8 * i));
    // Each i32 lane sums 8 products of at most 255 · 32767: no overflow.
    let mut sum = vmull_s16(vget_low_s16(w[0]), vget_low_s16(v(0)));
    sum = vmlal_high_s16(sum, w[0], v(0));
    for i in 1..4 {
        sum = vmlal_s16(sum, vget_low_s16(w[i]), vget_low_s16(v(i)));
        sum = vmlal_high_s16(sum, w[i], v(i));
    }
    vcvtq_f32_s32(sum)
}

/// One row and token of the integer kernel (groups of several blocks).
#[target_feature(enable = "neon")]
unsafe fn row4_q16(row: Row4Codes, levels: &Levels4, a: &Q16Blocks, scratch: &mut Vec<f32>) -> f32 {
    let base = scales_and_base(row, levels, a, scratch);
    let (factors, blocks) = (&scratch[..], row4_q16_blocks(row, a));
    // SAFETY: `levels` is 16 bytes; block b reads code bytes 16b .. 16b + 16 and activations
    // 32b .. 32b + 32, inside both slices (b < blocks).
    let table = vld1q_u8(levels.levels.as_ptr());
    let (acc0, acc1) = two_sums(blocks, vdupq_n_f32(0.0), |b, acc| {
        let w = block_levels(row.codes.as_ptr().add(16 * b), table);
        let sum = block_dot(w, a.values.as_ptr().add(32 * b));
        vfmaq_f32(acc, sum, vdupq_n_f32(factors[b]))
    });
    levels.step * vaddvq_f32(vaddq_f32(acc0, acc1)) + base
}

/// Rows times tokens with the integer kernel (as kernels::Rows4Q16). Where groups are
/// blocks (32 columns, the usual) a row is one pass per four tokens: no per-row scale pass,
/// and each block's levels are looked up once for the four; other groups go row by row and
/// token by token.
#[target_feature(enable = "neon")]
unsafe fn rows4_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels4,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    let done = one_pass(rows, first, tokens, out, 16, |row, a, o| match a.len() {
        1 => row_tokens::<1>(row, levels, a, o),
        2 | 3 => row_tokens::<2>(row, levels, a, o),
        _ => row_tokens::<4>(row, levels, a, o),
    });
    if !done {
        each_row(rows, first, levels, tokens, out, |r, l, a, s| {
            row4_q16(r, l, a, s)
        });
    }
}

/// One row times the first T tokens into `out[..T]`; returns T. Per block the scale is
/// converted once (NEON's fcvt) and its levels looked up once for the T tokens.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row_tokens<const T: usize>(
    row: OneRow,
    levels: &Levels4,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) -> usize {
    // SAFETY (this function): b < row.blocks, inside the row's codes, scales and offsets
    // and each token's blocks (`whole_rows`).
    let f32_of = |p: *const u16, b: usize| half::f16::from_bits(*p.add(b)).to_f32();
    let table = vld1q_u8(levels.levels.as_ptr());
    let (mut sums, mut base) = ([vdupq_n_f32(0.0); T], [0f32; T]);
    for b in 0..row.blocks {
        let s = f32_of(row.scales, b);
        let codes_free = s * levels.min + row.offsets.map_or(0.0, |o| f32_of(o, b));
        let w = block_levels(row.codes.add(16 * b), table);
        for t in 0..T {
            let a = &tokens[t];
            let sum = block_dot(w, a.values.as_ptr().add(32 * b));
            sums[t] = vfmaq_f32(sums[t], sum, vdupq_n_f32(s * a.scales[b]));
            base[t] += codes_free * a.group_sums[b];
        }
    }
    for t in 0..T {
        out[t] = levels.step * vaddvq_f32(sums[t]) + base[t];
    }
    T
}

#[target_feature(enable = "neon")]
unsafe fn row4(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let n = x.len().min(codes.len() * 2);
    // SAFETY: each plane has 256 bytes; the first 16 are the 4-bit codebook's.
    let planes: [uint8x16_t; 4] = std::array::from_fn(|p| vld1q_u8(cb.planes[p].as_ptr()));
    let sixteen = |c: usize| {
        // SAFETY: `grouped` asks for c + 16 <= n, and c is even (groups are): bytes c/2 ..
        // c/2 + 8 exist.
        let b = vld1_u8(codes.as_ptr().add(c / 2));
        // The 16 codes in column order: byte i's low nibble, then its high one.
        let (lo, hi) = (vand_u8(b, vdup_n_u8(15)), vshr_n_u8::<4>(b));
        let idx = vcombine_u8(vzip1_u8(lo, hi), vzip2_u8(lo, hi));
        let [b0, b1, b2, b3] = planes.map(|p| vqtbl1q_u8(p, idx));
        assemble(b0, b1, b2, b3)
    };
    let one = |c: usize| cb.values[((codes[c / 2] >> (4 * (c & 1))) & 15) as usize];
    grouped(x, n, group, scales, sixteen, one)
}

/// Σ_g scale_g · Σ_{c∈g} w_c · x_c over the first `n` columns: 16 weights at a time from
/// `sixteen(c)` (called with c + 16 <= n), the rest of each group one by one from `one(c)`.
/// One scale per group (the whole row for the per-row codecs), applied once per group.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn grouped(
    x: &[f32],
    n: usize,
    group: usize,
    scales: &[f32],
    sixteen: impl Fn(usize) -> [float32x4_t; 4],
    one: impl Fn(usize) -> f32,
) -> f32 {
    let (mut total, mut tail) = (vdupq_n_f32(0.0), 0f32);
    let span = if scales.len() == 1 { n } else { group };
    for (g, &s) in scales.iter().enumerate() {
        let (mut c, end) = (g * span, ((g + 1) * span).min(n));
        let mut acc = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        while c + 16 <= end {
            // SAFETY: c + 16 <= end <= n <= x.len().
            acc = fma16(sixteen(c), x, c, acc);
            c += 16;
        }
        let rest: f32 = (c..end).map(|c| one(c) * x[c]).sum();
        total = vfmaq_n_f32(total, vaddq_f32(acc.0, acc.1), s);
        tail += s * rest;
    }
    vaddvq_f32(total) + tail
}

/// Four f16 values (as u32 lanes) as f32: exponent and mantissa moved into place and scaled by
/// 2^112, which rebiases the exponent exactly (subnormals included); infinities and NaNs get
/// the all-ones exponent. (The f16 conversion intrinsics need Rust's unstable f16 type.)
#[inline]
#[target_feature(enable = "neon")]
fn f16_to_f32(h: uint32x4_t) -> float32x4_t {
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let bits = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
    let value = vmulq_f32(
        vreinterpretq_f32_u32(bits),
        vdupq_n_f32(f32::from_bits(0x7780_0000)),
    );
    let inf_nan = vcgeq_u32(bits, vdupq_n_u32(0x7c00 << 13));
    let value = vorrq_u32(
        vreinterpretq_u32_f32(value),
        vandq_u32(inf_nan, vdupq_n_u32(0x7f80_0000)),
    );
    vreinterpretq_f32_u32(vorrq_u32(value, sign))
}

#[target_feature(enable = "neon")]
unsafe fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (mut a0, mut a1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut c = 0;
    while c + 8 <= n {
        // SAFETY: c + 8 <= n bounds both reads.
        let h = vld1q_u16(w.as_ptr().add(c));
        let lo = f16_to_f32(vmovl_u16(vget_low_u16(h)));
        let hi = f16_to_f32(vmovl_u16(vget_high_u16(h)));
        a0 = vfmaq_f32(a0, lo, vld1q_f32(x.as_ptr().add(c)));
        a1 = vfmaq_f32(a1, hi, vld1q_f32(x.as_ptr().add(c + 4)));
        c += 8;
    }
    let rest: f32 = (c..n)
        .map(|c| half::f16::from_bits(w[c]).to_f32() * x[c])
        .sum();
    vaddvq_f32(vaddq_f32(a0, a1)) + rest
}

/// Attention's weighted sum over f16 values (as kernels::WeightedSumF16): the portable
/// loop would convert each value in software.
#[target_feature(enable = "neon")]
unsafe fn weighted_sum_f16(p: &[f32], v: &[u16], stride: usize, out: &mut [f32]) {
    let d = out.len();
    for (j, &pj) in p.iter().enumerate() {
        let row = &v[j * stride..][..d];
        let mut c = 0;
        while c + 8 <= d {
            // SAFETY: c + 8 <= d bounds the reads of the row and of out, and the writes.
            let h = vld1q_u16(row.as_ptr().add(c));
            let o = out.as_mut_ptr().add(c);
            let lo = f16_to_f32(vmovl_u16(vget_low_u16(h)));
            let hi = f16_to_f32(vmovl_u16(vget_high_u16(h)));
            vst1q_f32(o, vfmaq_n_f32(vld1q_f32(o), lo, pj));
            vst1q_f32(o.add(4), vfmaq_n_f32(vld1q_f32(o.add(4)), hi, pj));
            c += 8;
        }
        for (o, &h) in out[c..].iter_mut().zip(&row[c..]) {
            *o += pj * half::f16::from_bits(h).to_f32();
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (mut a0, mut a1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut c = 0;
    while c + 8 <= n {
        // SAFETY: c + 8 <= n bounds all four reads.
        let (wp, xp) = (w.as_ptr().add(c), x.as_ptr().add(c));
        a0 = vfmaq_f32(a0, vld1q_f32(wp), vld1q_f32(xp));
        a1 = vfmaq_f32(a1, vld1q_f32(wp.add(4)), vld1q_f32(xp.add(4)));
        c += 8;
    }
    let rest: f32 = (c..n).map(|c| w[c] * x[c]).sum();
    vaddvq_f32(vaddq_f32(a0, a1)) + rest
}
