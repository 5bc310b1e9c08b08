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
use web_time::Instant;

use super::download::{self, Abort};
use super::js::{browser_adapter_info, from_js, promise, to_js, to_js_error, wasm_memory_bytes};
use super::store::Store;
use crate::chat::{GenerateOptions, Generator, Prompt};
use crate::engine::Engine;
use crate::load::{AnyEngine, EngineInfo, LoadOptions};
use crate::{QinsError, Result};

/// `load()`'s options: the engine's (the same as the native tools', docs/WEB_API.md) and
/// whether to use the Cache API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct WebLoadOptions {
    /// Read from and store into the Cache API.
    cache: bool,
    #[serde(flatten)]
    engine: LoadOptions,
}

impl Default for WebLoadOptions {
    fn default() -> Self {
        Self {
            cache: true,
            engine: LoadOptions::default(),
        }
    }
}

/// The `ready` event's description: what the engine used, and where the bytes came from.
#[derive(Serialize)]
struct ReadyInfo {
    #[serde(flatten)]
    engine: EngineInfo,
    from_cache: bool,
    /// What happened to the Cache API copy ("stored", "from cache", "not stored: why").
    cache: String,
    /// Range requests made after the network dropped.
    resumes: u32,
    peak_wasm_bytes: f64,
}

struct Loaded {
    generator: Generator<AnyEngine>,
    info: serde_json::Value,
}

#[derive(Default)]
struct Inner {
    loaded: RefCell<Option<Loaded>>,
    /// The loaded model's GPU device, reachable while a generation holds `loaded`.
    device: RefCell<Option<crate::gpu::GpuContext>>,
    busy: Cell<bool>,
    abort: Abort,
}

impl Inner {
    fn unload(&self) {
        self.loaded.replace(None);
        self.device.replace(None);
    }

    /// Marks the engine busy for one operation; a second concurrent one is refused.
    fn begin(self: &Rc<Self>) -> Result<Busy> {
        if self.busy.replace(true) {
            return Err(QinsError::Busy);
        }
        self.abort.reset();
        Ok(Busy(self.clone()))
    }
}

/// Clears the busy flag however the operation ends.
struct Busy(Rc<Inner>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
        self.0.abort.reset();
    }
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
            let opts: WebLoadOptions = from_js(&options)?;
            // The previous model's buffers go before the new ones are allocated.
            inner.unload();
            let loaded = load(&inner, &url, &opts, &on_progress).await?;
            let info = loaded.info.clone();
            let device = loaded.generator.engine.gpu().map(|g| g.model.ctx.clone());
            inner.device.replace(device);
            inner.loaded.replace(Some(loaded));
            Ok(to_js(&info))
        })
    }

    /// Chat: `messages` is `[{role, content}]`; options are the sampling parameters
    /// (`temperature, top_k, top_p, min_p, repetition_penalty, seed`), `max_tokens` and `stop`.
    /// `on_token({id, text})` gets each token (text null while a character is incomplete).
    /// Resolves to the generation stats; `stop_reason` is "aborted" after abort().
    pub fn generate(&self, messages: JsValue, options: JsValue, on_token: Function) -> Promise {
        self.start(
            move || Ok(Prompt::Chat(from_js(&messages)?)),
            options,
            on_token,
        )
    }

    /// Like `generate` from raw token ids, with no chat template (completion, tests).
    pub fn complete(&self, ids: Vec<u32>, options: JsValue, on_token: Function) -> Promise {
        self.start(move || Ok(Prompt::Ids(ids)), options, on_token)
    }

    /// Like `complete` from text: tokenized as the archive says (with BOS where it adds one),
    /// no chat template (OpenAI's text completions).
    pub fn complete_text(&self, text: String, options: JsValue, on_token: Function) -> Promise {
        self.start(move || Ok(Prompt::Text(text)), options, on_token)
    }

    /// Logits after `ids` from an empty sequence (a Float32Array of the vocabulary's size).
    pub fn logits(&self, ids: Vec<u32>) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let _busy = inner.begin()?;
            let mut slot = inner.loaded.borrow_mut();
            let loaded = slot.as_mut().ok_or(QinsError::NotLoaded)?;
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
            self.inner.abort.abort();
        }
    }

    /// Frees the model's GPU memory. Refused while a load or generation runs.
    pub fn unload(&self) -> std::result::Result<(), JsValue> {
        if self.inner.busy.get() {
            return Err(to_js_error(&QinsError::Busy));
        }
        self.inner.unload();
        Ok(())
    }

    /// Test hook: destroys the GPU device as a driver reset would, even mid-generation (which
    /// then ends with kind "device-lost" and the model unloaded). Tests of the device-lost
    /// path only: runtime-wasm/tests/web.rs and, through the worker, the page's e2e.
    #[wasm_bindgen(js_name = loseDeviceForTest)]
    pub fn lose_device_for_test(&self) {
        if let Some(ctx) = self.inner.device.borrow().as_ref() {
            ctx.destroy_for_test();
        }
    }

    /// The archives kept in the browser's cache: `[{url, bytes}]`. Runs beside a load or a
    /// generation (it touches only the cache).
    #[wasm_bindgen(js_name = cachedArchives)]
    pub fn cached_archives(&self) -> Promise {
        promise(async move {
            let list = match Store::open().await {
                Some(store) => store.list().await?,
                None => Vec::new(),
            };
            let list: Vec<_> = list
                .into_iter()
                .map(|(url, bytes)| json!({"url": url, "bytes": bytes}))
                .collect();
            Ok(to_js(&list))
        })
    }

    /// Removes the archive stored for `url` from the browser's cache (a model loaded from it
    /// stays loaded); resolves to whether there was one.
    #[wasm_bindgen(js_name = deleteCachedArchive)]
    pub fn delete_cached_archive(&self, url: String) -> Promise {
        promise(async move {
            Ok(match Store::open().await {
                Some(store) => store.delete(&url).await?,
                None => false,
            }
            .into())
        })
    }

    /// The ready event's description of the loaded model, or null.
    pub fn info(&self) -> JsValue {
        match self.inner.loaded.try_borrow() {
            Ok(slot) => slot.as_ref().map_or(JsValue::NULL, |l| to_js(&l.info)),
            Err(_) => JsValue::NULL,
        }
    }
}

