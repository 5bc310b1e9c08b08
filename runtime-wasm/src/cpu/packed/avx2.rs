//! x86_64 kernels on AVX2 + FMA + F16C (every x86 CPU since 2013–2015), chosen at run time.
//! 8-bit codes look their weights up with one gather per 8 columns (the 1 KiB codebook stays
//! in L1), or, grouped and expanded to their levels at load, are read as i16 with no lookup;
//! 4-bit codes with two in-register permutes of the 16-entry codebook and a blend.
//! Written with intrinsics because no maintained crate offers LUT dot products.

use std::arch::x86_64::*;

use super::kernels::{
    self, each_row, one_pass, row4_q16_blocks, two_sums, CodeRows, Codebook8, Kernels, Levels4,
    OneRow, Q16Blocks, Row4Codes,
};

/// Prompts of this many tokens take f32 tiles rather than the integer kernels: SmolLM2 lut4a
/// prefill at 64 tokens, 278 tok/s on tiles against 262, at 32, 186 against 251, at 256, 330-390
/// against 203 (RESULTS.md, session 42).
const PROMPT_TILES_FROM: usize = 48;

/// These kernels when this CPU has the instructions they use.
pub fn kernels() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    // SAFETY (for every wrapper below): they are only reachable through this table, which
    // exists only when the features their bodies are compiled for are present.
    ok.then_some(Kernels {
        name: "avx2",
        row8: |q, cb, x, g, s| unsafe { row8(q, cb, x, g, s) },
        row4: |q, cb, x, g, s| unsafe { row4(q, cb, x, g, s) },
        decode8: Kernels::PORTABLE.decode8,
        dot_f16: |w, x| unsafe { dot_f16(w, x) },
        dot_f32: |w, x| unsafe { dot_f32(w, x) },
        scores_f32: |q, k, stride, out| unsafe { scores_f32(q, k, stride, out) },
        weighted_sum_f32: |p, v, stride, out| unsafe { weighted_sum_f32(p, v, stride, out) },
        scores_f16: |q, k, stride, out| unsafe { scores_f16(q, k, stride, out) },
        weighted_sum_f16: |p, v, stride, out| unsafe { weighted_sum_f16(p, v, stride, out) },
        row4_q16: Some(|rows, first, l, a, out| unsafe { rows4_q16(rows, first, l, a, out) }),
        row8_q16: None,
        row8_q16_prompts_below: 0,
        rows8_expanded: Some(|rows, first, step, a, out| unsafe {
            rows8_expanded(rows, first, step, a, out)
        }),
        prompt_tiles_from: PROMPT_TILES_FROM,
    })
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn row8(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let cb = &cb.values;
    let n = x.len().min(codes.len());
    let eight = |c: usize| {
        // SAFETY: `grouped` asks for c + 8 <= n; the codes index a 256-entry table.
        let q = _mm_loadl_epi64(codes.as_ptr().add(c) as *const __m128i);
        _mm256_i32gather_ps::<4>(cb.as_ptr(), _mm256_cvtepu8_epi32(q))
    };
    grouped(x, n, group, scales, eight, |c| cb[codes[c] as usize])
}

#[target_feature(enable = "avx2,fma")]
unsafe fn row4(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let cb = &cb.values;
    let n = x.len().min(codes.len() * 2);
    let (lo_tab, hi_tab) = (
        _mm256_loadu_ps(cb.as_ptr()),
        _mm256_loadu_ps(cb.as_ptr().add(8)),
    );
    // Each of 4 bytes twice, then the low nibble for even columns and the high for odd ones.
    let twice = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, -1, -1, -1, -1, -1, -1, -1, -1);
    let shifts = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    let nibble = _mm256_set1_epi32(15);
    let eight = |c: usize| {
        // SAFETY: `grouped` asks for c + 8 <= n, and c is even (groups are): bytes c/2 ..
        // c/2 + 4 exist.
        let b = _mm_cvtsi32_si128((codes.as_ptr().add(c / 2) as *const i32).read_unaligned());
        let idx = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(b, twice));
        let idx = _mm256_and_si256(_mm256_srlv_epi32(idx, shifts), nibble);
        let lo = _mm256_permutevar8x32_ps(lo_tab, idx);
        let hi = _mm256_permutevar8x32_ps(hi_tab, idx);
        // Bit 3 of the code, moved to the sign bit, picks the upper half of the codebook.
        _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
    };
    let one = |c: usize| cb[((codes[c / 2] >> ((c % 2) * 4)) & 15) as usize];
    grouped(x, n, group, scales, eight, one)
}

