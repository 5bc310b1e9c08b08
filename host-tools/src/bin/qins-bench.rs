//! qins-bench: GPU mat-vec bandwidth for each codec on real model shapes, next to a plain copy
//! kernel on the same device in the same run (the ratio survives noisy machines), each tensor
//! repeated (from the caches where it fits them) and from memory (copies of it in turn, as a
//! model's tensors are read); the probes, the decode mat-vec with part of its work left out
//! (what that part costs; `MatvecProbe`); the same tensors' prefill batches in tokens/s and
//! GFLOP/s; the fixed costs a decoded token pays (a submission waited on, a dispatch inside
//! one); the decode mat-vecs with the RMSNorm or SiLU·mul before them fused in; a decoded
//! token's attention at short and long contexts, split over chunks of the context and over the
//! whole context per head; and a decoded token's sampling candidates over three vocabularies.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use qins_runtime::codec::{Codec, Layout};
use qins_runtime::format::TensorEntry;
use qins_runtime::gpu::{
    AttentionIo, DecodeAttention, Dispatch, GpuContext, GpuOptions, GpuTensor, HeadShape, Input,
    Kernels, MatvecIo, MatvecProbe, RopeTables, SelectParams, Step,
};
use serde_json::json;
use web_time::Instant;

#[derive(Parser)]
#[command(version, about = "GPU mat-vec GB/s per codec vs a copy kernel")]
struct Args {
    /// Timed submissions per measurement.
    #[arg(long, default_value_t = 50)]
    iters: u32,
    /// Dispatches of the kernel recorded in each submission: kernel time without the
    /// submission's own cost, which a single ~10 µs mat-vec on a fast GPU would not outweigh.
    #[arg(long, default_value_t = 10)]
    reps: u32,
    /// Tokens of the prefill batch timed on each shape (0: none). The engine's batches hold up
    /// to 64.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Only SmolLM2's shapes (for slow devices such as lavapipe).
    #[arg(long)]
    small: bool,
    /// Codecs to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lut8g,lut8,lut4,lut4a,qins8,f16"
    )]
    codecs: Vec<String>,
    #[arg(long)]
    json: bool,
    /// Leave the probes out (A/B runs of other options, which need only the kernels' rows).
    #[arg(long)]
    no_probes: bool,
    /// Time the decode mat-vecs from the caches only, not from memory too (smoke tests on slow
    /// devices, where hundreds of copies of a small tensor take minutes).
    #[arg(long)]
    no_cold: bool,
    #[command(flatten)]
    gpu: GpuOptions,
}

const PHI35: [(&str, usize, usize); 4] = [
    ("phi3.5 o_proj", 3072, 3072),
    ("phi3.5 qkv", 9216, 3072),
    ("phi3.5 gate_up", 16384, 3072),
    ("phi3.5 down", 3072, 8192),
];
const SMOLLM2: [(&str, usize, usize); 4] = [
    ("smollm2 qkv", 960, 576),
    ("smollm2 gate_up", 3072, 576),
    ("smollm2 down", 576, 1536),
    ("smollm2 lm_head", 49152, 576),
];
/// A tensor of one decode workgroup (8 rows): its time is what a mat-vec dispatch costs
/// whatever its size (launch, its chain of dependent loads, the reduction), next to the copy
/// kernel's `dispatch in a submission`.
const TINY: (&str, usize, usize) = ("tiny 8x64", 8, 64);

/// Stored bytes of a plausible tensor: timing does not depend on the values, so codes are
/// pseudo-random, skipping codebook fitting on hundreds of millions of weights; codebook and
/// scales are those on which the probes compute what the whole kernel does (MatvecProbe::fit).
fn tensor_bytes(codec: Codec, layout: &Layout) -> Vec<u8> {
    let mut b = vec![0u8; layout.total];
    let mut s = 0x1234_5678u32;
    for v in &mut b[layout.codes.offset..layout.codes.offset + layout.codes.len] {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *v = (s >> 24) as u8 & if codec == Codec::F16 { 0x3b } else { 0xff };
    }
    MatvecProbe::fit(codec, layout, &mut b);
    b
}

