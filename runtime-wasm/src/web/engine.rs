//! `QinsEngine`, the class JavaScript (a Web Worker, see web/worker/) and the Leptos app use:
//! load an archive from a URL into WebGPU, then generate. Every method returns a Promise; every
//! failure rejects with an `Error` whose `kind` names it (QinsError::kind).
//!
//! The loaded model sits in a RefCell borrowed across awaits while a generation runs: the
//! `busy` flag admits one operation at a time, so no second borrow can happen.
#![allow(clippy::await_holding_refcell_ref)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, spawn_local, JsFuture};
use web_sys::{AbortController, Cache, Response};
use web_time::Instant;

use super::source::{self, Body};
use crate::chat::{Generator, Message, SamplingParams};
use crate::format::Manifest;
use crate::gpu::{CacheConfig, GpuContext, GpuEngine, GpuLoader, GpuModel, GpuOptions};
use crate::{QinsError, Result};

/// Network failures a load survives by resuming with a Range request.
const MAX_RESUMES: u32 = 8;
/// Progress events are spaced at least this far apart (the last one always comes).
const PROGRESS_EVERY_MS: f64 = 100.0;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct LoadOptions {
    /// Read from and store into the Cache API.
    cache: bool,
    /// KV-cache positions (capped by the model's own context).
    max_context: usize,
    /// "f16" (half the memory; the default) or "f32".
    kv_cache: String,
    /// "f32" (the default) or "f16": the LUT mat-vecs multiply in f16 where the adapter has
    /// shader-f16 (sums stay f32).
    compute: String,
}

/// Whether option `name` is "f16" (else "f32"); any other value is a bad request.
fn is_f16(name: &str, value: &str) -> Result<bool> {
    match value {
        "f16" => Ok(true),
        "f32" => Ok(false),
        other => Err(QinsError::BadRequest(format!(
            "{name} must be \"f16\" or \"f32\", not \"{other}\""
        ))),
    }
}

impl LoadOptions {
    fn cache_config(&self) -> Result<CacheConfig> {
        let f16 = is_f16("kv_cache", &self.kv_cache)?;
        Ok(CacheConfig::new(self.max_context).with_f16(f16))
    }

    fn gpu_options(&self) -> Result<GpuOptions> {
        Ok(GpuOptions {
            f16_compute: is_f16("compute", &self.compute)?,
            ..Default::default()
        })
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            cache: true,
            max_context: 4096,
            kv_cache: "f16".into(),
            compute: "f32".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct GenerateOptions {
    #[serde(flatten)]
    sampling: SamplingParams,
    max_tokens: usize,
    /// Keep going past end-of-turn tokens (benchmarks).
    ignore_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            ignore_eos: false,
        }
    }
}

/// Sent to the progress callback while loading.
#[derive(Debug, Clone, Serialize)]
struct Progress {
    /// "cache" or "network" while bytes stream in (fetch, decompression and upload overlap:
    /// each chunk is verified, decoded and uploaded as soon as it arrives), then "build".
    stage: &'static str,
    bytes_done: u64,
    bytes_total: u64,
    /// Archive bytes per second since this stage began, in MB/s.
    mb_per_s: f64,
    tensors_done: usize,
    tensors_total: usize,
    /// Range requests made after the network dropped.
    resumes: u32,
}

struct Loaded {
    generator: Generator<GpuEngine>,
    info: serde_json::Value,
}

#[derive(Default)]
struct Inner {
    loaded: RefCell<Option<Loaded>>,
    busy: Cell<bool>,
    aborted: Cell<bool>,
    controller: RefCell<Option<AbortController>>,
}

impl Inner {
    /// Marks the engine busy for one operation; a second concurrent one is refused.
    fn begin(self: &Rc<Self>) -> Result<Busy> {
        if self.busy.replace(true) {
            return Err(QinsError::Busy);
        }
        self.aborted.set(false);
        Ok(Busy(self.clone()))
    }

    fn check_abort(&self) -> Result<()> {
        if self.aborted.get() {
            Err(QinsError::Aborted)
        } else {
            Ok(())
        }
    }
}

/// Clears the busy flag however the operation ends.
struct Busy(Rc<Inner>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
        self.0.controller.replace(None);
    }
}

