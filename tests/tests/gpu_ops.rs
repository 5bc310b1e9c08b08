//! Every GPU kernel against its CPU reference on odd shapes (rows and columns that are not
//! multiples of the workgroup size, single rows, K not a multiple of 4), like llama.cpp's
//! test-backend-ops.

use qins_runtime::chat::{Sampler, SamplingParams};
use qins_runtime::codec::{decode, encode, Codec, TEST_VARIANTS};
use qins_runtime::cpu::{attention, rms_norm, Heads};
use qins_runtime::engine::{block_on, Select};
use qins_runtime::format::TensorEntry;
use qins_runtime::gpu::{
    AttentionIo, Compute, DecodeAttention, DecodeLoads, Dispatch, GpuContext, GpuOptions,
    GpuTensor, HeadShape, Input, Kernels, MatvecIo, MatvecProbe, PickParams, Prefill,
    RmsnormParams, RopeTables, Rows, Runs, SelectParams, Step,
};
use qins_runtime::model::Rope;
use qins_tests::{gpu, gpu_with, gpu_with_max_binding};

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
    upload_bytes(ctx, codec, &bytes, rows, cols)
}

/// A stored tensor on the GPU, and its values decoded on the CPU. Tensors of an odd row count
/// are written in 12-byte pieces, as the loader streams them (the group scales and offsets of
/// codecs with offsets are staged and written as pairs once their last piece arrives).
fn upload_bytes(
    ctx: &GpuContext,
    codec: Codec,
    bytes: &[u8],
    rows: usize,
    cols: usize,
) -> (GpuTensor, Vec<f32>) {
    let entry = TensorEntry {
        name: "w".into(),
        shape: vec![rows, cols],
        codec,
        offset: 0,
        bytes: bytes.len() as u64,
        error: None,
    };
    let tensor = if rows % 2 == 1 {
        let t = GpuTensor::create(ctx, &entry).unwrap();
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().next_multiple_of(4), 0);
        for (i, piece) in padded.chunks(12).enumerate() {
            t.write(ctx, 12 * i as u64, piece);
        }
        t
    } else {
        GpuTensor::upload(ctx, &entry, bytes).unwrap()
    };
    (tensor, decode(codec, bytes, rows, cols).unwrap())
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    if std::env::var_os("QINS_PRINT_ERR").is_some() {
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
            .fold(0f32, f32::max);
        eprintln!("ERR {worst:e} {what}");
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: gpu {g} vs cpu {w}"
        );
    }
}

/// (33, 96) and (5, 224) take the 16-byte decode loads: their code rows (8 and 4 bits) are whole
/// vectors; 224 columns end in a partial group of 128. (3, 8256) takes every decode loop more
/// than one turn: 516 vectors of 8-bit codes, 258 of 4-bit, over workgroups of 256 threads;
/// (9, 1088) takes both quads of an 8-row workgroup more than one turn (68 vectors of 8-bit
/// codes, 136 words of 4-bit, over 64 threads).
const SHAPES: [(usize, usize); 10] = [
    (1, 1),
    (1, 7),
    (3, 5),
    (17, 33),
    (65, 130),
    (300, 9),
    (33, 96),
    (5, 224),
    (3, 8256),
    (9, 1088),
];

/// The batch uniform every per-token kernel reads: first position, token count.
fn step(ctx: &GpuContext, pos: u32, n: u32) -> wgpu::Buffer {
    ctx.uniform("step", &Step::new(pos as usize, n as usize))
}

/// Runs a tensor's dispatches (one per part) for a batch of `n`.
fn run_all(ctx: &GpuContext, dispatches: &[Dispatch], n: usize) {
    Kernels::run(ctx, &dispatches.iter().collect::<Vec<_>>(), n as u32);
}

/// Each op on the whole tensor, on the tensor split by rows across bindings of `max_binding`
/// bytes (as on an adapter with that maxStorageBufferBindingSize), and with the workgroup-memory
/// reduction where the adapter's subgroups would otherwise be used (lavapipe has them); that
/// context also runs large batches through the mat-vec kernels instead of the tiled ones, and
/// decode without fused inputs.
/// The LUT mat-vecs' f16-compute variant (where the adapter has shader-f16, as lavapipe does)
/// is a fourth, with 16-byte code loads in decode; those loads on a split tensor a fifth (the
/// first two load words, the third the default: vectors for 8-bit codes, words for 4-bit). The
/// last two run prefill in the 64 × 64 tiles, the first two in 64 × 32 (the third on the
/// default mat-vec path); the last three decode the default 8 rows a workgroup (with both
/// reductions), the first two 4. Decode workgroups: 64 threads in the first, by the tensor's
/// shape in the second (192 here: its rows take few loads), 64 in the third (no subgroups), 256
/// in the fourth, 128 in the fifth. The third and fourth take 8 rows a workgroup on the mat-vec
/// prefill path, the others 4 (shapes of 1, 3, 5, 17 and 65 rows leave the second quad
/// part-filled or empty).
fn contexts(max_binding: u64) -> [(GpuContext, bool); 5] {
    let shared = gpu_with(GpuOptions {
        no_subgroups: true,
        prefill: Prefill::Rows,
        prefill_rows: Some(8),
        no_fusion: true,
        ..Default::default()
    });
    assert!(!shared.subgroups);
    let tiled = |max_binding, decode_threads| GpuOptions {
        max_binding,
        prefill: Prefill::Tiled,
        decode_rows: Some(4),
        decode_loads: DecodeLoads::U32,
        decode_threads,
        ..Default::default()
    };
    let whole = gpu_with(tiled(None, Some(64)));
    assert_eq!(
        whole.subgroups,
        whole.features.contains(wgpu::Features::SUBGROUP),
        "subgroups are used where offered"
    );
    let f16 = gpu_with(GpuOptions {
        compute: Compute::F16,
        decode_loads: DecodeLoads::Vec4,
        prefill: Prefill::Tiled64,
        prefill_rows: Some(8),
        decode_threads: Some(256),
        ..Default::default()
    });
    assert_eq!(
        f16.decode_threads_for(1, 1),
        if f16.subgroups { 256 } else { 64 }
    );
    assert_eq!(f16.f16, f16.features.contains(wgpu::Features::SHADER_F16));
    let wide = gpu_with(GpuOptions {
        max_binding: Some(max_binding),
        decode_loads: DecodeLoads::Vec4,
        prefill: Prefill::Tiled64,
        decode_threads: Some(128),
        ..Default::default()
    });
    // The split context decodes by the tensor's shape where subgroups allow it.
    let split = gpu_with(tiled(Some(max_binding), None));
    // By rows, then by the loads a row takes: 192 threads where they cover a row in as few
    // turns as 256 (Phi-3.5's 3072 columns: 192 vectors of 8-bit codes, 384 words of 4-bit).
    let auto = |rows, items| split.decode_threads_for(rows, items);
    let picked = [
        auto(16383, 512),
        auto(16383, 192),
        auto(16383, 384),
        auto(16384, 192),
    ];
    if split.subgroups {
        assert_eq!(picked, [256, 192, 192, 64]);
    } else {
        assert_eq!(picked, [64; 4]);
    }
    [
        (whole, false),
        (split, true),
        (shared, false),
        (f16, false),
        (wide, true),
    ]
}