/// A block's 32 codes as their levels (two byte shuffles: even columns, then odd ones).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_levels(codes: *const u8, table: __m128i) -> [__m128i; 2] {
    let nibble = _mm_set1_epi8(15);
    let q = _mm_loadu_si128(codes as *const _);
    let lo = _mm_shuffle_epi8(table, _mm_and_si128(q, nibble));
    let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16::<4>(q), nibble));
    [lo, hi]
}

/// A block's levels times its 32 activations: u8 levels widened to i16, pmaddwd, pairs
/// summed in i32, as f32s.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_dot([lo, hi]: [__m128i; 2], values: *const i16) -> __m256 {
    let dot = |w: __m128i, v: *const i16| {
        _mm256_madd_epi16(_mm256_cvtepu8_epi16(w), _mm256_loadu_si256(v as *const _))
    };
    _mm256_cvtepi32_ps(_mm256_add_epi32(dot(lo, values), dot(hi, values.add(16))))
}

/// One row and token of the integer kernel (groups of several blocks).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row4_q16(row: Row4Codes, levels: &Levels4, a: &Q16Blocks, scratch: &mut Vec<f32>) -> f32 {
    let base = kernels::scales_and_base(row, levels, a, scratch);
    let (factors, blocks) = (&scratch[..], row4_q16_blocks(row, a));
    // SAFETY: `levels` is 16 bytes; block b reads code bytes 16b .. 16b + 16 and activations
    // 32b .. 32b + 32, inside both slices (b < blocks).
    let table = _mm_loadu_si128(levels.levels.as_ptr() as *const _);
    let (t0, t1) = two_sums(blocks, _mm256_setzero_ps(), |b, t| {
        let w = block_levels(row.codes.as_ptr().add(16 * b), table);
        let sum = block_dot(w, a.values.as_ptr().add(32 * b));
        _mm256_fmadd_ps(sum, _mm256_set1_ps(factors[b]), t)
    });
    levels.step * hsum(_mm256_add_ps(t0, t1)) + base
}

/// Rows times tokens with the integer kernel (as kernels::Rows4Q16). Where groups are
/// blocks (32 columns, the usual) a row is one pass per four tokens; other groups go row by
/// row and token by token.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows4_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels4,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    let table = _mm_loadu_si128(levels.levels.as_ptr() as *const _);
    let scale = Levels {
        min: levels.min,
        step: levels.step,
    };
    let done = one_pass(rows, first, tokens, out, 16, |row, a, o| {
        // SAFETY: `one_pass` hands whole rows: block b's 16 code bytes are the row's.
        let load = |b: usize| block_levels(row.codes.add(16 * b), table);
        let dot = |w, v| block_dot(w, v);
        match a.len() {
            1 => row_tokens::<1, _>(row, scale, a, o, load, dot),
            2 | 3 => row_tokens::<2, _>(row, scale, a, o, load, dot),
            _ => row_tokens::<4, _>(row, scale, a, o, load, dot),
        }
    });
    if !done {
        each_row(rows, first, levels, tokens, out, |r, l, a, s| {
            row4_q16(r, l, a, s)
        });
    }
}

