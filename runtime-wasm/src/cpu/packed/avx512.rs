//! x86_64 kernels on AVX-512 (F, BW, VBMI: Ice Lake and later, Zen 4 and later), chosen at run
//! time. The AVX2 gather of 8-bit codes runs at about half a weight per cycle (measured: no
//! faster than the portable loop on Zen 4), so here 64 codes are looked up at once in the
//! codebook's four byte planes (two 128-entry byte permutes and a blend per plane) and the
//! bytes interleaved back into f32s: exact codebook values, no gather. 4-bit codes index the
//! 16-entry codebook with one f32 permute per 16 columns.

use std::arch::x86_64::*;

use super::avx2::hsum;
use super::kernels::{
    self, each_row, one_pass, row4_q16_blocks, two_sums, CodeRows, Codebook8, Kernels, Levels4,
    Levels8, OneRow, Q16Blocks, Row4Codes,
};

/// Prompts of this many tokens of 8-bit codes take f32 tiles rather than the VNNI kernel:
/// since tiles are runs spread over the cores (session 43), prefill at 32 tokens, SmolLM2
/// lut8g 365 tok/s on tiles against 315, Phi-3.5-mini shapes 237 against 214; at 64, 495
/// against 331 and 331 against 218.
const VNNI_8_BIT_TILES_FROM: usize = 32;

/// These kernels when this CPU has the instructions they use (`base`: the AVX2 set, whose f16
/// and f32 dot products they keep).
pub fn kernels(base: &Kernels) -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vbmi");
    let vnni = is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl");
    // SAFETY (for the wrappers): only reachable through this table, which exists only when
    // the features their bodies are compiled for are present.
    ok.then_some(Kernels {
        name: "avx512",
        row8: |q, cb, x, g, s| unsafe { row8(q, cb, x, g, s) },
        row4: |q, cb, x, g, s| unsafe { row4(q, cb, x, g, s) },
        decode8: |q, cb, g, s, out| unsafe { decode8(q, cb, g, s, out) },
        row4_q16: match vnni {
            true => Some(|rows, first, l, a, out| unsafe { rows4_q16(rows, first, l, a, out) }),
            false => base.row4_q16,
        },
        row8_q16: match vnni {
            true => Some(|rows, first, l, a, out| unsafe { rows8_q16(rows, first, l, a, out) }),
            false => None,
        },
        // Eight tokens per pass: faster than f32 tiles for short prompts (RESULTS.md, sessions
        // 28 and 43).
        row8_q16_prompts_below: match vnni {
            true => VNNI_8_BIT_TILES_FROM,
            false => 0,
        },
        // Its `row8` permutes bytes in registers: nothing to gain from expanded levels.
        rows8_expanded: None,
        // The 4-bit kernel's crossover is AVX2's, with VNNI or without: Phi-3.5-mini shapes,
        // lut4a at 32 tokens, 236 tok/s in integers against 187 on tiles, equal at 48, 275
        // against 236 at 64 (session 43).
        ..*base
    })
}

#[inline]
#[target_feature(enable = "avx512f,avx2")]
fn hsum512(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    hsum(_mm256_add_ps(lo, hi))
}

/// The order to put 64 codes in so that, after the byte and word interleaves below (which
/// work within 128-bit lanes), vector k holds columns 16k .. 16k + 16 in order: byte p =
/// 16·lane + 4·k + j must hold column 16·k + 4·lane + j.
fn interleave_order() -> [u8; 64] {
    let mut order = [0u8; 64];
    for lane in 0..4 {
        for k in 0..4 {
            for j in 0..4 {
                order[16 * lane + 4 * k + j] = (16 * k + 4 * lane + j) as u8;
            }
        }
    }
    order
}

/// The codebook's byte planes in registers, and the code order that [`Lookup8::block`] wants.
struct Lookup8 {
    order: __m512i,
    planes: [[__m512i; 4]; 4],
}