/// Seconds per dispatch of `dispatches` recorded `reps` times in each of `iters` submissions
/// (after one warm-up), for a batch of `n` tokens; the GPU is waited on once at the end.
fn time(ctx: &GpuContext, iters: u32, reps: u32, dispatches: &[&Dispatch], n: u32) -> Result<f64> {
    let all: Vec<&Dispatch> = (0..reps).flat_map(|_| dispatches.iter().copied()).collect();
    Kernels::run(ctx, &all, n);
    Kernels::wait(ctx)?;
    let t = Instant::now();
    for _ in 0..iters {
        Kernels::run(ctx, &all, n);
    }
    Kernels::wait(ctx)?;
    Ok(t.elapsed().as_secs_f64() / (iters * reps) as f64)
}

/// A row of a kernel that moved `moved` bytes in `secs`: its GB/s and their share of the copy
/// kernel's, with the fields of `extra` (an object).
fn rate_row(
    kernel: String,
    shape: &str,
    moved: f64,
    secs: f64,
    copy_gbs: f64,
    extra: serde_json::Value,
) -> serde_json::Value {
    let gbs = moved / secs / 1e9;
    let mut row = json!({"kernel": kernel, "shape": shape, "us": secs * 1e6, "gb_s": gbs,
                         "fraction_of_copy": gbs / copy_gbs});
    if let (Some(row), Some(extra)) = (row.as_object_mut(), extra.as_object()) {
        row.extend(extra.clone());
    }
    row
}

/// Seconds per submission of `d` alone that is waited on and read back (16 bytes), as each
/// decoded token's candidates are: the latency floor of a token.
fn round_trip(ctx: &GpuContext, iters: u32, d: &Dispatch, out: &wgpu::Buffer) -> Result<f64> {
    let mut total = 0.0;
    for i in 0..=iters {
        let t = Instant::now();
        Kernels::run(ctx, &[d], 1);
        pollster::block_on(ctx.read_back(out, 0, 16))?;
        if i > 0 {
            total += t.elapsed().as_secs_f64();
        }
    }
    Ok(total / iters as f64)
}

