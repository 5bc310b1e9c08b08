//! Learned codebooks (lut8, lut8g/lut8a, lut4/lut4a) and the one decode path for every LUT
//! codec.

use half::f16;

use super::kmeans::{fit, Histogram, Nearest};
use super::{read_f32s, write_f32s, Codec, Importance, Layout};
use crate::{QinsError, Result};

/// Histogram resolution: fine enough that bin rounding is far below the level spacing.
const LUT8_BINS: usize = 1 << 16;
const LUT4_BINS: usize = 1 << 13;
const LLOYD_ITERS: usize = 200;

pub fn absmax(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// Runs `f(row_index, row_codes)` over every row of codes, in parallel with `parallel`.
pub fn for_each_row<F>(codes: &mut [u8], stride: usize, rows: usize, f: F)
where
    F: Fn(usize, &mut [u8]) + Sync + Send,
{
    let codes = &mut codes[..rows * stride];
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        codes
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    }
    #[cfg(not(feature = "parallel"))]
    codes
        .chunks_mut(stride)
        .enumerate()
        .for_each(|(r, row)| f(r, row));
}

/// Per-row absmax scale, one 256-entry codebook for the tensor learned on w/scale with
/// weight scale² (the squared error each code contributes in the original units).
pub fn encode_lut8(data: &[f32], rows: usize, cols: usize, layout: &Layout, out: &mut [u8]) {
    let scales: Vec<f32> = data.chunks_exact(cols).map(absmax).collect();
    let mut hist = Histogram::new(LUT8_BINS);
    for (row, &s) in data.chunks_exact(cols).zip(&scales) {
        if s > 0.0 {
            let w = (s as f64) * (s as f64);
            row.iter().for_each(|&x| hist.add(x / s, w));
        }
    }
    let codebook = fit(&hist, 256, LLOYD_ITERS);
    write_rows8(data, rows, cols, &codebook, &scales, layout, out);
}

/// Writes an 8-bit LUT tensor: the codebook, per-row scales, and each weight's nearest level.
fn write_rows8(
    data: &[f32],
    rows: usize,
    cols: usize,
    codebook: &[f32],
    scales: &[f32],
    layout: &Layout,
    out: &mut [u8],
) {
    let nearest = Nearest::new(codebook);
    write_f32s(codebook, &mut out[layout.codebook.offset..]);
    write_f32s(scales, &mut out[layout.scales.offset..]);
    let codes = &mut out[layout.codes.offset..layout.codes.offset + layout.codes.len];
    for_each_row(codes, layout.code_stride, rows, |r, row| {
        let s = scales[r];
        for (c, &x) in data[r * cols..(r + 1) * cols].iter().enumerate() {
            row[c] = nearest.index(if s > 0.0 { x / s } else { 0.0 }) as u8;
        }
    });
}

/// Rounds of (fit the codebook to the normalized weights, then refit each group's scale and
/// offset to the codebook) for the grouped codecs: each round lowers the squared error; three
/// get most of the gain.
const GROUPED_ROUNDS: usize = 3;
/// Row ranges a codebook's histogram is filled in (in parallel), whatever the thread count.
const HISTOGRAM_PARTS: usize = 16;

/// Per-row results of `f`, in parallel with `parallel`.
fn map_rows<T: Send>(rows: usize, f: impl Fn(usize) -> Vec<T> + Sync + Send) -> Vec<T> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..rows).into_par_iter().flat_map_iter(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    (0..rows).flat_map(f).collect()
}

/// [`fit_group`]'s buffers, reused over a row's groups: allocating them per group of 32
/// weights cost more than a tenth of a conversion (malloc and its lock).
#[derive(Default)]
struct FitScratch {
    t: Vec<f32>,
    idx: Vec<u32>,
    c: Vec<f32>,
    before: Vec<f32>,
}

