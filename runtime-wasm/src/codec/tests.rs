//! Codec properties on odd shapes: exact layouts, round trips, error bounds and ordering.

use super::*;
use half::f16;

/// Deterministic bell-shaped test data with a few outliers, like trained weights.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|i| {
            let g = (u() + u() + u() + u() - 2.0) * 0.05;
            if i % 97 == 13 {
                g * 8.0
            } else {
                g
            }
        })
        .collect()
}

const LUT4_G32: Codec = Codec::Lut4 {
    group: 32,
    offset: false,
};

const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 7),
    (3, 5),
    (5, 1),
    (17, 33),
    (64, 31),
    (7, 130),
    (128, 96),
];

fn all_codecs() -> Vec<Codec> {
    TEST_VARIANTS.to_vec()
}

#[test]
fn every_codec_round_trips_on_odd_shapes() {
    for codec in all_codecs() {
        for &(r, c) in SHAPES {
            let w = weights(r * c, (r * 31 + c) as u64);
            let (bytes, err) = encode(codec, &w, r, c).unwrap();
            let layout = codec.layout(r, c).unwrap();
            assert_eq!(bytes.len(), layout.total, "{codec:?} {r}x{c}");
            assert_eq!(layout.code_stride % if codec.is_lut() { 4 } else { 1 }, 0);
            let back = decode(codec, &bytes, r, c).unwrap();
            assert_eq!(back.len(), r * c);
            let measured = ErrorStats::measure(&w, &back);
            assert!(
                (measured.rel_fro - err.rel_fro).abs() < 1e-12,
                "reported error is the decoded error"
            );
            let bound = match codec {
                Codec::F32 => 0.0,
                Codec::F16 => 1e-3,
                Codec::Lut8 | Codec::Lut8g { .. } => 0.03,
                Codec::Qins8 => 0.35,
                Codec::Lut4 { .. } | Codec::Int4 { .. } => 0.2,
                Codec::Int8 => 0.03,
            };
            assert!(
                err.rel_fro <= bound,
                "{codec:?} {r}x{c}: rel error {} > {bound}",
                err.rel_fro
            );
        }
    }
}

#[test]
fn sections_are_aligned_and_disjoint() {
    for codec in all_codecs().into_iter().filter(Codec::is_lut) {
        for &(r, c) in SHAPES {
            let l = codec.layout(r, c).unwrap();
            for s in [l.codebook, l.scales, l.offsets, l.codes] {
                assert_eq!(s.offset % SECTION_ALIGN, 0);
            }
            assert!(l.codebook.end() <= l.scales.offset);
            assert!(l.scales.end() <= l.offsets.offset);
            assert!(l.offsets.end() <= l.codes.offset);
            assert_eq!(l.offsets.len > 0, codec.has_offset());
            assert_eq!(l.codebook.len, codec.codebook_len() * 4);
        }
    }
}

#[test]
fn learned_codebooks_beat_the_projective_one() {
    let (r, c) = (96, 200);
    let w = weights(r * c, 11);
    let sqnr = |codec| encode(codec, &w, r, c).unwrap().1.sqnr_db;
    let (qins8, lut8, lut4) = (sqnr(Codec::Qins8), sqnr(Codec::Lut8), sqnr(LUT4_G32));
    assert!(
        lut8 > qins8 + 10.0,
        "lut8 {lut8:.1} dB vs qins8 {qins8:.1} dB"
    );
    assert!(lut8 > 33.0, "lut8 {lut8:.1} dB");
    assert!(lut4 > 17.0, "lut4 {lut4:.1} dB");
}

/// SQNR of round-to-nearest uniform int8 with a per-row absmax scale.
fn uniform_int8_sqnr(w: &[f32], cols: usize) -> f64 {
    let (mut sig, mut err) = (0f64, 0f64);
    for row in w.chunks(cols) {
        let s = row.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        for &x in row {
            let q = if s > 0.0 { (x / s).round() * s } else { 0.0 };
            sig += (x as f64).powi(2);
            err += ((x - q) as f64).powi(2);
        }
    }
    10.0 * (sig / err).log10()
}