/// Grouped 8-bit rows expanded to their levels (as kernels::Rows8Expanded): the one-pass
/// kernel of the 4-bit rows with each block's 32 levels loaded instead of looked up, a block
/// of 64 bytes. Where gathers made lut8g decode 3-4× slower than lut4a (RESULTS.md, session 40).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows8_expanded(
    rows: CodeRows,
    first: usize,
    step: f32,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) -> bool {
    let scale = Levels { min: 0.0, step };
    one_pass(rows, first, tokens, out, 64, |row, a, o| {
        // SAFETY: `one_pass` hands whole rows: block b's 64 bytes of levels are the row's.
        let load = |b: usize| {
            let p = row.codes.add(64 * b) as *const __m256i;
            [_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1))]
        };
        let dot = |[lo, hi]: [__m256i; 2], v: *const i16| {
            let v = v as *const __m256i;
            let sum = _mm256_add_epi32(
                _mm256_madd_epi16(lo, _mm256_loadu_si256(v)),
                _mm256_madd_epi16(hi, _mm256_loadu_si256(v.add(1))),
            );
            _mm256_cvtepi32_ps(sum)
        };
        match a.len() {
            1 => row_tokens::<1, _>(row, scale, a, o, load, dot),
            _ => row_tokens::<2, _>(row, scale, a, o, load, dot),
        }
    })
}

/// A row's weights as `row_tokens` takes them: `scale_g · (min + step · level) + offset_g`.
#[derive(Clone, Copy)]
struct Levels {
    min: f32,
    step: f32,
}

/// One row times the first T tokens into `out[..T]`; returns T. Per run of 8 groups the
/// scales are converted once and each token's factors (scale × activation scale) and
/// codes-free terms take a vector each; each block's levels are read once (`load`) for the T
/// tokens and dotted with each token's block (`dot`: 8 partial sums). One token alternates two
/// sums so that one FMA's latency hides behind the other's.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_tokens<const T: usize, W: Copy>(
    row: OneRow,
    levels: Levels,
    tokens: &[Q16Blocks],
    out: &mut [f32],
    load: impl Fn(usize) -> W,
    dot: impl Fn(W, *const i16) -> __m256,
) -> usize {
    let (min, lanes) = (
        _mm256_set1_ps(levels.min),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let mut sums = [[_mm256_setzero_ps(); T]; 2];
    let mut base = [_mm256_setzero_ps(); T];
    let mut factors = [[0f32; 8]; T];
    let mut g = 0;
    while g < row.blocks {
        let n = (row.blocks - g).min(8);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
        // SAFETY (this loop): the run's loads read its n lanes (a short run's f16s, the 8
        // ending with it, which start at or after the row's first), inside the row's scales
        // and offsets and each token's scales, sums and values (`whole_rows`).
        // No copy of the run into a buffer where the row allows: that was a libc memcpy
        // call a run and row, and a store the load after it could not forward from (14 % of
        // a lut4a decode on SmolLM2's 18-block rows). A short last run is the last lanes of
        // the 8 f16s that end with it, moved down, the lanes past it zeroed.
        let halves = |p: *const u16| {
            if n == 8 {
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(g) as *const _))
            } else if g + n >= 8 {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(p.add(g + n - 8) as *const _));
                let from = _mm256_add_epi32(lanes, _mm256_set1_epi32(8 - n as i32));
                _mm256_and_ps(_mm256_permutevar8x32_ps(v, from), _mm256_castsi256_ps(mask))
            } else {
                let mut h = [0u16; 8];
                std::ptr::copy_nonoverlapping(p.add(g), h.as_mut_ptr(), n);
                _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const _))
            }
        };
        let s = halves(row.scales);
        let o = row.offsets.map_or(_mm256_setzero_ps(), halves);
        let codes_free = _mm256_fmadd_ps(s, min, o);
        for t in 0..T {
            let a = &tokens[t];
            let x_sums = _mm256_maskload_ps(a.group_sums.as_ptr().add(g), mask);
            base[t] = _mm256_fmadd_ps(codes_free, x_sums, base[t]);
            let d = _mm256_maskload_ps(a.scales.as_ptr().add(g), mask);
            _mm256_storeu_ps(factors[t].as_mut_ptr(), _mm256_mul_ps(s, d));
        }
        let block = |k: usize, sums: &mut [__m256; T]| {
            let b = g + k;
            let w = load(b);
            for t in 0..T {
                let d = dot(w, tokens[t].values.as_ptr().add(32 * b));
                sums[t] = _mm256_fmadd_ps(d, _mm256_set1_ps(factors[t][k]), sums[t]);
            }
        };
        let [even, odd] = &mut sums;
        let mut k = 0;
        while k + 2 <= n {
            block(k, even);
            block(k + 1, odd);
            k += 2;
        }
        if k < n {
            block(k, even);
        }
        g += n;
    }
    let step = _mm256_set1_ps(levels.step);
    for t in 0..T {
        let sum = _mm256_add_ps(sums[0][t], sums[1][t]);
        out[t] = hsum(_mm256_fmadd_ps(sum, step, base[t]));
    }
    T
}