/// Mat-vec tolerance (relative, see `close`): f32 arithmetic, or f16 products of f16-rounded
/// codebook values and activations summed in f32 in decode (worst measured on lavapipe: 7.2e-5;
/// print with QINS_PRINT_ERR=1), growing as the square root of the terms past 128 columns
/// (rounding errors of a sum in another order add up like a random walk; 8256 columns of f16
/// products measured 1.6e-3).
fn matvec_tol(ctx: &GpuContext, codec: Codec, cols: usize) -> f32 {
    let lut = !matches!(codec, Codec::F32 | Codec::F16);
    let terms = (cols as f32 / 128.0).sqrt().max(1.0);
    terms * if ctx.f16 && lut { 3e-4 } else { 1e-5 }
}

#[test]
fn matvec_matches_cpu_for_every_codec_and_batch() {
    for (ctx, split) in contexts(8192) {
        let k = Kernels::new(&ctx);
        let mut parts = 0;
        for codec in TEST_VARIANTS {
            for (rows, cols) in SHAPES {
                if split && cols * 4 > ctx.max_binding as usize {
                    continue; // a row wider than the split contexts' bindings is refused
                }
                let w = values(rows * cols, (rows * 7 + cols) as u32);
                let (t, dense) = upload(&ctx, codec, &w, rows, cols);
                parts += t.parts.len() - 1;
                for p in &t.parts {
                    assert!(
                        p.buffer.size() <= ctx.max_binding,
                        "{} part too big",
                        codec.name()
                    );
                }
                // Token rows padded apart (strides cols+3, or that on 16 bytes where the
                // kernels read x as vectors, and rows+2), accumulated onto existing values;
                // 9 tokens cross the 8-token block of a mat-vec workgroup and take the tiled
                // kernel, 45 cross its 32-token tile, 70 the 64-token one.
                for n in [1usize, 3, 9, 45, 70] {
                    let xs = match n {
                        3 | 45 => cols + 3,
                        _ => (cols + 3).next_multiple_of(4),
                    };
                    let ys = rows + 2;
                    let x = values(n * xs, 99 + n as u32);
                    let y0 = values(n * ys, 5);
                    let xb = ctx.storage("x", bytemuck::cast_slice(&x));
                    let yb = ctx.storage("y", bytemuck::cast_slice(&y0));
                    let st = step(&ctx, 0, n as u32);
                    let io = MatvecIo::new(&xb, xs, &yb, ys).accumulate();
                    let d = t.matvec(&k, &io, &st);
                    run_all(&ctx, &d, n);
                    let got = block_on(ctx.read_f32(&yb, 0, n * ys)).unwrap();
                    let mut want = y0.clone();
                    for tok in 0..n {
                        for r in 0..rows {
                            want[tok * ys + r] += (0..cols)
                                .map(|c| dense[r * cols + c] * x[tok * xs + c])
                                .sum::<f32>();
                        }
                    }
                    close(
                        &got,
                        &want,
                        matvec_tol(&ctx, codec, cols),
                        &format!("{} {rows}x{cols} n={n} split={split}", codec.name()),
                    );
                    // last_only: row 0 of x alone, whatever the batch size.
                    let yb = ctx.scratch("y", rows);
                    let io = MatvecIo::new(&xb, xs, &yb, rows).rows(Rows::Last);
                    let d = t.matvec(&k, &io, &st);
                    run_all(&ctx, &d, n);
                    let want: Vec<f32> = (0..rows)
                        .map(|r| (0..cols).map(|c| dense[r * cols + c] * x[c]).sum())
                        .collect();
                    close(
                        &block_on(ctx.read_f32(&yb, 0, rows)).unwrap(),
                        &want,
                        matvec_tol(&ctx, codec, cols),
                        &format!("{} last-only split={split}", codec.name()),
                    );
                }
            }
        }
        assert_eq!(parts > 3, split, "{parts} extra parts");
    }
}

