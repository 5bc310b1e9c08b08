//! The engine thread: it owns the loaded model and runs one generation at a time, taken in
//! order from a bounded queue; tokens go back to the request's handler over a channel. A
//! handler that goes away (the client disconnected) closes its channel, and the generation
//! stops at the next token.

use std::path::PathBuf;

use qins_runtime::chat::{Message, SamplingParams};
use qins_runtime::load::{LoadOptions, Loaded};
use qins_runtime::QinsError;
use tokio::sync::mpsc;
use web_time::Instant;

use super::types::{ApiError, Usage};
use axum::http::StatusCode;

/// An archive the server offers, by the id clients name it with (its file stem).
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub id: String,
    pub path: PathBuf,
}

pub enum Prompt {
    Chat(Vec<Message>),
    Text(String),
}

/// The request's sampling fields; what is missing comes from the archive's generation
/// defaults, then from OpenAI's defaults (temperature 1, top-p 1) and llama.cpp's top-k 40.
#[derive(Debug, Clone, Default)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u64>,
}

pub struct Job {
    pub model: String,
    pub prompt: Prompt,
    pub sampling: Sampling,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub events: mpsc::Sender<Event>,
    pub queued: Instant,
}

pub enum Event {
    Started {
        prompt_tokens: usize,
    },
    Text(String),
    Done {
        finish_reason: &'static str,
        usage: Usage,
    },
    Failed(ApiError),
}

/// The handlers' side: the queue into the engine thread.
pub struct EngineHandle {
    queue: mpsc::Sender<Job>,
    pub models: Vec<ModelEntry>,
}

impl EngineHandle {
    /// Loads the first model (a bad archive fails the server's start, not a request) and
    /// starts the engine thread with a queue of `queue` waiting requests.
    pub fn start(models: Vec<ModelEntry>, opts: LoadOptions, queue: usize) -> anyhow::Result<Self> {
        let first = models
            .first()
            .ok_or_else(|| anyhow::anyhow!("no model to serve"))?
            .clone();
        let loaded = load(&first, &opts)?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let entries = models.clone();
        std::thread::Builder::new()
            .name("qins-engine".into())
            .spawn(move || run_queue(rx, entries, opts, first.id, loaded))?;
        Ok(Self { queue: tx, models })
    }

    /// Queues `job`; a full queue is a 429 the client may retry.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "the server is busy: too many requests are waiting; retry shortly",
            ),
            mpsc::error::TrySendError::Closed(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the engine has stopped",
            ),
        })
    }
}

fn load(entry: &ModelEntry, opts: &LoadOptions) -> anyhow::Result<Loaded> {
    let mut loaded = crate::load::open(&entry.path, opts)?;
    // Successive turns of one conversation prefill only what is new.
    loaded.generator.set_prefix_reuse(true);
    tracing::info!(model = %entry.id, engine = %loaded.info.summary(), "model loaded");
    Ok(loaded)
}

fn run_queue(
    mut rx: mpsc::Receiver<Job>,
    models: Vec<ModelEntry>,
    opts: LoadOptions,
    first: String,
    first_loaded: Loaded,
) {
    let mut current: Option<(String, Loaded)> = Some((first, first_loaded));
    while let Some(job) = rx.blocking_recv() {
        if job.events.is_closed() {
            continue; // the client left while waiting
        }
        if current.as_ref().is_none_or(|(id, _)| *id != job.model) {
            // One model at a time: the old one's memory goes before the new one loads.
            current = None;
            let Some(entry) = models.iter().find(|m| m.id == job.model) else {
                continue; // handlers queue known ids only
            };
            match load(entry, &opts) {
                Ok(l) => current = Some((entry.id.clone(), l)),
                Err(e) => {
                    let _ = job.events.blocking_send(Event::Failed(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        format!("cannot load {}: {e:#}", entry.id),
                    )));
                    continue;
                }
            }
        }
        if let Some((_, loaded)) = current.as_mut() {
            generate(loaded, job);
        }
    }
}

