//! Every packed kernel set against the f32 reference (decode, then a plain product) on odd
//! shapes, for every codec, one token and batches: like the GPU ops tests (tests/gpu_ops.rs).

use super::checks::decode_codebook;
use super::kernels::{self, Levels4, Levels8};
use super::matrix::RowScratch;
use super::{Kernels, PackedMatrix};
use crate::codec::{decode, encode, Codec};
use half::f16;

/// Bell-ish weights with a few outliers, deterministic (the attention tests' inputs too).
pub(crate) fn weights(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            if i % 97 == 5 {
                u * 8.0
            } else {
                u * u * u * 4.0 + u * 0.3
            }
        })
        .collect()
}

fn codecs() -> Vec<Codec> {
    [
        "f32", "f16", "qins8", "lut8", "int8", "lut8g", "lut8a", "lut4", "lut4a", "int4",
    ]
    .iter()
    .flat_map(|n| {
        let groups: &[usize] = match *n {
            "lut8g" | "lut8a" => &[32, 12],
            "lut4" | "lut4a" | "int4" => &[32, 6],
            _ => &[32],
        };
        groups.iter().map(|&g| Codec::from_name(n, g).unwrap())
    })
    .collect()
}

/// Shapes that leave remainders everywhere: columns not a multiple of 8 or of the group,
/// a single row, a single column, rows not a multiple of the task size.
const SHAPES: &[(usize, usize)] = &[(1, 1), (3, 7), (33, 65), (70, 130), (5, 576), (64, 31)];

