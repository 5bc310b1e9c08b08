//! The OpenAI-compatible HTTP API of `qins-serve --model FILE.qins`: `POST /v1/chat/completions`
//! and `POST /v1/completions` (streamed as server-sent events ending with `data: [DONE]`, or
//! whole), `GET /v1/models`, `GET /health`, on the native engine. Every error has OpenAI's JSON
//! shape. One generation runs at a time, the rest wait in a bounded FIFO queue (429 with
//! Retry-After when it is full); a client that disconnects stops its generation.

mod engine;
mod types;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use qins_runtime::chat::Message;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use web_time::Instant;

pub use engine::{EngineHandle, ModelEntry};
use engine::{Event, Job, Prompt, Sampling};
use types::{ApiError, Content, Request as ApiRequest, Stop, Usage};

/// Largest request body: a long conversation is well under this.
pub const MAX_BODY: usize = 4 << 20;

pub struct ApiState {
    pub engine: EngineHandle,
    /// Bearer token every /v1 request must carry, when set.
    pub api_key: Option<String>,
    next_id: AtomicU64,
}

impl ApiState {
    pub fn new(engine: EngineHandle, api_key: Option<String>) -> Self {
        Self {
            engine,
            api_key,
            next_id: AtomicU64::new(1),
        }
    }
}

/// The API routes, to merge into the server's router.
pub fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route(
            "/chat/completions",
            post(|State(s), body| complete(s, body, Kind::Chat)),
        )
        .route(
            "/completions",
            post(|State(s), body| complete(s, body, Kind::Text)),
        )
        .route("/models", get(models))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "no such endpoint",
            )
        })
        .layer(middleware::from_fn(read_body))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .nest("/v1", v1)
}

/// Most of a refused request's body that is read and dropped, and for how long, before the
/// refusal is sent.
const DRAIN_BYTES: u64 = 32 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the body before the route sees it, at most MAX_BODY bytes (declared or, chunked, as
/// they come). One over it gets its 413 only after the server has read and dropped the rest,
/// up to DRAIN_BYTES: a client such as Python's http.client writes its whole body before it
/// reads the reply, and a server that answers and closes early resets the connection under it
/// (a broken pipe instead of the 413; hyper does not drain an unread body itself).
async fn read_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    match declared {
        Some(n) if n > DRAIN_BYTES => return closing(too_large(declared)),
        Some(n) if n > MAX_BODY as u64 => {
            return after_draining(stream, 0, too_large(declared)).await
        }
        _ => {}
    }
    // Grown as bytes arrive, never by what the header claims.
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return ApiError::bad_request("body", format!("the body could not be read: {e}"))
                    .into_response()
            }
        };
        if bytes.len() + chunk.len() > MAX_BODY {
            let read = (bytes.len() + chunk.len()) as u64;
            return after_draining(stream, read, too_large(None)).await;
        }
        bytes.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(declared: Option<u64>) -> ApiError {
    let size = declared.map_or_else(|| "more".to_string(), |n| format!("{n} bytes,"));
    let mut err = ApiError::bad_request(
        "body",
        format!("the body is {size} more than the {MAX_BODY} bytes a request may have"),
    );
    err.status = StatusCode::PAYLOAD_TOO_LARGE;
    err
}

/// The refusal, sent once the request's unread body (`read` bytes of it gone already) has been
/// read and dropped, up to DRAIN_BYTES and DRAIN_TIME (nginx's lingering close); Connection:
/// close where it was cut short.
async fn after_draining(mut rest: BodyDataStream, mut read: u64, err: ApiError) -> Response {
    let all_read = async {
        while let Some(chunk) = rest.next().await {
            let Ok(chunk) = chunk else {
                return false;
            };
            read += chunk.len() as u64;
            if read > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    match tokio::time::timeout(DRAIN_TIME, all_read).await {
        Ok(true) => err.into_response(),
        _ => closing(err),
    }
}

fn closing(err: ApiError) -> Response {
    let mut response = err.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The bearer check, in constant time (subtle) so the key cannot be guessed byte by byte, before
/// the body is read (a client without the key never has it held); a refused body is drained as
/// an oversized one is.
async fn authorize(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        use subtle::ConstantTimeEq;
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            let err = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or wrong API key (Authorization: Bearer KEY)",
            )
            .with_code("invalid_api_key");
            return after_draining(req.into_body().into_data_stream(), 0, err).await;
        }
    }
    next.run(req).await
}