/// One group's stored parameters: `w ≈ scale · codebook[code] + offset`.
#[derive(Clone, Copy)]
struct Affine {
    scale: f32,
    offset: f32,
}

impl Affine {
    /// The codebook coordinate of `w` (0 for a zero-scale group, whose weights all equal the
    /// offset).
    fn normalize(&self, w: f32) -> f32 {
        if self.scale > 0.0 {
            (w - self.offset) / self.scale
        } else {
            0.0
        }
    }

    /// As stored: both halves rounded to f16, refused when they do not fit.
    fn stored(self) -> Result<Self> {
        let (s, o) = (f16::from_f32(self.scale), f16::from_f32(self.offset));
        if !s.is_finite() || !o.is_finite() {
            return Err(QinsError::Codec(format!(
                "a group's scale {} or offset {} overflows f16",
                self.scale, self.offset
            )));
        }
        Ok(Self {
            scale: s.to_f32(),
            offset: o.to_f32(),
        })
    }

    /// The starting point: the group's range mapped onto [-1, 1] (absmax when symmetric).
    fn range(g: &[f32], offset: bool) -> Self {
        if offset {
            let lo = g.iter().fold(f32::INFINITY, |m, &x| m.min(x));
            let hi = g.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            Self {
                scale: 0.5 * (hi - lo),
                offset: 0.5 * (hi + lo),
            }
        } else {
            Self {
                scale: absmax(g),
                offset: 0.0,
            }
        }
    }
}

/// The parameters minimising Σ α·(w − s·codebook[nearest((w−o)/s)] − o)² for one group (α
/// the columns' importance, `alpha`), by
/// alternating code assignment and the closed-form least-squares fit (of s alone, or of s and o
/// by linear regression), from a few starting points: the group's range mapped onto the
/// codebook's, and narrower ones that clip the extremes, as Q4_K's scale search does. The
/// values judged are the f16-rounded ones that will be stored; `current` is kept unless beaten.
fn fit_group(
    g: &[f32],
    alpha: &[f64],
    codebook: &[f32],
    nearest: &Nearest,
    current: Affine,
    offset: bool,
    scratch: &mut FitScratch,
) -> Affine {
    let FitScratch { t, idx, c, before } = scratch;
    for v in [&mut *t, &mut *c, &mut *before] {
        v.clear();
        v.resize(g.len(), 0.0);
    }
    idx.clear();
    idx.resize(g.len(), 0);
    // The assigned codebook values, shared by the sums of each pass.
    let mut assign = |a: Affine, c: &mut [f32]| {
        for (t, &w) in t.iter_mut().zip(g) {
            *t = a.normalize(w);
        }
        nearest.indices(t, idx);
        for (c, &i) in c.iter_mut().zip(&*idx) {
            *c = codebook[i as usize];
        }
    };
    let error = |a: Affine, c: &[f32]| -> f64 {
        let [e] = sums4(g, alpha, c, |w, al, c| {
            let d = (w - a.scale * c - a.offset) as f64;
            [al * d * d]
        });
        e
    };
    assign(current, c);
    let mut best = (current, error(current, c));
    let (lo, hi) = (codebook[0], codebook[codebook.len() - 1]);
    let range = Affine::range(g, offset);
    let (span, mid) = if offset {
        (hi - lo, 0.5 * (hi + lo))
    } else {
        (2.0 * lo.abs().max(hi.abs()), 0.0)
    };
    if range.scale <= 0.0 || span <= 0.0 {
        return best.0;
    }
    for shrink in [1.0, 0.9, 0.8] {
        let scale = shrink * 2.0 * range.scale / span;
        let mut a = Affine {
            scale,
            offset: range.offset - scale * mid,
        };
        for pass in 0..4 {
            assign(a, c);
            // The same assignment as the pass before fits the same `a` again: a fixed point,
            // so the remaining passes would change nothing.
            if pass > 0 && c == before {
                break;
            }
            before.copy_from_slice(c);
            // Σ α, Σ α·c, Σ α·w, Σ α·c², Σ α·c·w.
            let [n, sc, sw, scc, scw] = sums4(g, alpha, c, |w, al, c| {
                let (w, c) = (w as f64, c as f64);
                [al, al * c, al * w, al * c * c, al * c * w]
            });
            let (s, o) = if offset {
                let var = n * scc - sc * sc;
                if var <= 1e-12 * n * scc {
                    break;
                }
                let s = (n * scw - sc * sw) / var;
                (s, (sw - s * sc) / n)
            } else {
                (if scc > 0.0 { scw / scc } else { 0.0 }, 0.0)
            };
            if s <= 0.0 {
                break;
            }
            a = Affine {
                scale: s as f32,
                offset: o as f32,
            };
        }
        if let Ok(a) = a.stored() {
            assign(a, c);
            let e = error(a, c);
            if a.scale > 0.0 && e < best.1 {
                best = (a, e);
            }
        }
    }
    best.0
}