impl Lookup8 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn new(cb: &Codebook8) -> Self {
        let order = interleave_order();
        // SAFETY: each load reads 64 bytes inside `order` or a plane (256 bytes).
        unsafe {
            let table = |p: usize, t: usize| {
                _mm512_loadu_si512(cb.planes[p].as_ptr().add(64 * t) as *const _)
            };
            Self {
                order: _mm512_loadu_si512(order.as_ptr() as *const _),
                planes: std::array::from_fn(|p| std::array::from_fn(|t| table(p, t))),
            }
        }
    }

    /// 64 codes' values: vector k holds columns 16k .. 16k + 16 as f32 bits.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn block(&self, codes: &[u8; 64]) -> [__m512i; 4] {
        // SAFETY: the load reads the 64 bytes of `codes`.
        let q = _mm512_permutexvar_epi8(self.order, unsafe {
            _mm512_loadu_si512(codes.as_ptr() as *const _)
        });
        let upper = _mm512_movepi8_mask(q);
        let planes = &self.planes;
        let byte = |p: usize| {
            let lo = _mm512_permutex2var_epi8(planes[p][0], q, planes[p][1]);
            let hi = _mm512_permutex2var_epi8(planes[p][2], q, planes[p][3]);
            _mm512_mask_blend_epi8(upper, lo, hi)
        };
        let (b0, b1, b2, b3) = (byte(0), byte(1), byte(2), byte(3));
        let (lo01, hi01) = (_mm512_unpacklo_epi8(b0, b1), _mm512_unpackhi_epi8(b0, b1));
        let (lo23, hi23) = (_mm512_unpacklo_epi8(b2, b3), _mm512_unpackhi_epi8(b2, b3));
        [
            _mm512_unpacklo_epi16(lo01, lo23),
            _mm512_unpackhi_epi16(lo01, lo23),
            _mm512_unpacklo_epi16(hi01, hi23),
            _mm512_unpackhi_epi16(hi01, hi23),
        ]
    }
}

/// Column c's scale, without a division per vector where groups are powers of two (16, 32,
/// 64…, all but odd archives).
#[derive(Clone, Copy)]
struct ScaleOf<'a> {
    scales: &'a [f32],
    group: usize,
    shift: Option<u32>,
}

impl<'a> ScaleOf<'a> {
    fn new(scales: &'a [f32], group: usize) -> Self {
        let shift = group.is_power_of_two().then(|| group.trailing_zeros());
        Self {
            scales,
            group,
            shift,
        }
    }

    #[inline]
    fn at(self, c: usize) -> f32 {
        match (self.scales.len(), self.shift) {
            (1, _) => self.scales[0],
            (_, Some(shift)) => self.scales[c >> shift],
            _ => self.scales[c / self.group],
        }
    }

    /// Blocks of 64 columns whose 16-column vectors each share a scale: groups of a multiple
    /// of 16, or one scale.
    fn blocks(self, n: usize) -> usize {
        match self.group.is_multiple_of(16) || self.scales.len() == 1 {
            true => n / 64,
            false => 0,
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx2,fma")]
unsafe fn row8(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let n = x.len().min(codes.len());
    let scale_of = ScaleOf::new(scales, group);
    let blocks = scale_of.blocks(n);
    let lookup = Lookup8::new(cb);
    // Two sums: one FMA's latency hides behind the other's.
    let (mut total, mut total2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for (b, block) in codes[..64 * blocks].chunks_exact(64).enumerate() {
        let w = lookup.block(block.try_into().unwrap());
        for (k, w) in w.into_iter().enumerate() {
            let c = 64 * b + 16 * k;
            // SAFETY: 16 floats at c + 16 <= 64 · blocks <= x.len().
            let x = unsafe { _mm512_loadu_ps(x.as_ptr().add(c)) };
            let prod = _mm512_mul_ps(_mm512_castsi512_ps(w), x);
            let s = _mm512_set1_ps(scale_of.at(c));
            if k % 2 == 0 {
                total = _mm512_fmadd_ps(prod, s, total);
            } else {
                total2 = _mm512_fmadd_ps(prod, s, total2);
            }
        }
    }
    let rest: f32 = (64 * blocks..n)
        .map(|c| scale_of.at(c) * cb.values[codes[c] as usize] * x[c])
        .sum();
    hsum512(_mm512_add_ps(total, total2)) + rest
}

#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn decode8(codes: &[u8], cb: &Codebook8, group: usize, scales: &[f32], out: &mut [f32]) {
    let n = out.len().min(codes.len());
    let scale_of = ScaleOf::new(scales, group);
    let blocks = scale_of.blocks(n);
    let lookup = Lookup8::new(cb);
    for (b, block) in codes[..64 * blocks].chunks_exact(64).enumerate() {
        let w = lookup.block(block.try_into().unwrap());
        for (k, w) in w.into_iter().enumerate() {
            let c = 64 * b + 16 * k;
            let v = _mm512_mul_ps(_mm512_castsi512_ps(w), _mm512_set1_ps(scale_of.at(c)));
            // SAFETY: 16 floats at c + 16 <= 64 · blocks <= out.len().
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c), v) };
        }
    }
    for c in 64 * blocks..n {
        out[c] = scale_of.at(c) * cb.values[codes[c] as usize];
    }
}

