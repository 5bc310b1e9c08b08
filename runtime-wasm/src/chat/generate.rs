use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::{
    ChatTemplate, Message, Sampler, SamplingParams, Scan, StopScan, TextStream, Tokenizer,
};
use crate::engine::Engine;
use crate::format::Manifest;
use crate::{QinsError, Result};

/// Conventional end-of-turn markers: generation also stops on whichever of these the
/// vocabulary has, since templates end turns with them while `eos_token_id` may name another.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|end|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "</s>",
];

/// A model ready to chat: engine, tokenizer, template and stop tokens.
pub struct Generator<E: Engine> {
    pub engine: E,
    pub tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// Keep the KV cache of the longest common prefix between turns (chat front ends).
    reuse_prefix: bool,
    bos: String,
    eos: String,
    stop: Vec<u32>,
    /// The BOS id a plain-text prompt starts with, where the archive adds one.
    add_bos: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens served from the previous turn's cache (not prefilled again).
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt submitted → first token chosen.
    pub ttft_ms: f64,
    pub prefill_tok_s: f64,
    /// Tokens after the first, per second of decoding.
    pub decode_tok_s: f64,
    pub total_ms: f64,
    /// Messages of the conversation that no longer fit the context and were left out
    /// (`generate_chat`): the model's view starts after them.
    #[serde(default)]
    pub dropped_messages: usize,
    /// "eos", "max_tokens", "length" (the context is full), "stop" (a stop string),
    /// "aborted", or "" while running.
    pub stop_reason: String,
}

/// A conversation's prompt as it fits the context (see [`Generator::fit_chat`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FittedPrompt {
    pub ids: Vec<u32>,
    /// Messages after the system ones that no longer fit, oldest first.
    pub dropped: usize,
}

/// One generated token and the text it completed (None while a character is incomplete).
#[derive(Debug, Clone, PartialEq)]
pub struct StepEvent {
    pub id: u32,
    pub text: Option<String>,
}

impl<E: Engine> Generator<E> {
    pub fn new(engine: E, manifest: &Manifest) -> Result<Self> {
        Self::with_tokenizer(engine, manifest, Tokenizer::from_manifest(manifest)?)
    }

    /// [`Generator::new`] with the manifest's tokenizer already built.
    pub fn with_tokenizer(engine: E, manifest: &Manifest, tokenizer: Tokenizer) -> Result<Self> {
        let template = manifest
            .chat_template
            .as_deref()
            .map(ChatTemplate::new)
            .transpose()?;
        let mut stop = manifest.config.eos_token_ids.clone();
        let named = manifest
            .eos_token
            .iter()
            .map(String::as_str)
            .chain(END_OF_TURN.iter().copied());
        stop.extend(named.filter_map(|t| tokenizer.token_id(t)));
        stop.sort_unstable();
        stop.dedup();
        Ok(Self {
            engine,
            tokenizer,
            template,
            reuse_prefix: false,
            bos: manifest.bos_token.clone().unwrap_or_default(),
            eos: manifest.eos_token.clone().unwrap_or_default(),
            stop,
            add_bos: manifest
                .add_bos_token
                .then_some(manifest.config.bos_token_id)
                .flatten(),
        })
    }

