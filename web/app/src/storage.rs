//! What this browser keeps: the archives in the engine's cache (listed and deleted through the
//! worker, which owns the cache: `cache_list` / `cache_delete` in docs/WEB_API.md), the
//! origin's storage estimate, and whether the storage is persistent.

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::json;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::engine;
use crate::model::size;

/// Above this, a stored archive is worth asking the browser not to evict.
pub const PERSIST_ABOVE_BYTES: f64 = 50e6;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stored {
    pub url: String,
    pub bytes: Option<f64>,
}

/// Asks the worker for the list; the answer comes as a `cached` reply.
pub fn refresh() {
    engine::request("cache_list", json!({}));
}

/// Asks the worker to drop `url`; a `deleted` reply follows.
pub fn delete(url: &str) {
    engine::request("cache_delete", json!({ "url": url }));
}

/// `navigator.storage.NAME()`'s result, where the browser has it (only secure contexts do).
async fn storage_call(name: &str) -> Option<JsValue> {
    let nav = web_sys::window()?.navigator();
    let storage = Reflect::get(&nav, &"storage".into()).ok()?;
    let f: Function = Reflect::get(&storage, &name.into()).ok()?.dyn_into().ok()?;
    let p: Promise = f.call0(&storage).ok()?.dyn_into().ok()?;
    JsFuture::from(p).await.ok()
}

/// Asks the browser to keep this origin's storage until the user clears it; its answer.
pub async fn persist() -> Option<bool> {
    storage_call("persist").await?.as_bool()
}

#[derive(Debug, Clone, PartialEq)]
struct Estimate {
    usage: f64,
    quota: f64,
    persisted: Option<bool>,
}

async fn estimate() -> Option<Estimate> {
    let e = storage_call("estimate").await?;
    let num = |k: &str| Reflect::get(&e, &k.into()).ok()?.as_f64();
    Some(Estimate {
        usage: num("usage")?,
        quota: num("quota")?,
        persisted: storage_call("persisted").await.and_then(|v| v.as_bool()),
    })
}

#[component]
pub fn StoragePanel(stored: RwSignal<Vec<Stored>>) -> impl IntoView {
    let est = RwSignal::new(None::<Estimate>);
    // The estimate follows the list: a store or a delete changes both.
    Effect::new(move |_| {
        stored.track();
        wasm_bindgen_futures::spawn_local(async move { est.set(estimate().await) });
    });
    let rows = move || {
        stored
            .get()
            .into_iter()
            .map(|s| {
                let name = s.url.rsplit('/').next().unwrap_or(&s.url).to_string();
                let size = s.bytes.map_or("size unknown".into(), size);
                let url = s.url.clone();
                view! {
                    <li data-testid="cached-entry" data-url=s.url.clone() title=s.url.clone()>
                        <span>{name}</span> " · " <span class="muted">{size}</span>
                        <button type="button" data-testid="cached-delete"
                            on:click=move |_| delete(&url)>"Delete"</button>
                    </li>
                }
            })
            .collect_view()
    };
    let estimate_line = move || {
        est.get().map(|e| {
            let kept = match e.persisted {
                Some(true) => " Kept until you delete it.",
                Some(false) => " The browser may clear it when the disk runs low on space.",
                None => "",
            };
            view! {
                <p class="muted" data-testid="storage-estimate">
                    {format!("This site uses {} of the {} this browser allows it.{kept}",
                        size(e.usage), size(e.quota))}
                </p>
            }
        })
    };
    view! {
        <details class="storage" data-testid="storage">
            <summary>{move || format!("Stored in this browser ({})", stored.with(Vec::len))}</summary>
            <Show when=move || stored.with(|s| !s.is_empty())
                fallback=|| view! { <p class="muted" data-testid="cached-none">"No model archives are stored."</p> }>
                <ul class="cached">{rows}</ul>
            </Show>
            {estimate_line}
        </details>
    }
}