fn run() -> Result<()> {
    let args = Args::parse();
    let ctx = pollster::block_on(GpuContext::new(&args.gpu))?;
    let k = Kernels::new(&ctx);
    eprintln!("device: {}", ctx.describe());
    let mut rows_out = Vec::new();

    // The yardstick: a 256 MiB copy (64 MiB on --small), counting bytes read + written.
    let copy_bytes: u64 = if args.small { 64 << 20 } else { 256 << 20 };
    let (src, dst) = (
        ctx.scratch("copy src", (copy_bytes / 4) as usize),
        ctx.scratch("copy dst", (copy_bytes / 4) as usize),
    );
    let copy = k.copy(&src, &dst, copy_bytes);
    let secs = time(&ctx, args.iters, 1, &[&copy], 1)?;
    let copy_gbs = 2.0 * copy_bytes as f64 / secs / 1e9;
    rows_out
        .push(json!({"kernel": "copy", "bytes": copy_bytes, "us": secs * 1e6, "gb_s": copy_gbs}));

    // The fixed costs: a 256-byte copy waited on and read back per submission, and the same
    // copy recorded many times in one submission (a decoded token runs a few hundred such
    // dispatches, one submission and one read-back).
    let tiny = k.copy(&src, &dst, 256);
    let submit = round_trip(&ctx, args.iters, &tiny, &dst)?;
    let dispatch = time(&ctx, args.iters, 100, &[&tiny], 1)?;
    rows_out.push(json!({"kernel": "submit + read-back", "us": submit * 1e6}));
    rows_out.push(json!({"kernel": "dispatch in a submission", "us": dispatch * 1e6}));
    // In the model every dispatch has its own bind group and most read buffers the previous
    // ones did not touch, and on the H200 a model dispatch cost ≈ 8 µs or more whatever its
    // work (session 35). The same 256-byte copy in a chain of 64 dispatches: each with its own
    // bind group over one source, then each from its own 16 MiB buffer (1 MiB on --small),
    // which a cold TLB or a buffer's first use would slow.
    let (chain, own_bytes) = if args.small {
        (16, 1 << 20)
    } else {
        (64, 16 << 20)
    };
    let own_groups: Vec<Dispatch> = (0..chain).map(|_| k.copy(&src, &dst, 256)).collect();
    let sources: Vec<wgpu::Buffer> = (0..chain)
        .map(|_| ctx.scratch("chain src", own_bytes / 4))
        .collect();
    let own_buffers: Vec<Dispatch> = sources.iter().map(|s| k.copy(s, &dst, 256)).collect();
    for (kernel, d) in [
        ("dispatch, own bind group", &own_groups),
        ("dispatch, own buffer", &own_buffers),
    ] {
        let secs = time(&ctx, args.iters, 1, &d.iter().collect::<Vec<_>>(), 1)? / chain as f64;
        rows_out.push(json!({"kernel": kernel, "us": secs * 1e6}));
    }
    // The row of dispatches `d` on one token, as `kernel` on `shape` moving `moved` bytes.
    let timed_row =
        |kernel: String, shape: &str, moved: f64, d: &[Dispatch], extra: serde_json::Value| {
            let secs = time(
                &ctx,
                args.iters,
                args.reps,
                &d.iter().collect::<Vec<_>>(),
                1,
            )?;
            Ok::<_, anyhow::Error>(rate_row(kernel, shape, moved, secs, copy_gbs, extra))
        };

    // A decoded token's sampling candidates (select.wgsl) over the vocabularies of Phi-3.5,
    // SmolLM2 and Qwen2.5: greedy (k = 1) and top-k 40 with a repetition penalty.
    for vocab in [32064usize, 49152, 151936] {
        let row: Vec<u8> = (0..vocab)
            .flat_map(|i| (((i * 7919) % 1013) as f32 * 0.02 - 10.0).to_le_bytes())
            .collect();
        let logits = ctx.storage("logits", &row);
        let seen = ctx.scratch("seen", vocab.div_ceil(32));
        let out = ctx.scratch("out", 4 + 2 * Kernels::SELECT_CAP);
        for (kk, penalty) in [(1, 1.0), (40, 1.1)] {
            let params = k.select_params(SelectParams::new(vocab, kk, penalty));
            let d = k.select(&logits, &seen, &out, &params, vocab);
            let shape = format!("vocab {vocab} k {kk}");
            rows_out.push(timed_row(
                "select".into(),
                &shape,
                4.0 * vocab as f64,
                &d,
                json!({}),
            )?);
        }
    }

    // A decoded token's attention over an f16 cache of 4096 positions, at three lengths (128:
    // the whole kernel's one-position-a-thread path, which auto decode takes below 256): GB/s
    // of the keys and values it reads.
    let heads: &[(&str, usize, usize, usize)] = if args.small {
        &[("smollm2", 9, 3, 64)]
    } else {
        &[("phi3.5", 32, 32, 96), ("smollm2", 9, 3, 64)]
    };
    for &(label, nh, nkv, hd) in heads {
        let s = HeadShape {
            nh,
            nkv,
            hd,
            rot_half: hd / 2,
            max_ctx: 4096,
            kv_f16: true,
        };
        let (kc, vc) = (
            ctx.scratch("k", s.cache_words()),
            ctx.scratch("v", s.cache_words()),
        );
        let qkv = ctx.scratch("qkv", (nh + 2 * nkv) * hd);
        let inv_freq = ctx.scratch("inv_freq", hd / 2);
        let rope = k.rope_params(&s, 1.0);
        let scores = ctx.scratch("scores", nh * s.max_ctx);
        let parts = ctx.scratch("parts", s.attention_parts());
        let out = ctx.scratch("out", nh * hd);
        for len in [128, 512, 4096] {
            let step = ctx.uniform("step", &Step::new(len - 1, 1));
            for mode in [DecodeAttention::Split, DecodeAttention::Whole] {
                let io = AttentionIo {
                    qkv: &qkv,
                    bias: None,
                    rope: RopeTables {
                        inv_freq: &inv_freq,
                        params: &rope,
                    },
                    caches: [&kc, &vc],
                    scores: &scores,
                    parts: &parts,
                    out: &out,
                };
                let d = k.attention(&s, io, &step, mode);
                let moved = (2 * len * nkv * hd * 2) as f64;
                let kernel = format!("attention {mode:?}").to_lowercase();
                let shape = format!("{label} ctx {len}");
                rows_out.push(timed_row(kernel, &shape, moved, &d, json!({}))?);
            }
        }
    }

    let mut shapes: Vec<_> = if args.small {
        SMOLLM2.to_vec()
    } else {
        PHI35.iter().chain(&SMOLLM2).copied().collect()
    };
    shapes.push(TINY);
    let b = args.batch.max(1);
    // Kernels with each probe, on clones of the context (see MatvecProbe).
    let probes: Vec<(MatvecProbe, Kernels)> =
        [MatvecProbe::ArithmeticCodebook, MatvecProbe::NoGroups]
            .into_iter()
            .filter(|_| !args.no_probes)
            .map(|probe| {
                let mut c = ctx.clone();
                c.matvec_probe = probe;
                (probe, Kernels::new(&c))
            })
            .collect();
    for name in &args.codecs {
        let codec = Codec::from_name(name, 32)?;
        for &(label, rows, cols) in &shapes {
            let layout = codec.layout(rows, cols)?;
            let bytes = tensor_bytes(codec, &layout);
            let entry = TensorEntry {
                name: label.into(),
                shape: vec![rows, cols],
                codec,
                offset: 0,
                bytes: bytes.len() as u64,
                error: None,
            };
            let t = GpuTensor::upload(&ctx, &entry, &bytes)?;
            // Copies of the tensor, recorded in turn: a tensor repeated alone runs from the
            // caches after its first pass where it fits them (the H200's L2 holds 50 MB, more
            // than most Phi-3.5 tensors), which a model's tensors, each read once a token, do
            // not. The copies (with the first, the copy kernel's bytes, at most 256) pass them.
            let copies = if args.no_cold {
                0
            } else {
                (copy_bytes as usize).div_ceil(bytes.len()).clamp(1, 256)
            };
            let mut tensors = vec![t];
            for _ in 1..copies {
                tensors.push(GpuTensor::upload(&ctx, &entry, &bytes)?);
            }
            let t = &tensors[0];
            // Activations of plausible size, so that the probes' outputs are worth comparing.
            let xs: Vec<u8> = (0..b * cols)
                .flat_map(|i| (((i % 13) as f32 - 6.0) * 0.05).to_le_bytes())
                .collect();
            let (x, y) = (ctx.storage("x", &xs), ctx.scratch("y", b * rows));
            let step = ctx.uniform("step", &Step::new(0, 1));
            let io = MatvecIo::new(&x, cols, &y, rows);
            let mv = t.matvec(&k, &io, &step);
            // Weights dominate the traffic; activations are counted too.
            let moved = bytes.len() as f64 + 4.0 * (rows + cols) as f64;
            let tensor = json!({"rows": rows, "cols": cols, "bytes": bytes.len()});
            // The decode row of `kernel`, whose dispatches of a tensor `dispatch` makes: the
            // tensor repeated (from the caches where it fits them) and the copies in turn
            // (from memory, `cold_*`), with the output of the first tensor's run.
            let decode_row = |kernel: String, dispatch: &dyn Fn(&GpuTensor) -> Vec<Dispatch>| {
                let mut row = timed_row(kernel, label, moved, &dispatch(t), tensor.clone())?;
                let y_out = pollster::block_on(ctx.read_f32(&y, 0, rows))?;
                if args.no_cold {
                    return Ok((row, y_out));
                }
                let all: Vec<Dispatch> = tensors.iter().flat_map(dispatch).collect();
                let turn: Vec<&Dispatch> = all.iter().cycle().take(all.len().max(10)).collect();
                let secs = time(&ctx, args.iters, 1, &turn, 1)? / turn.len() as f64;
                let gbs = moved / secs / 1e9;
                row["cold_us"] = json!(secs * 1e6);
                row["cold_gb_s"] = json!(gbs);
                row["cold_fraction_of_copy"] = json!(gbs / copy_gbs);
                row["copies"] = json!(tensors.len());
                Ok::<_, anyhow::Error>((row, y_out))
            };
            let (row, y_whole) = decode_row(format!("matvec {}", codec.name()), &|t| {
                t.matvec(&k, &io, &step)
            })?;
            rows_out.push(row);
            // The probes: the kernel with part of its work left out (the same output on these
            // tensors, checked), so that the time saved is that part's cost.
            for (probe, pk) in probes.iter().filter(|(probe, _)| probe.applies(codec)) {
                let (row, y_probe) =
                    decode_row(format!("probe {} {probe:?}", codec.name()), &|t| {
                        t.matvec(pk, &io, &step)
                    })?;
                let worst = y_probe
                    .iter()
                    .zip(&y_whole)
                    .map(|(p, w)| (p - w).abs() / w.abs().max(1.0))
                    .fold(0f32, f32::max);
                anyhow::ensure!(
                    worst <= 1e-5,
                    "{} {label}: the {probe:?} probe changed the output ({worst:e}): it does not \
                     measure the same work",
                    codec.name()
                );
                rows_out.push(row);
            }
            // A diagnostic on the largest shape of each model: the same tensor with every code
            // equal, so that a warp's codebook lookups all read one workgroup-memory word
            // (broadcast) instead of spreading over its banks. Much faster than the mat-vec row
            // means the lookups' bank conflicts, not memory, bound the kernel.
            if label.ends_with("gate_up") && !matches!(codec, Codec::F16 | Codec::F32) {
                let mut same = bytes.clone();
                same[layout.codes.offset..layout.codes.offset + layout.codes.len].fill(0x5a);
                let t = GpuTensor::upload(&ctx, &entry, &same)?;
                let mv = t.matvec(&k, &io, &step);
                rows_out.push(timed_row(
                    format!("matvec {} one code", codec.name()),
                    label,
                    moved,
                    &mv,
                    tensor.clone(),
                )?);
            }
            // The decode mat-vec with the op before it fused (RMSNorm before qkv, gate_up and
            // lm_head, SiLU·mul before down), as the engine runs it: its cost over the plain
            // mat-vec against the dispatch it saves.
            let (norm_w, gu) = (ctx.scratch("norm", cols), ctx.scratch("gu", 2 * cols));
            let input = match label {
                l if l.ends_with("down") => Some(Input::SiluMul {
                    gu: &gu,
                    stride: 2 * cols,
                }),
                l if l.ends_with("o_proj") => None,
                _ => Some(Input::Norm {
                    raw: &x,
                    stride: cols,
                    weight: &norm_w,
                    eps: 1e-5,
                }),
            };
            if let Some(input) = input.filter(|i| t.fuses(&k, i)) {
                let fused = t.matvec(&k, &MatvecIo::new(&x, cols, &y, rows).input(input), &step);
                rows_out.push(timed_row(
                    format!("fused matvec {}", codec.name()),
                    label,
                    moved,
                    &fused,
                    tensor.clone(),
                )?);
            }
            if args.batch == 0 {
                continue;
            }
            // The same tensor on a prefill batch, through whichever kernel the engine picks for
            // it (tiled unless --prefill rows).
            ctx.write_uniform(&step, &Step::new(0, b));
            let mv: Vec<&Dispatch> = mv.iter().collect();
            let secs = time(&ctx, args.iters.div_ceil(4), args.reps, &mv, b as u32)?;
            let flops = 2.0 * (rows * cols * b) as f64;
            rows_out.push(json!({
                "kernel": format!("prefill {}", codec.name()), "shape": label, "rows": rows, "cols": cols,
                "tokens": b, "us": secs * 1e6, "tok_s": b as f64 / secs, "gflop_s": flops / secs / 1e9,
                "weight_gb_s": bytes.len() as f64 / secs / 1e9,
            }));
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"device": ctx.describe(), "prefill": ctx.prefill, "copy_gb_s": copy_gbs,
                   "submit_us": submit * 1e6, "dispatch_us": dispatch * 1e6, "results": rows_out})
        );
    } else {
        println!("device: {}, prefill: {:?}", ctx.describe(), ctx.prefill);
        println!(
            "{:<36} {:<18} {:>10} {:>10} {:>9} {:>10} {:>9}",
            "kernel", "shape", "µs", "GB/s", "of copy", "cold µs", "of copy"
        );
        for r in &rows_out {
            let f = |key: &str| r[key].as_f64();
            let (rate, share) = match (f("gb_s"), f("gflop_s")) {
                (Some(g), _) => (
                    format!("{g:.2}"),
                    format!("{:.0}%", 100.0 * f("fraction_of_copy").unwrap_or(1.0)),
                ),
                (None, Some(g)) => (
                    format!("{g:.1} GF/s"),
                    format!("{:.0} tok/s", f("tok_s").unwrap_or(0.0)),
                ),
                (None, None) => (String::new(), String::new()),
            };
            // From memory (the tensor's copies in turn), where measured.
            let (cold, cold_share) = match (f("cold_us"), f("cold_fraction_of_copy")) {
                (Some(us), Some(c)) => (format!("{us:.1}"), format!("{:.0}%", 100.0 * c)),
                _ => (String::new(), String::new()),
            };
            println!(
                "{:<36} {:<18} {:>10.1} {:>10} {:>9} {:>10} {:>9}",
                r["kernel"].as_str().unwrap_or(""),
                r["shape"].as_str().unwrap_or("-"),
                f("us").unwrap_or(0.0),
                rate,
                share,
                cold,
                cold_share
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    qins_host::main_with("qins-bench", run)
}