/// Σ_i terms(w_i, α_i, c_i) over a group, each of the Q terms in four interleaved partial
/// sums: one serial chain of f64 adds (3–4 cycles each) bounded the group fit, and four let
/// the compiler use vector adds; all Q in one pass.
#[inline]
fn sums4<const Q: usize>(
    g: &[f32],
    alpha: &[f64],
    c: &[f32],
    terms: impl Fn(f32, f64, f32) -> [f64; Q],
) -> [f64; Q] {
    let mut acc = [[0f64; 4]; Q];
    let (gs, als, cs) = (g.chunks_exact(4), alpha.chunks_exact(4), c.chunks_exact(4));
    let mut tail = [0f64; Q];
    for (q, tail) in tail.iter_mut().enumerate() {
        *tail = gs
            .remainder()
            .iter()
            .zip(als.remainder())
            .zip(cs.remainder())
            .map(|((&w, &al), &c)| terms(w, al, c)[q])
            .sum();
    }
    for ((w, al), c) in gs.zip(als).zip(cs) {
        for i in 0..4 {
            let t = terms(w[i], al[i], c[i]);
            for q in 0..Q {
                acc[q][i] += t[q];
            }
        }
    }
    std::array::from_fn(|q| (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]) + tail[q])
}

/// The int4 baseline: uniform levels k/7 on absmax group scales, i.e. round-to-nearest int4.
pub fn encode_int4(
    codec: Codec,
    data: &[f32],
    rows: usize,
    cols: usize,
    layout: &Layout,
    out: &mut [u8],
) -> Result<()> {
    let levels: Vec<f32> = (0..16).map(|k| (k as f32 - 8.0).max(-7.0) / 7.0).collect();
    encode_grouped(
        codec,
        data,
        rows,
        cols,
        Some(levels),
        Importance::Uniform,
        layout,
        out,
    )
}

/// The int8 baseline: uniform levels k/127 on the per-row absmax scale (round-to-nearest int8).
pub fn encode_int8(data: &[f32], rows: usize, cols: usize, layout: &Layout, out: &mut [u8]) {
    let codebook: Vec<f32> = (0..256)
        .map(|k| (k as f32 - 128.0).max(-127.0) / 127.0)
        .collect();
    let scales: Vec<f32> = data.chunks_exact(cols).map(absmax).collect();
    write_rows8(data, rows, cols, &codebook, &scales, layout, out);
}

