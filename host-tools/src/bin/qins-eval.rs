//! qins-eval: perplexity of a `.qins` model over a text, and with --ref its KL divergence and
//! top-1 agreement against a reference archive on the same tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use qins_host::load::{open, Backend, LoadOptions};
use qins_runtime::engine::{block_on, Engine};
use serde_json::json;

#[derive(Parser)]
#[command(
    version,
    about = "Perplexity (and KL divergence against a reference) of a .qins model",
    // The load options' --ctx is the window here; the CPU reference evaluates whole windows
    // at once, so it is the default engine.
    mut_arg("max_context", |a| a.default_value("512").help(
        "Window length in tokens; the second half of each window is scored, as llama-perplexity does"
    )),
    mut_arg("backend", |a| a.default_value("cpu")),
)]
struct Args {
    model: PathBuf,
    /// UTF-8 text to score.
    #[arg(long)]
    text: PathBuf,
    /// Score at most this many windows.
    #[arg(long)]
    max_chunks: Option<usize>,
    /// Reference archive (e.g. the f32 conversion) for KL divergence and top-1 agreement.
    #[arg(long = "ref")]
    reference: Option<PathBuf>,
    /// Feed each window one token at a time (the decode path, e.g. to score --compute f16,
    /// which only decode uses) instead of all at once (the prefill path).
    #[arg(long)]
    stepwise: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    load: LoadOptions,
}

/// log-softmax of one row of logits, in f64 for summing many small terms.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

fn run() -> Result<()> {
    let args = Args::parse();
    if args.load.max_context < 4 {
        bail!("--ctx must be at least 4");
    }
    let text = std::fs::read_to_string(&args.text)
        .with_context(|| format!("{}: cannot read", args.text.display()))?;
    let opts = args.load.clone();
    let ctx = opts.max_context;
    let loaded = open(&args.model, &opts)?;
    let (manifest, mut gen) = (loaded.manifest, loaded.generator);
    let tokens = gen.tokenizer.encode(&text, false)?;
    let mut reference = match &args.reference {
        Some(p) => {
            // The reference runs on the f32 CPU engine whatever the model's backend.
            let cpu = LoadOptions {
                backend: Backend::Reference,
                ..opts.clone()
            };
            let r = open(p, &cpu)?;
            let (m, g) = (r.manifest, r.generator);
            // What matters is that both read the text as the same tokens.
            if m.config.vocab_size != manifest.config.vocab_size
                || g.tokenizer.encode(&text, false)? != tokens
            {
                bail!(
                    "{}: a reference must share the model's tokenizer",
                    p.display()
                );
            }
            Some(g)
        }
        None => None,
    };
    let bos = if manifest.add_bos_token {
        manifest.config.bos_token_id
    } else {
        None
    };
    let mut chunks = tokens.len() / ctx;
    if let Some(m) = args.max_chunks {
        chunks = chunks.min(m);
    }
    if chunks == 0 {
        bail!(
            "the text has {} tokens, fewer than one window of {}",
            tokens.len(),
            ctx
        );
    }
    let vocab = manifest.config.vocab_size;
    let first = ctx / 2;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(chunks as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} windows {msg}",
        )
        .expect("template"),
    );
    let (mut nll, mut count, mut kl, mut agree) = (0f64, 0usize, 0f64, 0usize);
    for c in 0..chunks {
        let mut window = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        gen.engine.reset();
        let logits = if args.stepwise {
            let mut all = Vec::with_capacity(window.len() * vocab);
            for t in &window {
                all.extend(block_on(gen.engine.extend(&[*t], false))?);
            }
            all
        } else {
            block_on(gen.engine.extend(&window, true))?
        };
        let ref_logits = match reference.as_mut() {
            Some(r) => {
                r.engine.reset();
                Some(block_on(r.engine.extend(&window, true))?)
            }
            None => None,
        };
        for j in first..ctx - 1 {
            let lp = log_softmax(&logits[j * vocab..(j + 1) * vocab]);
            nll -= lp[window[j + 1] as usize];
            count += 1;
            if let Some(rl) = &ref_logits {
                let rp = log_softmax(&rl[j * vocab..(j + 1) * vocab]);
                kl += rp
                    .iter()
                    .zip(&lp)
                    .map(|(r, m)| r.exp() * (r - m))
                    .sum::<f64>();
                agree += (argmax(&rp) == argmax(&lp)) as usize;
            }
        }
        bar.set_message(format!("ppl {:.3}", (nll / count as f64).exp()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ppl = (nll / count as f64).exp();
    let mut out = json!({"model": args.model.display().to_string(), "ppl": ppl, "tokens": count, "windows": chunks, "ctx": ctx});
    if reference.is_some() {
        out["kld_mean"] = json!(kl / count as f64);
        out["top1_agree"] = json!(agree as f64 / count as f64);
    }
    if args.json {
        println!("{out}");
    } else {
        println!(
            "perplexity {ppl:.4} over {count} scored tokens ({chunks} windows of {})",
            ctx
        );
        if reference.is_some() {
            println!(
                "KL divergence vs reference {:.6} nats/token, top-1 agreement {:.2} %",
                kl / count as f64,
                100.0 * agree as f64 / count as f64
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    qins_host::main_with("qins-eval", run)
}
