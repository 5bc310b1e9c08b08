//! Weight codecs. Every quantized matrix is
//! `w[r][c] = scale[r, group(c)] * codebook[code[r][c]] + offset[r, group(c)]`
//! (offset 0 for the symmetric codecs), so one LUT kernel per code width decodes them all; a
//! codebook is data, not code.
//!
//! Byte layout of one stored tensor (all little-endian, each section starting at a multiple of
//! [`SECTION_ALIGN`] bytes from the tensor's start so a GPU can bind it in place):
//! `codebook` (n × f32) · `scales` (f32 per row for qins8/lut8/int8, f16 per group for the
//! grouped codecs) · `offsets` (f16 per group, affine codecs only; empty otherwise) · `codes`
//! (rows × stride bytes, stride = row bytes rounded up to 4).
//! Float codecs hold only the values (`codes` section).

mod float;
mod kmeans;
mod lut;
mod qins;
mod stats;

use serde::{Deserialize, Serialize};

use crate::{QinsError, Result};
pub(crate) use lut::{decode_row, RowCodes};
pub use stats::ErrorStats;

/// Alignment of sections inside a tensor and of tensors in the archive's byte stream:
/// WebGPU's minStorageBufferOffsetAlignment is at most 256.
pub const SECTION_ALIGN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Codec {
    F32,
    F16,
    /// The original QINS projective codebook: sign bit + magnitude index k, value ±1/k
    /// (k = 1..128), per-row absmax scale.
    Qins8,
    /// 256-entry codebook learned per tensor, per-row absmax scale.
    Lut8,
    /// 256-entry codebook learned per tensor, f16 scale per group of `group` columns (a
    /// multiple of 4, so one code word has one scale) and, with `offset`, an f16 offset per
    /// group: Q8_0's layout with a learned codebook (`lut8g`), or an affine one (`lut8a`).
    Lut8g {
        group: usize,
        #[serde(default)]
        offset: bool,
    },
    /// 16-entry codebook learned per tensor, f16 scale per group of `group` columns and, with
    /// `offset` (`lut4a`), an f16 offset per group, as Q4_1 and Q4_K have.
    Lut4 {
        group: usize,
        #[serde(default)]
        offset: bool,
    },
    /// Baseline: uniform 8-bit levels k/127, per-row absmax scale (the lut8 layout).
    Int8,
    /// Baseline: uniform 4-bit levels k/7 (k = −7..7), f16 absmax group scales (the lut4 layout).
    Int4 {
        group: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Section {
    pub offset: usize,
    pub len: usize,
}

impl Section {
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// Where each part of an encoded tensor lies, relative to the tensor's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub codebook: Section,
    pub scales: Section,
    /// Empty unless the codec has per-group offsets.
    pub offsets: Section,
    pub codes: Section,
    /// Bytes of one row of codes (a multiple of 4).
    pub code_stride: usize,
    pub total: usize,
}

pub fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

impl Codec {
    /// Parses a command-line name such as `lut8` or `lut4`; `group` applies to the grouped
    /// codecs (lut8g, lut8a, lut4, lut4a, int4).
    pub fn from_name(name: &str, group: usize) -> Result<Self> {
        let codec = match name {
            "f32" => Codec::F32,
            "f16" => Codec::F16,
            "qins8" => Codec::Qins8,
            "lut8" => Codec::Lut8,
            "lut8g" | "lut8a" => Codec::Lut8g {
                group,
                offset: name == "lut8a",
            },
            "int8" => Codec::Int8,
            "lut4" | "lut4a" => Codec::Lut4 {
                group,
                offset: name == "lut4a",
            },
            "int4" => Codec::Int4 { group },
            other => {
                return Err(QinsError::Codec(format!(
                    "unknown codec '{other}' (expected qins8, lut8, lut8g, lut8a, lut4, lut4a, \
                     int8, int4, f16 or f32)"
                )))
            }
        };
        codec.check()?;
        Ok(codec)
    }

    /// Refuses group sizes the kernels cannot decode (a manifest is checked the same way).
    pub fn check(&self) -> Result<()> {
        let (group, multiple) = match self {
            Codec::Lut8g { group, .. } => (*group, 4),
            Codec::Lut4 { group, .. } | Codec::Int4 { group } => (*group, 2),
            _ => return Ok(()),
        };
        if group == 0 || group % multiple != 0 {
            return Err(QinsError::Codec(format!(
                "{} group size must be a positive multiple of {multiple}, got {group}",
                self.name()
            )));
        }
        Ok(())
    }

    pub fn name(&self) -> String {
        match self {
            Codec::F32 => "f32".into(),
            Codec::F16 => "f16".into(),
            Codec::Qins8 => "qins8".into(),
            Codec::Lut8 => "lut8".into(),
            Codec::Lut8g {
                group,
                offset: false,
            } => format!("lut8g-g{group}"),
            Codec::Lut8g {
                group,
                offset: true,
            } => format!("lut8a-g{group}"),
            Codec::Lut4 {
                group,
                offset: false,
            } => format!("lut4-g{group}"),
            Codec::Lut4 {
                group,
                offset: true,
            } => format!("lut4a-g{group}"),
            Codec::Int8 => "int8".into(),
            Codec::Int4 { group } => format!("int4-g{group}"),
        }
    }

    pub fn codebook_len(&self) -> usize {
        match self {
            Codec::Qins8 | Codec::Lut8 | Codec::Lut8g { .. } | Codec::Int8 => 256,
            Codec::Lut4 { .. } | Codec::Int4 { .. } => 16,
            Codec::F32 | Codec::F16 => 0,
        }
    }

    /// Columns per f16 scale for the grouped layouts; None for per-row and float codecs.
    pub fn group(&self) -> Option<usize> {
        match self {
            Codec::Lut8g { group, .. } | Codec::Lut4 { group, .. } | Codec::Int4 { group } => {
                Some(*group)
            }
            _ => None,
        }
    }

    /// Whether groups carry an f16 offset besides their scale.
    pub fn has_offset(&self) -> bool {
        matches!(
            self,
            Codec::Lut8g { offset: true, .. } | Codec::Lut4 { offset: true, .. }
        )
    }

    /// Bits per code: 4 for the nibble layouts, 8 for the byte ones, 0 for floats.
    pub fn code_bits(&self) -> usize {
        match self.codebook_len() {
            16 => 4,
            256 => 8,
            _ => 0,
        }
    }

    pub fn is_lut(&self) -> bool {
        self.codebook_len() > 0
    }

    /// The byte layout of a `rows × cols` tensor; checked arithmetic because shapes come from
    /// files.
    pub fn layout(&self, rows: usize, cols: usize) -> Result<Layout> {
        self.check()?;
        let overflow = || QinsError::Codec(format!("tensor shape {rows}x{cols} is too large"));
        let n = rows.checked_mul(cols).ok_or_else(overflow)?;
        let (codebook_bytes, scale_bytes, row_bytes) = match (self, self.group()) {
            (Codec::F32, _) => (0, 0, cols.checked_mul(4).ok_or_else(overflow)?),
            (Codec::F16, _) => (0, 0, cols.checked_mul(2).ok_or_else(overflow)?),
            (_, Some(group)) => {
                let groups = cols.div_ceil(group);
                let scales = rows.checked_mul(groups).and_then(|g| g.checked_mul(2));
                let row_bytes = if self.code_bits() == 4 {
                    cols.div_ceil(2)
                } else {
                    cols
                };
                (
                    self.codebook_len() * 4,
                    scales.ok_or_else(overflow)?,
                    row_bytes,
                )
            }
            (_, None) => (256 * 4, rows.checked_mul(4).ok_or_else(overflow)?, cols),
        };
        // Float tensors are one contiguous array (no per-row padding) so vectors read as-is.
        let (code_stride, codes_len) = if self.is_lut() {
            let stride = align_up(row_bytes, 4);
            (stride, rows.checked_mul(stride).ok_or_else(overflow)?)
        } else {
            let elem = if *self == Codec::F32 { 4 } else { 2 };
            (
                row_bytes,
                align_up(n.checked_mul(elem).ok_or_else(overflow)?, 4),
            )
        };
        let codebook = Section {
            offset: 0,
            len: codebook_bytes,
        };
        let scales = Section {
            offset: align_up(codebook.len, SECTION_ALIGN),
            len: scale_bytes,
        };
        let offsets = Section {
            offset: align_up(scales.end(), SECTION_ALIGN),
            len: if self.has_offset() { scale_bytes } else { 0 },
        };
        let codes_offset = if self.is_lut() {
            align_up(offsets.end(), SECTION_ALIGN)
        } else {
            0
        };
        let codes = Section {
            offset: codes_offset,
            len: codes_len,
        };
        Ok(Layout {
            codebook,
            scales,
            offsets,
            codes,
            code_stride,
            total: codes.offset + codes.len,
        })
    }
}

/// How much an error in each input column (a weight matrix's column) costs: the learned codecs
/// minimise Σ importance[c]·(w − ŵ)² instead of the plain squared error. With the mean square of
/// the activations entering column c (measured on a calibration text), this is the expected
/// squared error of the layer's output under a diagonal approximation of the activations'
/// second moments, the weighting AWQ- and SqueezeLLM-style fitting use.
#[derive(Debug, Clone, Copy, Default)]
pub enum Importance<'a> {
    /// Every column counts the same (no calibration).
    #[default]
    Uniform,
    /// One non-negative weight per column.
    PerColumn(&'a [f32]),
}

impl Importance<'_> {
    fn of(&self, c: usize) -> f64 {
        match self {
            Importance::Uniform => 1.0,
            Importance::PerColumn(v) => v[c] as f64,
        }
    }
}

/// Encodes a row-major `rows × cols` matrix (a vector is one row). Returns the stored bytes and
/// the reconstruction error measured on the decoded values.
pub fn encode(
    codec: Codec,
    data: &[f32],
    rows: usize,
    cols: usize,
) -> Result<(Vec<u8>, ErrorStats)> {
    encode_weighted(codec, data, rows, cols, Importance::Uniform)
}

/// [`encode`] with the squared errors of the grouped learned codecs (lut8g/lut8a, lut4/lut4a)
/// weighted per column in their scale and offset fit; the other codecs ignore `importance`.
pub fn encode_weighted(
    codec: Codec,
    data: &[f32],
    rows: usize,
    cols: usize,
    importance: Importance,
) -> Result<(Vec<u8>, ErrorStats)> {
    if let Importance::PerColumn(v) = importance {
        let invalid = v.iter().filter(|a| !a.is_finite() || **a < 0.0).count();
        if v.len() != cols || invalid > 0 {
            return Err(QinsError::Codec(format!(
                "importance needs {cols} finite non-negative weights, got {} ({invalid} invalid)",
                v.len()
            )));
        }
    }
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(QinsError::Codec(format!(
            "{} values given for a {rows}x{cols} tensor",
            data.len()
        )));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(QinsError::Codec(format!(
            "non-finite weight {} at row {}, column {}",
            data[i],
            i / cols.max(1),
            i % cols.max(1)
        )));
    }
    let layout = codec.layout(rows, cols)?;
    let mut out = vec![0u8; layout.total];
    match codec {
        Codec::F32 => float::encode_f32(data, &mut out),
        Codec::F16 => float::encode_f16(data, &mut out),
        Codec::Qins8 => qins::encode(data, rows, cols, &layout, &mut out),
        Codec::Lut8 => lut::encode_lut8(data, rows, cols, &layout, &mut out),
        Codec::Lut8g { .. } | Codec::Lut4 { .. } => {
            lut::encode_grouped(codec, data, rows, cols, None, importance, &layout, &mut out)?
        }
        Codec::Int8 => lut::encode_int8(data, rows, cols, &layout, &mut out),
        Codec::Int4 { .. } => lut::encode_int4(codec, data, rows, cols, &layout, &mut out)?,
    }
    let decoded = decode(codec, &out, rows, cols)?;
    Ok((out, ErrorStats::measure(data, &decoded)))
}