/// Group-scaled codes (lut8g/lut8a/lut4/lut4a/int4) with a codebook learned jointly with the
/// groups' scales and offsets (`fixed` None), or a given codebook on range scales. `importance`
/// weights the groups' scale and offset fit only: weighting the shared codebook's histogram by
/// it as well bent the levels towards a few outlier channels and raised Qwen2.5-0.5B's KL
/// (lut4-g32 with an 8-bit head: 0.068 unweighted, 0.075 weighted everywhere, 0.059 weighted
/// in the group fit only; 4 windows of dev.txt). 4-bit codes
/// go two per byte, the even column in the low nibble.
#[allow(clippy::too_many_arguments)] // one call site per codec family, each naming every part
pub fn encode_grouped(
    codec: Codec,
    data: &[f32],
    rows: usize,
    cols: usize,
    fixed: Option<Vec<f32>>,
    importance: Importance,
    layout: &Layout,
    out: &mut [u8],
) -> Result<()> {
    let (group, offset, levels) = (
        codec.group().unwrap_or(cols),
        codec.has_offset(),
        codec.codebook_len(),
    );
    let bins = if levels == 16 { LUT4_BINS } else { LUT8_BINS };
    let groups = cols.div_ceil(group);
    let mut params: Vec<Affine> = Vec::with_capacity(rows * groups);
    for row in data.chunks_exact(cols) {
        for g in row.chunks(group) {
            params.push(Affine::range(g, offset).stored()?);
        }
    }
    let rounds = if fixed.is_some() { 0 } else { GROUPED_ROUNDS };
    // Unweighted, the last codebook is kept with the scales it was fitted on. Weighted, the
    // scales are refitted to it too: the codebook's histogram does not see the importance, so
    // without the refit the weighted error can end above the unweighted fit's.
    let weighted = matches!(importance, Importance::PerColumn(_));
    let alpha: Vec<f64> = (0..cols).map(|c| importance.of(c)).collect();
    let mut codebook = fixed.unwrap_or_default();
    for round in 0..rounds {
        // Filled in parallel over a fixed split of the rows and merged in order, so the
        // codebook does not depend on the number of threads.
        let per_part = rows.div_ceil(HISTOGRAM_PARTS).max(1);
        let parts = map_rows(rows.div_ceil(per_part), |p| {
            let mut hist = Histogram::new(bins);
            for r in p * per_part..((p + 1) * per_part).min(rows) {
                let row = &data[r * cols..(r + 1) * cols];
                for (gi, g) in row.chunks(group).enumerate() {
                    let a = params[r * groups + gi];
                    if a.scale > 0.0 {
                        let weight = (a.scale as f64) * (a.scale as f64);
                        g.iter().for_each(|&x| hist.add(a.normalize(x), weight));
                    }
                }
            }
            vec![hist]
        });
        let hist = parts
            .into_iter()
            .reduce(|mut a, b| {
                a.merge(&b);
                a
            })
            .unwrap_or_else(|| Histogram::new(bins));
        codebook = fit(&hist, levels, LLOYD_ITERS);
        if round + 1 < rounds || weighted {
            let nearest = Nearest::new(&codebook);
            let current = &params;
            params = map_rows(rows, |r| {
                let mut scratch = FitScratch::default();
                data[r * cols..(r + 1) * cols]
                    .chunks(group)
                    .zip(alpha.chunks(group))
                    .enumerate()
                    .map(|(gi, (g, al))| {
                        let a = current[r * groups + gi];
                        fit_group(g, al, &codebook, &nearest, a, offset, &mut scratch)
                    })
                    .collect()
            });
        }
    }
    let nearest = Nearest::new(&codebook);
    write_f32s(&codebook, &mut out[layout.codebook.offset..]);
    let halves = |section: super::Section, f: fn(&Affine) -> f32, out: &mut [u8]| {
        for (a, o) in params
            .iter()
            .zip(out[section.offset..section.end()].chunks_exact_mut(2))
        {
            o.copy_from_slice(&f16::from_f32(f(a)).to_le_bytes());
        }
    };
    halves(layout.scales, |a| a.scale, out);
    halves(layout.offsets, |a| a.offset, out);
    let nibbles = levels == 16;
    let codes = &mut out[layout.codes.offset..layout.codes.end()];
    for_each_row(codes, layout.code_stride, rows, |r, row| {
        for (c, &x) in data[r * cols..(r + 1) * cols].iter().enumerate() {
            let q = nearest.index(params[r * groups + c / group].normalize(x)) as u8;
            if nibbles {
                row[c / 2] |= if c % 2 == 0 { q } else { q << 4 };
            } else {
                row[c] = q;
            }
        }
    });
    Ok(())
}

