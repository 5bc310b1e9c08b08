//! A generation request as the browser engine receives it (the worker protocol,
//! docs/WEB_API.md): what to start from and how to sample. Target-independent, so the fuzzer
//! (tests/src/bin/qins-fuzz.rs) runs natively exactly what the worker runs.

use serde::Deserialize;

use super::{Generation, Generator, Message, SamplingParams};
use crate::engine::Engine;
use crate::Result;

/// `generate`/`complete`'s options: sampling, length, stop strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    #[serde(flatten)]
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Keep going past end-of-turn tokens (benchmarks).
    pub ignore_eos: bool,
    /// Stop strings: the reply ends before the first one, which is never sent.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            ignore_eos: false,
            stop: Vec::new(),
        }
    }
}

/// What a generation starts from: a conversation (its oldest turns leave the model's view
/// when it outgrows the context), token ids as they are, or plain text.
#[derive(Debug, Clone)]
pub enum Prompt {
    Chat(Vec<Message>),
    Ids(Vec<u32>),
    Text(String),
}

impl<E: Engine> Generator<E> {
    /// Starts a reply to `prompt` with `opts`: a chat through the template (fitted to the
    /// context), ids as they are, text tokenized as the archive says (BOS where it adds one).
    pub fn start(&mut self, prompt: Prompt, opts: GenerateOptions) -> Result<Generation<'_, E>> {
        let (params, max, ignore_eos) = (opts.sampling, opts.max_tokens, opts.ignore_eos);
        let run = match prompt {
            Prompt::Chat(messages) => self.generate_chat(&messages, params, max, ignore_eos)?,
            Prompt::Ids(ids) => self.generate(&ids, params, max, ignore_eos)?,
            Prompt::Text(text) => {
                let ids = self.text_prompt_ids(&text)?;
                self.generate(&ids, params, max, ignore_eos)?
            }
        };
        Ok(run.with_stop(opts.stop))
    }
}