/// A block's 32 codes as their i16 levels (one byte shuffle, widened), the block's even
/// columns in the low half as the activations have them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn block_levels(codes: *const u8, table: __m256i) -> __m512i {
    let nibble = _mm_set1_epi8(15);
    let q = _mm_loadu_si128(codes as *const _);
    let lo = _mm_and_si128(q, nibble);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), nibble);
    _mm512_cvtepu8_epi16(_mm256_shuffle_epi8(table, _mm256_set_m128i(hi, lo)))
}

/// A block's levels times its 32 activations with VNNI's i16 dot product (vpdpwssd), as f32s.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block_dot(w: __m512i, values: *const i16) -> __m512 {
    let v = _mm512_loadu_si512(values as *const _);
    _mm512_cvtepi32_ps(_mm512_dpwssd_epi32(_mm512_setzero_si512(), w, v))
}

/// The 16 levels in both 128-bit lanes, for `block_levels`' shuffle.
#[inline]
#[target_feature(enable = "avx2")]
fn level_table(levels: &Levels4) -> __m256i {
    // SAFETY: `levels` is 16 bytes.
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(levels.levels.as_ptr() as *const _)) }
}

/// One row and token of the integer kernel (groups of several blocks).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn row4_q16(row: Row4Codes, levels: &Levels4, a: &Q16Blocks, scratch: &mut Vec<f32>) -> f32 {
    let base = kernels::scales_and_base(row, levels, a, scratch);
    let (factors, blocks) = (&scratch[..], row4_q16_blocks(row, a));
    let table = level_table(levels);
    // SAFETY: block b reads code bytes 16b .. 16b + 16 and activations 32b .. 32b + 32,
    // inside both slices (b < blocks).
    let (t0, t1) = two_sums(blocks, _mm512_setzero_ps(), |b, t| {
        let w = block_levels(row.codes.as_ptr().add(16 * b), table);
        let sum = block_dot(w, a.values.as_ptr().add(32 * b));
        _mm512_fmadd_ps(sum, _mm512_set1_ps(factors[b]), t)
    });
    levels.step * hsum512(_mm512_add_ps(t0, t1)) + base
}

/// Rows times tokens with the 4-bit integer kernel (as kernels::Rows4Q16). Where groups are
/// blocks (32 columns, the usual) a row is one pass per eight tokens; other groups go row by
/// row and token by token.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn rows4_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels4,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    let table = level_table(levels);
    let codebook = Affine {
        step: levels.step,
        min: levels.min,
    };
    let done = one_pass(rows, first, tokens, out, 16, |row, a, o| {
        // SAFETY: block b of a row that passed `whole_rows` is its bytes 16b .. 16b + 16.
        let one = |b: usize| block_levels(row.codes.add(16 * b), table);
        row_tokens(row, codebook, a, o, |b| [one(b), one(b + 1)], one)
    });
    if !done {
        each_row(rows, first, levels, tokens, out, |r, l, a, s| {
            row4_q16(r, l, a, s)
        });
    }
}

