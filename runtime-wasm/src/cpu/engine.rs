use super::{CpuModel, KvCache};
use crate::engine::{Forward, Sequence};
use crate::model::{ModelConfig, Rope};
use crate::Result;

/// The CPU model with its KV cache.
pub struct CpuRunner {
    pub model: CpuModel,
    cache: KvCache,
    /// Positions the sequence may reach: the model's context, or less when asked.
    max_len: usize,
}

impl Forward for CpuRunner {
    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }
    fn max_len(&self) -> usize {
        self.max_len
    }
    fn clear(&mut self) {
        self.cache.clear();
    }
    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
    }
    async fn forward(
        &mut self,
        tokens: &[u32],
        start: usize,
        rope: &Rope,
        all: bool,
    ) -> Result<Vec<f32>> {
        debug_assert_eq!(
            start,
            self.cache.len(),
            "the cache holds the positions before start"
        );
        self.model.forward(tokens, &mut self.cache, rope, all)
    }
}

/// The CPU reference engine: model, KV cache and sequence state.
pub type CpuEngine = Sequence<CpuRunner>;

impl CpuEngine {
    /// The engine over the model's whole context.
    pub fn new(model: CpuModel) -> Self {
        let max_len = model.cfg.max_position_embeddings;
        Self::with_context(model, max_len)
    }

    /// The engine over at most `max_len` positions (`--ctx`), like the GPU engine's cache.
    pub fn with_context(model: CpuModel, max_len: usize) -> Self {
        let cache = KvCache::new(model.cfg.num_layers);
        let max_len = max_len.clamp(1, model.cfg.max_position_embeddings.max(1));
        Sequence::with(CpuRunner {
            model,
            cache,
            max_len,
        })
    }
}
