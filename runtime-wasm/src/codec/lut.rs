//! Learned codebooks (lut8, lut4) and the one decode path for every LUT codec.

use half::f16;

use super::kmeans::{fit, Histogram, Nearest};
use super::{read_f32s, write_f32s, Codec, Layout};
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

/// Rounds of (fit the codebook to the scaled weights, then refit each group's scale to the
/// codebook) for lut4: each round lowers the squared error; three get most of the gain.
const LUT4_ROUNDS: usize = 3;

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

/// The scale minimising Σ (w − s·codebook[nearest(w/s)])² for one group, by alternating code
/// assignment and the closed-form least-squares scale, from a few starting points (the absmax
/// start maps the largest weight onto the outermost level; smaller ones clip it, as Q4_K's
/// scale search does).
fn fit_group_scale(g: &[f32], codebook: &[f32], nearest: &Nearest) -> f32 {
    let amax = absmax(g);
    let edge = codebook.iter().fold(0f32, |m, c| m.max(c.abs()));
    if amax == 0.0 || edge == 0.0 {
        return 0.0;
    }
    let error = |s: f32| -> f64 {
        g.iter()
            .map(|&w| {
                let d = (w - s * codebook[nearest.index(w / s)]) as f64;
                d * d
            })
            .sum()
    };
    let mut best = (amax, error(amax));
    for start in [amax / edge, 0.9 * amax / edge, 0.8 * amax / edge] {
        let mut s = start;
        for _ in 0..4 {
            let (mut num, mut den) = (0f64, 0f64);
            for &w in g {
                let c = codebook[nearest.index(w / s)] as f64;
                num += w as f64 * c;
                den += c * c;
            }
            if den <= 0.0 || num <= 0.0 {
                break;
            }
            s = (num / den) as f32;
        }
        // The stored scale is f16: judge the value that will be stored.
        let s = f16::from_f32(s).to_f32();
        if s > 0.0 {
            let e = error(s);
            if e < best.1 {
                best = (s, e);
            }
        }
    }
    best.0
}

/// f16 group scales and one 16-entry codebook for the tensor, fitted jointly; two codes per
/// byte, the even column in the low nibble.
pub fn encode_lut4(
    data: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    layout: &Layout,
    out: &mut [u8],
) -> Result<()> {
    encode_grouped(data, rows, cols, group, None, layout, out)
}

/// The int4 baseline: uniform levels k/7 on absmax group scales, i.e. round-to-nearest int4.
pub fn encode_int4(
    data: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    layout: &Layout,
    out: &mut [u8],
) -> Result<()> {
    let levels: Vec<f32> = (0..16).map(|k| (k as f32 - 8.0).max(-7.0) / 7.0).collect();
    encode_grouped(data, rows, cols, group, Some(levels), layout, out)
}

/// The int8 baseline: uniform levels k/127 on the per-row absmax scale (round-to-nearest int8).
pub fn encode_int8(data: &[f32], rows: usize, cols: usize, layout: &Layout, out: &mut [u8]) {
    let codebook: Vec<f32> = (0..256)
        .map(|k| (k as f32 - 128.0).max(-127.0) / 127.0)
        .collect();
    let scales: Vec<f32> = data.chunks_exact(cols).map(absmax).collect();
    write_rows8(data, rows, cols, &codebook, &scales, layout, out);
}

/// Group-scaled 4-bit codes with a learned codebook (`fixed` None) or a given one.
fn encode_grouped(
    data: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    fixed: Option<Vec<f32>>,
    layout: &Layout,
    out: &mut [u8],
) -> Result<()> {
    let groups = cols.div_ceil(group);
    let mut scales: Vec<f32> = Vec::with_capacity(rows * groups);
    for row in data.chunks_exact(cols) {
        for g in row.chunks(group) {
            let s = f16::from_f32(absmax(g));
            if !s.is_finite() {
                return Err(QinsError::Codec(format!(
                    "a group's largest weight {} overflows the f16 scale",
                    absmax(g)
                )));
            }
            scales.push(s.to_f32());
        }
    }
    let rounds = if fixed.is_some() { 0 } else { LUT4_ROUNDS };
    let mut codebook = fixed.unwrap_or_default();
    for round in 0..rounds {
        let mut hist = Histogram::new(LUT4_BINS);
        for (r, row) in data.chunks_exact(cols).enumerate() {
            for (gi, g) in row.chunks(group).enumerate() {
                let s = scales[r * groups + gi];
                if s > 0.0 {
                    g.iter()
                        .for_each(|&x| hist.add(x / s, (s as f64) * (s as f64)));
                }
            }
        }
        codebook = fit(&hist, 16, LLOYD_ITERS);
        if round + 1 < LUT4_ROUNDS {
            let nearest = Nearest::new(&codebook);
            scales = map_rows(rows, |r| {
                data[r * cols..(r + 1) * cols]
                    .chunks(group)
                    .map(|g| fit_group_scale(g, &codebook, &nearest))
                    .collect()
            });
        }
    }
    let nearest = Nearest::new(&codebook);
    write_f32s(&codebook, &mut out[layout.codebook.offset..]);
    for (s, o) in scales
        .iter()
        .zip(out[layout.scales.offset..].chunks_exact_mut(2))
    {
        o.copy_from_slice(&f16::from_f32(*s).to_le_bytes());
    }
    let codes = &mut out[layout.codes.offset..layout.codes.offset + layout.codes.len];
    for_each_row(codes, layout.code_stride, rows, |r, row| {
        for (c, &x) in data[r * cols..(r + 1) * cols].iter().enumerate() {
            let s = scales[r * groups + c / group];
            let q = nearest.index(if s > 0.0 { x / s } else { 0.0 }) as u8;
            row[c / 2] |= if c % 2 == 0 { q } else { q << 4 };
        }
    });
    Ok(())
}

/// `w[r][c] = scale(r, c) * codebook[code(r, c)]` for qins8, lut8 and lut4 alike.
pub fn decode(codec: Codec, bytes: &[u8], rows: usize, cols: usize, layout: &Layout) -> Vec<f32> {
    let section = |s: super::Section| &bytes[s.offset..s.offset + s.len];
    let codebook = read_f32s(section(layout.codebook));
    let codes = section(layout.codes);
    let mut out = Vec::with_capacity(rows * cols);
    match codec {
        Codec::Lut4 { group } | Codec::Int4 { group } => {
            let groups = cols.div_ceil(group);
            let scales: Vec<f32> = section(layout.scales)
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            for r in 0..rows {
                let row = &codes[r * layout.code_stride..];
                for c in 0..cols {
                    let q = (row[c / 2] >> ((c % 2) * 4)) & 0x0f;
                    out.push(scales[r * groups + c / group] * codebook[q as usize]);
                }
            }
        }
        _ => {
            let scales = read_f32s(section(layout.scales));
            for r in 0..rows {
                let row = &codes[r * layout.code_stride..r * layout.code_stride + cols];
                out.extend(row.iter().map(|&q| scales[r] * codebook[q as usize]));
            }
        }
    }
    out
}
