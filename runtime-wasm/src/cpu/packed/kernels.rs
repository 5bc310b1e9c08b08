//! The dot products the packed CPU engine is made of, on the stored codes: one portable
//! version of each (the reference the SIMD ones are tested against, and what other CPUs and a
//! wasm32 build without SIMD128 run) and a table of whichever versions this CPU can run.
//!
//! A row is `groups` of `group` columns, each with its own scale: the kernels return
//! Σ_g scale_g · Σ_{c∈g} codebook[code_c] · x_c. Offsets (the affine codecs) are not theirs:
//! Σ_g offset_g · Σ_{c∈g} x_c needs only the activations' group sums, computed once per token
//! by the caller.

/// A 256-entry codebook as values and as four byte planes (byte p of every value's f32 bits),
/// which byte-permute instructions look up 64 codes at a time.
pub struct Codebook8 {
    pub values: [f32; 256],
    pub planes: [[u8; 256]; 4],
}

impl Codebook8 {
    pub fn new(values: [f32; 256]) -> Self {
        let mut planes = [[0u8; 256]; 4];
        for (i, v) in values.iter().enumerate() {
            for (p, b) in v.to_le_bytes().into_iter().enumerate() {
                planes[p][i] = b;
            }
        }
        Self { values, planes }
    }
}

/// One row of 8-bit codes: `codes.len() == x.len()`, `scales.len() == x.len().div_ceil(group)`.
pub type Row8 =
    fn(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32;
/// One row of 8-bit codes decoded: `out[c] = scales[c / group] · codebook[codes[c]]`, exactly
/// as `codec::decode_row` does (a prompt tile's rows).
pub type Decode8 =
    fn(codes: &[u8], codebook: &Codebook8, group: usize, scales: &[f32], out: &mut [f32]);
/// One row of 4-bit codes, two per byte, the even column in the low nibble: `codes.len() ==
/// x.len().div_ceil(2)`; `group` is even, so no byte straddles two groups. The codebook's
/// first 16 entries are the 4-bit codebook.
pub type Row4 =
    fn(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32;
/// Activations quantized for the integer kernels: per block of 32 columns one f32 scale and
/// an i16 per column (|q| <= 32767), the block's even columns first, then its odd ones (the
/// order of a 4-bit row's low nibbles, then its high ones); and the exact sums of x per group
/// of the matrix, for the terms the codes do not carry. Sixteen bits, not llama.cpp's eight:
/// 8-bit activations raised SmolLM2 lut4a's KL from the f32 model by 27 % (0.067 → 0.085,
/// 255 tokens, decode path), and by far more on archives whose weights are near-exact; at 16
/// bits their rounding is 256 times smaller, and x86's pmaddwd / vpdpwssd, wasm's
/// i32x4.dot_i16x8 and NEON's widening multiplies take i16 pairs as fast.
pub struct Q16Blocks {
    pub values: Vec<i16>,
    pub scales: Vec<f32>,
    /// Σ x over each group of `32 · per_group` columns.
    pub group_sums: Vec<f32>,
    pub per_group: usize,
}

impl Q16Blocks {
    /// `x` (whole blocks of 32 columns) quantized block by block, for groups of `32 ·
    /// per_group` columns.
    pub fn quantize(x: &[f32], per_group: usize) -> Self {
        debug_assert!(x.len().is_multiple_of(32) && per_group > 0);
        let mut values = vec![0i16; x.len()];
        let scales = x
            .chunks_exact(32)
            .zip(values.chunks_exact_mut(32))
            .map(|(x, q)| {
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 32767.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                for (i, pair) in x.chunks_exact(2).enumerate() {
                    q[i] = (pair[0] * inv).round() as i16;
                    q[16 + i] = (pair[1] * inv).round() as i16;
                }
                d
            })
            .collect();
        let group_sums = group_sums(x, 32 * per_group);
        Self {
            values,
            scales,
            group_sums,
            per_group,
        }
    }
}

/// `x` summed over each group of `group` columns.
pub fn group_sums(x: &[f32], group: usize) -> Vec<f32> {
    x.chunks(group).map(|g| g.iter().sum()).collect()
}

/// One row of 4-bit codes as stored: two codes a byte, and per group an f16 scale and, for
/// the affine codecs, an f16 offset (empty otherwise), as bits.
#[derive(Clone, Copy)]
pub struct Row4Codes<'a> {
    pub codes: &'a [u8],
    pub scales: &'a [u16],
    pub offsets: &'a [u16],
}

/// Consecutive rows of codes as stored: row `r`'s `row_bytes` code bytes from `codes[r *
/// stride]`, its `groups` f16 scale bits (and offset bits, for the affine codecs; empty
/// otherwise) from `[r * groups]`.
#[derive(Clone, Copy)]
pub struct CodeRows<'a> {
    pub codes: &'a [u8],
    pub stride: usize,
    pub row_bytes: usize,
    pub scales: &'a [u16],
    pub offsets: &'a [u16],
    pub groups: usize,
}

