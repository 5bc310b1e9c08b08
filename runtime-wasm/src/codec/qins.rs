//! The original QINS projective codebook: a byte is a sign bit and a magnitude index
//! k ∈ 1..=128 with value ±1/k, times a per-row absmax scale. Its levels crowd near zero
//! (1/127 vs 1/128) and leave a gap between 1 and 1/2, which is why it is lossy.

use super::{write_f32s, Layout};

/// The 256-entry table: byte b = sign << 7 | (k − 1).
pub fn codebook() -> Vec<f32> {
    (0..256u32)
        .map(|b| {
            let k = ((b & 0x7f) + 1) as f32;
            if b & 0x80 != 0 {
                -1.0 / k
            } else {
                1.0 / k
            }
        })
        .collect()
}

/// Byte for a normalized value u ∈ [-1, 1]: the k whose 1/k is nearest to |u|.
pub fn code_for(u: f32) -> u8 {
    let a = u.abs();
    let k = if a <= 1.0 / 128.0 {
        128
    } else {
        // 1/k is decreasing in k: the nearest is one of floor(1/a) and ceil(1/a).
        let lo = (1.0 / a).floor().clamp(1.0, 128.0) as u32;
        let hi = (lo + 1).min(128);
        if (a - 1.0 / lo as f32).abs() <= (a - 1.0 / hi as f32).abs() {
            lo
        } else {
            hi
        }
    };
    let sign = if u < 0.0 { 0x80 } else { 0 };
    sign | (k - 1) as u8
}

pub fn encode(data: &[f32], rows: usize, cols: usize, layout: &Layout, out: &mut [u8]) {
    write_f32s(&codebook(), &mut out[layout.codebook.offset..]);
    let scales: Vec<f32> = data.chunks_exact(cols).map(super::lut::absmax).collect();
    write_f32s(&scales, &mut out[layout.scales.offset..]);
    let codes = &mut out[layout.codes.offset..layout.codes.offset + layout.codes.len];
    super::lut::for_each_row(codes, layout.code_stride, rows, |r, row| {
        let s = scales[r];
        for (c, &w) in data[r * cols..(r + 1) * cols].iter().enumerate() {
            row[c] = code_for(if s > 0.0 { w / s } else { 0.0 });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_nearest_level() {
        let cb = codebook();
        for i in 0..=4000 {
            let u = -1.0 + i as f32 / 2000.0;
            let got = cb[code_for(u) as usize];
            let best = cb.iter().map(|v| (v - u).abs()).fold(f32::MAX, f32::min);
            assert!((got - u).abs() <= best + 1e-6, "u={u} got={got}");
        }
    }
}
