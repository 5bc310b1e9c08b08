//! Checks of the kernels shared by the native tests (tests.rs) and the browser's
//! (runtime-wasm/tests/web.rs), which cannot reach `cfg(test)` code.

use super::{Kernels, PackedMatrix};
use crate::codec::{encode, Codec};

/// Asserts that `k`'s 8-bit integer kernels, on codes and on levels expanded at load, hold
/// the largest products they can meet — every level ±16383 (weights of one magnitude) times
/// every activation 32767 (equal activations) — in their i32 sums: four products a lane
/// (4 · 16383 · 32767 < 2³¹) before the conversion to f32. Single tokens and prompts.
#[doc(hidden)]
pub fn assert_8_bit_kernels_hold_the_largest_products(k: &Kernels) {
    let k = &Kernels {
        row8_q16_prompts_below: usize::MAX,
        prompt_tiles_from: usize::MAX,
        ..*k
    };
    // Rows 0 and 1 alternate signs by column (a lane's four products share a sign), rows 2
    // and 3 are constant (for lut8a, whose offsets take a constant row).
    let (rows, cols) = (4, 96);
    let sign = |r: usize, c: usize| match r {
        0 | 1 if c % 2 == 1 => -1.0,
        3 => -1.0,
        _ => 1.0,
    };
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| 0.75 * sign(i / cols, i % cols))
        .collect();
    for name in ["lut8g", "lut8a"] {
        let codec = Codec::from_name(name, 32).unwrap();
        let (bytes, _) = encode(codec, &w, rows, cols).unwrap();
        // The weights are the codebook's largest entry times their scale: levels ±16383.
        let largest = decode_codebook(codec, rows, cols, &bytes)
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let mut scales = Vec::new();
        PackedMatrix::new(codec, rows, cols, &bytes)
            .unwrap()
            .scales(0, &mut scales);
        assert!(
            (largest * scales[0].abs() - 0.75).abs() < 1e-3,
            "{name}: {largest}"
        );
        for expand in [false, true] {
            let integer = match expand {
                true => k.rows8_expanded.is_some(),
                false => k.row8_q16.is_some(),
            };
            if !integer {
                continue;
            }
            let mut m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
            if expand {
                assert!(m.expand_levels(k, usize::MAX) > 0, "{} {name}", k.name);
            }
            for n in [1, 2, 5] {
                let got = m.matmul_t_with(k, &vec![2.0; n * cols], n);
                for (i, g) in got.iter().enumerate() {
                    let want: f32 = (0..cols).map(|c| 1.5 * sign(i % rows, c)).sum();
                    assert!(
                        (g - want).abs() < 0.05,
                        "{} {name} expanded {expand} n={n} [{i}]: {g}",
                        k.name
                    );
                }
            }
        }
    }
}

/// The codebook of an encoded tensor.
#[doc(hidden)]
pub fn decode_codebook(codec: Codec, rows: usize, cols: usize, bytes: &[u8]) -> Vec<f32> {
    let cb = codec.layout(rows, cols).unwrap().codebook;
    bytes[cb.offset..cb.end()]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
