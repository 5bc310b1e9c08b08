//! Everything between a model and a conversation: tokenizer, chat template, sampler and the
//! generation loop. Backend-independent: the CPU and GPU engines both implement [`Engine`].

mod generate;
mod sampler;
mod sequence;
mod template;
mod tokenizer;

pub use generate::{Generation, GenerationStats, Generator, StepEvent};
pub use sampler::{Sampler, SamplingParams};
pub use sequence::{Forward, Sequence};
pub use template::{ChatTemplate, Message};
pub use tokenizer::{TextStream, Tokenizer};

use crate::model::ModelConfig;
use crate::Result;

/// A model with its sequence state (KV cache and history).
pub trait Engine {
    fn config(&self) -> &ModelConfig;
    /// Tokens in the sequence so far.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn reset(&mut self);
    /// Appends `tokens` and returns logits: of every appended position ([n, vocab]) when
    /// `all`, else of the last one.
    fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>>;
}

/// Lets tools choose the engine at run time (`Generator<Box<dyn Engine>>`).
impl<E: Engine + ?Sized> Engine for Box<E> {
    fn config(&self) -> &ModelConfig {
        (**self).config()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        (**self).extend(tokens, all)
    }
}