/// Decodes stored bytes back to f32 (the CPU reference of every GPU dequant kernel).
pub fn decode(codec: Codec, bytes: &[u8], rows: usize, cols: usize) -> Result<Vec<f32>> {
    let layout = codec.layout(rows, cols)?;
    if bytes.len() < layout.total {
        return Err(QinsError::Codec(format!(
            "{} bytes given, a {rows}x{cols} {} tensor needs {}",
            bytes.len(),
            codec.name(),
            layout.total
        )));
    }
    let n = rows * cols;
    Ok(match codec {
        Codec::F32 => float::decode_f32(&bytes[..n * 4]),
        Codec::F16 => float::decode_f16(&bytes[..n * 2]),
        _ => lut::decode(codec, bytes, rows, cols, &layout),
    })
}

/// The stored bytes of a `rows × cols` tensor whose rows cycle through the `sample_rows` rows
/// that `sample` encodes (row r is the sample's row r mod sample_rows): the codebook as it is,
/// each row's scales, offsets and codes copied. Every section is per row in row order, so this
/// is byte for byte the encoding of the periodic matrix with the sample's codebook. It lets a
/// synthetic speed archive of a large model's exact shapes and stored sizes be made without
/// fitting every row (`qins-convert --repeat-rows`).
pub fn repeat_rows(
    codec: Codec,
    sample: &[u8],
    sample_rows: usize,
    rows: usize,
    cols: usize,
) -> Result<Vec<u8>> {
    let from = codec.layout(sample_rows, cols)?;
    let to = codec.layout(rows, cols)?;
    if sample_rows == 0 || sample.len() < from.total {
        return Err(QinsError::Codec(format!(
            "a sample of {sample_rows} rows of {cols} in {} needs {} bytes, got {}",
            codec.name(),
            from.total,
            sample.len()
        )));
    }
    let mut out = vec![0u8; to.total];
    let codebook = from.codebook;
    out[to.codebook.offset..to.codebook.end()]
        .copy_from_slice(&sample[codebook.offset..codebook.end()]);
    // Bytes per row of each section: scales and offsets hold the same count per row, and float
    // tensors' codes are unpadded rows (code_stride is their row's bytes).
    let per_row = |s: Section| s.len / sample_rows;
    for (src, dst, width) in [
        (from.scales, to.scales, per_row(from.scales)),
        (from.offsets, to.offsets, per_row(from.offsets)),
        (from.codes, to.codes, from.code_stride),
    ] {
        if width == 0 {
            continue;
        }
        for (r, row) in out[dst.offset..dst.offset + rows * width]
            .chunks_exact_mut(width)
            .enumerate()
        {
            let at = src.offset + (r % sample_rows) * width;
            row.copy_from_slice(&sample[at..at + width]);
        }
    }
    Ok(out)
}

/// Bytes to little-endian f32s (the archive's byte order on every target).
pub(crate) fn read_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub(crate) fn write_f32s(values: &[f32], out: &mut [u8]) {
    for (v, o) in values.iter().zip(out.chunks_exact_mut(4)) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

/// Every codec with the layout variants worth testing (group sizes that do not divide a row,
/// offsets): the one list the codec tests and the GPU ops tests iterate, so a codec added here
/// is tested on every path.
pub const TEST_VARIANTS: [Codec; 13] = [
    Codec::F32,
    Codec::F16,
    Codec::Qins8,
    Codec::Lut8,
    Codec::Lut8g {
        group: 32,
        offset: false,
    },
    Codec::Lut8g {
        group: 12,
        offset: true,
    },
    Codec::Lut4 {
        group: 32,
        offset: false,
    },
    Codec::Lut4 {
        group: 6,
        offset: false,
    },
    Codec::Lut4 {
        group: 128,
        offset: false,
    },
    Codec::Lut4 {
        group: 32,
        offset: true,
    },
    Codec::Lut4 {
        group: 6,
        offset: true,
    },
    Codec::Int8,
    Codec::Int4 { group: 32 },
];

#[cfg(test)]
mod tests;
