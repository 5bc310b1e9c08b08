//! The worker side of the page ↔ engine protocol (docs/WEB_API.md). The page posts
//! `{type: "load" | "generate" | "complete" | "complete_text" | "abort" | "unload" |
//! "cache_list" | "cache_delete" | "lose_device", id, ...}`; the worker answers
//! with events carrying the same `id`. Everything here is plumbing: the engine is
//! `qins_runtime::web::QinsEngine`, also usable directly from JavaScript.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use qins_runtime::web::QinsEngine;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

pub use qins_runtime::web::QinsEngine as Engine;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Posts `{type, id, ...fields}` to the page.
fn post(kind: &str, id: &JsValue, fields: &[(&str, JsValue)]) {
    let msg = Object::new();
    let _ = Reflect::set(&msg, &"type".into(), &kind.into());
    let _ = Reflect::set(&msg, &"id".into(), id);
    for (k, v) in fields {
        let _ = Reflect::set(&msg, &(*k).into(), v);
    }
    if let Err(e) = scope().post_message(&msg) {
        web_sys::console::error_2(&"qins-worker: cannot post".into(), &e);
    }
}

/// A callback that forwards each value as a `{type: kind, id, data}` message.
fn forward(kind: &'static str, id: &JsValue) -> Function {
    let id = id.clone();
    Closure::<dyn FnMut(JsValue)>::new(move |data: JsValue| post(kind, &id, &[("data", data)]))
        .into_js_value()
        .unchecked_into()
}

/// Posts `error` for a rejection: the engine's `Error` carries `kind` and `message`.
fn post_error(id: &JsValue, e: &JsValue) {
    post(
        "error",
        id,
        &[("kind", get(e, "kind")), ("message", get(e, "message"))],
    );
}

/// Settles one request: `done` with the promise's value, or `error` with its kind and message.
fn settle(p: Promise, done: &'static str, id: JsValue) {
    spawn_local(async move {
        match JsFuture::from(p).await {
            Ok(v) => post(done, &id, &[("data", v)]),
            Err(e) => post_error(&id, &e),
        }
    });
}

fn handle(engine: &Rc<QinsEngine>, msg: JsValue) {
    let id = get(&msg, "id");
    let arg = |k: &str| get(&msg, k);
    match arg("type").as_string().as_deref() {
        Some("load") => {
            let url = arg("url").as_string().unwrap_or_default();
            let p = engine.load(url, arg("options"), forward("progress", &id));
            settle(p, "ready", id);
        }
        Some("generate") => {
            let p = engine.generate(arg("messages"), arg("options"), forward("token", &id));
            settle(p, "done", id);
        }
        Some("complete") => {
            let ids: Vec<u32> = js_sys::Array::from(&arg("ids"))
                .iter()
                .filter_map(|v| v.as_f64())
                .map(|v| v as u32)
                .collect();
            let p = engine.complete(ids, arg("options"), forward("token", &id));
            settle(p, "done", id);
        }
        Some("complete_text") => {
            let text = arg("text").as_string().unwrap_or_default();
            let p = engine.complete_text(text, arg("options"), forward("token", &id));
            settle(p, "done", id);
        }
        Some("cache_list") => settle(engine.cached_archives(), "cached", id),
        Some("cache_delete") => {
            let url = arg("url").as_string().unwrap_or_default();
            settle(engine.delete_cached_archive(url), "deleted", id);
        }
        Some("abort") => engine.abort(),
        // Test hook (docs/WEB_API.md): loses the GPU device as a driver reset would.
        Some("lose_device") => engine.lose_device_for_test(),
        Some("unload") => match engine.unload() {
            Ok(()) => post("unloaded", &id, &[]),
            Err(e) => post_error(&id, &e),
        },
        other => post(
            "error",
            &id,
            &[
                ("kind", "protocol".into()),
                ("message", format!("unknown request type {other:?}").into()),
            ],
        ),
    }
}

/// Runs when the worker's module is instantiated: listen, then tell the page we are ready.
#[wasm_bindgen(start)]
pub fn start() {
    // The same module also serves pages that use QinsEngine directly: only a worker listens.
    if !js_sys::global().has_type::<DedicatedWorkerGlobalScope>() {
        return;
    }
    // The engine's tracing warnings (cache not stored, resumed downloads) go to the console.
    tracing_wasm::set_as_global_default_with_config(
        tracing_wasm::WASMLayerConfigBuilder::new()
            .set_max_level(tracing::Level::INFO)
            .build(),
    );
    let engine = Rc::new(QinsEngine::new());
    let on_message =
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| handle(&engine, ev.data()));
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post("started", &JsValue::NULL, &[]);
}
