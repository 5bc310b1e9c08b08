//! GGUF import (architectures llama and qwen2): metadata → canonical config, tensors
//! dequantized to f32 (llama: with llama.cpp's Q/K row permutation undone; qwen2 is stored
//! unpermuted, for llama.cpp's NEOX rope), tokenizer rebuilt as a tokenizer.json.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ggml_quants::{QuantExt, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use memmap2::Mmap;
use qins_runtime::format::GenerationDefaults;
use qins_runtime::model::{split_name, ModelConfig, TensorSpec};

use super::gguf_file::{type_name, GgufFile, TensorInfo, Value};
use super::{check_len, gguf_tokenizer, kquants, Imported, WeightSource};

pub fn open(path: &Path) -> Result<Imported> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: read-only map; every offset read from it is bounds-checked by the parser.
    let mmap =
        unsafe { Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
    let gguf = GgufFile::parse(&mmap).with_context(|| format!("{}", path.display()))?;
    let kv = &gguf.kv;
    let arch = kv
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if !SUPPORTED.contains(&arch) {
        bail!(
            "{}: unsupported GGUF architecture \"{arch}\" (supported: {})",
            path.display(),
            SUPPORTED.join(", ")
        );
    }
    let arch = arch.to_string();
    let tensors: HashMap<String, TensorInfo> = gguf
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let config =
        config_from_metadata(&arch, kv, &tensors).with_context(|| format!("{}", path.display()))?;
    let tok =
        gguf_tokenizer::build(kv).with_context(|| format!("{}: tokenizer", path.display()))?;
    Ok(Imported {
        tokenizer: tok.json,
        chat_template: kv
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .map(String::from),
        bos_token: tok.bos_token,
        eos_token: tok.eos_token,
        add_bos_token: matches!(
            kv.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        ),
        generation: GenerationDefaults::default(),
        source: format!(
            "gguf:{}",
            path.file_name().map_or("".into(), |n| n.to_string_lossy())
        ),
        weights: Box::new(GgufWeights {
            path: path.display().to_string(),
            mmap,
            tensors,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
            permuted: arch == "llama",
        }),
        config,
    })
}

const SUPPORTED: &[&str] = &["llama", "qwen2"];

fn config_from_metadata(
    arch: &str,
    kv: &HashMap<String, Value>,
    tensors: &HashMap<String, TensorInfo>,
) -> Result<ModelConfig> {
    let get = |k: &str| kv.get(&format!("{arch}.{k}"));
    let req = |k: &str| {
        get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| anyhow!("metadata {arch}.{k} missing"))
    };
    let hidden = req("embedding_length")?;
    let heads = req("attention.head_count")?;
    let head_dim = get("attention.key_length")
        .and_then(Value::as_u64)
        .map_or(hidden / heads.max(1), |v| v as usize);
    let embd = tensors
        .get("token_embd.weight")
        .ok_or_else(|| anyhow!("tensor token_embd.weight missing"))?;
    let vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
    let token_id = |k: &str| kv.get(k).and_then(Value::as_u64).map(|v| v as u32);
    let mut eos: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
        .iter()
        .filter_map(|k| token_id(k))
        .collect();
    eos.dedup();
    Ok(ModelConfig {
        architecture: arch.into(),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: req("feed_forward_length")?,
        num_layers: req("block_count")?,
        num_heads: heads,
        num_kv_heads: get("attention.head_count_kv")
            .and_then(Value::as_u64)
            .map_or(heads, |v| v as usize),
        head_dim,
        rotary_dim: get("rope.dimension_count")
            .and_then(Value::as_u64)
            .map_or(head_dim, |v| v as usize),
        rms_norm_eps: get("attention.layer_norm_rms_epsilon")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5) as f32,
        rope_theta: get("rope.freq_base")
            .and_then(Value::as_f64)
            .unwrap_or(10000.0) as f32,
        rope_scaling: None,
        max_position_embeddings: req("context_length")?,
        tie_word_embeddings: !tensors.contains_key("output.weight"),
        attention_bias: tensors.contains_key("blk.0.attn_q.bias"),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_ids: eos,
    })
}