impl<'a> CodeRows<'a> {
    /// Row `r`, or None past the stored rows.
    pub fn row(&self, r: usize) -> Option<Row4Codes<'a>> {
        let g = self.groups;
        Some(Row4Codes {
            codes: self.codes.get(r * self.stride..)?.get(..self.row_bytes)?,
            scales: self.scales.get(r * g..(r + 1) * g)?,
            offsets: match self.offsets.is_empty() {
                true => &[],
                false => self.offsets.get(r * g..(r + 1) * g)?,
            },
        })
    }
}

/// A 16-entry codebook as 8-bit levels: value ≈ `min + step · levels[code]`, exact for a
/// uniform codebook (255 = 15 · 17), otherwise within 1/510 of the codebook's range (about
/// 1/34 of a 4-bit code's own step). Bytes, so one byte shuffle looks 16 or 32 of them up.
#[derive(Clone, Copy, Debug)]
pub struct Levels4 {
    pub levels: [u8; 16],
    pub min: f32,
    pub step: f32,
}

impl Levels4 {
    pub fn new(codebook: &[f32]) -> Self {
        let cb = &codebook[..16];
        let min = cb.iter().copied().fold(f32::INFINITY, f32::min);
        let max = cb.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let step = if max > min { (max - min) / 255.0 } else { 0.0 };
        let levels = std::array::from_fn(|c| match step > 0.0 {
            true => ((cb[c] - min) / step).round().clamp(0.0, 255.0) as u8,
            false => 0,
        });
        Self { levels, min, step }
    }
}

/// A 256-entry codebook as signed 15-bit integer levels: value ≈ `step · level`, within
/// max|value| / 32766 (at least 64 times finer than 8-bit codes' own spacing), so that level ×
/// 16-bit activation pairs sum in i32 without overflow. Also as the two byte planes of the
/// i16s, which byte permutes look 64 codes up in at a time.
pub struct Levels8 {
    pub levels: [i16; 256],
    pub planes: [[u8; 256]; 2],
    pub step: f32,
}

impl Levels8 {
    /// The levels of a finite codebook (None otherwise).
    pub fn new(codebook: &[f32; 256]) -> Option<Self> {
        let max = codebook.iter().fold(0f32, |m, v| m.max(v.abs()));
        if !max.is_finite() {
            return None;
        }
        let step = if max > 0.0 { max / 16383.0 } else { 0.0 };
        let levels: [i16; 256] = std::array::from_fn(|c| match step > 0.0 {
            true => (codebook[c] / step).round().clamp(-16383.0, 16383.0) as i16,
            false => 0,
        });
        let planes = std::array::from_fn(|p| std::array::from_fn(|c| levels[c].to_le_bytes()[p]));
        Some(Self {
            levels,
            planes,
            step,
        })
    }
}