/// A rejected promise's value: an Error with `kind` set.
fn to_js_error(e: &QinsError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = js_sys::Reflect::set(&err, &"kind".into(), &e.kind().into());
    err.into()
}

fn to_js(v: &impl Serialize) -> JsValue {
    let text = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL)
}

fn from_js<T: for<'de> Deserialize<'de> + Default>(v: &JsValue) -> Result<T> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    let text: String = js_sys::JSON::stringify(v)
        .map(String::from)
        .map_err(|e| QinsError::BadRequest(source::js_message(&e)))?;
    serde_json::from_str(&text).map_err(|e| QinsError::BadRequest(e.to_string()))
}

fn promise(f: impl std::future::Future<Output = Result<JsValue>> + 'static) -> Promise {
    future_to_promise(async move { f.await.map_err(|e| to_js_error(&e)) })
}

/// Bytes of wasm linear memory: it never shrinks, so this is also the peak.
fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

#[wasm_bindgen]
pub struct QinsEngine {
    inner: Rc<Inner>,
}

impl Default for QinsEngine {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl QinsEngine {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self {
            inner: Rc::new(Inner::default()),
        }
    }

    /// Loads the archive at `url` (options: `{cache: true, max_context: 4096, kv_cache: "f16", compute: "f32"}`), calling
    /// `on_progress(event)` as bytes arrive. Resolves to the model and adapter description.
    pub fn load(&self, url: String, options: JsValue, on_progress: Function) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let _busy = inner.begin()?;
            let opts: LoadOptions = from_js(&options)?;
            // The previous model's buffers go before the new ones are allocated.
            inner.loaded.replace(None);
            let loaded = load(&inner, &url, &opts, &on_progress).await?;
            let info = loaded.info.clone();
            inner.loaded.replace(Some(loaded));
            Ok(to_js(&info))
        })
    }

    /// Chat: `messages` is `[{role, content}]`; options are the sampling parameters
    /// (`temperature, top_k, top_p, min_p, repetition_penalty, seed`) and `max_tokens`.
    /// `on_token({id, text})` gets each token (text null while a character is incomplete).
    /// Resolves to the generation stats; `stop_reason` is "aborted" after abort().
    pub fn generate(&self, messages: JsValue, options: JsValue, on_token: Function) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let _busy = inner.begin()?;
            let messages: Vec<Message> = from_js(&messages)?;
            let opts: GenerateOptions = from_js(&options)?;
            let mut slot = inner.loaded.borrow_mut();
            let loaded = slot.as_mut().ok_or(QinsError::NotLoaded)?;
            let prompt = loaded.generator.chat_prompt_ids(&messages)?;
            generate(&inner, loaded, &prompt, opts, &on_token).await
        })
    }

    /// Like `generate` from raw token ids, with no chat template (completion, tests).
    pub fn complete(&self, ids: Vec<u32>, options: JsValue, on_token: Function) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let _busy = inner.begin()?;
            let opts: GenerateOptions = from_js(&options)?;
            let mut slot = inner.loaded.borrow_mut();
            let loaded = slot.as_mut().ok_or(QinsError::NotLoaded)?;
            generate(&inner, loaded, &ids, opts, &on_token).await
        })
    }

    /// Logits after `ids` from an empty sequence (a Float32Array of the vocabulary's size).
    pub fn logits(&self, ids: Vec<u32>) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let _busy = inner.begin()?;
            let mut slot = inner.loaded.borrow_mut();
            let loaded = slot.as_mut().ok_or(QinsError::NotLoaded)?;
            use crate::chat::Engine;
            let engine = &mut loaded.generator.engine;
            engine.reset();
            let logits = engine.extend(&ids, false).await?;
            Ok(js_sys::Float32Array::from(logits.as_slice()).into())
        })
    }

    /// Token ids of `text` as the model's tokenizer splits it (no BOS added).
    pub fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, JsValue> {
        let slot = self
            .inner
            .loaded
            .try_borrow()
            .map_err(|_| to_js_error(&QinsError::Busy))?;
        let loaded = slot
            .as_ref()
            .ok_or_else(|| to_js_error(&QinsError::NotLoaded))?;
        loaded
            .generator
            .tokenizer
            .encode(text, false)
            .map_err(|e| to_js_error(&e))
    }

    /// Stops the current load or generation: a load rejects with kind "aborted", a
    /// generation resolves with what it produced so far. The engine stays usable.
    pub fn abort(&self) {
        if self.inner.busy.get() {
            self.inner.aborted.set(true);
            if let Some(c) = self.inner.controller.borrow().as_ref() {
                c.abort();
            }
        }
    }

    /// Frees the model's GPU memory. Refused while a load or generation runs.
    pub fn unload(&self) -> std::result::Result<(), JsValue> {
        if self.inner.busy.get() {
            return Err(to_js_error(&QinsError::Busy));
        }
        self.inner.loaded.replace(None);
        Ok(())
    }

    /// The ready event's description of the loaded model, or null.
    pub fn info(&self) -> JsValue {
        match self.inner.loaded.try_borrow() {
            Ok(slot) => slot.as_ref().map_or(JsValue::NULL, |l| to_js(&l.info)),
            Err(_) => JsValue::NULL,
        }
    }
}

