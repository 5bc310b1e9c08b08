//! Values across the JavaScript boundary: serde values in and out, errors with their `kind`,
//! promises, and what only the browser can tell (its adapter, wasm memory).

use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::source;
use crate::{QinsError, Result};

/// A rejected promise's value: an Error with `kind` set, and for a model too big for wasm
/// memory the bytes it `needed` and those `available`, so that a page can say by how much.
pub fn to_js_error(e: &QinsError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let set = |key: &str, value: JsValue| {
        let _ = js_sys::Reflect::set(&err, &key.into(), &value);
    };
    set("kind", e.kind().into());
    if let QinsError::MemoryLimit {
        needed, available, ..
    } = e
    {
        set("needed", (*needed as f64).into());
        set("available", (*available as f64).into());
    }
    err.into()
}

pub fn to_js(v: &impl Serialize) -> JsValue {
    let text = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL)
}

/// A JavaScript value as `T` (its default when undefined or null); a value that does not fit
/// is a bad request.
pub fn from_js<T: for<'de> Deserialize<'de> + Default>(v: &JsValue) -> Result<T> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    let text: String = js_sys::JSON::stringify(v)
        .map(String::from)
        .map_err(|e| QinsError::BadRequest(source::js_message(&e)))?;
    serde_json::from_str(&text).map_err(|e| QinsError::BadRequest(e.to_string()))
}

pub fn promise(f: impl std::future::Future<Output = Result<JsValue>> + 'static) -> Promise {
    future_to_promise(async move { f.await.map_err(|e| to_js_error(&e)) })
}

/// Bytes of wasm linear memory: it never shrinks, so this is also the peak.
pub fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// What the browser says about its adapter (`GPUAdapterInfo`: vendor, architecture, …): wgpu
/// keeps only the often-empty description.
pub async fn browser_adapter_info() -> Option<serde_json::Value> {
    let get =
        |o: &JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    let request = get(&gpu, "requestAdapter").dyn_into::<Function>().ok()?;
    let promise = request
        .call0(&gpu)
        .and_then(|p| p.dyn_into::<Promise>())
        .ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info");
    let text = |k: &str| get(&info, k).as_string().unwrap_or_default();
    Some(json!({
        "vendor": text("vendor"),
        "architecture": text("architecture"),
        "device": text("device"),
        "description": text("description"),
        "is_fallback_adapter": get(&info, "isFallbackAdapter").as_bool(),
    }))
}
