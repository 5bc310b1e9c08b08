//! A weight matrix kept as the archive stores it, multiplied without expanding it.

use half::f16;

use super::kernels::{
    self, CodeRows, Codebook8, Kernels, Levels4, Levels8, Q16Blocks, Rows4Q16, Rows8Expanded,
    Rows8Q16,
};
use crate::codec::{decode_row, Codec, Layout, RowCodes, Section};
use crate::cpu::ops::{for_each_chunk, matmul_t_by_runs, Rows};
use crate::{QinsError, Result};

/// A `rows × cols` matrix in its stored layout (crate::codec): codebook, scales, offsets and
/// codes, read in place by the kernels.
pub struct PackedMatrix {
    codec: Codec,
    rows: usize,
    cols: usize,
    layout: Layout,
    /// The stored bytes, in words so that f32 and f16 sections can be read as slices.
    words: Vec<u32>,
    /// The codebook (zeros for float codecs), padded to 256 entries so any byte indexes it.
    codebook: Box<Codebook8>,
    /// The 4-bit codebook as integer levels, where the shape suits the integer kernels
    /// (columns and groups in whole blocks of 32).
    levels: Option<Levels4>,
    /// The 8-bit codebook as integer levels, where the shape suits the integer kernels
    /// (columns in whole blocks, groups of one block).
    levels8: Option<Box<Levels8>>,
    /// The 8-bit codes' levels looked up once ([`Self::expand_levels`]), for the kernel sets
    /// whose lookups are slow; the codes are dropped from `words` then.
    expanded: Option<Vec<i16>>,
}