/// qins-bench's probes (`MatvecProbe`): on a tensor fitted for them (`MatvecProbe::fit`) each
/// decodes what the whole kernel does, through the word and the vector loops; on the encoder's
/// own codebook and scales the output moves, so a probe that left nothing out would fail.
/// Lut4 with groups that split words decodes code by code, where no probe applies.
#[test]
fn matvec_probes_are_exact_on_fitted_tensors() {
    for loads in [DecodeLoads::U32, DecodeLoads::Vec4] {
        for probe in [MatvecProbe::ArithmeticCodebook, MatvecProbe::NoGroups] {
            let mut ctx = gpu_with(GpuOptions {
                decode_loads: loads,
                ..Default::default()
            });
            ctx.matvec_probe = probe;
            let k = Kernels::new(&ctx);
            for codec in TEST_VARIANTS {
                if matches!(codec, Codec::F32 | Codec::F16) {
                    continue;
                }
                let probed = probe.applies(codec);
                for (rows, cols) in [(17, 33), (33, 96), (5, 224)] {
                    let w = values(rows * cols, (rows * 3 + cols) as u32);
                    let (mut bytes, _) = encode(codec, &w, rows, cols).unwrap();
                    let x = values(cols, 7);
                    let what = format!("{probe:?} {loads:?} {} {rows}x{cols}", codec.name());
                    let decode_with = |bytes: &[u8]| {
                        let (t, dense) = upload_bytes(&ctx, codec, bytes, rows, cols);
                        let (xb, yb) = (
                            ctx.storage("x", bytemuck::cast_slice(&x)),
                            ctx.scratch("y", rows),
                        );
                        let d =
                            t.matvec(&k, &MatvecIo::new(&xb, cols, &yb, rows), &step(&ctx, 0, 1));
                        run_all(&ctx, &d, 1);
                        let got = block_on(ctx.read_f32(&yb, 0, rows)).unwrap();
                        (got, dense_matvec(&dense, &x, rows, cols))
                    };
                    let tol = matvec_tol(&ctx, codec, cols);
                    let (got, want) = decode_with(&bytes);
                    let moved = got
                        .iter()
                        .zip(&want)
                        .any(|(g, w)| (g - w).abs() > 100.0 * tol * w.abs().max(1.0));
                    assert_eq!(
                        moved, probed,
                        "{what}: output moved on the encoder's tensor"
                    );
                    let layout = codec.layout(rows, cols).unwrap();
                    MatvecProbe::fit(codec, &layout, &mut bytes);
                    let (got, want) = decode_with(&bytes);
                    close(&got, &want, tol, &what);
                }
            }
        }
    }
}

/// The dense mat-vec `w · x` (rows × cols) of each token row of `x` (cols apart).
fn dense_matvec(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    x.chunks_exact(cols)
        .flat_map(|xr| (0..rows).map(move |r| (0..cols).map(|c| w[r * cols + c] * xr[c]).sum()))
        .collect()
}

/// A mat-vec after the RMSNorm or SiLU·mul that writes its x, as the engine binds them
/// (`matvec_after`): fused into the decode path (one token, and the last-row head for any
/// batch) where the kernel can, the producer's output buffer then left unwritten, so a decode
/// that read it would see zeros.
#[test]
fn fused_norm_and_silu_inputs_match_cpu() {
    let eps = 1e-5;
    for (ctx, split) in contexts(8192) {
        let k = Kernels::new(&ctx);
        for codec in TEST_VARIANTS {
            for (rows, cols) in [(1, 7), (17, 33), (65, 130), (33, 96), (5, 224)] {
                let w = values(rows * cols, (rows * 5 + cols) as u32);
                let (t, dense) = upload(&ctx, codec, &w, rows, cols);
                let norm_w: Vec<f32> = values(cols, 11).iter().map(|v| 1.0 + 3.0 * v).collect();
                let gb = ctx.storage("norm", bytemuck::cast_slice(&norm_w));
                // Normalized rows are ~10× the other tests' x, and the f16 products' rounding
                // (the norm is not fused there) grows with them.
                let norm_tol = matvec_tol(&ctx, codec, cols) * if ctx.f16 { 10.0 } else { 1.0 };
                let what = |input: &str, n: usize| {
                    format!(
                        "{} {rows}x{cols} {input} n={n} split={split} f16={}",
                        codec.name(),
                        ctx.f16
                    )
                };
                for n in [1usize, 3, 9] {
                    let st = step(&ctx, 0, n as u32);
                    // Residual rows with a large mean square (the norm's 1 / rms is far from 1).
                    let raw: Vec<f32> = values(n * cols, 31 + n as u32)
                        .iter()
                        .map(|v| 20.0 * v)
                        .collect();
                    let rb = ctx.storage("raw", bytemuck::cast_slice(&raw));
                    let mut normed = raw.clone();
                    rms_norm(&mut normed, &norm_w, eps);
                    let input = Input::Norm {
                        raw: &rb,
                        stride: cols,
                        weight: &gb,
                        eps,
                    };
                    let fused = t.fuses(&k, &input);
                    if ctx.fusion && !ctx.f16 && matches!(codec, Codec::F32 | Codec::Lut8) {
                        assert!(fused, "{} fuses the norm", codec.name());
                    }
                    let xn = ctx.scratch("xn", n * cols);
                    let yb = ctx.scratch("y", n * rows);
                    let norm =
                        k.rmsnorm(&rb, &gb, &xn, RmsnormParams::new(cols, eps, Rows::All), &st);
                    let d =
                        t.matvec_after(&k, norm, input, MatvecIo::new(&xn, cols, &yb, rows), &st);
                    assert_eq!(d[0].runs == Runs::Batches, fused);
                    run_all(&ctx, &d, n);
                    close(
                        &block_on(ctx.read_f32(&yb, 0, n * rows)).unwrap(),
                        &dense_matvec(&dense, &normed, rows, cols),
                        norm_tol,
                        &what("norm", n),
                    );
                    // The head: the batch's last row alone, into row 0.
                    let (xl, yl) = (ctx.scratch("xl", cols), ctx.scratch("yl", rows));
                    let norm = k.rmsnorm(
                        &rb,
                        &gb,
                        &xl,
                        RmsnormParams::new(cols, eps, Rows::Last),
                        &st,
                    );
                    let io = MatvecIo::new(&xl, cols, &yl, rows).rows(Rows::Last);
                    let d = t.matvec_after(&k, norm, input, io, &st);
                    assert_eq!(d.len(), t.parts.len() + !fused as usize);
                    run_all(&ctx, &d, n);
                    close(
                        &block_on(ctx.read_f32(&yl, 0, rows)).unwrap(),
                        &dense_matvec(&dense, &normed[(n - 1) * cols..], rows, cols),
                        norm_tol,
                        &what("norm last-only", n),
                    );

                    // SiLU·mul of [gate; up] rows, accumulated onto y (the down projection).
                    let gu = values(n * 2 * cols, 17 + n as u32);
                    let gub = ctx.storage("gu", bytemuck::cast_slice(&gu));
                    let act = ctx.scratch("act", n * cols);
                    let y0 = values(n * rows, 3);
                    let yb = ctx.storage("y", bytemuck::cast_slice(&y0));
                    let input = Input::SiluMul {
                        gu: &gub,
                        stride: 2 * cols,
                    };
                    let io = MatvecIo::new(&act, cols, &yb, rows).accumulate();
                    let silu = k.silu_mul(&gub, &act, cols, &st);
                    let d = t.matvec_after(&k, silu, input, io, &st);
                    assert_eq!(d[0].runs == Runs::Batches, t.fuses(&k, &input));
                    run_all(&ctx, &d, n);
                    let want: Vec<f32> =
                        dense_matvec(&dense, &qins_runtime::cpu::silu_mul(&gu, cols), rows, cols)
                            .iter()
                            .zip(&y0)
                            .map(|(a, b)| a + b)
                            .collect();
                    close(
                        &block_on(ctx.read_f32(&yb, 0, n * rows)).unwrap(),
                        &want,
                        matvec_tol(&ctx, codec, cols),
                        &what("silu", n),
                    );
                }
            }
        }
    }
}