async fn models(State(s): State<Arc<ApiState>>) -> Json<Value> {
    let data: Vec<Value> = s
        .engine
        .models
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": "qins"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

fn unix_now() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The request's prompt, checked: chat messages with text content, or one prompt string.
fn prompt_of(req: &ApiRequest, kind: Kind) -> Result<Prompt, ApiError> {
    match kind {
        Kind::Chat => {
            let messages = req
                .messages
                .as_ref()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("messages", "messages must be a non-empty list")
                })?;
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                if !matches!(
                    m.role.as_str(),
                    "system" | "user" | "assistant" | "developer"
                ) {
                    return Err(ApiError::bad_request(
                        "messages",
                        format!(
                            "role \"{}\" is not supported (system, user, assistant)",
                            m.role
                        ),
                    ));
                }
                let text = match &m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut text = String::new();
                        for p in parts {
                            match (p["type"].as_str(), p["text"].as_str()) {
                                (Some("text"), Some(t)) => text.push_str(t),
                                _ => {
                                    return Err(ApiError::bad_request(
                                        "messages",
                                        "only text content parts are supported",
                                    ))
                                }
                            }
                        }
                        text
                    }
                };
                // "developer" is the newer name of "system".
                let role = if m.role == "developer" {
                    "system"
                } else {
                    &m.role
                };
                out.push(Message::new(role, &text));
            }
            Ok(Prompt::Chat(out))
        }
        Kind::Text => match &req.prompt {
            Some(Value::String(p)) => Ok(Prompt::Text(p.clone())),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Ok(Prompt::Text(a[0].as_str().unwrap_or_default().to_string()))
            }
            _ => Err(ApiError::bad_request(
                "prompt",
                "prompt must be a string (or a list of one string)",
            )),
        },
    }
}

/// Refuses, by name, what would change the output and is not supported.
fn check_supported(req: &ApiRequest) -> Result<(), ApiError> {
    let unsupported = |param: &'static str, what: &str| {
        Err(ApiError::bad_request(
            param,
            format!("{what} is not supported by this server"),
        ))
    };
    if req.n.is_some_and(|n| n != 1) {
        return unsupported("n", "n other than 1");
    }
    if req.frequency_penalty.is_some_and(|p| p != 0.0) {
        return unsupported(
            "frequency_penalty",
            "frequency_penalty (use repeat_penalty)",
        );
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0) {
        return unsupported("presence_penalty", "presence_penalty (use repeat_penalty)");
    }
    if req.logprobs == Some(true) {
        return unsupported("logprobs", "logprobs");
    }
    if req.echo == Some(true) {
        return unsupported("echo", "echo");
    }
    if req
        .tools
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return unsupported("tools", "tools");
    }
    if let Some(f) = &req.response_format {
        if f["type"].as_str().is_some_and(|t| t != "text") {
            return unsupported("response_format", "a response_format other than text");
        }
    }
    if req.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::bad_request(
            "temperature",
            "temperature must be between 0 and 2",
        ));
    }
    if req.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(ApiError::bad_request(
            "top_p",
            "top_p must be between 0 and 1",
        ));
    }
    Ok(())
}

