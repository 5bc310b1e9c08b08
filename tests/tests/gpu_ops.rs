//! Every GPU kernel against its CPU reference on odd shapes (rows and columns that are not
//! multiples of the workgroup size, single rows, K not a multiple of 4), like llama.cpp's
//! test-backend-ops.

use qins_runtime::codec::{decode, encode, Codec};
use qins_runtime::cpu::rms_norm;
use qins_runtime::format::TensorEntry;
use qins_runtime::gpu::{GpuContext, GpuTensor, Kernels};
use qins_tests::gpu;

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 - 0.5) * 0.2
        })
        .collect()
}

fn upload(
    ctx: &GpuContext,
    codec: Codec,
    w: &[f32],
    rows: usize,
    cols: usize,
) -> (GpuTensor, Vec<f32>) {
    let (bytes, _) = encode(codec, w, rows, cols).unwrap();
    let entry = TensorEntry {
        name: "w".into(),
        shape: vec![rows, cols],
        codec,
        offset: 0,
        bytes: bytes.len() as u64,
        error: None,
    };
    (
        GpuTensor::upload(ctx, &entry, &bytes).unwrap(),
        decode(codec, &bytes, rows, cols).unwrap(),
    )
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: gpu {g} vs cpu {w}"
        );
    }
}

const CODECS: [Codec; 6] = [
    Codec::F32,
    Codec::F16,
    Codec::Qins8,
    Codec::Lut8,
    Codec::Lut4 { group: 32 },
    Codec::Lut4 { group: 6 },
];
const SHAPES: [(usize, usize); 6] = [(1, 1), (1, 7), (3, 5), (17, 33), (65, 130), (300, 9)];

#[test]
fn matvec_matches_cpu_for_every_codec() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for codec in CODECS {
        for (rows, cols) in SHAPES {
            let w = values(rows * cols, (rows * 7 + cols) as u32);
            let (t, dense) = upload(&ctx, codec, &w, rows, cols);
            // x at an offset, y at an offset and accumulated onto existing values.
            let x = values(cols + 3, 99);
            let y0 = values(rows + 2, 5);
            let xb = ctx.storage("x", bytemuck::cast_slice(&x));
            let yb = ctx.storage("y", bytemuck::cast_slice(&y0));
            let d = t.matvec(&ctx, &k, &xb, 3, &yb, 2, true);
            Kernels::run(&ctx, &[&d]);
            let got = ctx.read_f32(&yb, 0, rows + 2).unwrap();
            let mut want = y0.clone();
            for r in 0..rows {
                want[2 + r] += (0..cols)
                    .map(|c| dense[r * cols + c] * x[3 + c])
                    .sum::<f32>();
            }
            close(
                &got,
                &want,
                1e-5,
                &format!("{} {rows}x{cols}", codec.name()),
            );
        }
    }
}

#[test]
fn embedding_lookup_matches_cpu_for_every_codec() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for codec in CODECS {
        let (rows, cols) = (37, 45);
        let w = values(rows * cols, 3);
        let (t, dense) = upload(&ctx, codec, &w, rows, cols);
        let x = ctx.scratch("x", cols);
        for token in [0u32, 17, 36] {
            let step = ctx.uniform("step", &[0, 1, token, 0]);
            Kernels::run(&ctx, &[&t.embed(&ctx, &k, &x, &step)]);
            let got = ctx.read_f32(&x, 0, cols).unwrap();
            let row = token as usize;
            close(
                &got,
                &dense[row * cols..(row + 1) * cols],
                1e-6,
                &format!("{} row {token}", codec.name()),
            );
        }
    }
}

#[test]
fn rmsnorm_silu_and_argmax_match_cpu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for n in [1usize, 7, 255, 257, 1000] {
        let x = values(n, n as u32);
        let w = values(n, 1).iter().map(|v| 1.0 + v).collect::<Vec<_>>();
        let (xb, wb, out) = (
            ctx.storage("x", bytemuck::cast_slice(&x)),
            ctx.storage("w", bytemuck::cast_slice(&w)),
            ctx.scratch("o", n),
        );
        Kernels::run(&ctx, &[&k.rmsnorm(&ctx, &xb, &wb, &out, n, 1e-5)]);
        let mut want = x.clone();
        rms_norm(&mut want, &w, 1e-5);
        close(
            &ctx.read_f32(&out, 0, n).unwrap(),
            &want,
            1e-5,
            &format!("rmsnorm {n}"),
        );

        let gu = values(2 * n, 7);
        let (gb, ab) = (
            ctx.storage("gu", bytemuck::cast_slice(&gu)),
            ctx.scratch("act", n),
        );
        Kernels::run(&ctx, &[&k.silu_mul(&ctx, &gb, &ab, n)]);
        close(
            &ctx.read_f32(&ab, 0, n).unwrap(),
            &qins_runtime::cpu::silu_mul(&gu, n),
            1e-6,
            &format!("silu {n}"),
        );

        // argmax, with the maximum repeated: the lowest index wins, as on the CPU.
        let mut v = x.clone();
        let top = n / 2;
        v[top] = 10.0;
        if n > 3 {
            v[n - 1] = 10.0;
        }
        let (vb, rb) = (
            ctx.storage("v", bytemuck::cast_slice(&v)),
            ctx.scratch("r", 1),
        );
        Kernels::run(&ctx, &[&k.argmax(&ctx, &vb, &rb, n)]);
        let got = ctx.read_back(&rb, 0, 4).unwrap();
        assert_eq!(
            u32::from_le_bytes(got.try_into().unwrap()),
            top as u32,
            "argmax {n}"
        );
    }
}