/// A matrix's integer kernel and the levels it reads.
#[derive(Clone, Copy)]
enum Integer<'a> {
    Four(Levels4, Rows4Q16),
    Eight(&'a Levels8, Rows8Q16),
    Expanded(&'a Levels8, Rows8Expanded),
}

/// Rows per parallel work item of a mat-vec: enough work to be worth a task.
const ROWS_PER_TASK: usize = 32;
/// Up to this many tokens a mat-mat is that many mat-vecs: decoding a tile to f32 costs about
/// as much as two mat-vecs over it.
const MATVEC_TOKENS: usize = 2;

impl PackedMatrix {
    /// The matrix stored as `bytes` (checked against the codec's layout for this shape).
    pub fn new(codec: Codec, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        let layout = codec.layout(rows, cols)?;
        if bytes.len() != layout.total {
            return Err(QinsError::Codec(format!(
                "a {rows}x{cols} {} tensor takes {} bytes, the archive has {}",
                codec.name(),
                layout.total,
                bytes.len()
            )));
        }
        let n = bytes.len().div_ceil(4);
        let mut words = Vec::with_capacity(n);
        crate::huge_pages::advise(&words);
        // Built word by word from the bytes, not zeroed first: one write of fresh pages.
        let (whole, tail) = bytes.split_at(bytes.len() / 4 * 4);
        words.extend(
            whole
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        if !tail.is_empty() {
            let mut last = [0u8; 4];
            last[..tail.len()].copy_from_slice(tail);
            words.push(u32::from_le_bytes(last));
        }
        let mut values = [0f32; 256];
        let cb = &bytes[layout.codebook.offset..layout.codebook.end()];
        for (c, b) in values.iter_mut().zip(cb.chunks_exact(4)) {
            *c = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let codebook = Box::new(Codebook8::new(values));
        let blocks = |n: usize| n.is_multiple_of(32);
        let levels = (codec.code_bits() == 4 && blocks(cols) && codec.group().is_some_and(blocks))
            .then(|| Levels4::new(&values));
        let levels8 = (codec.code_bits() == 8 && blocks(cols) && codec.group() == Some(32))
            .then(|| Levels8::new(&values).map(Box::new))
            .flatten();
        Ok(Self {
            codec,
            rows,
            cols,
            layout,
            words,
            codebook,
            levels,
            levels8,
            expanded: None,
        })
    }

    /// Looks the 8-bit codes' levels up once and keeps them instead of the codes (2 bytes a
    /// weight for 1) where `k` has a kernel for them and they take at most `budget` bytes;
    /// returns the bytes of levels (0: nothing expanded). Products then read the levels, and
    /// decoded rows (embedding rows, prompt tiles) are `scale · step · level + offset`, within
    /// `scale · step / 2` of the codebook's value (step: 1/16383 of its largest).
    pub fn expand_levels(&mut self, k: &Kernels, budget: usize) -> usize {
        let (Some(levels), Some(_), None) = (&self.levels8, k.rows8_expanded, &self.expanded)
        else {
            return 0;
        };
        if self.rows * self.cols * 2 > budget {
            return 0;
        }
        let mut out = Vec::with_capacity(self.rows * self.cols);
        crate::huge_pages::advise(&out);
        for r in 0..self.rows {
            kernels::expand_levels(self.codes(r), levels, &mut out);
        }
        let added = out.len() * 2;
        self.expanded = Some(out);
        // The codes are the last section: what precedes them (codebook, scales, offsets) stays.
        self.words.truncate(self.layout.codes.offset.div_ceil(4));
        self.words.shrink_to_fit();
        added
    }

    /// Bytes this matrix keeps: its stored sections (without the codes where expanded) and
    /// expanded levels.
    pub fn stored_bytes(&self) -> usize {
        self.words.len() * 4 + self.expanded.as_ref().map_or(0, |l| l.len() * 2)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn section(&self, s: Section) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.words)[s.offset..s.end()]
    }
    fn halves(&self, s: Section) -> &[u16] {
        bytemuck::cast_slice(self.section(s))
    }
    fn codes(&self, r: usize) -> &[u8] {
        let stride = self.layout.code_stride;
        let start = self.layout.codes.offset + r * stride;
        &bytemuck::cast_slice::<u32, u8>(&self.words)[start..start + self.row_bytes()]
    }
    /// Bytes of one row's codes.
    fn row_bytes(&self) -> usize {
        match self.codec.code_bits() {
            4 => self.cols.div_ceil(2),
            _ => self.cols,
        }
    }

    /// Columns per scale: a group, or the whole row for the per-row codecs.
    fn group(&self) -> usize {
        self.codec.group().unwrap_or(self.cols).max(1)
    }
    fn groups(&self) -> usize {
        self.cols.div_ceil(self.group())
    }

    /// Row `r`'s scales into `out` (one per group).
    pub(super) fn scales(&self, r: usize, out: &mut Vec<f32>) {
        match self.codec.group() {
            Some(_) => self.group_halves(self.layout.scales, r, out),
            None => {
                let s: &[f32] = bytemuck::cast_slice(self.section(self.layout.scales));
                out.clear();
                out.push(s[r]);
            }
        }
    }

    /// Row `r`'s values of a per-group f16 section (scales or offsets) into `out`.
    fn group_halves(&self, section: Section, r: usize, out: &mut Vec<f32>) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        out.resize(self.groups(), 0.0);
        // The slice conversion runs on F16C (or NEON) where the CPU has it.
        self.row_halves(section, r)
            .reinterpret_cast::<f16>()
            .convert_to_f32_slice(out);
    }

    /// Row `r`'s f16 bits of a per-group section (scales or offsets).
    fn row_halves(&self, section: Section, r: usize) -> &[u16] {
        let g = self.groups();
        &self.halves(section)[r * g..(r + 1) * g]
    }

    /// Σ_g offset_g · (Σ of x over group g) for row `r`: what the affine codecs add (an f16
    /// dot product, so the kernels' own).
    fn offset_term(&self, k: &Kernels, r: usize, x_group_sums: &[f32]) -> f32 {
        if !self.codec.has_offset() {
            return 0.0;
        }
        (k.dot_f16)(self.row_halves(self.layout.offsets, r), x_group_sums)
    }

    /// Row `r` times `x` in f32 (`x_group_sums`: x summed per group, for the offsets).
    fn row_dot(
        &self,
        k: &Kernels,
        r: usize,
        x: &[f32],
        x_group_sums: &[f32],
        scratch: &mut Vec<f32>,
    ) -> f32 {
        match self.codec {
            Codec::F32 => {
                let w: &[f32] = bytemuck::cast_slice(self.section(self.layout.codes));
                (k.dot_f32)(&w[r * self.cols..(r + 1) * self.cols], x)
            }
            Codec::F16 => {
                let w = self.halves(self.layout.codes);
                (k.dot_f16)(&w[r * self.cols..(r + 1) * self.cols], x)
            }
            _ => {
                self.scales(r, scratch);
                let codes = self.codes(r);
                let dot = if self.codec.code_bits() == 4 {
                    (k.row4)(codes, &self.codebook, x, self.group(), scratch)
                } else {
                    (k.row8)(codes, &self.codebook, x, self.group(), scratch)
                };
                dot + self.offset_term(k, r, x_group_sums)
            }
        }
    }

    /// The matrix as rows of codes with their scale and offset bits, for the integer kernels.
    fn code_rows(&self) -> CodeRows<'_> {
        CodeRows {
            codes: &bytemuck::cast_slice::<u32, u8>(&self.words)[self.layout.codes.offset..],
            stride: self.layout.code_stride,
            row_bytes: self.row_bytes(),
            scales: self.halves(self.layout.scales),
            offsets: match self.codec.has_offset() {
                true => self.halves(self.layout.offsets),
                false => &[],
            },
            groups: self.groups(),
        }
    }

    /// Whether `k` multiplies this matrix by looking each 8-bit code up on its own in a slow
    /// way (the sets with a kernel for expanded levels), the levels not expanded.
    pub fn slow_lookups(&self, k: &Kernels) -> bool {
        self.codec.code_bits() == 8 && k.rows8_expanded.is_some() && self.expanded.is_none()
    }

    /// The expanded levels as the rows [`Rows8Expanded`] reads (empty where not expanded).
    fn expanded_rows(&self) -> CodeRows<'_> {
        let row_bytes = 2 * self.cols;
        CodeRows {
            codes: bytemuck::cast_slice(self.expanded.as_deref().unwrap_or_default()),
            stride: row_bytes,
            row_bytes,
            ..self.code_rows()
        }
    }

    /// `x` summed over each group of columns (the affine codecs need it).
    fn group_sums(&self, x: &[f32]) -> Vec<f32> {
        if self.codec.has_offset() {
            kernels::group_sums(x, self.group())
        } else {
            Vec::new()
        }
    }

    /// `out[r] = Σ_c w[r][c] · x[c]` with the given kernels.
    pub fn matvec_with(&self, k: &Kernels, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.cols, "activation width");
        assert_eq!(out.len(), self.rows, "output height");
        if self.integer_matmul(k, x, 1, out) {
            return;
        }
        let sums = self.group_sums(x);
        for_each_chunk(out, ROWS_PER_TASK, |t, chunk| {
            let first = t * ROWS_PER_TASK;
            let mut scratch = Vec::with_capacity(self.groups());
            for (i, o) in chunk.iter_mut().enumerate() {
                *o = self.row_dot(k, first + i, x, &sums, &mut scratch);
            }
        });
    }

    /// `n` tokens of `x` ([n, cols]) times the matrix into `out` ([n, rows]) with `k`'s
    /// integer kernel, when the matrix and `k` have one (false otherwise, `out` untouched):
    /// the activations quantized once, each run of rows read once for all the tokens.
    fn integer_matmul(&self, k: &Kernels, x: &[f32], n: usize, out: &mut [f32]) -> bool {
        let expanded = self
            .expanded
            .is_some()
            .then_some(k.rows8_expanded)
            .flatten();
        // Single tokens always take the integer kernels; prompts until tiles pay.
        let short = n <= MATVEC_TOKENS || n < k.prompt_tiles_from;
        let integer = match (self.levels, k.row4_q16, &self.levels8, expanded, k.row8_q16) {
            (Some(levels), Some(kernel), ..) if short => Integer::Four(levels, kernel),
            (_, _, Some(levels), Some(kernel), _) if short => Integer::Expanded(levels, kernel),
            (_, _, Some(levels), None, Some(kernel)) if n == 1 || n < k.row8_q16_prompts_below => {
                Integer::Eight(levels, kernel)
            }
            // Other prompts take f32 tiles, which read the codes once for all their tokens.
            _ => return false,
        };
        if n == 0 {
            return true;
        }
        let per_group = self.group() / 32;
        let tokens: Vec<Q16Blocks> = x
            .chunks_exact(self.cols)
            .map(|x| Q16Blocks::quantize(x, per_group))
            .collect();
        // The kernel writes rows × tokens; one token needs no transposing.
        let mut by_row = (n > 1).then(|| vec![0f32; self.rows * n]);
        let target = by_row.as_deref_mut().unwrap_or(&mut *out);
        for_each_chunk(target, ROWS_PER_TASK * n, |t, chunk| {
            let (rows, first) = (self.code_rows(), t * ROWS_PER_TASK);
            match integer {
                Integer::Four(levels, kernel) => kernel(rows, first, &levels, &tokens, chunk),
                Integer::Eight(levels, kernel) => kernel(rows, first, levels, &tokens, chunk),
                Integer::Expanded(levels, kernel) => {
                    let rows = self.expanded_rows();
                    if !kernel(rows, first, levels.step, &tokens, chunk) {
                        kernels::rows8_expanded(rows, first, levels.step, &tokens, chunk);
                    }
                }
            }
        });
        if let Some(by_row) = by_row {
            for (r, row) in by_row.chunks_exact(n).enumerate() {
                for (t, &v) in row.iter().enumerate() {
                    out[t * self.rows + r] = v;
                }
            }
        }
        true
    }

    /// Rows `r0..r0 + out.len() / cols` decoded to f32 (the embedding's rows, a mat-mat's tile).
    pub fn decode_rows(&self, r0: usize, out: &mut [f32]) {
        for_each_chunk(out, self.cols, |i, row| self.decode_row(r0 + i, row));
    }

    fn decode_row(&self, r: usize, out: &mut [f32]) {
        self.decode_row_with(&Kernels::PORTABLE, r, out, &mut RowScratch::default())
    }

    /// Row `r` decoded, 8-bit codes by `k`'s `decode8` (every set's are bit for bit the
    /// reference's); `scratch` carries the scales' buffers from row to row of a tile.
    pub(super) fn decode_row_with(
        &self,
        k: &Kernels,
        r: usize,
        out: &mut [f32],
        scratch: &mut RowScratch,
    ) {
        if matches!(self.codec, Codec::F32 | Codec::F16) {
            return self.decode_float_row(r, out);
        }
        let RowScratch { scales, offsets } = scratch;
        self.scales(r, scales);
        offsets.clear();
        if self.codec.has_offset() {
            self.group_halves(self.layout.offsets, r, offsets);
        }
        if let (Some(levels), Some(l8)) = (&self.expanded, &self.levels8) {
            let levels = &levels[r * self.cols..][..self.cols];
            return expanded_row(levels, l8.step, scales, offsets, out);
        }
        if self.codec.code_bits() == 8 {
            (k.decode8)(self.codes(r), &self.codebook, self.group(), scales, out);
            for (out, &o) in out.chunks_mut(self.group()).zip(offsets.iter()) {
                out.iter_mut().for_each(|w| *w += o);
            }
        } else {
            let codes = RowCodes {
                codes: self.codes(r),
                nibbles: self.codec.code_bits() == 4,
            };
            let cb = &self.codebook.values;
            decode_row(codes, cb, self.group(), scales, offsets, out);
        }
    }

    fn decode_float_row(&self, r: usize, out: &mut [f32]) {
        if self.codec == Codec::F32 {
            let w: &[f32] = bytemuck::cast_slice(self.section(self.layout.codes));
            return out.copy_from_slice(&w[r * self.cols..(r + 1) * self.cols]);
        }
        let w = self.halves(self.layout.codes);
        for (o, &h) in out.iter_mut().zip(&w[r * self.cols..(r + 1) * self.cols]) {
            *o = f16::from_bits(h).to_f32();
        }
    }

    /// `out[t][r] = Σ_c x[t][c] · w[r][c]` for `n` rows of `x` ([n, cols] → [n, rows]).
    pub fn matmul_t_with(&self, k: &Kernels, x: &[f32], n: usize) -> Vec<f32> {
        let (m, kk) = (self.rows, self.cols);
        assert_eq!(x.len(), n * kk, "activation shape");
        let mut out = vec![0f32; n * m];
        if self.integer_matmul(k, x, n, &mut out) {
            return out;
        }
        if n <= MATVEC_TOKENS {
            for (t, o) in out.chunks_exact_mut(m).enumerate() {
                self.matvec_with(k, &x[t * kk..(t + 1) * kk], o);
            }
            return out;
        }
        // Each run of rows is decoded once for all n tokens, then multiplied by sgemm.
        let decode = |r0: usize, tile: &mut [f32]| {
            let scratch = &mut RowScratch::default();
            for (i, row) in tile.chunks_exact_mut(kk).enumerate() {
                self.decode_row_with(k, r0 + i, row, scratch);
            }
        };
        matmul_t_by_runs(x, n, kk, m, Rows::Decode(&decode))
    }

    /// [`Self::matmul_t_with`] on the fastest kernels this CPU has.
    pub fn matmul_t(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_t_with(Kernels::best(), x, n)
    }
}

/// The buffers a row's decode fills with its scales and offsets as f32, kept over a tile's rows.
#[derive(Default)]
pub(super) struct RowScratch {
    scales: Vec<f32>,
    offsets: Vec<f32>,
}

/// A row from its expanded `levels` (each block's even columns, then its odd ones): `scale ·
/// step · level + offset`.
fn expanded_row(levels: &[i16], step: f32, scales: &[f32], offsets: &[f32], out: &mut [f32]) {
    let blocks = levels.chunks_exact(32).zip(out.chunks_exact_mut(32));
    for (b, (levels, out)) in blocks.enumerate() {
        let (s, o) = (scales[b] * step, offsets.get(b).copied().unwrap_or(0.0));
        let (even, odd) = levels.split_at(16);
        for (pair, (&e, &d)) in out.chunks_exact_mut(2).zip(even.iter().zip(odd)) {
            pair[0] = s * e as f32 + o;
            pair[1] = s * d as f32 + o;
        }
    }
}