    /// With prefix reuse on, `generate` keeps the cached positions its prompt shares with
    /// the sequence so far (a chat's earlier turns), so a turn prefills only what is new.
    pub fn set_prefix_reuse(&mut self, on: bool) {
        self.reuse_prefix = on;
    }

    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop
    }

    /// The conversation as the model's template writes it, ending with the assistant's cue.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        match &self.template {
            Some(t) => t.render(messages, true, &self.bos, &self.eos),
            None => Err(QinsError::Manifest(
                "the archive has no chat template".into(),
            )),
        }
    }

    /// A plain-text prompt (completions): tokenized, with BOS where the archive adds one.
    pub fn text_prompt_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false)?;
        if let Some(bos) = self.add_bos {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    pub fn chat_prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.chat_prompt(messages)?, false)
    }

    /// The prompt of the longest recent part of a conversation that leaves `room` positions
    /// for the reply: the oldest turns after the system messages leave the model's view (whole
    /// turns: the kept part starts with a user message, as templates expect), and how many
    /// messages left is returned with the ids. The last message always stays; when it does not
    /// fit even alone, the conversation is refused (`context-full`) before any work.
    pub fn fit_chat(&self, messages: &[Message], room: usize) -> Result<FittedPrompt> {
        let capacity = self.engine.capacity();
        let system = messages.iter().take_while(|m| m.role == "system").count();
        let rest = &messages[system..];
        let mut dropped = 0;
        loop {
            let kept: Vec<Message> = messages[..system]
                .iter()
                .chain(&rest[dropped..])
                .cloned()
                .collect();
            let ids = self.chat_prompt_ids(&kept)?;
            let last = dropped + 1 >= rest.len();
            if ids.len() + room.min(capacity / 4) <= capacity || last {
                if ids.len() >= capacity {
                    return Err(QinsError::ContextFull {
                        needed: ids.len(),
                        available: capacity,
                    });
                }
                return Ok(FittedPrompt { ids, dropped });
            }
            dropped += 1;
            while dropped + 1 < rest.len() && rest[dropped].role != "user" {
                dropped += 1;
            }
        }
    }

    /// Starts the reply to a conversation, leaving its oldest turns out when it no longer fits
    /// the context with room for `max_tokens` (see [`Generator::fit_chat`]).
    pub fn generate_chat(
        &mut self,
        messages: &[Message],
        params: SamplingParams,
        max_tokens: usize,
        ignore_eos: bool,
    ) -> Result<Generation<'_, E>> {
        let fitted = self.fit_chat(messages, max_tokens)?;
        let mut run = self.generate(&fitted.ids, params, max_tokens, ignore_eos)?;
        run.stats.dropped_messages = fitted.dropped;
        Ok(run)
    }

    /// Starts generating after `prompt` from an empty sequence. Tokens come from the returned
    /// iterator; stop it early by dropping it.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: SamplingParams,
        max_tokens: usize,
        ignore_eos: bool,
    ) -> Result<Generation<'_, E>> {
        if prompt.is_empty() {
            return Err(QinsError::BadRequest("the prompt is empty".into()));
        }
        // At least the prompt's last token runs again: its logits start the reply.
        let reused = if self.reuse_prefix {
            let shared = self
                .engine
                .tokens()
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count();
            shared.min(prompt.len() - 1)
        } else {
            0
        };
        self.engine.truncate(reused);
        Ok(Generation {
            reused,
            sampler: Sampler::new(params),
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            stream: TextStream::new(),
            max_tokens,
            ignore_eos,
            started: Instant::now(),
            first_token: None,
            stats: GenerationStats {
                prompt_tokens: prompt.len(),
                cached_tokens: reused,
                ..Default::default()
            },
            done: false,
            scan: None,
            gen: self,
        })
    }
}

pub struct Generation<'a, E: Engine> {
    gen: &'a mut Generator<E>,
    /// Prompt tokens whose cache was kept from the previous turn.
    reused: usize,
    sampler: Sampler,
    history: Vec<u32>,
    prompt_len: usize,
    stream: TextStream,
    max_tokens: usize,
    ignore_eos: bool,
    started: Instant,
    first_token: Option<Instant>,
    stats: GenerationStats,
    done: bool,
    /// Stop strings: text is released only once it cannot start one.
    scan: Option<StopScan>,
}

