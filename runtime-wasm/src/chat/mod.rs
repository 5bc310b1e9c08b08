//! Everything between a model and a conversation: tokenizer, chat template, sampler and the
//! generation loop. Backend-independent: it drives any [`crate::engine::Engine`].

mod generate;
mod request;
mod sampler;
mod stop;
mod template;
mod tokenizer;

pub use generate::{FittedPrompt, Generation, GenerationStats, Generator, StepEvent};
pub use request::{GenerateOptions, Prompt};
pub use sampler::{Sampler, SamplingParams};
use stop::{Scan, StopScan};
pub use template::{ChatTemplate, Message};
pub use tokenizer::{TextStream, Tokenizer, TokenizerSource};
