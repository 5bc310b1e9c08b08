//! qins-run: chat with a `.qins` archive in the terminal, or query it (tokens, logits, bench).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;
use qins_host::load::{open, AnyEngine, LoadOptions};
use qins_runtime::chat::{GenerationStats, Generator, Message, SamplingParams};
use qins_runtime::engine::{block_on, Engine};
use qins_runtime::format::Manifest;
use qins_runtime::gpu::Phase;
use qins_runtime::QinsError;
use serde_json::json;

#[derive(Parser)]
#[command(
    version,
    about = "Run a .qins model: one prompt, an interactive chat, or a query"
)]
struct Args {
    model: PathBuf,
    #[command(flatten)]
    load: LoadOptions,
    /// One user message; the reply streams to stdout.
    #[arg(long)]
    prompt: Option<String>,
    /// Interactive multi-turn chat (/reset clears the history, Ctrl-D quits).
    #[arg(long)]
    chat: bool,
    /// System message for --prompt and --chat.
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy. Default: the archive's generation config, else 0.2 (SmolLM2's recommended
    /// setting; small models ramble when sampled hotter).
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_p: Option<f32>,
    /// 0 is off. Default: the archive's generation config, else 40 (llama.cpp's default; the
    /// GPU engine then returns only the candidates, not the whole logits row).
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Default: the archive's generation config, else 1.1 (keeps small models out of loops).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Default: a fresh seed each run.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep generating past end-of-turn tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// With --prompt: print {"ids", "text", "stats"} instead of streaming.
    #[arg(long)]
    json: bool,
    /// Print {"logits": [...]} of the last position after feeding these token ids (e.g. 1,2,3).
    #[arg(long, value_delimiter = ',')]
    logits_for: Option<Vec<u32>>,
    /// With --logits-for: logits of every position, as a list of lists.
    #[arg(long)]
    all_positions: bool,
    /// Print {"ids": [...]} for this text (special-token text included, no BOS).
    #[arg(long)]
    tokenize: Option<String>,
    /// Print one JSON object with load_s, ttft_ms, prefill_tok_s, decode_tok_s.
    #[arg(long)]
    bench: bool,
    /// With --bench: a prompt of exactly this many tokens (the chat prompt's ids repeated),
    /// for prefill speed at a given length; default the chat prompt alone (about 60 tokens).
    #[arg(long)]
    bench_prompt: Option<usize>,
    /// Load the archive --load-runs times and print where each load's time went (device,
    /// read, checksum, zstd, upload, build) with MB/s per stage, then the time to the first
    /// token of a 100-token prompt.
    #[arg(long)]
    bench_load: bool,
    #[arg(long, default_value_t = 3)]
    load_runs: usize,
    /// Model and timing details on stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn sampling(args: &Args, m: &Manifest) -> SamplingParams {
    let g = &m.generation;
    SamplingParams {
        temperature: args.temperature.or(g.temperature).unwrap_or(0.2),
        top_k: args.top_k.or(g.top_k.map(|k| k as usize)).unwrap_or(40),
        top_p: args.top_p.or(g.top_p).unwrap_or(0.9),
        min_p: args.min_p,
        repetition_penalty: args.repeat_penalty.or(g.repetition_penalty).unwrap_or(1.1),
        seed: args.seed.unwrap_or_else(SamplingParams::fresh_seed),
    }
}

/// Streams one reply to stdout; returns its ids, text and stats.
fn reply(
    gen: &mut Generator<AnyEngine>,
    messages: &[Message],
    params: &SamplingParams,
    args: &Args,
    stream: bool,
) -> Result<(Vec<u32>, String, GenerationStats)> {
    let mut run = gen.generate_chat(messages, params.clone(), args.max_tokens, args.ignore_eos)?;
    let mut text = String::new();
    let mut out = std::io::stdout().lock();
    for ev in run.by_ref() {
        if let Some(t) = ev?.text {
            if stream {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            }
            text.push_str(&t);
        }
    }
    if stream {
        let _ = out.write_all(b"\n");
    }
    Ok((run.generated().to_vec(), text, run.stats().clone()))
}

fn base_messages(args: &Args) -> Vec<Message> {
    args.system
        .iter()
        .map(|s| Message::new("system", s))
        .collect()
}