struct GgufWeights {
    path: String,
    mmap: Mmap,
    tensors: HashMap<String, TensorInfo>,
    heads: usize,
    kv_heads: usize,
    /// Q/K rows interleaved by llama.cpp's converter (llama), to be undone.
    permuted: bool,
}

impl GgufWeights {
    /// A GGUF tensor as f32, checked against the expected [rows, cols] (or [n]).
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| anyhow!("{}: tensor {name} missing", self.path))?;
        // GGML lists the contiguous dimension first.
        let got: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        if got != shape {
            bail!(
                "{}: tensor {name} has shape {got:?}, the metadata implies {shape:?}",
                self.path
            );
        }
        let n = shape.iter().product();
        dequantize(t.ggml_type, &self.mmap[t.start..t.start + t.len], n)
            .with_context(|| format!("{}: tensor {name} ({})", self.path, type_name(t.ggml_type)))
    }
}

impl WeightSource for GgufWeights {
    fn load(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        let name = spec.name.as_str();
        let shape = spec.shape.as_slice();
        let cols = shape.last().copied().unwrap_or(0);
        let data = match split_name(name) {
            (Some(i), "attn_norm") => self.get(&format!("blk.{i}.attn_norm.weight"), shape)?,
            (Some(i), "ffn_norm") => self.get(&format!("blk.{i}.ffn_norm.weight"), shape)?,
            (Some(i), "attn_output") => self.get(&format!("blk.{i}.attn_output.weight"), shape)?,
            (Some(i), "ffn_down") => self.get(&format!("blk.{i}.ffn_down.weight"), shape)?,
            (Some(i), "attn_qkv") => {
                let hd = shape[0] / (self.heads + 2 * self.kv_heads);
                let q = self.get(&format!("blk.{i}.attn_q.weight"), &[self.heads * hd, cols])?;
                let k = self.get(
                    &format!("blk.{i}.attn_k.weight"),
                    &[self.kv_heads * hd, cols],
                )?;
                let v = self.get(
                    &format!("blk.{i}.attn_v.weight"),
                    &[self.kv_heads * hd, cols],
                )?;
                let mut out = self.unpermute(q, cols, self.heads);
                out.extend(self.unpermute(k, cols, self.kv_heads));
                out.extend(v);
                out
            }
            (Some(i), "attn_qkv_bias") => {
                let hd = shape[0] / (self.heads + 2 * self.kv_heads);
                let (q_dim, kv_dim) = (self.heads * hd, self.kv_heads * hd);
                let q = self.get(&format!("blk.{i}.attn_q.bias"), &[q_dim])?;
                let k = self.get(&format!("blk.{i}.attn_k.bias"), &[kv_dim])?;
                let mut out = self.unpermute(q, 1, self.heads);
                out.extend(self.unpermute(k, 1, self.kv_heads));
                out.extend(self.get(&format!("blk.{i}.attn_v.bias"), &[kv_dim])?);
                out
            }
            (Some(i), "ffn_gate_up") => {
                let ff = shape[0] / 2;
                let mut out = self.get(&format!("blk.{i}.ffn_gate.weight"), &[ff, cols])?;
                out.extend(self.get(&format!("blk.{i}.ffn_up.weight"), &[ff, cols])?);
                out
            }
            (None, "token_embd") => self.get("token_embd.weight", shape)?,
            (None, "output_norm") => self.get("output_norm.weight", shape)?,
            (None, "output") => self.get("output.weight", shape)?,
            _ => bail!("unknown canonical tensor {name}"),
        };
        check_len(spec, &data, &self.path)?;
        Ok(data)
    }
}