#[test]
fn embedding_lookup_matches_cpu_for_every_codec() {
    for (ctx, split) in contexts(2048) {
        let k = Kernels::new(&ctx);
        for codec in TEST_VARIANTS {
            let (rows, cols) = (37, 45);
            let w = values(rows * cols, 3);
            let (t, dense) = upload(&ctx, codec, &w, rows, cols);
            if split && matches!(codec, Codec::F32 | Codec::F16) {
                assert!(t.parts.len() > 1, "{} is split", codec.name());
            }
            let ids = [0u32, 17, 36, 17];
            let tokens = ctx.storage("tokens", bytemuck::cast_slice(&ids));
            let x = ctx.scratch("x", ids.len() * cols);
            let st = step(&ctx, 0, ids.len() as u32);
            run_all(&ctx, &t.embed(&k, &tokens, &x, &st), ids.len());
            let got = block_on(ctx.read_f32(&x, 0, ids.len() * cols)).unwrap();
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&r| dense[r as usize * cols..(r as usize + 1) * cols].to_vec())
                .collect();
            close(
                &got,
                &want,
                1e-6,
                &format!("{} rows {ids:?} split={split}", codec.name()),
            );
        }
    }
}

#[test]
fn rmsnorm_and_silu_match_cpu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for n in [1usize, 7, 255, 257, 1000] {
        let rows = 3;
        let x = values(rows * n, n as u32);
        let w = values(n, 1).iter().map(|v| 1.0 + v).collect::<Vec<_>>();
        let (xb, wb, out) = (
            ctx.storage("x", bytemuck::cast_slice(&x)),
            ctx.storage("w", bytemuck::cast_slice(&w)),
            ctx.scratch("o", rows * n),
        );
        let st = step(&ctx, 0, rows as u32);
        Kernels::run(
            &ctx,
            &[&k.rmsnorm(&xb, &wb, &out, RmsnormParams::new(n, 1e-5, Rows::All), &st)],
            rows as u32,
        );
        let mut want = x.clone();
        rms_norm(&mut want, &w, 1e-5);
        close(
            &block_on(ctx.read_f32(&out, 0, rows * n)).unwrap(),
            &want,
            1e-5,
            &format!("rmsnorm {n}"),
        );
        let last = ctx.scratch("o", n);
        Kernels::run(
            &ctx,
            &[&k.rmsnorm(
                &xb,
                &wb,
                &last,
                RmsnormParams::new(n, 1e-5, Rows::Last),
                &st,
            )],
            rows as u32,
        );
        close(
            &block_on(ctx.read_f32(&last, 0, n)).unwrap(),
            &want[(rows - 1) * n..],
            1e-5,
            &format!("rmsnorm last {n}"),
        );

        let gu = values(rows * 2 * n, 7);
        let (gb, ab) = (
            ctx.storage("gu", bytemuck::cast_slice(&gu)),
            ctx.scratch("act", rows * n),
        );
        Kernels::run(&ctx, &[&k.silu_mul(&gb, &ab, n, &st)], rows as u32);
        close(
            &block_on(ctx.read_f32(&ab, 0, rows * n)).unwrap(),
            &qins_runtime::cpu::silu_mul(&gu, n),
            1e-6,
            &format!("silu {n}"),
        );
    }
}

/// The Q/K/V bias add on odd widths and a partial batch: only the step's rows change.
#[test]
fn add_bias_matches_cpu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for n in [1usize, 63, 65, 1152] {
        let (rows, active) = (4, 3);
        let y = values(rows * n, n as u32);
        let bias = values(n, 3);
        let (yb, bb) = (
            ctx.storage("y", bytemuck::cast_slice(&y)),
            ctx.storage("bias", bytemuck::cast_slice(&bias)),
        );
        let st = step(&ctx, 0, active as u32);
        Kernels::run(&ctx, &[&k.add_bias(&yb, &bb, n, &st)], active as u32);
        let mut want = y.clone();
        qins_runtime::cpu::add_bias(&mut want[..active * n], &bias);
        close(
            &block_on(ctx.read_f32(&yb, 0, rows * n)).unwrap(),
            &want,
            1e-7,
            &format!("add_bias {n}"),
        );
    }
}