/// `w[r][c] = scale(r, c) * codebook[code(r, c)] + offset(r, c)` for every LUT codec.
pub fn decode(codec: Codec, bytes: &[u8], rows: usize, cols: usize, layout: &Layout) -> Vec<f32> {
    let section = |s: super::Section| &bytes[s.offset..s.end()];
    let halves = |s: super::Section| -> Vec<f32> {
        section(s)
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()
    };
    let codebook = read_f32s(section(layout.codebook));
    let codes = section(layout.codes);
    let (group, scales, offsets) = match codec.group() {
        Some(group) => (group, halves(layout.scales), halves(layout.offsets)),
        None => (cols, read_f32s(section(layout.scales)), Vec::new()),
    };
    let groups = cols.div_ceil(group.max(1));
    let nibbles = codec.code_bits() == 4;
    let mut out = vec![0f32; rows * cols];
    for (r, row) in out.chunks_mut(cols.max(1)).enumerate() {
        let per_row = r * groups..(r + 1) * groups;
        decode_row(
            RowCodes {
                codes: &codes[r * layout.code_stride..],
                nibbles,
            },
            &codebook,
            group,
            &scales[per_row.clone()],
            offsets.get(per_row).unwrap_or_default(),
            row,
        );
    }
    out
}

/// One row's codes: bytes, or two 4-bit codes a byte (the even column in the low nibble).
pub struct RowCodes<'a> {
    pub codes: &'a [u8],
    pub nibbles: bool,
}

/// One row of a LUT codec, `out[c] = scales[g] · codebook[code(c)] + offsets[g]` for the group
/// g = c / group (no offset when `offsets` is empty): the reference decode and the packed CPU
/// engine's tile decode.
pub fn decode_row(
    codes: RowCodes,
    codebook: &[f32],
    group: usize,
    scales: &[f32],
    offsets: &[f32],
    out: &mut [f32],
) {
    // Every code indexes a 256-entry table without a bounds check (the packed engine's
    // codebooks are padded to 256; a shorter one is copied padded): decoding a prefill's
    // weight tiles was ~30 % of a 42-token prefill with checked, per-element branching.
    let padded;
    let codebook: &[f32; 256] = match codebook.try_into() {
        Ok(cb) => cb,
        Err(_) => {
            let mut cb = [0f32; 256];
            let n = codebook.len().min(256);
            cb[..n].copy_from_slice(&codebook[..n]);
            padded = cb;
            &padded
        }
    };
    let group = group.max(1);
    for (g, out) in out.chunks_mut(group).enumerate() {
        let (s, start) = (scales[g], g * group);
        if !codes.nibbles {
            for (w, &q) in out.iter_mut().zip(&codes.codes[start..]) {
                *w = s * codebook[q as usize];
            }
        } else if start.is_multiple_of(2) {
            for (pair, &b) in out.chunks_mut(2).zip(&codes.codes[start / 2..]) {
                pair[0] = s * codebook[(b & 0x0f) as usize];
                if let Some(w) = pair.get_mut(1) {
                    *w = s * codebook[(b >> 4) as usize];
                }
            }
        } else {
            // An odd group (no codec makes one for 4-bit codes): column by column.
            for (i, w) in out.iter_mut().enumerate() {
                let c = start + i;
                *w = s * codebook[((codes.codes[c / 2] >> ((c % 2) * 4)) & 0x0f) as usize];
            }
        }
        if let Some(&o) = offsets.get(g) {
            out.iter_mut().for_each(|w| *w += o);
        }
    }
}