/// Rows of 8-bit codes times quantized tokens, as [`Rows4Q16`] (weights `scale_g · step ·
/// level + offset_g`).
pub type Rows8Q16 =
    fn(rows: CodeRows<'_>, first: usize, levels: &Levels8, tokens: &[Q16Blocks], out: &mut [f32]);

/// Rows of grouped 8-bit codes whose levels were looked up once, at load ([`expand_levels`]:
/// i16, each block's 32 in its activations' order, as the bytes of `rows.codes`, 64 a block)
/// times quantized tokens, as [`Rows8Q16`] with `step` its levels' step. For the sets whose
/// lookups are slow (AVX2 gathers): twice the memory of the codes, no lookup per use. False,
/// with nothing written, where the rows are not whole blocks of groups of one block.
pub type Rows8Expanded =
    fn(rows: CodeRows<'_>, first: usize, step: f32, tokens: &[Q16Blocks], out: &mut [f32]) -> bool;

/// A row of 8-bit codes (whole blocks of 32) as the levels [`Rows8Expanded`] reads, appended to
/// `out`: each block's even columns, then its odd ones, the order of [`Q16Blocks`]' values.
pub fn expand_levels(codes: &[u8], levels: &Levels8, out: &mut Vec<i16>) {
    for block in codes.chunks_exact(32) {
        out.extend((0..16).map(|i| levels.levels[block[2 * i] as usize]));
        out.extend((0..16).map(|i| levels.levels[block[2 * i + 1] as usize]));
    }
}

/// The portable [`Rows8Q16`], a row and a token at a time: the reference for the SIMD ones,
/// and what they fall back to for groups of more than one block.
pub fn rows8_q16(
    rows: CodeRows,
    first: usize,
    levels: &Levels8,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) {
    let l = |c: u8| levels.levels[c as usize] as i32;
    rows8_portable(rows, first, levels.step, tokens, out, 32, |q, i| {
        (l(q[2 * i]), l(q[2 * i + 1]))
    });
}

/// The portable [`Rows8Expanded`], as [`rows8_q16`]: what the SIMD ones fall back to (never,
/// for the rows [`expand_levels`] makes: whole blocks, groups of one block).
pub fn rows8_expanded(
    rows: CodeRows,
    first: usize,
    step: f32,
    tokens: &[Q16Blocks],
    out: &mut [f32],
) -> bool {
    let l = |b: &[u8], i: usize| i16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as i32;
    rows8_portable(rows, first, step, tokens, out, 64, |b, i| {
        (l(b, i), l(b, 16 + i))
    });
    true
}

/// Rows of 8-bit levels times tokens, a row and a token at a time: `pair(block, i)` is the
/// levels of a block's columns 2i and 2i + 1 from its `block_bytes` bytes.
fn rows8_portable(
    rows: CodeRows,
    first: usize,
    step: f32,
    tokens: &[Q16Blocks],
    out: &mut [f32],
    block_bytes: usize,
    pair: impl Fn(&[u8], usize) -> (i32, i32),
) {
    let f32_of = |h: u16| half::f16::from_bits(h).to_f32();
    for (i, out) in out.chunks_mut(tokens.len().max(1)).enumerate() {
        let row = rows.row(first + i).expect("rows inside the matrix");
        for (o, a) in out.iter_mut().zip(tokens) {
            let blocks: Vec<f32> = row
                .codes
                .chunks_exact(block_bytes)
                .zip(a.values.chunks_exact(32))
                .zip(&a.scales)
                .map(|((q, v), d)| {
                    // A pair fits i32 (the SIMD kernels' lanes); 32 products need i64.
                    let sum: i64 = (0..16)
                        .map(|i| {
                            let (even, odd) = pair(q, i);
                            (even * v[i] as i32 + odd * v[16 + i] as i32) as i64
                        })
                        .sum();
                    d * sum as f32
                })
                .collect();
            *o = (row.scales.iter().enumerate().zip(&a.group_sums))
                .map(|((g, &s), x_sum)| {
                    let dot: f32 = blocks
                        .chunks(a.per_group)
                        .nth(g)
                        .map_or(0.0, |b| b.iter().sum());
                    let offset = row.offsets.get(g).map_or(0.0, |&o| f32_of(o));
                    f32_of(s) * step * dot + offset * x_sum
                })
                .sum();
        }
    }
}

/// Rows `first ..` of 4-bit codes times the quantized activations of one or more tokens:
/// `out[i · tokens.len() + t]` is row `first + i` times token `t` (a run of rows, all its
/// tokens). A row's weights are `scale_g · (min + step · level) + offset_g`, so its product
/// is `step · Σ_b scale_g(b) · d_b · (Σ_{c∈b} level_c · q_c, in integers) + Σ_g (scale_g ·
/// min + offset_g) · Σ_{c∈g} x_c`. A call per run of rows, so the per-row costs of a short
/// row (SmolLM2's are 18 blocks) fold into the block loop, and each block's levels are
/// looked up once for all the tokens of a prompt.
pub type Rows4Q16 =
    fn(rows: CodeRows<'_>, first: usize, levels: &Levels4, tokens: &[Q16Blocks], out: &mut [f32]);
/// Σ w_c · x_c over f16 weights (as stored bits).
pub type DotF16 = fn(w: &[u16], x: &[f32]) -> f32;
/// Σ w_c · x_c over f32 weights.
pub type DotF32 = fn(w: &[f32], x: &[f32]) -> f32;
/// Attention's scores: `out[j] = Σ_c q_c · k[j · stride + c]` for j < out.len(), c < q.len()
/// (keys in rows of `stride` values; `k` holds every row read).
pub type ScoresF32 = fn(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]);
/// Attention's weighted sum: `out[c] += Σ_j p_j · v[j · stride + c]` for j < p.len(), c <
/// out.len() (values in rows of `stride` values; `v` holds every row read).
pub type WeightedSumF32 = fn(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]);
/// [`ScoresF32`] over keys as f16 bits.
pub type ScoresF16 = fn(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]);
/// [`WeightedSumF32`] over values as f16 bits.
pub type WeightedSumF16 = fn(p: &[f32], v: &[u16], stride: usize, out: &mut [f32]);

