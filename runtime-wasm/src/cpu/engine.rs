use super::{CpuModel, KvCache};
use crate::chat::Engine;
use crate::model::{ModelConfig, Rope};
use crate::{QinsError, Result};

/// The CPU model with its sequence state: token history, KV cache, and the rotary table the
/// cache was computed with.
pub struct CpuEngine {
    model: CpuModel,
    cache: KvCache,
    history: Vec<u32>,
    rope: Option<Rope>,
}

impl CpuEngine {
    pub fn new(model: CpuModel) -> Self {
        let layers = model.cfg.num_layers;
        Self {
            model,
            cache: KvCache::new(layers),
            history: Vec::new(),
            rope: None,
        }
    }
}

impl Engine for CpuEngine {
    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    fn len(&self) -> usize {
        self.history.len()
    }

    fn reset(&mut self) {
        self.cache.clear();
        self.history.clear();
        self.rope = None;
    }

    fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(QinsError::Codec("extend needs at least one token".into()));
        }
        let total = self.history.len() + tokens.len();
        if total > self.model.cfg.max_position_embeddings {
            return Err(QinsError::Codec(format!(
                "context full: {total} tokens exceed the model's {} positions",
                self.model.cfg.max_position_embeddings
            )));
        }
        let rope = Rope::for_len(&self.model.cfg, total);
        self.history.extend_from_slice(tokens);
        if self.rope.as_ref().is_some_and(|r| *r != rope) {
            // Longrope changed factor sets: the cached keys were rotated with the old ones, so
            // the whole sequence is encoded again, as transformers' Phi-3 does.
            self.cache.clear();
            let logits = self
                .model
                .forward(&self.history, &mut self.cache, &rope, all)?;
            self.rope = Some(rope);
            let vocab = self.model.cfg.vocab_size;
            return Ok(if all {
                logits[logits.len() - tokens.len() * vocab..].to_vec()
            } else {
                logits
            });
        }
        let logits = self.model.forward(tokens, &mut self.cache, &rope, all)?;
        self.rope = Some(rope);
        Ok(logits)
    }
}