async fn complete(
    s: Arc<ApiState>,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        let mut err = ApiError::bad_request("body", e.body_text());
        err.status = status;
        err
    })?;
    let req: ApiRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("body", format!("the body is not a valid request: {e}"))
    })?;
    check_supported(&req)?;
    let prompt = prompt_of(&req, kind)?;
    let model = match &req.model {
        Some(m) if !s.engine.models.iter().any(|e| &e.id == m) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model \"{m}\" does not exist (GET /v1/models lists them)"),
            )
            .with_code("model_not_found"))
        }
        Some(m) => m.clone(),
        None => s.engine.models[0].id.clone(),
    };
    let stop = match &req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) if v.len() <= 4 => v.clone(),
        Some(Stop::Many(_)) => return Err(ApiError::bad_request("stop", "at most 4 stop strings")),
    };
    // Completions default to 16 tokens, as OpenAI's; chat to the room left in the context.
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .or((kind == Kind::Text).then_some(16));
    let (tx, mut rx) = mpsc::channel(64);
    s.engine.submit(Job {
        model: model.clone(),
        prompt,
        sampling: Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            repeat_penalty: req.repeat_penalty,
            seed: req.seed,
        },
        max_tokens,
        stop,
        events: tx,
        queued: Instant::now(),
    })?;
    let id = format!(
        "{}-{:x}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        s.next_id.fetch_add(1, Ordering::Relaxed)
    );
    // A failure before the first token (a bad prompt, a model that will not load) is a plain
    // HTTP error, also for a streamed request.
    match rx.recv().await {
        Some(Event::Started { .. }) => {}
        Some(Event::Failed(e)) => return Err(e),
        _ => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the engine ended the request without an answer",
            ))
        }
    }
    let reply = Reply {
        id,
        model,
        created: unix_now(),
        kind,
    };
    if req.stream {
        let usage = req.stream_options.is_some_and(|o| o.include_usage);
        Ok(stream_reply(reply, rx, usage).into_response())
    } else {
        let mut text = String::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Text(t) => text.push_str(&t),
                Event::Done {
                    finish_reason,
                    usage,
                } => return Ok(Json(reply.whole(&text, finish_reason, usage)).into_response()),
                Event::Failed(e) => return Err(e),
                Event::Started { .. } => {}
            }
        }
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the engine stopped mid-reply",
        ))
    }
}

/// What every response object of one request shares.
struct Reply {
    id: String,
    model: String,
    created: u64,
    kind: Kind,
}

impl Reply {
    fn whole(&self, text: &str, finish_reason: &str, usage: Usage) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
            Kind::Text => json!({
                "index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason,
            }),
        };
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage,
        })
    }

    /// One streamed chunk: a piece of text (`delta`), the role first, the finish reason last.
    fn chunk(&self, text: Option<&str>, first: bool, finish_reason: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = json!({});
                if first {
                    delta["role"] = json!("assistant");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
            }
            Kind::Text => json!({
                "index": 0, "text": text.unwrap_or(""), "logprobs": null,
                "finish_reason": finish_reason,
            }),
        };
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    fn usage_chunk(&self, usage: Usage) -> Value {
        let mut c = self.chunk(None, false, None);
        c["choices"] = json!([]);
        c["usage"] = json!(usage);
        c
    }
}

/// The reply as server-sent events. Dropping the stream (the client went away) drops the
/// receiver, which stops the generation.
fn stream_reply(
    reply: Reply,
    rx: mpsc::Receiver<Event>,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let first = data(reply.chunk(Some(""), true, None));
    let reply = Arc::new(reply);
    let body = stream::unfold(Some(rx), move |rx| {
        let reply = reply.clone();
        async move {
            let mut rx = rx?;
            loop {
                let events: Vec<SseEvent> = match rx.recv().await {
                    Some(Event::Text(t)) => vec![data(reply.chunk(Some(&t), false, None))],
                    Some(Event::Done {
                        finish_reason,
                        usage,
                    }) => {
                        let mut out = vec![data(reply.chunk(None, false, Some(finish_reason)))];
                        if include_usage {
                            out.push(data(reply.usage_chunk(usage)));
                        }
                        out.push(SseEvent::default().data("[DONE]"));
                        return Some((stream::iter(out), None));
                    }
                    Some(Event::Failed(e)) => {
                        return Some((stream::iter(vec![data(e.body())]), None));
                    }
                    Some(Event::Started { .. }) => continue,
                    None => return None,
                };
                return Some((stream::iter(events), Some(rx)));
            }
        }
    })
    .flatten();
    let all = stream::once(async move { first }).chain(body).map(Ok);
    Sse::new(all).keep_alive(KeepAlive::default())
}