/// Σ_g scale_g · Σ_{c∈g} w_c · x_c over the first `n` columns: 8 weights at a time from
/// `eight(c)` (called with c + 8 <= n), the rest of each group one by one from `one(c)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn grouped(
    x: &[f32],
    n: usize,
    group: usize,
    scales: &[f32],
    eight: impl Fn(usize) -> __m256,
    one: impl Fn(usize) -> f32,
) -> f32 {
    let (mut total, mut tail) = (_mm256_setzero_ps(), 0f32);
    for (g, &s) in scales.iter().enumerate() {
        let (mut c, end) = (g * group, ((g + 1) * group).min(n));
        let mut acc = _mm256_setzero_ps();
        while c + 8 <= end {
            // SAFETY: c + 8 <= end <= n <= x.len().
            acc = _mm256_fmadd_ps(eight(c), _mm256_loadu_ps(x.as_ptr().add(c)), acc);
            c += 8;
        }
        let rest: f32 = (c..end).map(|c| one(c) * x[c]).sum();
        total = _mm256_fmadd_ps(acc, _mm256_set1_ps(s), total);
        tail += s * rest;
    }
    hsum(total) + tail
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (mut acc, mut c) = (_mm256_setzero_ps(), 0);
    while c + 8 <= n {
        // SAFETY: c + 8 <= n bounds both reads.
        let wv = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(c) as *const __m128i));
        acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(c)), acc);
        c += 8;
    }
    let rest: f32 = (c..n)
        .map(|c| half::f16::from_bits(w[c]).to_f32() * x[c])
        .sum();
    hsum(acc) + rest
}

#[target_feature(enable = "avx2,fma")]
unsafe fn scores_f32(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
    scores(q, k, stride, out, |p| _mm256_loadu_ps(p), |x| x);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    scores(q, k, stride, out, |p| load_f16(p), f32_of_f16);
}

#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_sum_f32(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    weighted_sum(p, v, stride, out, |p| _mm256_loadu_ps(p), |x| x);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weighted_sum_f16(p: &[f32], v: &[u16], stride: usize, out: &mut [f32]) {
    weighted_sum(p, v, stride, out, |p| load_f16(p), f32_of_f16);
}

/// Eight f16s (as bits) from `p` as f32s.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_f16(p: *const u16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

