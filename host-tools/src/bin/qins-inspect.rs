//! qins-inspect: manifest summary and a full checksum pass over a `.qins` archive.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use qins_runtime::format::{read_archive, Manifest};
use serde_json::json;

#[derive(Parser)]
#[command(version, about = "Check a .qins archive and summarize it")]
struct Args {
    /// The archive (with --catalog: a folder of archives).
    archive: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Print the catalog.json the page's model picker reads for the folder ARCHIVE (what
    /// qins-serve makes on request; a hosted deployment writes it beside the archives).
    #[arg(long)]
    catalog: bool,
}

/// Reads every chunk (checksums, sizes, decoding) and returns the manifest.
fn check(path: &PathBuf) -> Result<(Manifest, u64)> {
    let file = File::open(path).with_context(|| "cannot open".to_string())?;
    let len = file.metadata()?.len();
    let manifest = read_archive(BufReader::new(file), Some(len), |_, _| Ok(()))?;
    Ok((manifest, len))
}

fn main() -> ExitCode {
    qins_host::init_logging();
    let args = Args::parse();
    if args.catalog {
        let cache = qins_host::catalog::CatalogCache::default();
        return match qins_host::catalog::catalog(&args.archive, &cache) {
            Ok(c) => {
                println!("{}", serde_json::to_string_pretty(&c).expect("serializes"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("qins-inspect: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (m, len) = match check(&args.archive) {
        Ok(v) => v,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    json!({"checksums_ok": false, "error": format!("{e:#}")})
                );
            }
            eprintln!("qins-inspect: {}: {e:#}", args.archive.display());
            return ExitCode::FAILURE;
        }
    };
    let mut text = String::new();
    if args.json {
        let tensors: Vec<_> = m
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "shape": t.shape, "codec": t.codec.name(), "bytes": t.bytes, "error": t.error}))
            .collect();
        let out = json!({
            "format_version": m.format_version,
            "converter": m.converter,
            "source": m.source,
            "architecture": m.config.architecture,
            "config": m.config,
            "chat_template": m.chat_template,
            "bos_token": m.bos_token,
            "eos_token": m.eos_token,
            "add_bos_token": m.add_bos_token,
            "generation": m.generation,
            "tensors": tensors,
            "chunks": m.chunks.len(),
            "total_raw_bytes": m.total_raw_bytes,
            "total_bytes": len,
            "checksums_ok": true,
        });
        text = format!("{out}\n");
    } else {
        let c = &m.config;
        let _ = writeln!(
            text,
            "{}  (format v{}, {})",
            args.archive.display(),
            m.format_version,
            m.converter
        );
        let _ = writeln!(text, "  source        {}", m.source);
        let _ = writeln!(text, "  architecture  {} · {} layers · hidden {} · heads {}/{} · head_dim {} · ffn {} · vocab {}",
            c.architecture, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size, c.vocab_size);
        let _ = writeln!(
            text,
            "  rope          theta {} · rotary_dim {} · scaling {}",
            c.rope_theta,
            c.rotary_dim,
            c.rope_scaling
                .as_ref()
                .map_or("none".to_string(), |s| format!("{s:?}")
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string())
        );
        let _ = writeln!(
            text,
            "  tokens        bos {:?} · eos {:?} · chat template {}",
            m.bos_token,
            m.eos_token,
            if m.chat_template.is_some() {
                "yes"
            } else {
                "no"
            }
        );
        let _ = writeln!(
            text,
            "  size          {} bytes on disk, {} decompressed, {} chunks",
            len,
            m.total_raw_bytes,
            m.chunks.len()
        );
        let mut by_codec: std::collections::BTreeMap<String, (usize, u64, u64)> =
            Default::default();
        for t in &m.tensors {
            let e = by_codec.entry(t.codec.name()).or_default();
            e.0 += 1;
            e.1 += t.elements() as u64;
            e.2 += t.bytes;
        }
        for (codec, (n, elems, bytes)) in by_codec {
            let _ = writeln!(
                text,
                "  {codec:<13} {n} tensors · {elems} values · {:.3} bits/value",
                bytes as f64 * 8.0 / elems as f64
            );
        }
        let _ = writeln!(
            text,
            "  checksums     ok (all {} chunks verified)",
            m.chunks.len()
        );
    }
    // A closed pipe (| head) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}