/// Rows times tokens with the 8-bit integer kernel (as kernels::Rows8Q16): as `rows4_q16`,
/// each pair of blocks' 64 codes looked up at once in the levels' two byte planes (two
/// 128-entry byte permutes and a blend per plane), the bytes interleaved into i16s.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,avx2,fma,f16c")]
unsafe fn rows8_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels8,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    // SAFETY: every load reads 64 bytes inside a plane (256 bytes) or `pair_order()`.
    let table =
        |p: usize, t: usize| _mm512_loadu_si512(levels.planes[p].as_ptr().add(64 * t) as *const _);
    let planes: [[__m512i; 4]; 2] = std::array::from_fn(|p| std::array::from_fn(|t| table(p, t)));
    let order = _mm512_loadu_si512(pair_order().as_ptr() as *const _);
    let lookup = |codes: *const u8, mask: __mmask64| {
        let q = _mm512_permutexvar_epi8(order, _mm512_maskz_loadu_epi8(mask, codes as *const _));
        let upper = _mm512_movepi8_mask(q);
        let plane = |p: [__m512i; 4]| {
            let lo = _mm512_permutex2var_epi8(p[0], q, p[1]);
            let hi = _mm512_permutex2var_epi8(p[2], q, p[3]);
            _mm512_mask_blend_epi8(upper, lo, hi)
        };
        let (low, high) = (plane(planes[0]), plane(planes[1]));
        [
            _mm512_unpacklo_epi8(low, high),
            _mm512_unpackhi_epi8(low, high),
        ]
    };
    let codebook = Affine {
        step: levels.step,
        min: 0.0,
    };
    let done = one_pass(rows, first, tokens, out, 32, |row, a, o| {
        // SAFETY: block b of a row that passed `whole_rows` is its bytes 32b .. 32b + 32; a
        // pair's blocks b and b + 1 both exist, a lone block's load is masked to its 32.
        let pair = |b: usize| lookup(row.codes.add(32 * b), u64::MAX);
        let one = |b: usize| lookup(row.codes.add(32 * b), u32::MAX as u64)[0];
        row_tokens(row, codebook, a, o, pair, one)
    });
    if !done {
        kernels::rows8_q16(rows, first, levels, tokens, out);
    }
}

/// The order to permute a pair of blocks' 64 codes into so that, after the byte interleave
/// of the two planes (within 128-bit lanes), word vector v holds block v in the activations'
/// order (even columns, then odd ones): vector v's word 8·lane + w comes from byte 16·lane +
/// 8·v + w.
fn pair_order() -> [u8; 64] {
    let column = |p: usize| if p < 16 { 2 * p } else { 2 * (p - 16) + 1 };
    std::array::from_fn(|i| {
        let (lane, v, w) = (i / 16, i % 16 / 8, i % 8);
        (32 * v + column(8 * lane + w)) as u8
    })
}

/// A codebook's levels as values: `min + step · level`.
#[derive(Clone, Copy)]
struct Affine {
    step: f32,
    min: f32,
}

/// One row times the first of `tokens` into `out`: eight, four, two or one of them (as many
/// as there are, up to eight); returns how many.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn row_tokens(
    row: OneRow,
    codebook: Affine,
    tokens: &[Q16Blocks],
    out: &mut [f32],
    pair: impl Fn(usize) -> [__m512i; 2],
    one: impl Fn(usize) -> __m512i,
) -> usize {
    match tokens.len() {
        1 => row_t_tokens::<1>(row, codebook, tokens, out, &pair, &one),
        2 | 3 => row_t_tokens::<2>(row, codebook, tokens, out, &pair, &one),
        4..8 => row_t_tokens::<4>(row, codebook, tokens, out, &pair, &one),
        _ => row_t_tokens::<8>(row, codebook, tokens, out, &pair, &one),
    }
}