/// `--bench-load`: the stage table of each load, then the first token of a 100-token prompt.
fn bench_load(args: &Args) -> Result<()> {
    const PROMPT_TOKENS: usize = 100;
    let mut last = None;
    let mut runs = Vec::new();
    for run in 0..args.load_runs.max(1) {
        drop(last.take());
        let loaded = open(&args.model, &args.load)?;
        let (info, st) = (&loaded.info, &loaded.info.load_stages);
        let mb = info.archive_bytes as f64 / 1e6;
        let stages = [
            ("device", st.device_ms),
            ("read", st.read_ms),
            ("checksum", st.checksum_ms),
            ("zstd", st.decompress_ms),
            ("upload", st.upload_ms),
            ("other", st.other_ms),
            ("build", st.build_ms),
            ("total", st.total_ms),
        ];
        if !args.json {
            eprintln!(
                "load {} of {}: {mb:.1} MB on {}",
                run + 1,
                args.load_runs,
                info.summary()
            );
            for (name, ms) in stages {
                eprintln!(
                    "  {name:<9}{ms:>9.1} ms {:>9.0} MB/s",
                    mb / (ms / 1e3).max(1e-9)
                );
            }
        }
        runs.push(json!({"archive_bytes": info.archive_bytes, "stages": st,
            "total_mb_s": mb / (st.total_ms / 1e3).max(1e-9)}));
        last = Some(loaded);
    }
    let loaded = last.expect("one load at least");
    let greedy = SamplingParams {
        temperature: 0.0,
        ..sampling(args, &loaded.manifest)
    };
    let mut gen = loaded.generator;
    // Any text repeated until it makes enough tokens: the timing does not depend on it.
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(PROMPT_TOKENS);
    let mut ids = gen.tokenizer.encode(&text, true)?;
    ids.truncate(PROMPT_TOKENS);
    let mut run = gen.generate(&ids, greedy, 1, true)?;
    for ev in run.by_ref() {
        ev?;
    }
    let ttft = run.stats().ttft_ms;
    if args.json {
        println!(
            "{}",
            json!({"loads": runs, "prompt_tokens": ids.len(), "ttft_ms": ttft})
        );
    } else {
        eprintln!(
            "first token after a {}-token prompt: {ttft:.0} ms",
            ids.len()
        );
    }
    Ok(())
}