/// A set of kernels, all from one instruction set.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub row8: Row8,
    pub row4: Row4,
    pub decode8: Decode8,
    pub dot_f16: DotF16,
    pub dot_f32: DotF32,
    pub scores_f32: ScoresF32,
    pub weighted_sum_f32: WeightedSumF32,
    pub scores_f16: ScoresF16,
    pub weighted_sum_f16: WeightedSumF16,
    /// The integer kernel for 4-bit rows, where this set has one worth using; without it the
    /// 4-bit codecs run on `row4`, exactly (no activation quantization).
    pub row4_q16: Option<Rows4Q16>,
    /// The integer kernel for grouped 8-bit rows, where this set has one faster than `row8`.
    pub row8_q16: Option<Rows8Q16>,
    /// Prompts shorter than this take `row8_q16` too, longer ones f32 tiles (single tokens
    /// always take it): 0 where its lookups cost more than decoding each weight tile once in
    /// f32 for all the tokens (SIMD128: one by one). Its own crossover, not
    /// `prompt_tiles_from`: 8-bit codes gain from tiles sooner than 4-bit ones (VNNI).
    pub row8_q16_prompts_below: usize,
    /// The kernel for grouped 8-bit rows expanded to their levels at load, where this set
    /// looks codes up slowly (the loader expands within a budget); expanded rows take it
    /// rather than `row8_q16`.
    pub rows8_expanded: Option<Rows8Expanded>,
    /// Prompts of this many tokens or more leave `row4_q16` and `rows8_expanded` for f32
    /// tiles: each tile of rows decoded once (from the codes, or the expanded levels) for all
    /// the tokens and multiplied by sgemm, a fixed cost a matrix that a long prompt repays and
    /// a short one does not (AVX2: the crossover is near 48 tokens, RESULTS.md, session 42).
    /// `usize::MAX`: never (SIMD128, where sgemm has no SIMD kernel).
    pub prompt_tiles_from: usize,
}

impl Kernels {
    pub const PORTABLE: Kernels = Kernels {
        name: "portable",
        row8,
        row4,
        decode8,
        dot_f16,
        dot_f32,
        scores_f32,
        weighted_sum_f32,
        scores_f16,
        weighted_sum_f16,
        row4_q16: Some(|rows, first, l, a, out| each_row(rows, first, l, a, out, row4_q16)),
        row8_q16: None,
        row8_q16_prompts_below: 0,
        rows8_expanded: None,
        prompt_tiles_from: usize::MAX,
    };