/// One row times the first T tokens into `out[..T]`; returns T. Per run of 16 groups the
/// scales are converted once and each token's factors (scale × activation scale) and
/// codes-free terms take a vector each; each block's levels (from `pair` or `one`) are
/// looked up once for the T tokens. Blocks alternate between two sums so that one FMA's
/// latency hides behind the other's.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn row_t_tokens<const T: usize>(
    row: OneRow,
    codebook: Affine,
    tokens: &[Q16Blocks],
    out: &mut [f32],
    pair: &impl Fn(usize) -> [__m512i; 2],
    one: &impl Fn(usize) -> __m512i,
) -> usize {
    let min = _mm512_set1_ps(codebook.min);
    let mut sums = [[_mm512_setzero_ps(); T]; 2];
    let mut base = [_mm512_setzero_ps(); T];
    let mut factors = [[0f32; 16]; T];
    let mut g = 0;
    while g < row.blocks {
        let n = (row.blocks - g).min(16);
        let m = (u32::MAX >> (32 - n)) as __mmask16;
        // SAFETY (this loop): masked loads read only the run's n lanes, inside the row's
        // scales and offsets and each token's scales, sums and values (`whole_rows`).
        let halves =
            |p: *const u16| _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.add(g) as *const _));
        let s = halves(row.scales);
        let o = row.offsets.map_or(_mm512_setzero_ps(), halves);
        let codes_free = _mm512_fmadd_ps(s, min, o);
        for t in 0..T {
            let a = &tokens[t];
            let x_sums = _mm512_maskz_loadu_ps(m, a.group_sums.as_ptr().add(g));
            base[t] = _mm512_fmadd_ps(codes_free, x_sums, base[t]);
            let d = _mm512_maskz_loadu_ps(m, a.scales.as_ptr().add(g));
            _mm512_storeu_ps(factors[t].as_mut_ptr(), _mm512_mul_ps(s, d));
        }
        let block = |k: usize, w: __m512i, sums: &mut [__m512; T]| {
            for t in 0..T {
                let dot = block_dot(w, tokens[t].values.as_ptr().add(32 * (g + k)));
                sums[t] = _mm512_fmadd_ps(dot, _mm512_set1_ps(factors[t][k]), sums[t]);
            }
        };
        let [even, odd] = &mut sums;
        let mut k = 0;
        while k + 2 <= n {
            let [w0, w1] = pair(g + k);
            block(k, w0, even);
            // Several tokens are independent sums already: one set keeps them in registers.
            block(k + 1, w1, if T >= 4 { &mut *even } else { &mut *odd });
            k += 2;
        }
        if k < n {
            block(k, one(g + k), even);
        }
        g += n;
    }
    let step = _mm512_set1_ps(codebook.step);
    for t in 0..T {
        let sum = _mm512_add_ps(sums[0][t], sums[1][t]);
        out[t] = hsum512(_mm512_fmadd_ps(sum, step, base[t]));
    }
    T
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
unsafe fn row4(codes: &[u8], cb: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let cb = &cb.values;
    let n = x.len().min(codes.len() * 2);
    // SAFETY: the codebook has 16 floats; a vector at column c (even, c + 16 <= n) reads code
    // bytes c/2 .. c/2 + 8 and columns c .. c + 16, both inside the row.
    let table = _mm512_loadu_ps(cb.as_ptr());
    let twice = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let shifts = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    let weights = |c: usize| {
        let bytes = _mm_loadl_epi64(codes.as_ptr().add(c / 2) as *const __m128i);
        let idx = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(bytes, twice));
        // The permute reads the low 4 bits: the low nibble for even columns, the high one
        // (shifted down) for odd ones.
        _mm512_permutexvar_ps(_mm512_srlv_epi32(idx, shifts), table)
    };
    let (mut total, mut tail) = (_mm512_setzero_ps(), 0f32);
    // One scale per group (the whole row for the per-row codecs): sum a group's products in
    // two accumulators, then scale once. Groups are even, so every group starts at an even
    // column and its vectors at whole code bytes.
    let span = if scales.len() == 1 { n } else { group };
    for (g, &s) in scales.iter().enumerate() {
        let (mut c, end) = (g * span, ((g + 1) * span).min(n));
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        while c + 32 <= end {
            a0 = _mm512_fmadd_ps(weights(c), _mm512_loadu_ps(x.as_ptr().add(c)), a0);
            a1 = _mm512_fmadd_ps(weights(c + 16), _mm512_loadu_ps(x.as_ptr().add(c + 16)), a1);
            c += 32;
        }
        if c + 16 <= end {
            a0 = _mm512_fmadd_ps(weights(c), _mm512_loadu_ps(x.as_ptr().add(c)), a0);
            c += 16;
        }
        let rest: f32 = (c..end)
            .map(|c| cb[((codes[c / 2] >> ((c % 2) * 4)) & 15) as usize] * x[c])
            .sum();
        total = _mm512_fmadd_ps(_mm512_add_ps(a0, a1), _mm512_set1_ps(s), total);
        tail += s * rest;
    }
    hsum512(total) + tail
}