async fn generate(
    inner: &Inner,
    loaded: &mut Loaded,
    prompt: &[u32],
    opts: GenerateOptions,
    on_token: &Function,
) -> Result<JsValue> {
    let mut run =
        loaded
            .generator
            .generate(prompt, opts.sampling, opts.max_tokens, opts.ignore_eos)?;
    while let Some(ev) = run.next_token().await {
        let ev = ev?;
        let _ = on_token.call1(
            &JsValue::NULL,
            &to_js(&json!({"id": ev.id, "text": ev.text})),
        );
        // An abort() from the callback itself is seen here; one from a worker message runs
        // while next_token awaits its GPU read-back, which returns to the event loop (an
        // already-resolved promise would not: microtasks run before queued messages).
        if inner.aborted.get() {
            run.stop("aborted");
            break;
        }
    }
    Ok(to_js(run.stats()))
}

/// Where a load's bytes came from and what it cost.
struct Fed {
    resumes: u32,
    bytes: u64,
    /// What happened to the Cache API copy ("stored", "from cache", "not stored: why").
    cached: String,
}

async fn load(
    inner: &Rc<Inner>,
    url: &str,
    opts: &LoadOptions,
    on_progress: &Function,
) -> Result<Loaded> {
    let started = Instant::now();
    // Options are checked before any device or download.
    let cache_config = opts.cache_config()?;
    let ctx = GpuContext::new(&opts.gpu_options()?).await?;
    let cache = if opts.cache {
        source::open_cache().await
    } else {
        None
    };
    if let Some(cache) = &cache {
        if let Some(resp) = source::cached(cache, url).await {
            let total = source::total_len(&resp);
            let mut loader = GpuLoader::new(ctx.clone(), total, cache_config);
            let fed = feed_cached(inner, &resp, total, &mut loader, on_progress).await;
            match fed {
                Ok(fed) => {
                    return finish(loader, &ctx, fed, true, started, on_progress).await;
                }
                Err(e) if is_damage(&e) => {
                    // A partial or corrupt cached copy is never used: drop it, fetch again.
                    tracing::warn!("cached copy of {url} is damaged ({e}): fetching it again");
                    source::forget(cache, url).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut loader = GpuLoader::new(ctx.clone(), None, cache_config);
    let fed = feed_network(inner, url, cache.as_ref(), &mut loader, on_progress).await;
    match fed {
        Ok(fed) => finish(loader, &ctx, fed, false, started, on_progress).await,
        Err(e) => Err(e),
    }
}

fn is_damage(e: &QinsError) -> bool {
    matches!(
        e.kind(),
        "checksum" | "truncated-archive" | "corrupt-archive" | "unsupported-version"
    )
}

struct Reporter<'a> {
    on_progress: &'a Function,
    stage: &'static str,
    total: u64,
    started: Instant,
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    fn new(on_progress: &'a Function, stage: &'static str) -> Self {
        Self {
            on_progress,
            stage,
            total: 0,
            started: Instant::now(),
            last: None,
        }
    }

    fn report(&mut self, loader: &GpuLoader, resumes: u32, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| (now - t).as_secs_f64() * 1e3 < PROGRESS_EVERY_MS)
        {
            return;
        }
        self.last = Some(now);
        let p = loader.progress();
        let secs = (now - self.started).as_secs_f64().max(1e-6);
        let ev = Progress {
            stage: self.stage,
            bytes_done: p.bytes_done,
            bytes_total: self.total.max(p.bytes_done),
            mb_per_s: p.bytes_done as f64 / secs / 1e6,
            tensors_done: p.tensors_done,
            tensors_total: p.tensors_total,
            resumes,
        };
        let _ = self.on_progress.call1(&JsValue::NULL, &to_js(&ev));
    }
}

/// Reads a body into the loader from byte `skip` on; stops at its end.
async fn pump(
    inner: &Inner,
    body: &Body,
    mut skip: u64,
    loader: &mut GpuLoader,
    rep: &mut Reporter<'_>,
    resumes: u32,
) -> Result<()> {
    loop {
        if let Err(e) = inner.check_abort() {
            body.cancel();
            return Err(e);
        }
        let Some(piece) = body.next().await? else {
            return Ok(());
        };
        let mut piece = piece.as_slice();
        if skip > 0 {
            let s = skip.min(piece.len() as u64) as usize;
            piece = &piece[s..];
            skip -= s as u64;
        }
        if let Err(e) = loader.feed(piece) {
            body.cancel();
            return Err(e);
        }
        rep.report(loader, resumes, false);
    }
}

async fn feed_cached(
    inner: &Inner,
    resp: &Response,
    total: Option<u64>,
    loader: &mut GpuLoader,
    on_progress: &Function,
) -> Result<Fed> {
    let mut rep = Reporter::new(on_progress, "cache");
    rep.total = total.unwrap_or(0);
    let body = Body::of(resp)?;
    pump(inner, &body, 0, loader, &mut rep, 0).await?;
    rep.report(loader, 0, true);
    Ok(Fed {
        resumes: 0,
        bytes: loader.progress().bytes_done,
        cached: "from cache".into(),
    })
}

async fn feed_network(
    inner: &Rc<Inner>,
    url: &str,
    cache: Option<&Cache>,
    loader: &mut GpuLoader,
    on_progress: &Function,
) -> Result<Fed> {
    let mut rep = Reporter::new(on_progress, "network");
    let mut resumes = 0;
    // Only an uninterrupted response is cached whole: a resumed download is not stored.
    let mut storing: Option<Promise> = None;
    let result = async {
        loop {
            let from = loader.progress().bytes_done;
            let controller = AbortController::new().map_err(source::net_err)?;
            let signal = controller.signal();
            inner.controller.replace(Some(controller));
            inner.check_abort()?;
            let (resp, skip) = source::fetch(url, from, &signal).await?;
            if let Some(total) = source::total_len(&resp) {
                rep.total = total;
            }
            if from == 0 {
                if let Some(cache) = cache {
                    storing = store(cache, url, &resp);
                }
            }
            let body = Body::of(&resp)?;
            match pump(inner, &body, skip, loader, &mut rep, resumes).await {
                Ok(()) => return Ok(()),
                Err(QinsError::Network(msg)) if resumes < MAX_RESUMES && !inner.aborted.get() => {
                    resumes += 1;
                    tracing::warn!(
                        "download of {url} broke ({msg}): resuming at byte {}",
                        loader.progress().bytes_done
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    rep.report(loader, resumes, true);
    let mut cached = if cache.is_none() {
        "cache off or unavailable".to_string()
    } else {
        "not stored: the download was resumed".to_string()
    };
    if let (Some(cache), Some(put)) = (cache, storing) {
        if result.is_ok() && resumes == 0 {
            // The copy was fed by the same bytes just verified: it settles as the body ends.
            // QuotaExceededError and friends only cost the cache.
            cached = match JsFuture::from(put).await {
                Ok(_) => "stored".into(),
                Err(e) => {
                    let msg = source::js_message(&e);
                    tracing::warn!("not cached ({msg}): later loads fetch {url} again");
                    format!("not stored: {msg}")
                }
            };
        } else {
            // A copy that was not fully verified must not stay cached.
            let (cache, url) = (cache.clone(), url.to_string());
            spawn_local(async move {
                let _ = JsFuture::from(put).await;
                source::forget(&cache, &url).await;
            });
        }
    }
    result.map(|()| Fed {
        resumes,
        bytes: loader.progress().bytes_done,
        cached,
    })
}

/// Starts storing a copy of the response (the browser tees the body, outside wasm memory).
/// QuotaExceeded and friends surface when the returned promise settles and only cost the cache.
fn store(cache: &Cache, url: &str, resp: &Response) -> Option<Promise> {
    match resp.clone() {
        Ok(copy) => Some(cache.put_with_str(url, &copy)),
        Err(e) => {
            tracing::warn!(
                "cannot copy the response for the cache: {}",
                source::js_message(&e)
            );
            None
        }
    }
}

async fn finish(
    loader: GpuLoader,
    ctx: &GpuContext,
    fed: Fed,
    from_cache: bool,
    started: Instant,
    on_progress: &Function,
) -> Result<Loaded> {
    let mut rep = Reporter::new(on_progress, "build");
    rep.total = fed.bytes;
    rep.report(&loader, fed.resumes, true);
    let (manifest, model) = loader.finish().await?;
    let mut info = describe(&manifest, &model, ctx, &fed, from_cache, started);
    info["adapter"]["browser"] = browser_adapter_info().await;
    let mut generator = Generator::new(GpuEngine::new(model), &manifest)?;
    // A chat turn prefills only what is new since the previous turn.
    generator.set_prefix_reuse(true);
    Ok(Loaded { generator, info })
}

/// What the browser says about its adapter (`GPUAdapterInfo`: vendor, architecture, …): wgpu
/// keeps only the often-empty description.
async fn browser_adapter_info() -> serde_json::Value {
    let get =
        |o: &JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    let Ok(request) = get(&gpu, "requestAdapter").dyn_into::<Function>() else {
        return serde_json::Value::Null;
    };
    let Ok(promise) = request.call0(&gpu).and_then(|p| p.dyn_into::<Promise>()) else {
        return serde_json::Value::Null;
    };
    let Ok(adapter) = JsFuture::from(promise).await else {
        return serde_json::Value::Null;
    };
    let info = get(&adapter, "info");
    let text = |k: &str| get(&info, k).as_string().unwrap_or_default();
    json!({
        "vendor": text("vendor"),
        "architecture": text("architecture"),
        "device": text("device"),
        "description": text("description"),
        "is_fallback_adapter": get(&info, "isFallbackAdapter").as_bool(),
    })
}

fn describe(
    m: &Manifest,
    model: &GpuModel,
    ctx: &GpuContext,
    fed: &Fed,
    from_cache: bool,
    started: Instant,
) -> serde_json::Value {
    let params: usize = m.tensors.iter().map(|t| t.elements()).sum();
    // The codec of most weight bytes names the archive ("lut8", "lut4-g32").
    let mut by_codec = std::collections::BTreeMap::<String, u64>::new();
    for t in &m.tensors {
        *by_codec.entry(t.codec.name()).or_default() += t.bytes;
    }
    let codec = by_codec
        .iter()
        .max_by_key(|(_, b)| **b)
        .map(|(c, _)| c.clone())
        .unwrap_or_default();
    json!({
        "architecture": m.config.architecture,
        "source": m.source,
        "params": params,
        "codec": codec,
        "archive_bytes": fed.bytes,
        "gpu_bytes": model.gpu_bytes,
        "context": model.max_ctx,
        "vocab_size": m.config.vocab_size,
        "layers": m.config.num_layers,
        "adapter": {
            "name": ctx.info.name,
            "vendor": ctx.info.vendor,
            "backend": format!("{:?}", ctx.info.backend),
            "device_type": format!("{:?}", ctx.info.device_type),
            "max_storage_buffer_binding_size": ctx.limits.max_storage_buffer_binding_size,
            "shader_f16": ctx.features.contains(wgpu::Features::SHADER_F16),
        },
        "precision": ctx.compute(),
        "kv_cache": if model.kv_f16 { "f16" } else { "f32" },
        "split_tensors": model.split_tensors,
        "from_cache": from_cache,
        "cache": fed.cached,
        "resumes": fed.resumes,
        "load_ms": started.elapsed().as_secs_f64() * 1e3,
        "peak_wasm_bytes": wasm_memory_bytes(),
        "generation": m.generation,
        "has_chat_template": m.chat_template.is_some(),
    })
}
