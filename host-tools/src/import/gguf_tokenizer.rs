//! Rebuilds a Hugging Face tokenizer.json from GGUF `tokenizer.ggml.*` metadata so the runtime
//! has one tokenizer path (the `tokenizers` crate) whatever the checkpoint's format.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value as Json};

use super::gguf_file::Value;

pub struct Rebuilt {
    pub json: Json,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// The llama-3 split pattern, as in Meta's tokenizer.json.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split pattern, as in its tokenizer.json: the llama-3 one with single digits.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub fn build(kv: &HashMap<String, Value>) -> Result<Rebuilt> {
    let model = kv
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if model != "gpt2" {
        bail!("tokenizer model \"{model}\" is not supported (byte-level BPE \"gpt2\" only)");
    }
    let strings = |key: &str| -> Result<Vec<String>> {
        kv.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("{key} missing"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| anyhow!("{key} holds a non-string"))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = kv
        .get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();

    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == TOKEN_CONTROL,
            }));
        }
    }
    let pre = kv
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    // Each llama.cpp pre-tokenizer name maps to the HF pre-tokenizer it was made from.
    let (pre_tokenizer, ignore_merges) = match pre {
        "default" | "gpt2" => (byte_level(true), false),
        "smollm" | "starcoder" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "llama-bpe" | "llama3" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": false},
                byte_level(false)]}),
            true,
        ),
        // Qwen2's tokenizer.json also NFC-normalizes; llama.cpp does not, and its ids are the
        // reference here (they differ only on decomposed Unicode).
        "qwen2" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": false},
                byte_level(false)]}),
            false,
        ),
        other => bail!(
            "pre-tokenizer \"{other}\" is not supported (gpt2, smollm, starcoder, llama-bpe, qwen2)"
        ),
    };
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
        },
    });
    let text_of = |key: &str| {
        kv.get(key)
            .and_then(Value::as_u64)
            .and_then(|id| tokens.get(id as usize).cloned())
    };
    Ok(Rebuilt {
        json,
        bos_token: text_of("tokenizer.ggml.bos_token_id"),
        eos_token: text_of("tokenizer.ggml.eos_token_id"),
    })
}
