//! qins-bench: GPU mat-vec bandwidth for each codec on real model shapes, next to a plain copy
//! kernel on the same device in the same run (the ratio survives noisy machines).

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use qins_runtime::codec::{Codec, Layout};
use qins_runtime::format::TensorEntry;
use qins_runtime::gpu::{Dispatch, GpuContext, GpuOptions, GpuTensor, Kernels, MatvecIo, Step};
use serde_json::json;
use web_time::Instant;

#[derive(Parser)]
#[command(version, about = "GPU mat-vec GB/s per codec vs a copy kernel")]
struct Args {
    /// Timed repetitions per measurement.
    #[arg(long, default_value_t = 50)]
    iters: u32,
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

/// Stored bytes of a plausible tensor: timing does not depend on the values, so codes are
/// pseudo-random and scales 1, skipping codebook fitting on hundreds of millions of weights.
fn tensor_bytes(codec: Codec, layout: &Layout) -> Vec<u8> {
    let mut b = vec![0u8; layout.total];
    let mut s = 0x1234_5678u32;
    for v in &mut b[layout.codes.offset..layout.codes.offset + layout.codes.len] {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *v = (s >> 24) as u8 & if codec == Codec::F16 { 0x3b } else { 0xff };
    }
    for (i, c) in b[..layout.codebook.len].chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&(i as f32 / 256.0 - 0.5).to_le_bytes());
    }
    let one: &[u8] = if codec.group().is_some() {
        &[0x00, 0x3c]
    } else {
        &[0, 0, 0x80, 0x3f]
    };
    for c in b[layout.scales.offset..layout.scales.offset + layout.scales.len]
        .chunks_exact_mut(one.len())
    {
        c.copy_from_slice(one);
    }
    b
}

/// Seconds per repetition of `run` (after one warm-up), waiting for the GPU each time round.
fn time(ctx: &GpuContext, iters: u32, run: &dyn Fn()) -> Result<f64> {
    run();
    Kernels::wait(ctx)?;
    let t = Instant::now();
    for _ in 0..iters {
        run();
    }
    Kernels::wait(ctx)?;
    Ok(t.elapsed().as_secs_f64() / iters as f64)
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
    let secs = time(&ctx, args.iters, &|| Kernels::run(&ctx, &[&copy], 1))?;
    let copy_gbs = 2.0 * copy_bytes as f64 / secs / 1e9;
    rows_out
        .push(json!({"kernel": "copy", "bytes": copy_bytes, "us": secs * 1e6, "gb_s": copy_gbs}));

    let shapes: Vec<_> = if args.small {
        SMOLLM2.to_vec()
    } else {
        PHI35.iter().chain(&SMOLLM2).copied().collect()
    };
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
            let (x, y) = (ctx.scratch("x", cols), ctx.scratch("y", rows));
            let step = ctx.uniform("step", &Step::new(0, 1));
            let io = MatvecIo::new(&x, cols, &y, rows);
            let mv = t.matvec(&k, &io, &step);
            let mv: Vec<&Dispatch> = mv.iter().collect();
            let secs = time(&ctx, args.iters, &|| Kernels::run(&ctx, &mv, 1))?;
            // Weights dominate the traffic; activations are counted too.
            let moved = bytes.len() as f64 + 4.0 * (rows + cols) as f64;
            let gbs = moved / secs / 1e9;
            rows_out.push(json!({
                "kernel": format!("matvec {}", codec.name()), "shape": label, "rows": rows, "cols": cols,
                "bytes": bytes.len(), "us": secs * 1e6, "gb_s": gbs, "fraction_of_copy": gbs / copy_gbs,
            }));
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"device": ctx.describe(), "copy_gb_s": copy_gbs, "results": rows_out})
        );
    } else {
        println!(
            "{:<22} {:<18} {:>10} {:>10} {:>9}",
            "kernel", "shape", "µs", "GB/s", "of copy"
        );
        for r in &rows_out {
            println!(
                "{:<22} {:<18} {:>10.1} {:>10.2} {:>8.0}%",
                r["kernel"].as_str().unwrap_or(""),
                r["shape"].as_str().unwrap_or("-"),
                r["us"].as_f64().unwrap_or(0.0),
                r["gb_s"].as_f64().unwrap_or(0.0),
                100.0 * r["fraction_of_copy"].as_f64().unwrap_or(1.0)
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    qins_host::main_with("qins-bench", run)
}