    /// The portable set with the portable 8-bit integer kernel (which no set picks by itself:
    /// it is the SIMD kernels' fallback): what the SIMD integer kernels are checked against.
    pub fn portable_integer() -> Kernels {
        Kernels {
            name: "portable integer",
            row8_q16: Some(rows8_q16),
            row8_q16_prompts_below: usize::MAX,
            ..Self::PORTABLE
        }
    }

    /// This set without its integer kernels: every product exact in f32.
    pub fn exact(self) -> Kernels {
        Kernels {
            row4_q16: None,
            row8_q16: None,
            rows8_expanded: None,
            ..self
        }
    }

    /// The fastest set this CPU runs, detected once; `QINS_CPU_KERNELS=portable` (or another
    /// set's name) picks one by name, for benchmarks and for ruling a kernel out, and
    /// `QINS_PROMPT_TILES_FROM=N` moves its `prompt_tiles_from` and, where it has one, its
    /// 8-bit kernel's crossover (benchmarks of the crossovers).
    pub fn best() -> &'static Kernels {
        static BEST: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
        BEST.get_or_init(|| {
            let all = Self::available();
            let asked = std::env::var("QINS_CPU_KERNELS").ok();
            let named = asked.and_then(|n| all.iter().find(|k| k.name == n).copied());
            let best = named.or(all.last().copied()).unwrap_or(Self::PORTABLE);
            let tiles = std::env::var("QINS_PROMPT_TILES_FROM").ok();
            match tiles.and_then(|n| n.parse().ok()) {
                Some(n) => Kernels {
                    prompt_tiles_from: n,
                    row8_q16_prompts_below: best.row8_q16_prompts_below.min(n),
                    ..best
                },
                None => best,
            }
        })
    }

    /// Every set this CPU runs, the portable one first: the tests check each against it.
    pub fn available() -> Vec<Kernels> {
        #[allow(unused_mut)]
        let mut all = vec![Self::PORTABLE];
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = super::avx2::kernels() {
            all.push(k);
            all.extend(super::avx512::kernels(&k));
        }
        #[cfg(target_arch = "aarch64")]
        all.push(super::neon::kernels());
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        all.push(super::simd128::kernels());
        all
    }
}

fn row8(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let codebook = &codebook.values;
    codes
        .chunks(group)
        .zip(x.chunks(group))
        .zip(scales)
        .map(|((q, x), s)| {
            s * q
                .iter()
                .zip(x)
                .map(|(&q, x)| codebook[q as usize] * x)
                .sum::<f32>()
        })
        .sum()
}

/// The reference decode itself, without offsets.
fn decode8(codes: &[u8], codebook: &Codebook8, group: usize, scales: &[f32], out: &mut [f32]) {
    let codes = crate::codec::RowCodes {
        codes,
        nibbles: false,
    };
    crate::codec::decode_row(codes, &codebook.values, group, scales, &[], out);
}

fn row4(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let codebook = &codebook.values;
    codes
        .chunks(group / 2)
        .zip(x.chunks(group))
        .zip(scales)
        .map(|((q, x), s)| {
            let mut sum = 0.0;
            for (&b, x) in q.iter().zip(x.chunks(2)) {
                sum += codebook[(b & 15) as usize] * x[0];
                if let Some(x1) = x.get(1) {
                    sum += codebook[(b >> 4) as usize] * x1;
                }
            }
            s * sum
        })
        .sum()
}

fn row4_q16(row: Row4Codes<'_>, levels: &Levels4, a: &Q16Blocks, scratch: &mut Vec<f32>) -> f32 {
    let base = scales_and_base(row, levels, a, scratch);
    let dot: f32 = (0..row4_q16_blocks(row, a))
        .map(|b| {
            let (q, v) = (
                &row.codes[16 * b..16 * b + 16],
                &a.values[32 * b..32 * b + 32],
            );
            let sum: i32 = (0..16)
                .map(|i| {
                    levels.levels[(q[i] & 15) as usize] as i32 * v[i] as i32
                        + levels.levels[(q[i] >> 4) as usize] as i32 * v[16 + i] as i32
                })
                .sum();
            scratch[b] * sum as f32
        })
        .sum();
    levels.step * dot + base
}