/// Rotary embedding + cache append, then causal attention, against the CPU reference over four
/// batches (4, 5, 1 and 1 tokens, so later ones attend to earlier cached positions, the last to
/// a position a one-token batch appended): 3 query heads sharing 1 KV head, head_dim 10 of which
/// only 6 rotate (partial rotary), a longrope-like scale; with the f32 cache (1e-5) and the
/// packed f16 one (2e-3, f16's rounding of k and v); whole and split decode attention; with and
/// without a qkv bias (Qwen2's); one-token batches adding the bias, rotating and appending
/// inside attention (fused) and in add_bias and rope_store (`no_fusion`).
#[test]
fn rope_store_and_attention_match_cpu() {
    let unfused = gpu_with(GpuOptions {
        no_fusion: true,
        ..Default::default()
    });
    for ctx in [gpu(), unfused] {
        let k = Kernels::new(&ctx);
        for (kv_f16, mode, bias) in [
            (false, DecodeAttention::Split, false),
            (true, DecodeAttention::Split, true),
            (false, DecodeAttention::Whole, true),
            (true, DecodeAttention::Whole, false),
        ] {
            rope_and_attention_case(&ctx, &k, kv_f16, mode, bias);
        }
    }
}

fn rope_and_attention_case(
    ctx: &GpuContext,
    k: &Kernels,
    kv_f16: bool,
    mode: DecodeAttention,
    with_bias: bool,
) {
    let s = HeadShape {
        nh: 3,
        nkv: 1,
        hd: 10,
        rot_half: 3,
        max_ctx: 16,
        kv_f16,
    };
    let rope = Rope {
        inv_freq: vec![1.0, 0.3, 0.05],
        scale: 1.1,
        rotary_dim: 6,
    };
    let row = (s.nh + 2 * s.nkv) * s.hd;
    let (q_dim, kv_dim) = (s.nh * s.hd, s.nkv * s.hd);
    let inv_freq = ctx.storage("inv_freq", bytemuck::cast_slice(&rope.inv_freq));
    let params = k.rope_params(&s, rope.scale);
    let caches = [
        ctx.scratch("k", s.cache_words()),
        ctx.scratch("v", s.cache_words()),
    ];
    let scores = ctx.scratch("scores", 8 * s.nh * s.max_ctx);
    let parts = ctx.scratch("parts", s.attention_parts());
    let bias = values(row, 11);
    let bias_gpu = ctx.storage("bias", bytemuck::cast_slice(&bias));
    let (mut k_cpu, mut v_cpu) = (Vec::new(), Vec::new());
    let tol = if kv_f16 { 2e-3 } else { 1e-5 };
    let mut pos = 0;
    for n in [4usize, 5, 1, 1] {
        let qkv = values(n * row, 7 + (n + pos) as u32);
        let qkv_gpu = ctx.storage("qkv", bytemuck::cast_slice(&qkv));
        let out = ctx.scratch("out", n * q_dim);
        let st = step(ctx, pos as u32, n as u32);
        let io = AttentionIo {
            qkv: &qkv_gpu,
            bias: with_bias.then_some(&bias_gpu),
            rope: RopeTables {
                inv_freq: &inv_freq,
                params: &params,
            },
            caches: [&caches[0], &caches[1]],
            scores: &scores,
            parts: &parts,
            out: &out,
        };
        let attend = k.attention(&s, io, &st, mode);
        let ran: Vec<&str> = attend
            .iter()
            .filter(|d| d.runs_for(n as u32, pos as u32))
            .map(|d| d.name_for(n as u32, pos as u32))
            .collect();
        // A one-token batch with fusion adds, rotates and appends inside its attention;
        // otherwise add_bias and rope_store.
        let stored = n > 1 || !ctx.fusion;
        assert_eq!(ran.contains(&"rope_store"), stored, "{ran:?}");
        assert_eq!(ran.contains(&"add_bias"), stored && with_bias, "{ran:?}");
        Kernels::run(ctx, &attend.iter().collect::<Vec<_>>(), n as u32);

        let mut q = Vec::new();
        let biased: Vec<f32> = match with_bias {
            true => qkv
                .iter()
                .zip(bias.iter().cycle())
                .map(|(x, b)| x + b)
                .collect(),
            false => qkv.clone(),
        };
        for (t, r) in biased.chunks(row).enumerate() {
            let mut r = r.to_vec();
            r[..q_dim + kv_dim]
                .chunks_mut(s.hd)
                .for_each(|head| rope.apply(head, pos + t));
            q.extend_from_slice(&r[..q_dim]);
            k_cpu.extend_from_slice(&r[q_dim..q_dim + kv_dim]);
            v_cpu.extend_from_slice(&r[q_dim + kv_dim..]);
        }
        let heads = Heads {
            nh: s.nh,
            nkv: s.nkv,
            hd: s.hd,
        };
        let want = attention(&q, &k_cpu, &v_cpu, pos, n, heads);
        let what = format!("{mode:?} kv_f16={kv_f16} bias={with_bias} {n} at {pos}, {ran:?}");
        // add_bias and rope_store work in place; a fused decode leaves qkv as it was.
        let q_gpu: Vec<f32> = block_on(ctx.read_f32(&qkv_gpu, 0, n * row))
            .unwrap()
            .chunks(row)
            .flat_map(|r| r[..q_dim].to_vec())
            .collect();
        let q_raw: Vec<f32> = qkv.chunks(row).flat_map(|r| r[..q_dim].to_vec()).collect();
        let q_want = if stored { &q } else { &q_raw };
        close(&q_gpu, q_want, 1e-5, &format!("q in qkv, {what}"));
        close(
            &block_on(ctx.read_f32(&out, 0, n * q_dim)).unwrap(),
            &want,
            tol,
            &format!("attention, {what}"),
        );
        // Either way the batch's keys and values are in the caches.
        let cached = cache_rows(ctx, &s, [&caches[0], &caches[1]], pos, n);
        let len = (pos + n) * kv_dim;
        close(
            &cached[0],
            &k_cpu[pos * kv_dim..len],
            tol,
            &format!("k cache, {what}"),
        );
        close(
            &cached[1],
            &v_cpu[pos * kv_dim..len],
            tol,
            &format!("v cache, {what}"),
        );
        pos += n;
    }
}