impl<E: Engine> Generation<'_, E> {
    /// Ends the reply before the first of `stops` appears in its text, which is never sent,
    /// not even in part (`stop_reason` "stop"). Text that might start one is held back until
    /// it cannot: [`Generation::held_text`] gives what remains at the end.
    pub fn with_stop(mut self, stops: Vec<String>) -> Self {
        self.scan = Some(StopScan::new(stops));
        self
    }

    /// Text held back as a possible stop string's start, once the generation has ended
    /// (empty after a stop string, or without stop strings).
    pub fn held_text(&mut self) -> String {
        self.scan.as_mut().map(StopScan::flush).unwrap_or_default()
    }

    pub fn generated(&self) -> &[u32] {
        &self.history[self.prompt_len..]
    }

    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// Ends the generation early (a Stop button), with timing stats up to now.
    pub fn stop(&mut self, reason: &str) {
        if !self.done {
            self.finish(reason);
        }
    }

    fn finish(&mut self, reason: &str) {
        self.done = true;
        self.stats.stop_reason = reason.into();
        let now = Instant::now();
        self.stats.total_ms = (now - self.started).as_secs_f64() * 1e3;
        if let Some(first) = self.first_token {
            let decoded = self.stats.generated_tokens.saturating_sub(1);
            let secs = (now - first).as_secs_f64();
            self.stats.decode_tok_s = if decoded > 0 && secs > 0.0 {
                decoded as f64 / secs
            } else {
                0.0
            };
        }
    }

    async fn step(&mut self) -> Result<Option<StepEvent>> {
        if self.generated().len() >= self.max_tokens {
            self.finish("max_tokens");
            return Ok(None);
        }
        let prefill = self.history.len() == self.prompt_len;
        let run = if prefill {
            &self.history[self.reused..]
        } else {
            &self.history[self.history.len() - 1..]
        };
        let t = Instant::now();
        // The engine chooses the candidates (on the GPU: only they come back) unless the
        // sampler needs the whole row.
        let chosen = match self.sampler.selection(&self.history) {
            Some(sel) => (self.gen.engine.extend_select(run, &sel).await)
                .map(|cands| self.sampler.sample_from(cands)),
            None => (self.gen.engine.extend(run, false).await)
                .map(|logits| self.sampler.sample(&logits, &self.history)),
        };
        let id = match chosen {
            Ok(id) => id,
            // A reply that fills the context ends there, like one that reaches max_tokens; a
            // prompt that does not fit is an error before any work.
            Err(QinsError::ContextFull { .. }) if !prefill => {
                self.finish("length");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if prefill {
            let secs = t.elapsed().as_secs_f64();
            self.stats.prefill_tok_s = (self.history.len() - self.reused) as f64 / secs.max(1e-9);
        }
        if self.first_token.is_none() {
            let now = Instant::now();
            self.first_token = Some(now);
            self.stats.ttft_ms = (now - self.started).as_secs_f64() * 1e3;
        }
        if !self.ignore_eos && self.gen.stop.contains(&id) {
            self.finish("eos");
            return Ok(None);
        }
        self.history.push(id);
        self.stats.generated_tokens += 1;
        let mut text = self.stream.push(&self.gen.tokenizer, id)?;
        if let (Some(scan), Some(piece)) = (self.scan.as_mut(), text.as_deref()) {
            text = match scan.push(piece) {
                Scan::Go(out) => Some(out),
                Scan::Stop(out) => {
                    self.finish("stop");
                    Some(out)
                }
            }
            .filter(|t| !t.is_empty());
        }
        Ok(Some(StepEvent { id, text }))
    }
}

impl<E: Engine> Generation<'_, E> {
    /// The next token, None once generation has stopped (end of turn, max tokens or an error
    /// already returned).
    pub async fn next_token(&mut self) -> Option<Result<StepEvent>> {
        if self.done {
            return None;
        }
        match self.step().await {
            Ok(Some(ev)) => Some(Ok(ev)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Native tools read tokens as an iterator, each one waited for in place.
#[cfg(not(target_arch = "wasm32"))]
impl<E: Engine> Iterator for Generation<'_, E> {
    type Item = Result<StepEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        crate::engine::block_on(self.next_token())
    }
}
