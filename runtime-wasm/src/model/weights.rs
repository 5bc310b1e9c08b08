//! The canonical tensors of an archive, decoded to f32 for the CPU reference engine.

use std::collections::HashMap;
use std::io::Read;

use super::ModelConfig;
use crate::codec::decode;
use crate::format::{read_archive, Manifest};
use crate::{QinsError, Result};

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    /// [q_dim + 2·kv_dim, hidden]
    pub attn_qkv: Vec<f32>,
    /// [hidden, q_dim]
    pub attn_output: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    /// [2·intermediate, hidden]: gate rows then up rows.
    pub ffn_gate_up: Vec<f32>,
    /// [hidden, intermediate]
    pub ffn_down: Vec<f32>,
}

pub struct Weights {
    /// [vocab, hidden]
    pub token_embd: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<f32>,
    /// [vocab, hidden]; None when tied to the embedding.
    pub output: Option<Vec<f32>>,
}

impl Weights {
    /// Reads and decodes a whole archive (every chunk verified on the way).
    pub fn read<R: Read>(r: R, len: Option<u64>) -> Result<(Manifest, Weights)> {
        let mut decoded: HashMap<String, Vec<f32>> = HashMap::new();
        let manifest = read_archive(r, len, |t, bytes| {
            let (rows, cols) = t.rows_cols();
            decoded.insert(t.name.clone(), decode(t.codec, &bytes, rows, cols)?);
            Ok(())
        })?;
        let w = Self::from_tensors(&manifest.config, decoded)?;
        Ok((manifest, w))
    }

    fn from_tensors(cfg: &ModelConfig, mut t: HashMap<String, Vec<f32>>) -> Result<Self> {
        let mut take = |name: &str, len: usize| -> Result<Vec<f32>> {
            let v = t.remove(name).ok_or_else(|| QinsError::Tensor {
                name: name.into(),
                msg: "missing from the archive".into(),
            })?;
            if v.len() != len {
                return Err(QinsError::Tensor {
                    name: name.into(),
                    msg: format!("has {} values, the config needs {len}", v.len()),
                });
            }
            Ok(v)
        };
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let token_embd = take("token_embd", v * h)?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = |n: &str| format!("layers.{i}.{n}");
            layers.push(LayerWeights {
                attn_norm: take(&p("attn_norm"), h)?,
                attn_qkv: take(&p("attn_qkv"), (cfg.q_dim() + 2 * cfg.kv_dim()) * h)?,
                attn_output: take(&p("attn_output"), h * cfg.q_dim())?,
                ffn_norm: take(&p("ffn_norm"), h)?,
                ffn_gate_up: take(&p("ffn_gate_up"), 2 * cfg.intermediate_size * h)?,
                ffn_down: take(&p("ffn_down"), h * cfg.intermediate_size)?,
            });
        }
        let output_norm = take("output_norm", h)?;
        let output = if cfg.tie_word_embeddings {
            None
        } else {
            Some(take("output", v * h)?)
        };
        Ok(Self {
            token_embd,
            layers,
            output_norm,
            output,
        })
    }

    /// The output projection (the embedding when tied).
    pub fn lm_head(&self) -> &[f32] {
        self.output.as_deref().unwrap_or(&self.token_embd)
    }
}