/// Rows `first ..` times `tokens` into `out` (as [`Rows4Q16`]), one `row4_q16` call per row
/// and token (the kernel sets without a one-pass kernel, and groups of more than one block);
/// a row's kernel keeps its blocks' factors in `scratch`.
#[inline(always)]
pub(super) fn each_row(
    rows: CodeRows,
    first: usize,
    levels: &Levels4,
    tokens: &[Q16Blocks],
    out: &mut [f32],
    row4_q16: impl Fn(Row4Codes, &Levels4, &Q16Blocks, &mut Vec<f32>) -> f32,
) {
    let Some(a0) = tokens.first() else {
        return;
    };
    let mut scratch = Vec::with_capacity(rows.groups * a0.per_group);
    for (i, o) in out.chunks_mut(tokens.len()).enumerate() {
        let row = rows.row(first + i).expect("rows inside the matrix");
        for (o, a) in o.iter_mut().zip(tokens) {
            *o = row4_q16(row, levels, a, &mut scratch);
        }
    }
}

/// Whether rows `..end` times `tokens` can take the one-pass kernels: groups are blocks of
/// `block_bytes` code bytes; every token has all blocks; every row up to `end` has its
/// codes, scales and (when affine) offsets.
pub(super) fn whole_rows(
    rows: CodeRows,
    end: usize,
    tokens: &[Q16Blocks],
    block_bytes: usize,
) -> bool {
    let blocks = rows.groups;
    let stored = |len: usize| len >= end * blocks;
    tokens.iter().all(|a| {
        a.per_group == 1
            && a.scales.len() == blocks
            && a.group_sums.len() == blocks
            && a.values.len() == 32 * blocks
    }) && rows.row_bytes == block_bytes * blocks
        && (end == 0
            || rows.codes.len() >= (end - 1) * rows.stride + rows.row_bytes
                && stored(rows.scales.len())
                && (rows.offsets.is_empty() || stored(rows.offsets.len())))
}

/// A row of a matrix that passed `whole_rows`: its codes, f16 scale and offset bits.
#[derive(Clone, Copy)]
pub(super) struct OneRow {
    pub codes: *const u8,
    pub scales: *const u16,
    pub offsets: Option<*const u16>,
    pub blocks: usize,
}

impl OneRow {
    /// Row `r` of `rows`.
    ///
    /// # Safety
    /// `rows` passed `whole_rows` for an end past `r`.
    pub unsafe fn new(rows: CodeRows, r: usize) -> Self {
        let blocks = rows.groups;
        // SAFETY: `whole_rows` checked that row r has its codes, scales and offsets.
        unsafe {
            Self {
                codes: rows.codes.as_ptr().add(r * rows.stride),
                scales: rows.scales.as_ptr().add(r * blocks),
                offsets: (!rows.offsets.is_empty()).then(|| rows.offsets.as_ptr().add(r * blocks)),
                blocks,
            }
        }
    }
}

/// Rows `first ..` times `tokens` into `out` (as [`Rows4Q16`]) in one pass per row:
/// `row_tokens` multiplies a row by the first of the tokens left (as many as it takes at
/// once) and returns how many it did. False, with nothing written, where the rows cannot take
/// one pass (`whole_rows`, blocks of `block_bytes` code bytes).
#[inline(always)]
pub(super) fn one_pass(
    rows: CodeRows,
    first: usize,
    tokens: &[Q16Blocks],
    out: &mut [f32],
    block_bytes: usize,
    row_tokens: impl Fn(OneRow, &[Q16Blocks], &mut [f32]) -> usize,
) -> bool {
    let n = tokens.len();
    if n == 0 {
        return true;
    }
    if !whole_rows(rows, first + out.len() / n, tokens, block_bytes) {
        return false;
    }
    for (i, out) in out.chunks_exact_mut(n).enumerate() {
        // SAFETY: the rows passed `whole_rows`.
        let row = unsafe { OneRow::new(rows, first + i) };
        let mut t = 0;
        while t < n {
            t += row_tokens(row, &tokens[t..], &mut out[t..]);
        }
    }
    true
}