#[test]
fn lut8_is_never_worse_than_uniform_int8() {
    for &(r, c) in &[(7, 130), (96, 200), (64, 31), (200, 96)] {
        let w = weights(r * c, (r + c) as u64);
        let lut8 = encode(Codec::Lut8, &w, r, c).unwrap().1.sqnr_db;
        let int8 = uniform_int8_sqnr(&w, c);
        assert!(
            lut8 >= int8 - 0.05,
            "{r}x{c}: lut8 {lut8:.2} dB < uniform int8 {int8:.2} dB"
        );
    }
}

#[test]
fn zero_rows_and_constant_rows_decode_exactly() {
    for codec in all_codecs() {
        let mut w = vec![0f32; 4 * 9];
        w[18..27].iter_mut().for_each(|v| *v = 0.25);
        let (bytes, _) = encode(codec, &w, 4, 9).unwrap();
        let back = decode(codec, &bytes, 4, 9).unwrap();
        assert!(
            back[..18].iter().all(|&v| v == 0.0),
            "{codec:?}: zero rows stay zero"
        );
        assert!(
            back[18..27].iter().all(|&v| (v - 0.25).abs() < 1e-3),
            "{codec:?}: {back:?}"
        );
    }
}

#[test]
fn qins8_codebook_is_the_projective_one() {
    let (bytes, _) = encode(Codec::Qins8, &[1.0, -0.5, 0.25, 0.0], 1, 4).unwrap();
    let l = Codec::Qins8.layout(1, 4).unwrap();
    let codebook = read_f32s(&bytes[l.codebook.offset..l.codebook.offset + l.codebook.len]);
    assert_eq!(codebook.len(), 256);
    for (b, &value) in codebook.iter().enumerate() {
        let k = (b & 0x7f) + 1;
        let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
        assert_eq!(value, sign / k as f32);
    }
    let codes = &bytes[l.codes.offset..l.codes.offset + 4];
    assert_eq!(codes, &[0x00, 0x81, 0x03, 0x7f]);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(encode(Codec::Lut8, &[1.0, f32::NAN], 1, 2).is_err());
    assert!(encode(Codec::Lut8, &[1.0, 2.0, 3.0], 2, 2).is_err());
    assert!(
        encode(LUT4_G32, &[1e6, 0.0], 1, 2).is_err(),
        "f16 scale overflow"
    );
    assert!(decode(Codec::Lut8, &[0u8; 10], 4, 4).is_err());
    assert!(Codec::Lut8.layout(usize::MAX, 3).is_err());
    assert!(Codec::from_name("lut4", 0).is_err());
    assert!(
        Codec::from_name("lut8g", 6).is_err(),
        "8-bit groups are whole words"
    );
    assert!(Codec::Lut4 {
        group: 3,
        offset: true
    }
    .layout(2, 6)
    .is_err());
    assert!(Codec::from_name("int3", 32).is_err());
}

/// Weights quantized as llama.cpp's Q4_1 does (per 32-weight group: f16 step (max − min)/15,
/// f16 minimum, 16 levels), like SmolLM2's source GGUF: the affine 4-bit codec must find the
/// grid, the symmetric one cannot.
#[test]
fn affine_groups_recover_an_offset_grid() {
    let (r, c) = (24, 96);
    let w = weights(r * c, 5);
    let grid: Vec<f32> = w
        .chunks(32)
        .flat_map(|g| {
            let lo = g.iter().fold(f32::INFINITY, |m, &x| m.min(x));
            let hi = g.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let d = f16::from_f32((hi - lo) / 15.0).to_f32();
            let lo = f16::from_f32(lo).to_f32();
            g.iter()
                .map(move |&x| lo + d * ((x - lo) / d).round().clamp(0.0, 15.0))
                .collect::<Vec<_>>()
        })
        .collect();
    let sqnr = |codec| encode(codec, &grid, r, c).unwrap().1.sqnr_db;
    let affine = sqnr(Codec::Lut4 {
        group: 32,
        offset: true,
    });
    let symmetric = sqnr(LUT4_G32);
    assert!(affine > 45.0, "lut4a on its own grid: {affine:.1} dB");
    assert!(
        affine > symmetric + 15.0,
        "lut4a {affine:.1} dB vs lut4 {symmetric:.1} dB"
    );
}