/// Positions pos..pos + n of the K and V caches as f32s.
fn cache_rows(
    ctx: &GpuContext,
    s: &HeadShape,
    caches: [&wgpu::Buffer; 2],
    pos: usize,
    n: usize,
) -> [Vec<f32>; 2] {
    let kv_dim = s.nkv * s.hd;
    let (first, count) = if s.kv_f16 {
        (pos * kv_dim / 2, n * kv_dim / 2)
    } else {
        (pos * kv_dim, n * kv_dim)
    };
    caches.map(|c| {
        let words = block_on(ctx.read_f32(c, first, count)).unwrap();
        if !s.kv_f16 {
            return words;
        }
        words
            .iter()
            .flat_map(|w| {
                let b = w.to_bits();
                [b as u16, (b >> 16) as u16].map(|h| half::f16::from_bits(h).to_f32())
            })
            .collect()
    })
}

/// Decoded tokens' attention split over ranges of the context and combined, against the CPU
/// and the whole-context kernel, and the auto mode's choice of the two by position: grouped
/// heads (3 query heads a KV head), head_dims of 10 and 34 (the key loads' turns and their
/// tail), contexts shorter than the split count, ranges of one and two positions, a last range
/// shorter than the others, ranges longer than a workgroup, both cache types. Each decoded
/// token rotates its q and k and appends its k and v inside attention (fusion on): the token's
/// own position is scored from workgroup memory and its cache row checked afterwards.
#[test]
fn split_decode_attention_matches_cpu_across_ranges() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let splits = Kernels::ATTENTION_SPLITS;
    // head_dim 10 scores in pairs from an f16 cache, 34 in two turns of 16 and a pair (f32:
    // four turns of 8 and a pair).
    for (kv_f16, hd) in [(false, 10), (true, 10), (false, 34), (true, 34)] {
        let s = HeadShape {
            nh: 6,
            nkv: 2,
            hd,
            rot_half: hd / 2,
            max_ctx: 70 * splits,
            kv_f16,
        };
        let heads = Heads {
            nh: s.nh,
            nkv: s.nkv,
            hd: s.hd,
        };
        let (q_dim, kv_dim) = (s.nh * s.hd, s.nkv * s.hd);
        let row = q_dim + 2 * kv_dim;
        let rope = Rope {
            inv_freq: (0..hd / 2)
                .map(|i| 10000f32.powf(-2.0 * i as f32 / hd as f32))
                .collect(),
            scale: 1.0,
            rotary_dim: hd,
        };
        let inv_freq = ctx.storage("inv_freq", bytemuck::cast_slice(&rope.inv_freq));
        let params = k.rope_params(&s, rope.scale);
        // The caches written straight from known values.
        let keys = values(s.max_ctx * kv_dim, 3);
        let vals = values(s.max_ctx * kv_dim, 4);
        let cache = |v: &[f32]| {
            let words: Vec<u32> = if kv_f16 {
                v.chunks(2)
                    .map(|p| {
                        let lo = half::f16::from_f32(p[0]).to_bits() as u32;
                        let hi = half::f16::from_f32(p[1]).to_bits() as u32;
                        lo | hi << 16
                    })
                    .collect()
            } else {
                v.iter().map(|x| x.to_bits()).collect()
            };
            ctx.storage("cache", bytemuck::cast_slice(&words))
        };
        let round = |v: &[f32]| -> Vec<f32> {
            if kv_f16 {
                v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
            } else {
                v.to_vec()
            }
        };
        let (kc, vc) = (cache(&keys), cache(&vals));
        let (mut kr, mut vr) = (round(&keys), round(&vals));
        let scores = ctx.scratch("scores", s.nh * s.max_ctx);
        let parts = ctx.scratch("parts", s.attention_parts());
        // Query rows of ±1.5 (15× values()), so that the softmax is far from flat.
        let qkv: Vec<f32> = values(row, 9).iter().map(|v| 15.0 * v).collect();
        let qkv_gpu = ctx.storage("qkv", bytemuck::cast_slice(&qkv));
        // A long context first: the short ones after it (empty ranges) would read its stale
        // ranges if the split kernel skipped empty ranges instead of writing them as neutral.
        for pos in [200, 0, 5, splits - 1, splits, 255, 256, s.max_ctx - 1] {
            let st = step(&ctx, pos as u32, 1);
            let mut outs = Vec::new();
            for mode in [
                DecodeAttention::Split,
                DecodeAttention::Whole,
                DecodeAttention::Auto,
            ] {
                let out = ctx.scratch("out", q_dim);
                let io = AttentionIo {
                    qkv: &qkv_gpu,
                    bias: None,
                    rope: RopeTables {
                        inv_freq: &inv_freq,
                        params: &params,
                    },
                    caches: [&kc, &vc],
                    scores: &scores,
                    parts: &parts,
                    out: &out,
                };
                let d = k.attention(&s, io, &st, mode);
                let at = pos as u32;
                let ran: Vec<&str> = d
                    .iter()
                    .filter(|d| d.runs_for(1, at))
                    .map(|d| d.name_for(1, at))
                    .collect();
                let split = mode == DecodeAttention::Split
                    || mode == DecodeAttention::Auto && at >= ctx.split_attention_from;
                let want: &[&str] = if split {
                    &["attention_split", "attention_combine"]
                } else {
                    &["attention"]
                };
                assert_eq!(ran, want, "{mode:?} at {pos}");
                Kernels::run_at(&ctx, &d.iter().collect::<Vec<_>>(), 1, at);
                outs.push(block_on(ctx.read_f32(&out, 0, q_dim)).unwrap());
            }
            let len = pos + 1;
            let what = format!("kv_f16={kv_f16} hd={hd} at {pos}");
            // The token's own key (rotated) and value, appended at pos by the kernel.
            let mut new = qkv.clone();
            new[..q_dim + kv_dim]
                .chunks_mut(hd)
                .for_each(|head| rope.apply(head, pos));
            let [k_row, v_row] = cache_rows(&ctx, &s, [&kc, &vc], pos, 1);
            let tol = if kv_f16 { 2e-3 } else { 1e-5 };
            close(
                &k_row,
                &new[q_dim..q_dim + kv_dim],
                tol,
                &format!("k at pos, {what}"),
            );
            close(
                &v_row,
                &new[q_dim + kv_dim..],
                tol,
                &format!("v at pos, {what}"),
            );
            kr[pos * kv_dim..len * kv_dim].copy_from_slice(&k_row);
            vr[pos * kv_dim..len * kv_dim].copy_from_slice(&v_row);
            // The CPU reference attends over the cache's first len positions, the new one last.
            let want = attention(
                &new[..q_dim],
                &kr[..len * kv_dim],
                &vr[..len * kv_dim],
                pos,
                1,
                heads,
            );
            close(&outs[0], &want, 1e-5, &format!("split, {what}"));
            close(&outs[1], &want, 1e-5, &format!("whole, {what}"));
            close(&outs[2], &want, 1e-5, &format!("auto, {what}"));
        }
    }
}

