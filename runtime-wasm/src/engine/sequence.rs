//! The sequence state every engine shares: token history, context limit, and the rotary table
//! the cache was built with, including longrope's re-encode when a sequence crosses
//! original_max_position_embeddings.

use super::{Candidate, Engine, Select};
use crate::model::{ModelConfig, Rope};
use crate::{QinsError, Result};

/// What a backend provides: the forward pass over a KV cache it owns.
#[allow(async_fn_in_trait)]
pub trait Forward {
    fn config(&self) -> &ModelConfig;
    /// Positions the cache can hold.
    fn max_len(&self) -> usize;
    /// Drops the cached keys and values.
    fn clear(&mut self);
    /// Drops the cached positions from `len` on.
    fn truncate(&mut self, len: usize);
    /// Runs `tokens` at positions `start..` with `rope`; logits of every token (`all`) or of
    /// the last.
    async fn forward(
        &mut self,
        tokens: &[u32],
        start: usize,
        rope: &Rope,
        all: bool,
    ) -> Result<Vec<f32>>;
    /// Runs like `forward` and returns the last position's candidates for `sel`.
    async fn forward_select(
        &mut self,
        tokens: &[u32],
        start: usize,
        rope: &Rope,
        sel: &Select,
    ) -> Result<Vec<Candidate>> {
        let logits = self.forward(tokens, start, rope, false).await?;
        Ok(sel.pick(&logits))
    }
}

pub struct Sequence<F: Forward> {
    pub model: F,
    history: Vec<u32>,
    rope: Option<Rope>,
}

impl<F: Forward> Sequence<F> {
    pub fn with(model: F) -> Self {
        Self {
            model,
            history: Vec::new(),
            rope: None,
        }
    }
}

impl<F: Forward> Engine for Sequence<F> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn len(&self) -> usize {
        self.history.len()
    }

    fn capacity(&self) -> usize {
        self.model.max_len()
    }

    fn reset(&mut self) {
        self.model.clear();
        self.history.clear();
        self.rope = None;
    }

    fn tokens(&self) -> &[u32] {
        &self.history
    }

    fn truncate(&mut self, len: usize) {
        if len == 0 {
            return self.reset();
        }
        if len < self.history.len() {
            self.history.truncate(len);
            self.model.truncate(len);
        }
    }

    async fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        let start = self.append(tokens)?;
        let rope = self.rope.as_ref().expect("set by append");
        if start == 0 && self.history.len() > tokens.len() {
            let logits = self.model.forward(&self.history, 0, rope, all).await?;
            let vocab = self.model.config().vocab_size;
            return Ok(if all {
                logits[logits.len() - tokens.len() * vocab..].to_vec()
            } else {
                logits
            });
        }
        self.model.forward(tokens, start, rope, all).await
    }

    async fn extend_select(&mut self, tokens: &[u32], sel: &Select) -> Result<Vec<Candidate>> {
        let start = self.append(tokens)?;
        let rope = self.rope.as_ref().expect("set by append");
        let run = if start == 0 {
            &self.history[..]
        } else {
            tokens
        };
        self.model.forward_select(run, start, rope, sel).await
    }
}

impl<F: Forward> Sequence<F> {
    /// Checks `tokens` and appends them; returns the position to run from: theirs, or 0 when
    /// the whole sequence must be encoded again (then the model's cache is cleared).
    fn append(&mut self, tokens: &[u32]) -> Result<usize> {
        if tokens.is_empty() {
            return Err(QinsError::BadRequest(
                "extend needs at least one token".into(),
            ));
        }
        let total = self.history.len() + tokens.len();
        if total > self.model.max_len() {
            return Err(QinsError::ContextFull {
                needed: total,
                available: self.model.max_len(),
            });
        }
        let vocab = self.config().vocab_size;
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            // The caller's mistake (a completion request's ids), not the model's.
            return Err(QinsError::BadRequest(format!(
                "token id {t} is outside the vocabulary of {vocab}"
            )));
        }
        let rope = Rope::for_len(self.config(), total);
        let start = self.history.len();
        self.history.extend_from_slice(tokens);
        let switched = self.rope.as_ref().is_some_and(|r| *r != rope);
        self.rope = Some(rope);
        if switched {
            // Longrope changed factor sets: the cached keys were rotated with the old ones, so
            // the whole sequence is encoded again, as transformers' Phi-3 does.
            self.model.clear();
            return Ok(0);
        }
        Ok(start)
    }
}
