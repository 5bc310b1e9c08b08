//! The engine contract, below `chat/`, `cpu/` and `gpu/`: what a backend implements
//! ([`Forward`]), the sequence state every backend shares ([`Sequence`], which makes a
//! [`Forward`] an [`Engine`]) and what sampling asks of it ([`Select`]). Loading lives in
//! [`crate::load`].

mod select;
mod sequence;

pub use select::{Candidate, Draw, Select};
pub use sequence::{Forward, Sequence};

use crate::model::ModelConfig;
use crate::Result;

/// A model with its sequence state (KV cache and history).
///
/// `extend` is async because the browser cannot block on a GPU read-back; native callers wait
/// with [`block_on`] (the CPU engine never suspends).
#[allow(async_fn_in_trait)] // single-threaded callers: no Send bound wanted (wasm32 GPU types are !Send)
pub trait Engine {
    fn config(&self) -> &ModelConfig;
    /// Tokens in the sequence so far.
    fn len(&self) -> usize;
    /// Positions the sequence may reach (the context, capped by `--ctx` / `max_context`).
    fn capacity(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn reset(&mut self);
    /// The tokens in the sequence (what the KV cache holds).
    fn tokens(&self) -> &[u32];
    /// Keeps the first `len` tokens and their cache (a conversation's shared prefix).
    fn truncate(&mut self, len: usize);
    /// Appends `tokens` and returns logits: of every appended position ([n, vocab]) when
    /// `all`, else of the last one.
    async fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>>;
    /// Appends `tokens` and returns the last position's sampling candidates: engines that can
    /// choose on the device read back those instead of the whole logits row.
    async fn extend_select(&mut self, tokens: &[u32], sel: &Select) -> Result<Vec<Candidate>> {
        let logits = self.extend(tokens, false).await?;
        Ok(sel.pick(&logits))
    }
}

/// Runs a future to completion on the calling thread (native tools and tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}