fn invalid(e: QinsError) -> ApiError {
    ApiError::bad_request("messages", e.to_string())
}

/// Runs one job to its end, sending its events; stops early when the client is gone.
fn generate(loaded: &mut Loaded, job: Job) {
    let events = job.events.clone();
    let send = |ev: Event| events.blocking_send(ev).is_ok();
    let gen = &mut loaded.generator;
    let ids = match &job.prompt {
        Prompt::Chat(messages) => gen.chat_prompt_ids(messages).map_err(invalid),
        Prompt::Text(text) => gen.text_prompt_ids(text).map_err(invalid),
    };
    let ids = match ids {
        Ok(ids) if !ids.is_empty() => ids,
        Ok(_) => {
            send(Event::Failed(ApiError::bad_request(
                "prompt",
                "the prompt is empty",
            )));
            return;
        }
        Err(e) => {
            send(Event::Failed(e));
            return;
        }
    };
    let context = loaded.info.context;
    if ids.len() >= context {
        send(Event::Failed(
            ApiError::bad_request(
                "messages",
                format!(
                    "the prompt has {} tokens; the model's context holds {context}",
                    ids.len()
                ),
            )
            .with_code("context_length_exceeded"),
        ));
        return;
    }
    let room = context - ids.len();
    let max_tokens = job.max_tokens.unwrap_or(room).min(room);
    let g = &loaded.manifest.generation;
    let s = &job.sampling;
    let params = SamplingParams {
        temperature: s.temperature.or(g.temperature).unwrap_or(1.0),
        top_k: s.top_k.or(g.top_k.map(|k| k as usize)).unwrap_or(40),
        top_p: s.top_p.or(g.top_p).unwrap_or(1.0),
        min_p: s.min_p.unwrap_or(0.0),
        repetition_penalty: s.repeat_penalty.or(g.repetition_penalty).unwrap_or(1.0),
        seed: s.seed.unwrap_or_else(SamplingParams::fresh_seed),
    };
    if !send(Event::Started {
        prompt_tokens: ids.len(),
    }) {
        return;
    }
    let waited_ms = job.queued.elapsed().as_secs_f64() * 1e3;
    let mut run = match gen.generate(&ids, params, max_tokens, false) {
        Ok(run) => run.with_stop(job.stop),
        Err(e) => {
            send(Event::Failed(invalid(e)));
            return;
        }
    };
    let mut gone = false;
    // A reply that fills the context ends on its own with stop_reason "length".
    while let Some(step) = qins_runtime::engine::block_on(run.next_token()) {
        match step {
            Ok(step) => {
                let text = step.text.unwrap_or_default();
                if !text.is_empty() && !send(Event::Text(text)) || events.is_closed() {
                    gone = true;
                    break;
                }
            }
            Err(e) => {
                send(Event::Failed(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    e.to_string(),
                )));
                return;
            }
        }
    }
    if gone {
        run.stop("aborted");
    }
    let stats = run.stats().clone();
    let finish = match stats.stop_reason.as_str() {
        "eos" | "stop" => "stop",
        _ => "length",
    };
    // Text held back as a possible stop string's start, at the end (empty after a stop).
    let rest = run.held_text();
    if !rest.is_empty() && !gone {
        send(Event::Text(rest));
    }
    let usage = Usage {
        prompt_tokens: ids.len(),
        completion_tokens: stats.generated_tokens,
        total_tokens: ids.len() + stats.generated_tokens,
    };
    tracing::info!(
        model = %job.model,
        prompt_tokens = usage.prompt_tokens,
        cached_tokens = stats.cached_tokens,
        completion_tokens = usage.completion_tokens,
        queued_ms = waited_ms,
        ttft_ms = stats.ttft_ms,
        decode_tok_s = stats.decode_tok_s,
        finish,
        client_gone = gone,
        "completion"
    );
    if !gone {
        send(Event::Done {
            finish_reason: finish,
            usage,
        });
    }
}