impl QinsEngine {
    /// One generation from `prompt` (read when the engine is free) with `options`.
    fn start(
        &self,
        prompt: impl FnOnce() -> Result<Prompt> + 'static,
        options: JsValue,
        on_token: Function,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let _busy = inner.begin()?;
            let prompt = prompt()?;
            let opts: GenerateOptions = from_js(&options)?;
            let result = {
                let mut slot = inner.loaded.borrow_mut();
                let loaded = slot.as_mut().ok_or(QinsError::NotLoaded)?;
                generate(&inner, loaded, prompt, opts, &on_token).await
            };
            if let Err(QinsError::DeviceLost(_)) = result {
                // Nothing on a lost device can be used again: the page loads the model anew.
                inner.unload();
            }
            result
        })
    }
}

async fn generate(
    inner: &Inner,
    loaded: &mut Loaded,
    prompt: Prompt,
    opts: GenerateOptions,
    on_token: &Function,
) -> Result<JsValue> {
    let send = |id: Option<u32>, text: Option<String>| {
        let _ = on_token.call1(&JsValue::NULL, &to_js(&json!({"id": id, "text": text})));
    };
    let mut run = loaded.generator.start(prompt, opts)?;
    while let Some(ev) = run.next_token().await {
        let ev = ev?;
        send(Some(ev.id), ev.text);
        // An abort() from the callback itself is seen here; one from a worker message runs
        // while next_token awaits its GPU read-back, which returns to the event loop (an
        // already-resolved promise would not: microtasks run before queued messages).
        if inner.abort.is_aborted() {
            run.stop("aborted");
            break;
        }
    }
    // Text held back as a possible stop string's start: its own event, with no token id.
    let rest = run.held_text();
    if !rest.is_empty() {
        send(None, Some(rest));
    }
    Ok(to_js(run.stats()))
}

async fn load(
    inner: &Inner,
    url: &str,
    opts: &WebLoadOptions,
    on_progress: &Function,
) -> Result<Loaded> {
    let started = Instant::now();
    let (loaded, fed) =
        download::load(&inner.abort, url, &opts.engine, opts.cache, on_progress).await?;
    let mut engine = loaded.info;
    if let Some(adapter) = &mut engine.adapter {
        adapter.browser = browser_adapter_info().await;
    }
    engine.load_ms = started.elapsed().as_secs_f64() * 1e3;
    engine.load_stages.measured_from_start(engine.load_ms);
    let info = ReadyInfo {
        engine,
        from_cache: fed.from_cache,
        cache: fed.cached,
        resumes: fed.resumes,
        peak_wasm_bytes: wasm_memory_bytes(),
    };
    let mut generator = loaded.generator;
    // A chat turn prefills only what is new since the previous turn.
    generator.set_prefix_reuse(true);
    Ok(Loaded {
        generator,
        info: serde_json::to_value(&info).map_err(|e| QinsError::Manifest(e.to_string()))?,
    })
}
