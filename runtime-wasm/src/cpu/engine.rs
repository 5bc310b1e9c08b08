use super::{CpuModel, CpuTensor, KvCache};
use crate::engine::{Forward, Sequence};
use crate::model::{ModelConfig, Rope};
use crate::Result;

/// The CPU model with its KV cache.
pub struct CpuRunner<T = Vec<f32>> {
    pub model: CpuModel<T>,
    cache: KvCache,
    /// Positions the sequence may reach: the model's context, or less when asked.
    max_len: usize,
}

impl<T: CpuTensor> Forward for CpuRunner<T> {
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
        let (model, cache) = (&self.model, &mut self.cache);
        // The whole pass on one of the pool's threads: its ~120 mat-vecs per token then fork
        // from a worker, instead of each waking this thread from a blocking wait (measured:
        // wake-ups and yields were ~15 % of a SmolLM2 decode on 2 cores).
        #[cfg(feature = "parallel")]
        return rayon::scope(|_| model.forward(tokens, cache, rope, all));
        #[cfg(not(feature = "parallel"))]
        model.forward(tokens, cache, rope, all)
    }
}

/// A CPU engine: model, KV cache and sequence state. `CpuEngine` is the f32 reference,
/// [`PackedEngine`] the one on the stored codes.
pub type CpuEngine<T = Vec<f32>> = Sequence<CpuRunner<T>>;

/// The CPU engine that computes on the archive's codes.
pub type PackedEngine = CpuEngine<super::Packed>;

impl<T: CpuTensor> CpuEngine<T> {
    /// The engine over the model's whole context, with an f32 KV cache.
    pub fn new(model: CpuModel<T>) -> Self {
        let max_len = model.cfg.max_position_embeddings;
        Self::with_context(model, max_len, false)
    }

    /// The engine over at most `max_len` positions (`--ctx`), like the GPU engine's cache,
    /// with f16 keys and values when `kv_f16`.
    pub fn with_context(model: CpuModel<T>, max_len: usize, kv_f16: bool) -> Self {
        let cache = KvCache::new(model.cfg.num_layers, kv_f16);
        let max_len = max_len.clamp(1, model.cfg.max_position_embeddings.max(1));
        Sequence::with(CpuRunner {
            model,
            cache,
            max_len,
        })
    }
}