/// `step` folded over blocks 0..n into two sums, even blocks into the first and odd ones
/// into the second, so that one vector FMA's latency hides behind the other's (the integer
/// kernels' block loop, whatever the vector type).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(super) fn two_sums<V: Copy>(n: usize, zero: V, step: impl Fn(usize, V) -> V) -> (V, V) {
    let (mut even, mut odd, mut b) = (zero, zero, 0);
    while b + 2 <= n {
        even = step(b, even);
        odd = step(b + 1, odd);
        b += 2;
    }
    if b < n {
        even = step(b, even);
    }
    (even, odd)
}

/// Blocks a 4-bit row and its activations both have.
pub(super) fn row4_q16_blocks(row: Row4Codes, a: &Q16Blocks) -> usize {
    let groups = row.scales.len().min(a.group_sums.len());
    a.scales
        .len()
        .min(row.codes.len() / 16)
        .min(groups * a.per_group)
}

/// Block b's weight for its integer sum (its group's scale times its activations' scale)
/// into `scratch[b]`, and the term the codes do not carry: Σ_g (scale_g · min + offset_g) ·
/// Σ_{c∈g} x_c.
pub(super) fn scales_and_base(
    row: Row4Codes,
    levels: &Levels4,
    a: &Q16Blocks,
    scratch: &mut Vec<f32>,
) -> f32 {
    let f32_of = |h: u16| half::f16::from_bits(h).to_f32();
    scratch.clear();
    scratch.resize(row4_q16_blocks(row, a), 0.0);
    let mut base = 0f32;
    for (g, (&s, x_sum)) in row.scales.iter().zip(&a.group_sums).enumerate() {
        let (s, offset) = (f32_of(s), row.offsets.get(g).map_or(0.0, |&o| f32_of(o)));
        let blocks = g * a.per_group..((g + 1) * a.per_group).min(scratch.len());
        for b in blocks {
            scratch[b] = s * a.scales[b];
        }
        base += (s * levels.min + offset) * x_sum;
    }
    base
}

fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(&w, x)| half::f16::from_bits(w).to_f32() * x)
        .sum()
}

fn scores_f32(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
    scores_by_dot(dot_f32, q, k, stride, out);
}

fn scores_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    scores_by_dot(dot_f16, q, k, stride, out);
}

/// [`ScoresF32`] (or its f16 twin) a key at a time with `dot(key, q)` (the sets without a
/// scores kernel of their own use their dot products).
#[inline(always)]
pub(super) fn scores_by_dot<T>(
    dot: fn(&[T], &[f32]) -> f32,
    q: &[f32],
    k: &[T],
    stride: usize,
    out: &mut [f32],
) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(&k[j * stride..][..q.len()], q);
    }
}

fn weighted_sum_f16(p: &[f32], v: &[u16], stride: usize, out: &mut [f32]) {
    for (j, &p) in p.iter().enumerate() {
        let row = &v[j * stride..][..out.len()];
        for (o, &h) in out.iter_mut().zip(row) {
            *o += p * half::f16::from_bits(h).to_f32();
        }
    }
}

/// Vectorised by the compiler where the target's baseline has SIMD (aarch64, wasm32 with
/// SIMD128); x86_64's baseline is SSE2, hence AVX2's own.
fn weighted_sum_f32(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    for (j, &p) in p.iter().enumerate() {
        let row = &v[j * stride..][..out.len()];
        out.iter_mut().zip(row).for_each(|(o, v)| *o += p * v);
    }
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    // Eight partial sums so the compiler can keep them in one vector register.
    let mut acc = [0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (w, x) in wc.zip(xc) {
        for i in 0..8 {
            acc[i] += w[i] * x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