/// Splitting works by whole rows: a row wider than a binding is refused with the limit named.
/// Sampling candidates on the GPU (select.wgsl) against `Select::pick`: odd lengths, k from 1
/// to the whole row, many ties, negative values and the repetition penalty; for k = 1 the
/// greedy choice too (pick.wgsl): the lowest id among the ties, from the candidates or, where
/// more tie than they hold, from the row, written as the next token and marked seen.
#[test]
fn select_matches_cpu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let cap = Kernels::SELECT_CAP;
    // One slice of the row a workgroup, a few, and many (70001: 69 workgroups); 2500 equal
    // values (more ties than the candidates hold, at 4099 and 70001 too).
    for n in [1usize, 7, 300, 4099, 70001, 2500] {
        // Few distinct values, so the k-th is usually tied.
        let row: Vec<f32> = values(n, n as u32)
            .iter()
            .map(|v| {
                if n == 2500 {
                    -0.5
                } else {
                    (v * 8.0).round() / 4.0
                }
            })
            .collect();
        let seen: Vec<u32> = (0..n as u32).step_by(3).collect();
        let logits = ctx.storage("logits", bytemuck::cast_slice(&row));
        let mut bits = vec![0u32; n.div_ceil(32)];
        for &t in &seen {
            bits[t as usize / 32] |= 1 << (t % 32);
        }
        let seen_b = ctx.storage("seen", bytemuck::cast_slice(&bits));
        let out = ctx.scratch("out", 4 + 2 * cap);
        let tokens = ctx.scratch("tokens", 4);
        let params = k.select_params(SelectParams::new(n, 1, 1.0));
        // The same dispatches for every selection, as the engine runs them: each run leaves
        // the kernel's work buffer and the count ready for the next.
        let d = k.select(&logits, &seen_b, &out, &params, n);
        let greedy = ctx.uniform("pick", &PickParams::default());
        let pick = k.pick(&logits, &seen_b, &out, &params, &tokens, &greedy);
        let cases = [
            (1, 1.0),
            (5, 1.0),
            (40, 1.3),
            (n, 1.0),
            (3, 0.8),
            (1, 1.3),
            (1, 0.8),
            (1, 1.0),
        ];
        for (kk, penalty) in cases {
            let sel = Select {
                k: kk,
                penalty,
                seen: seen.clone(),
                draw: None,
            };
            let want = sel.pick(&row);
            ctx.write_uniform(&params, &SelectParams::new(n, kk.min(n), penalty));
            // The pick marks its token seen: every case starts from the same bits.
            ctx.queue
                .write_buffer(&seen_b, 0, bytemuck::cast_slice(&bits));
            if kk == 1 {
                Kernels::run(&ctx, &d.iter().chain([&pick]).collect::<Vec<_>>(), 1);
            } else {
                run_all(&ctx, &d, 1);
            }
            let w: Vec<u32> = bytemuck::cast_slice(
                &block_on(ctx.read_back(&out, 0, (4 + 2 * cap) as u64 * 4)).unwrap(),
            )
            .to_vec();
            let what = format!("n={n} k={kk} penalty={penalty}");
            assert_eq!(w[0] as usize, want.len(), "{what}: count");
            if kk == 1 {
                // `want` is in id order, all tied at the largest value.
                let (id, value) = want[0];
                assert_eq!((w[2], w[3]), (id, value.to_bits()), "{what}: pick");
                let next = block_on(ctx.read_f32(&tokens, 0, 1)).unwrap()[0].to_bits();
                assert_eq!(next, id, "{what}: the next step's token");
                let marked: Vec<u32> = bytemuck::cast_slice(
                    &block_on(ctx.read_back(&seen_b, 0, bits.len() as u64 * 4)).unwrap(),
                )
                .to_vec();
                let mut want_bits = bits.clone();
                if penalty != 1.0 {
                    want_bits[id as usize / 32] |= 1 << (id % 32);
                }
                assert_eq!(marked, want_bits, "{what}: seen after the pick");
            }
            if want.len() > cap {
                continue;
            }
            let mut got: Vec<(u32, u32)> = (0..want.len())
                .map(|j| (w[4 + 2 * j], w[5 + 2 * j]))
                .collect();
            got.sort_unstable();
            let want: Vec<(u32, u32)> = want.iter().map(|&(i, v)| (i, v.to_bits())).collect();
            assert_eq!(
                got, want,
                "{what}: candidates and their penalised values, bit for bit"
            );
        }
    }
}

