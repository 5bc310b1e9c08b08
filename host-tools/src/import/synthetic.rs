//! Random weights in a real model's exact shapes, for speed measurements where the real
//! weights are unavailable (Phi-3.5-mini cannot be downloaded on the build machines).

use anyhow::{bail, Result};
use qins_runtime::format::GenerationDefaults;
use qins_runtime::model::{ModelConfig, RopeScaling, TensorRole, TensorSpec};
use rayon::prelude::*;
use serde_json::json;

use super::{Imported, WeightSource};

pub const MODELS: &[&str] = &["phi-3.5-mini", "smollm2-135m"];

const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const PHI3_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

/// `layers` overrides the layer count (a cut-down model for quick checks).
pub fn open(name: &str, layers: Option<usize>) -> Result<Imported> {
    match name {
        "phi-3.5-mini" => Ok(phi35(layers)),
        "smollm2-135m" => Ok(smollm2(layers)),
        _ => bail!(
            "unknown synthetic model \"{name}\" (known: {})",
            MODELS.join(", ")
        ),
    }
}

/// Phi-3.5-mini-instruct's shapes: 32 layers of 3072, fused qkv (9216) and gate_up (16384),
/// longrope.
fn phi35(layers: Option<usize>) -> Imported {
    let (orig, max) = (4096usize, 131072usize);
    let half = 48;
    let config = ModelConfig {
        architecture: "phi3".into(),
        vocab_size: 32064,
        hidden_size: 3072,
        intermediate_size: 8192,
        num_layers: layers.unwrap_or(32),
        num_heads: 32,
        num_kv_heads: 32,
        head_dim: 96,
        rotary_dim: 96,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: Some(RopeScaling::Longrope {
            short_factor: vec![1.0; half],
            long_factor: (0..half).map(|i| 1.0 + i as f32).collect(),
            original_max_position_embeddings: orig,
            attention_factor: (1.0 + ((max / orig) as f32).ln() / (orig as f32).ln()).sqrt(),
        }),
        max_position_embeddings: max,
        attention_bias: false,
        tie_word_embeddings: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![32007, 32001, 32000],
    };
    let specials = [
        "<unk>",
        "<s>",
        "</s>",
        "<|end|>",
        "<|user|>",
        "<|assistant|>",
        "<|system|>",
    ];
    synthetic(
        config,
        &specials,
        PHI3_TEMPLATE,
        "<s>",
        "<|end|>",
        "phi-3.5-mini",
    )
}

/// SmolLM2-135M's shapes: Llama, grouped-query 9/3 heads, tied embeddings.
fn smollm2(layers: Option<usize>) -> Imported {
    let config = ModelConfig {
        architecture: "llama".into(),
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_layers: layers.unwrap_or(30),
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        rotary_dim: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 100000.0,
        rope_scaling: None,
        max_position_embeddings: 8192,
        attention_bias: false,
        tie_word_embeddings: true,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    };
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    synthetic(
        config,
        &specials,
        CHATML_TEMPLATE,
        "<|im_start|>",
        "<|im_end|>",
        "smollm2-135m",
    )
}

fn synthetic(
    config: ModelConfig,
    specials: &[&str],
    template: &str,
    bos: &str,
    eos: &str,
    name: &str,
) -> Imported {
    Imported {
        tokenizer: byte_tokenizer(specials),
        chat_template: Some(template.into()),
        bos_token: Some(bos.into()),
        eos_token: Some(eos.into()),
        add_bos_token: false,
        generation: GenerationDefaults::default(),
        source: format!("synthetic:{name}"),
        config,
        weights: Box::new(Random),
    }
}

/// A byte-level BPE tokenizer with no merges: every byte is a token. Enough to drive
/// generation in benchmarks.
fn byte_tokenizer(specials: &[&str]) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), json!(i));
        added.push(
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}),
        );
    }
    for (b, ch) in byte_level_chars().into_iter().enumerate() {
        vocab.insert(ch.to_string(), json!(specials.len() + b));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []},
    })
}

/// GPT-2's byte → printable character map.
fn byte_level_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

struct Random;

impl WeightSource for Random {
    fn load(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        let n: usize = spec.shape.iter().product();
        if spec.role == TensorRole::Vector {
            return Ok(vec![1.0; n]);
        }
        // SplitMix64 seeded by the tensor name and block: deterministic, independent per
        // tensor, and filled in parallel (3.8B values for Phi-3.5). A general RNG crate would
        // add a dependency without gaining anything here.
        let seed = spec.name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut out = vec![0f32; n];
        out.par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(block, chunk)| {
                let mut state = seed ^ (block as u64).wrapping_mul(0xd6e8_feb8_6659_fd93);
                let mut next = move || {
                    state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
                };
                // Sum of four uniforms: bell-shaped like trained weights, std 0.02.
                chunk.iter_mut().for_each(|v| {
                    *v = (next() + next() + next() + next() - 2.0) * 0.02 * 3f32.sqrt()
                });
            });
        Ok(out)
    }
}