fn run() -> Result<()> {
    let args = Args::parse();
    if args.bench_load {
        return bench_load(&args);
    }
    let loaded = open(&args.model, &args.load)?;
    let (manifest, mut gen, info) = (loaded.manifest, loaded.generator, loaded.info);
    let load_s = info.load_ms / 1e3;
    let c = &manifest.config;
    if args.verbose {
        eprintln!(
            "{} ({}): {} layers, hidden {}, vocab {}; loaded in {load_s:.2} s on {}",
            args.model.display(),
            manifest.source,
            c.num_layers,
            c.hidden_size,
            c.vocab_size,
            info.summary()
        );
    }
    let params = sampling(&args, &manifest);
    // A closed pipe (| head) ends the output quietly instead of panicking.
    let print = |v: serde_json::Value| {
        let _ = writeln!(std::io::stdout(), "{v}");
    };

    if let Some(text) = &args.tokenize {
        print(json!({"ids": gen.tokenizer.encode(text, false)?}));
    } else if let Some(ids) = &args.logits_for {
        if ids.is_empty() {
            bail!("--logits-for needs at least one token id");
        }
        gen.engine.reset();
        let logits = block_on(gen.engine.extend(ids, args.all_positions))?;
        if args.all_positions {
            let rows: Vec<&[f32]> = logits.chunks(c.vocab_size).collect();
            print(json!({"logits": rows}));
        } else {
            print(json!({"logits": logits}));
        }
    } else if args.bench {
        let messages = [Message::new(
            "user",
            "Write a short story about a robot who learns to paint.",
        )];
        let greedy = SamplingParams {
            temperature: 0.0,
            ..params
        };
        let max = if args.max_tokens == 256 {
            64
        } else {
            args.max_tokens
        };
        let mut prompt = gen.chat_prompt_ids(&messages)?;
        if let Some(n) = args.bench_prompt {
            prompt = prompt.iter().copied().cycle().take(n).collect();
        }
        let mut run = gen.generate(&prompt, greedy, max, true)?;
        for ev in run.by_ref() {
            ev?;
        }
        let s = run.stats().clone();
        drop(run);
        // `--profile`: the decoded tokens' GPU time per kernel, and in all (its first
        // dispatch's start to its last one's end: the rest of a token's wall time is the
        // host's and the submission's); the prompt's likewise, per prompt token.
        let profile = |phase| {
            gen.engine
                .gpu()
                .and_then(|e| e.model.profile(phase))
                .map(|(kernels, tokens)| {
                    let gpu_us: f64 = kernels.iter().map(|k| k.us_per_token).sum();
                    json!({"tokens": tokens, "gpu_us_per_token": gpu_us, "kernels": kernels})
                })
        };
        print(json!({
            "backend": info.backend,
            "model": args.model.display().to_string(),
            "load_s": load_s,
            "ttft_ms": s.ttft_ms,
            "prefill_tok_s": s.prefill_tok_s,
            "decode_tok_s": s.decode_tok_s,
            // A decoded token's host time from its step's call to its submission (µs; null
            // on the CPU engine): the rest of its wall time is the GPU's and the read-back's.
            "host_step_us": gen.engine.gpu().and_then(|e| e.model.host_step_us()),
            // Decoded tokens whose step the GPU had queued before their call (greedy decoding,
            // the token chosen on the GPU; null on the CPU engine).
            "queued_steps": gen.engine.gpu().map(|e| e.model.queued_steps()),
            "prompt_tokens": s.prompt_tokens,
            "generated_tokens": s.generated_tokens,
            // What the engine used (f16 compute falls back to f32 without shader-f16), not
            // what was asked for; null on the CPU engine (but the KV cache's precision).
            "adapter": info.adapter.as_ref().map(|_| info.summary()),
            "gpu_bytes": info.adapter.as_ref().map(|_| info.gpu_bytes),
            "kv_cache": info.kv_cache,
            "compute": info.adapter.as_ref().map(|_| info.precision),
            // Resident memory after the run and its peak (the load maps the archive, so the
            // peak holds the file's pages and the loaded tensors at once); null off Linux.
            "rss_bytes": proc_status_bytes("VmRSS"),
            "peak_rss_bytes": proc_status_bytes("VmHWM"),
            "engine": info,
            "profile": profile(Phase::Decode),
            "prefill_profile": profile(Phase::Prefill),
        }));
    } else if let Some(p) = &args.prompt {
        let mut messages = base_messages(&args);
        messages.push(Message::new("user", p));
        let (ids, text, stats) = reply(&mut gen, &messages, &params, &args, !args.json)?;
        if args.json {
            print(json!({"ids": ids, "text": text, "stats": stats}));
        } else if args.verbose {
            eprintln!(
                "[{} prompt tokens, {} generated, ttft {:.0} ms, {:.1} tok/s, stop: {}]",
                stats.prompt_tokens,
                stats.generated_tokens,
                stats.ttft_ms,
                stats.decode_tok_s,
                stats.stop_reason
            );
        }
    } else if args.chat {
        chat(&args, &mut gen, &params)?;
    } else {
        bail!("nothing to do: give --prompt, --chat, --tokenize, --logits-for or --bench");
    }
    Ok(())
}

/// A `kB` line of /proc/self/status, in bytes (Linux only).
fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn chat(args: &Args, gen: &mut Generator<AnyEngine>, params: &SamplingParams) -> Result<()> {
    // Each turn prefills only what the conversation added since the last one.
    gen.set_prefix_reuse(true);
    let mut messages = base_messages(args);
    eprintln!("chat: /reset clears the conversation, Ctrl-D quits");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/reset" => {
                messages = base_messages(args);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", line.trim()));
        let (_, text, stats) = match reply(gen, &messages, params, args, true) {
            Ok(r) => r,
            // A message too long for the context: say so and keep the conversation.
            Err(e) if matches!(e.downcast_ref(), Some(QinsError::ContextFull { .. })) => {
                eprintln!("({e}: this message was not sent)");
                messages.pop();
                continue;
            }
            Err(e) => return Err(e),
        };
        if stats.dropped_messages > 0 {
            // The model no longer sees them: the conversation goes on without them.
            let system = messages.iter().take_while(|m| m.role == "system").count();
            messages.drain(system..system + stats.dropped_messages);
            eprintln!(
                "(the oldest {} messages no longer fit the context; the model no longer sees them)",
                stats.dropped_messages
            );
        }
        if args.verbose {
            eprintln!(
                "[{} tokens, {:.1} tok/s]",
                stats.generated_tokens, stats.decode_tok_s
            );
        }
        messages.push(Message::new("assistant", &text));
    }
    eprintln!();
    Ok(())
}

fn main() -> ExitCode {
    qins_host::main_with("qins-run", run)
}