impl GgufWeights {
    /// Q or K rows (or bias values, `cols` 1) in Hugging Face order.
    fn unpermute(&self, w: Vec<f32>, cols: usize, n_head: usize) -> Vec<f32> {
        if self.permuted {
            unpermute(&w, cols, n_head)
        } else {
            w
        }
    }
}

/// Undoes llama.cpp's convert-time permutation of Q/K rows (it interleaves each head's two
/// rotary halves for its rope kernel): GGUF row `2j + t` of a head is Hugging Face row
/// `t·head_dim/2 + j`.
pub fn unpermute(w: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for j in 0..half {
            for t in 0..2 {
                let src = (h * hd + 2 * j + t) * cols;
                let dst = (h * hd + t * half + j) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

/// Dequantizes `n` values of GGML type `ty` to f32.
pub fn dequantize(ty: u32, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    Ok(match ty {
        0 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        1 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        30 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        2 => blocks::<Q4_0, 32>(bytes, n)?,
        3 => blocks::<Q4_1, 32>(bytes, n)?,
        6 => blocks::<Q5_0, 32>(bytes, n)?,
        7 => blocks::<Q5_1, 32>(bytes, n)?,
        8 => blocks::<Q8_0, 32>(bytes, n)?,
        12 => super_blocks(bytes, n, 144, kquants::q4_k)?,
        13 => super_blocks(bytes, n, 176, kquants::q5_k)?,
        14 => super_blocks(bytes, n, 210, kquants::q6_k)?,
        other => bail!("unsupported GGML type {}", type_name(other)),
    })
}

fn super_blocks(bytes: &[u8], n: usize, size: usize, f: fn(&[u8], &mut [f32])) -> Result<Vec<f32>> {
    if !n.is_multiple_of(256) || bytes.len() != n / 256 * size {
        bail!(
            "{} bytes do not hold {n} values in 256-value blocks of {size} bytes",
            bytes.len()
        );
    }
    let mut out = vec![0f32; n];
    for (b, y) in bytes.chunks_exact(size).zip(out.chunks_exact_mut(256)) {
        f(b, y);
    }
    Ok(out)
}

fn blocks<B, const N: usize>(bytes: &[u8], n: usize) -> Result<Vec<f32>>
where
    B: QuantExt<f32, N>,
{
    let size = std::mem::size_of::<B>();
    if !n.is_multiple_of(N) || bytes.len() != n / N * size {
        bail!(
            "{} bytes do not hold {n} values in {N}-value blocks of {size} bytes",
            bytes.len()
        );
    }
    let nb = n / N;
    let mut blk: Vec<B> = Vec::with_capacity(nb);
    // SAFETY: ggml-quants' block types are #[repr(C)] structs of u8 arrays and f16 values, for
    // which every bit pattern is valid; the copy fills exactly `nb` blocks (length checked above)
    // and sidesteps the alignment the mapped bytes may lack.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), blk.as_mut_ptr() as *mut u8, nb * size);
        blk.set_len(nb);
    }
    let mut out = vec![0f32; n];
    B::dequantize_slice(&mut out, &blk).map_err(|e| anyhow!("dequantize: {e:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        use super::super::gguf_file::block_size;
        assert_eq!(std::mem::size_of::<Q4_0>(), block_size(2).unwrap().1);
        assert_eq!(std::mem::size_of::<Q4_1>(), block_size(3).unwrap().1);
        assert_eq!(std::mem::size_of::<Q5_0>(), block_size(6).unwrap().1);
        assert_eq!(std::mem::size_of::<Q5_1>(), block_size(7).unwrap().1);
        assert_eq!(std::mem::size_of::<Q8_0>(), block_size(8).unwrap().1);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (n_head, hd, cols) = (3, 8, 5);
        let rows = n_head * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..n_head {
            for t in 0..2 {
                for j in 0..hd / 2 {
                    let src = (h * hd + t * hd / 2 + j) * cols;
                    let dst = (h * hd + j * 2 + t) * cols;
                    gguf[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_eq!(unpermute(&gguf, cols, n_head), hf);
    }
}