/// Group scales beat one scale per row at 8 bits on weights with outliers.
#[test]
fn lut8_group_scales_beat_row_scales() {
    let (r, c) = (64, 256);
    let w = weights(r * c, 9);
    let sqnr = |codec| encode(codec, &w, r, c).unwrap().1.sqnr_db;
    let row = sqnr(Codec::Lut8);
    let grouped = sqnr(Codec::Lut8g {
        group: 32,
        offset: false,
    });
    assert!(
        grouped > row + 1.0,
        "lut8g {grouped:.2} dB vs lut8 {row:.2} dB"
    );
}

/// Importance moves the error to the columns that matter: with a few heavy columns (as the
/// activations' outlier channels make them), the weighted error Σ α·(w − ŵ)² drops below the
/// unweighted fit's for every grouped learned codec, and a bad weight vector is refused.
#[test]
fn importance_lowers_the_weighted_error() {
    let (r, c) = (48, 96);
    let w = weights(r * c, 21);
    let alpha: Vec<f32> = (0..c)
        .map(|j| if j % 13 == 5 { 60.0 } else { 0.3 })
        .collect();
    let weighted_error = |bytes: &[u8], codec| {
        let back = decode(codec, bytes, r, c).unwrap();
        w.iter()
            .zip(&back)
            .enumerate()
            .map(|(i, (a, b))| alpha[i % c] as f64 * ((a - b) as f64).powi(2))
            .sum::<f64>()
    };
    for codec in [
        Codec::Lut8g {
            group: 32,
            offset: false,
        },
        LUT4_G32,
        Codec::Lut4 {
            group: 32,
            offset: true,
        },
    ] {
        let plain = encode(codec, &w, r, c).unwrap().0;
        let tuned = encode_weighted(codec, &w, r, c, Importance::PerColumn(&alpha))
            .unwrap()
            .0;
        let (p, t) = (weighted_error(&plain, codec), weighted_error(&tuned, codec));
        assert!(t < 0.9 * p, "{codec:?}: weighted {t:.3e} vs plain {p:.3e}");
    }
    let short = vec![1.0; c - 1];
    let negative: Vec<f32> = (0..c).map(|j| if j == 3 { -1.0 } else { 1.0 }).collect();
    for bad in [&short, &negative] {
        assert!(encode_weighted(LUT4_G32, &w, r, c, Importance::PerColumn(bad)).is_err());
    }
}

#[test]
fn repeated_rows_decode_as_the_sample_cycled() {
    for codec in all_codecs() {
        for (sample_rows, rows, cols) in
            [(1, 4, 7), (3, 3, 33), (3, 10, 5), (5, 17, 130), (2, 9, 1)]
        {
            let w = weights(sample_rows * cols, (sample_rows * 7 + cols) as u64);
            let (sample, _) = encode(codec, &w, sample_rows, cols).unwrap();
            let bytes = repeat_rows(codec, &sample, sample_rows, rows, cols).unwrap();
            assert_eq!(bytes.len(), codec.layout(rows, cols).unwrap().total);
            let want = decode(codec, &sample, sample_rows, cols).unwrap();
            let got = decode(codec, &bytes, rows, cols).unwrap();
            for r in 0..rows {
                let s = r % sample_rows;
                assert_eq!(
                    got[r * cols..(r + 1) * cols],
                    want[s * cols..(s + 1) * cols],
                    "{codec:?} {rows}x{cols} row {r}"
                );
            }
        }
        let (sample, _) = encode(codec, &weights(6, 1), 2, 3).unwrap();
        assert!(repeat_rows(codec, &sample[..sample.len() - 1], 2, 4, 3).is_err());
        assert!(repeat_rows(codec, &sample, 0, 4, 3).is_err());
    }
}