#[test]
fn every_kernel_set_matches_the_decoded_reference() {
    // Exactly: the integer kernels (tested below) quantize the activations.
    for k in Kernels::available().into_iter().map(Kernels::exact) {
        for codec in codecs() {
            for &(rows, cols) in SHAPES {
                let (bytes, _) = encode(codec, &weights(rows * cols, 7), rows, cols).unwrap();
                let w = decode(codec, &bytes, rows, cols).unwrap();
                let m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
                for n in [1, 2, 3, 9] {
                    let x = weights(n * cols, 11 + n as u32);
                    let got = m.matmul_t_with(&k, &x, n);
                    for t in 0..n {
                        for r in 0..rows {
                            let xr = &x[t * cols..(t + 1) * cols];
                            let wr = &w[r * cols..(r + 1) * cols];
                            let want: f64 = xr.iter().zip(wr).map(|(a, b)| (a * b) as f64).sum();
                            let scale: f64 =
                                xr.iter().zip(wr).map(|(a, b)| (a * b).abs() as f64).sum();
                            let err = (got[t * rows + r] as f64 - want).abs();
                            assert!(
                                err <= 1e-5 * scale + 1e-6,
                                "{} {}: {rows}x{cols}, n={n}, [{t},{r}]: {} vs {want}",
                                k.name,
                                codec.name(),
                                got[t * rows + r]
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_set_s_attention_products_match_the_formula() {
    // Head widths off and on the SIMD widths (and past AVX2's 64 registered columns), key
    // counts off and on its 4 a pass, rows apart by more than a head (GQA's strided rows).
    for k in Kernels::available() {
        for d in [1, 7, 8, 9, 63, 64, 65, 100, 136] {
            for rows in [0, 1, 3, 4, 5, 9] {
                let stride = d + 3;
                let q = weights(d, 1);
                let m = weights(rows.max(1) * stride, 2);
                // The f16 kernels on the same rows as f16 bits, against the formula on the
                // values those bits hold.
                let m16: Vec<u16> = m.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
                let m_of16: Vec<f32> = m16.iter().map(|&h| f16::from_bits(h).to_f32()).collect();
                let (p, out0) = (weights(rows, 3), weights(d, 4));
                for (precision, m_want) in [("f32", &m), ("f16", &m_of16)] {
                    let mut scores = vec![0f32; rows];
                    match precision {
                        "f32" => (k.scores_f32)(&q, &m, stride, &mut scores),
                        _ => (k.scores_f16)(&q, &m16, stride, &mut scores),
                    }
                    for (j, got) in scores.iter().enumerate() {
                        let want: f32 = (0..d).map(|c| q[c] * m_want[j * stride + c]).sum();
                        let bound = 1e-5 * (1.0 + want.abs());
                        let what = format!("{} {precision} scores d={d} [{j}]", k.name);
                        assert!((got - want).abs() <= bound, "{what}: {got} vs {want}");
                    }
                    let mut out = out0.clone();
                    match precision {
                        "f32" => (k.weighted_sum_f32)(&p, &m, stride, &mut out),
                        _ => (k.weighted_sum_f16)(&p, &m16, stride, &mut out),
                    }
                    for (c, got) in out.iter().enumerate() {
                        let sum: f32 = (0..rows).map(|j| p[j] * m_want[j * stride + c]).sum();
                        let want = out0[c] + sum;
                        let bound = 1e-5 * (1.0 + want.abs());
                        let what = format!("{} {precision} sum d={d} rows={rows} [{c}]", k.name);
                        assert!((got - want).abs() <= bound, "{what}: {got} vs {want}");
                    }
                }
            }
        }
    }
}

/// Shapes the integer kernels take: columns in whole blocks of 32.
const BLOCK_SHAPES: &[(usize, usize)] =
    &[(1, 32), (3, 64), (33, 96), (70, 160), (5, 576), (2, 1056)];

#[test]
fn the_integer_kernels_stay_within_the_quantization_bound() {
    // Each set with an integer kernel, and the portable 8-bit one.
    let mut sets = Kernels::available();
    sets.push(Kernels::portable_integer());
    sets.push(portable_expanded());
    assert!(sets
        .iter()
        .any(|k| k.name == "portable" && k.row4_q16.is_some()));
    for k in &sets {
        // Prompts too, to test the expanded kernels' passes of several tokens.
        let k = &Kernels {
            prompt_tiles_from: usize::MAX,
            ..*k
        };
        let codecs = [
            ("lut4", k.row4_q16.is_some()),
            ("lut4a", k.row4_q16.is_some()),
            ("int4", k.row4_q16.is_some()),
            ("lut8g", k.row8_q16.is_some() || k.rows8_expanded.is_some()),
            ("lut8a", k.row8_q16.is_some() || k.rows8_expanded.is_some()),
        ];
        for (codec, _) in codecs.iter().filter(|(_, has)| *has) {
            for group in [32, 64] {
                let codec = Codec::from_name(codec, group).unwrap();
                for &(rows, cols) in BLOCK_SHAPES {
                    let (bytes, _) = encode(codec, &weights(rows * cols, 5), rows, cols).unwrap();
                    let w = decode(codec, &bytes, rows, cols).unwrap();
                    let mut m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
                    // Sets that read 8-bit levels expanded at load (one token and two):
                    // groups of one block are, others keep their exact f32 products.
                    let expanded = m.expand_levels(k, usize::MAX);
                    let expands = k.rows8_expanded.is_some() && codec.code_bits() == 8;
                    assert_eq!(expanded > 0, expands && group == 32, "{}", k.name);
                    assert_eq!(m.expand_levels(k, 0), 0, "over the budget");
                    let codebook = decode_codebook(codec, rows, cols, &bytes);
                    // How far a level may be from its codebook entry, per unit of scale.
                    let level_error = match codec.code_bits() {
                        4 => Levels4::new(&codebook).step * 0.5,
                        _ => Levels8::new(&codebook.try_into().unwrap()).unwrap().step * 0.5,
                    };
                    // Token counts that take each of the kernels' 4-, 2- and 1-token passes.
                    for n in [1, 2, 3, 5, 8] {
                        let x = weights(n * cols, 3 + n as u32);
                        let got = m.matmul_t_with(k, &x, n);
                        for t in 0..n {
                            let xr = &x[t * cols..(t + 1) * cols];
                            for r in 0..rows {
                                let wr = &w[r * cols..(r + 1) * cols];
                                let want: f64 =
                                    xr.iter().zip(wr).map(|(a, b)| (a * b) as f64).sum();
                                let bound = q16_bound(xr, wr, &m, r, level_error, group);
                                let err = (got[t * rows + r] as f64 - want).abs();
                                assert!(
                                    err <= bound,
                                    "{} {}: {rows}x{cols} n={n} [{t},{r}]: {} vs {want}, bound {bound}",
                                    k.name,
                                    codec.name(),
                                    got[t * rows + r]
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The 8-bit integer kernels of every set hold the largest products in their i32 sums
/// (`checks`; the browser runs the same check on SIMD128).
#[test]
fn the_8_bit_integer_kernels_hold_the_largest_products() {
    let mut sets = Kernels::available();
    sets.push(Kernels::portable_integer());
    sets.push(portable_expanded());
    for k in &sets {
        super::checks::assert_8_bit_kernels_hold_the_largest_products(k);
    }
}

/// The most a row's integer product may differ from the exact one: each activation rounds by
/// at most half its block's step (amax / 32767), each weight's level by `level_error` times
/// its group's scale; plus f32 rounding.
fn q16_bound(
    x: &[f32],
    w: &[f32],
    m: &PackedMatrix,
    r: usize,
    level_error: f32,
    group: usize,
) -> f64 {
    let mut scales = Vec::new();
    m.scales(r, &mut scales);
    let mut bound = 0f64;
    for (b, (x, w)) in x.chunks(32).zip(w.chunks(32)).enumerate() {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for (i, (&x, &w)) in x.iter().zip(w).enumerate() {
            let scale = scales[(32 * b + i) / group].abs() as f64;
            bound += w.abs() as f64 * amax / 65534.0 + scale * level_error as f64 * x.abs() as f64;
        }
    }
    let exact: f64 = x.iter().zip(w).map(|(a, b)| (a * b).abs() as f64).sum();
    bound * 1.001 + 1e-5 * exact + 1e-6
}

/// The portable set with the portable kernel for expanded levels (the SIMD ones' fallback).
fn portable_expanded() -> Kernels {
    Kernels {
        name: "portable expanded",
        rows8_expanded: Some(kernels::rows8_expanded),
        ..Kernels::PORTABLE
    }
}

/// Expanded matrices keep their levels instead of their codes (2 bytes a weight for 1), and
/// decode rows (embedding rows, prompt tiles) from them within half a level's step of the
/// codebook's value, times the group's scale.
#[test]
fn expanded_rows_decode_within_half_a_level_of_the_codes() {
    for name in ["lut8g", "lut8a"] {
        let codec = Codec::from_name(name, 32).unwrap();
        let (rows, cols) = (9, 96);
        let (bytes, _) = encode(codec, &weights(rows * cols, 3), rows, cols).unwrap();
        let want = decode(codec, &bytes, rows, cols).unwrap();
        let mut m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
        let codes = m.stored_bytes();
        assert_eq!(
            m.expand_levels(&portable_expanded(), usize::MAX),
            2 * rows * cols
        );
        assert_eq!(
            m.stored_bytes(),
            codes - rows * cols + 2 * rows * cols,
            "{name}"
        );
        let codebook = decode_codebook(codec, rows, cols, &bytes);
        let half_step = Levels8::new(&codebook.try_into().unwrap()).unwrap().step * 0.5;
        let mut got = vec![0f32; (rows - 2) * cols];
        m.decode_rows(2, &mut got);
        let mut scales = Vec::new();
        for (i, (g, w)) in got.iter().zip(&want[2 * cols..]).enumerate() {
            let (r, c) = (2 + i / cols, i % cols);
            m.scales(r, &mut scales);
            let bound = scales[c / 32].abs() * half_step * 1.001 + 1e-6 * w.abs();
            assert!((g - w).abs() <= bound, "{name} [{r},{c}]: {g} vs {w}");
        }
    }
}

#[test]
fn rows_decode_as_the_reference_does() {
    for codec in codecs() {
        let (rows, cols) = (9, 75);
        let (bytes, _) = encode(codec, &weights(rows * cols, 3), rows, cols).unwrap();
        let want = decode(codec, &bytes, rows, cols).unwrap();
        let m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
        let mut got = vec![0f32; (rows - 2) * cols];
        m.decode_rows(2, &mut got);
        assert_eq!(got, want[2 * cols..], "{}", codec.name());
    }
}

#[test]
fn every_set_decodes_tile_rows_as_the_reference_does() {
    // Bit for bit: a tile's rows are the reference's rows, their scales' buffers shared from
    // row to row. 200 and 583 columns leave part of a 64-column block; groups of 12 do not
    // fill whole vectors; 576 columns in groups of 32 are expanded by the sets that expand.
    let tile = |m: &PackedMatrix, k: &Kernels, rows: usize, cols: usize| {
        let mut got = vec![f32::NAN; rows * cols];
        let scratch = &mut RowScratch::default();
        for (r, row) in got.chunks_exact_mut(cols).enumerate() {
            m.decode_row_with(k, r, row, scratch);
        }
        got
    };
    for k in Kernels::available() {
        for codec in codecs() {
            for (rows, cols) in [(3, 200), (2, 583), (3, 576)] {
                let (bytes, _) = encode(codec, &weights(rows * cols, 9), rows, cols).unwrap();
                let want = decode(codec, &bytes, rows, cols).unwrap();
                let mut m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
                let name = format!("{} {} {rows}x{cols}", k.name, codec.name());
                assert_eq!(tile(&m, &k, rows, cols), want, "{name}");
                // Expanded rows are the levels' values (within half a step of the codebook's,
                // tested above), the same whether decoded in a tile or one by one.
                if m.expand_levels(&k, usize::MAX) > 0 {
                    let mut one_by_one = vec![0f32; rows * cols];
                    m.decode_rows(0, &mut one_by_one);
                    assert_eq!(tile(&m, &k, rows, cols), one_by_one, "{name} expanded");
                }
            }
        }
    }
}

#[test]
fn a_tensor_of_the_wrong_size_is_refused() {
    let codec = Codec::from_name("lut8g", 32).unwrap();
    let (bytes, _) = encode(codec, &weights(4 * 64, 1), 4, 64).unwrap();
    for bad in [&bytes[..bytes.len() - 1], &bytes[..0]] {
        let err = PackedMatrix::new(codec, 4, 64, bad).err().expect("refused");
        assert!(err.to_string().contains("bytes"), "{err}");
    }
    assert!(PackedMatrix::new(codec, 5, 64, &bytes).is_err());
}