fn f32_of_f16(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Attention's scores over keys of either precision (`load8`: eight values from a pointer
/// as f32s, `one`: one value): four keys at a time, whose sums reduce together (two
/// horizontal adds and a lane add for four, where one key alone takes five shuffles and adds).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores<T: Copy>(
    q: &[f32],
    k: &[T],
    stride: usize,
    out: &mut [f32],
    load8: impl Fn(*const T) -> __m256,
    one: impl Fn(T) -> f32,
) {
    let (d, keys) = (q.len(), out.len());
    let whole = d / 8 * 8;
    // The exact reads: the last key's row ends at (keys - 1) · stride + d.
    assert!(keys == 0 || k.len() >= (keys - 1) * stride + d);
    let tail = |j: usize| -> f32 { (whole..d).map(|c| q[c] * one(k[j * stride + c])).sum() };
    let mut j = 0;
    while j + 4 <= keys {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut c = 0;
        while c < whole {
            // SAFETY: c + 8 <= whole <= d; key j + i's row c .. c + 8 is inside k (assert).
            let qv = _mm256_loadu_ps(q.as_ptr().add(c));
            for (i, acc) in acc.iter_mut().enumerate() {
                let kv = load8(k.as_ptr().add((j + i) * stride + c));
                *acc = _mm256_fmadd_ps(qv, kv, *acc);
            }
            c += 8;
        }
        let pairs = _mm256_hadd_ps(
            _mm256_hadd_ps(acc[0], acc[1]),
            _mm256_hadd_ps(acc[2], acc[3]),
        );
        let sums = _mm_add_ps(
            _mm256_castps256_ps128(pairs),
            _mm256_extractf128_ps::<1>(pairs),
        );
        let mut four = [0f32; 4];
        _mm_storeu_ps(four.as_mut_ptr(), sums);
        for i in 0..4 {
            out[j + i] = four[i] + tail(j + i);
        }
        j += 4;
    }
    while j < keys {
        let (mut acc, mut c) = (_mm256_setzero_ps(), 0);
        while c < whole {
            // SAFETY: as above, for key j.
            let kv = load8(k.as_ptr().add(j * stride + c));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(c)), kv, acc);
            c += 8;
        }
        out[j] = hsum(acc) + tail(j);
        j += 1;
    }
}

/// Attention's weighted sum over values of either precision (as [`scores`]): 64 columns at a
/// time held in eight registers over all the rows, so that each row costs eight loads and
/// FMAs and the sums are stored once.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_sum<T: Copy>(
    p: &[f32],
    v: &[T],
    stride: usize,
    out: &mut [f32],
    load8: impl Fn(*const T) -> __m256,
    one: impl Fn(T) -> f32,
) {
    let (d, rows) = (out.len(), p.len());
    assert!(rows == 0 || v.len() >= (rows - 1) * stride + d);
    let mut c = 0;
    while c + 8 <= d {
        let width = ((d - c) / 8).min(8);
        let mut acc = [_mm256_setzero_ps(); 8];
        for (i, acc) in acc.iter_mut().enumerate().take(width) {
            // SAFETY: c + 8 · i + 8 <= d, inside out.
            *acc = _mm256_loadu_ps(out.as_ptr().add(c + 8 * i));
        }
        for (j, &pj) in p.iter().enumerate() {
            let (pv, row) = (_mm256_set1_ps(pj), v.as_ptr().add(j * stride + c));
            for (i, acc) in acc.iter_mut().enumerate().take(width) {
                // SAFETY: row j's columns c + 8i .. c + 8i + 8 < d are inside v (assert).
                *acc = _mm256_fmadd_ps(pv, load8(row.add(8 * i)), *acc);
            }
        }
        for (i, acc) in acc.iter().enumerate().take(width) {
            _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * i), *acc);
        }
        c += 8 * width;
    }
    for (j, &pj) in p.iter().enumerate() {
        let row = &v[j * stride..][..d];
        out[c..]
            .iter_mut()
            .zip(&row[c..])
            .for_each(|(o, &v)| *o += pj * one(v));
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (mut a0, mut a1, mut c) = (_mm256_setzero_ps(), _mm256_setzero_ps(), 0);
    while c + 16 <= n {
        // SAFETY: c + 16 <= n bounds both reads.
        a0 = _mm256_fmadd_ps(
            _mm256_loadu_ps(w.as_ptr().add(c)),
            _mm256_loadu_ps(x.as_ptr().add(c)),
            a0,
        );
        a1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(w.as_ptr().add(c + 8)),
            _mm256_loadu_ps(x.as_ptr().add(c + 8)),
            a1,
        );
        c += 16;
    }
    let rest: f32 = (c..n).map(|c| w[c] * x[c]).sum();
    hsum(_mm256_add_ps(a0, a1)) + rest
}
