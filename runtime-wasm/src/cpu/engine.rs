use super::{CpuModel, KvCache};
use crate::chat::{Forward, Sequence};
use crate::model::{ModelConfig, Rope};
use crate::Result;

/// The CPU model with its KV cache.
pub struct CpuRunner {
    pub model: CpuModel,
    cache: KvCache,
}

impl Forward for CpuRunner {
    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }
    fn max_len(&self) -> usize {
        self.model.cfg.max_position_embeddings
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
    pub fn new(model: CpuModel) -> Self {
        let cache = KvCache::new(model.cfg.num_layers);
        Sequence::with(CpuRunner { model, cache })
    }
}