/// pick.wgsl's draw among select.wgsl's candidates against `Sampler::sample_with`, the CPU
/// draw the host makes: top-k of 5 and 40, temperatures from 0.3 to 1.5, top-p, min-p, a
/// penalty, rows with distinct values (close or spread) and with hundreds tied (their order by id), uniform
/// numbers across [0, 1); and nothing to draw from (out[2] = NONE, a valid token next) where
/// more tie than the kernel keeps.
#[test]
fn pick_draws_as_the_sampler() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let n = 4099;
    for row_kind in ["distinct", "spread", "tied", "flat"] {
        let row: Vec<f32> = values(n, 7)
            .iter()
            .map(|v| match row_kind {
                "distinct" => v * 50.0,
                // The top 40 about 4 apart: min-p and top-p cut among them.
                "spread" => v * 2000.0,
                "tied" => (v * 40.0).round() / 8.0,
                _ => 0.25,
            })
            .collect();
        let seen: Vec<u32> = (0..n as u32).step_by(5).collect();
        let mut bits = vec![0u32; n.div_ceil(32)];
        for &t in &seen {
            bits[t as usize / 32] |= 1 << (t % 32);
        }
        let logits = ctx.storage("logits", bytemuck::cast_slice(&row));
        let seen_b = ctx.storage("seen", bytemuck::cast_slice(&bits));
        let out = ctx.scratch("out", 4 + 2 * Kernels::SELECT_CAP);
        let tokens = ctx.scratch("tokens", 4);
        let params = k.select_params(SelectParams::new(n, 1, 1.0));
        let draw = ctx.uniform("pick", &PickParams::default());
        let mut all = k.select(&logits, &seen_b, &out, &params, n);
        all.push(k.pick(&logits, &seen_b, &out, &params, &tokens, &draw));
        let cases = [
            (5, 0.7, 1.0, 0.0, 1.0),
            (40, 1.0, 0.9, 0.0, 1.3),
            (40, 1.5, 1.0, 0.2, 1.0),
            (40, 0.3, 0.5, 0.1, 1.1),
        ];
        for (top_k, temperature, top_p, min_p, penalty) in cases {
            let sp = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                repetition_penalty: penalty,
                seed: 0,
            };
            let sel = Select {
                k: top_k,
                penalty,
                seen: seen.clone(),
                draw: None,
            };
            let cands = sel.pick(&row);
            for i in 0..16 {
                let u = (i as f32 + 0.37) / 16.0;
                ctx.write_uniform(&params, &SelectParams::new(n, top_k, penalty));
                let p = PickParams {
                    temperature,
                    top_p,
                    min_p,
                    u,
                    sample: 1,
                    _pad: [0; 3],
                };
                ctx.write_uniform(&draw, &p);
                ctx.queue
                    .write_buffer(&seen_b, 0, bytemuck::cast_slice(&bits));
                run_all(&ctx, &all, 1);
                let w: Vec<u32> =
                    bytemuck::cast_slice(&block_on(ctx.read_back(&out, 0, 16)).unwrap()).to_vec();
                let next: Vec<u32> =
                    bytemuck::cast_slice(&block_on(ctx.read_back(&tokens, 0, 4)).unwrap()).to_vec();
                let what = format!("{row_kind} k={top_k} t={temperature} p={top_p} min_p={min_p} penalty={penalty} u={u}");
                if cands.len() > Kernels::SELECT_CAP {
                    assert_eq!(
                        (w[2], next[0]),
                        (u32::MAX, 0),
                        "{what}: nothing to draw from"
                    );
                    continue;
                }
                let want = Sampler::sample_with(&sp, cands.clone(), u);
                let value = cands.iter().find(|c| c.0 == want).unwrap().1;
                assert_eq!((w[2], w[3]), (want, value.to_bits()), "{what}: the draw");
                assert_eq!(next[0], want, "{what}: the next step's token");
            }
        }
    }
}

#[test]
fn a_row_larger_than_a_binding_is_a_clear_error() {
    let ctx = gpu_with_max_binding(Some(4096));
    let entry = TensorEntry {
        name: "wide".into(),
        shape: vec![2, 2000],
        codec: Codec::F32,
        offset: 0,
        bytes: 16000,
        error: None,
    };
    match GpuTensor::create(&ctx, &entry).err() {
        Some(qins_runtime::QinsError::AdapterLimit {
            limit,
            needed,
            available,
            what,
        }) => {
            assert_eq!(
                (limit, needed, available),
                ("maxStorageBufferBindingSize", 8000, 4096)
            );
            assert!(what.contains("wide"), "{what}");
        }
        other => panic!("expected an adapter-limit error, got {other:?}"),
    }
}

/// The copy kernel qins-bench measures bandwidth against: every 16-byte word copied, none
/// past the end, for sizes that leave a workgroup partly idle.
#[test]
fn copy_copies_every_word() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for words in [4usize, 12, 4 * 257, 4 * 70_003] {
        let src: Vec<u32> = (0..words as u32)
            .map(|i| i.wrapping_mul(2654435761))
            .collect();
        let s = ctx.storage("src", bytemuck::cast_slice(&src));
        // One 16-byte word more than copied, which must stay zero.
        let d = ctx.scratch("dst", words + 4);
        Kernels::run(&ctx, &[&k.copy(&s, &d, words as u64 * 4)], 1);
        let got: Vec<u32> = bytemuck::pod_collect_to_vec(
            &block_on(ctx.read_back(&d, 0, (words + 4) as u64 * 4)).unwrap(),
        );
        assert_eq!(&got[..words], &src[..], "{words} words");
        assert_eq!(&got[words..], &[0; 4], "{words} words: past the end");
    }
}
