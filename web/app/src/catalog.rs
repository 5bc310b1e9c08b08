//! The model picker: the server's `models/catalog.json` (qins-serve makes it from the
//! archives; docs/WEB_API.md, "Model catalog") shown as a list with each model's size, codec and
//! whether this browser already keeps it, and a question before a large download.

use leptos::prelude::*;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::model::{count, size};
use crate::storage::Stored;

const CATALOG_URL: &str = "models/catalog.json";
/// A download larger than this (and not in the browser yet) asks first.
const ASK_ABOVE_BYTES: f64 = 1e9;

/// What the page reads of a catalog entry; `url` is made absolute against the catalog's URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub parameters: f64,
    #[serde(default)]
    pub codec: String,
    #[serde(default)]
    pub bits_per_weight: f64,
    #[serde(default)]
    pub archive_bytes: f64,
    #[serde(default)]
    pub context: u64,
}

#[derive(Deserialize)]
struct Catalog {
    models: Vec<Entry>,
}

/// The catalog beside the page, or None when the server has none (the URL field remains).
pub async fn fetch_catalog() -> Option<Vec<Entry>> {
    let w = web_sys::window()?;
    let base = web_sys::Url::new_with_base(CATALOG_URL, &w.location().href().ok()?).ok()?;
    let resp: web_sys::Response = JsFuture::from(w.fetch_with_str(&base.href()))
        .await
        .ok()?
        .dyn_into()
        .ok()?;
    if !resp.ok() {
        return None;
    }
    let text = JsFuture::from(resp.text().ok()?).await.ok()?.as_string()?;
    let mut catalog: Catalog = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            web_sys::console::warn_1(&format!("{CATALOG_URL}: {e}").into());
            return None;
        }
    };
    for m in &mut catalog.models {
        if let Ok(u) = web_sys::Url::new_with_base(&m.url, &base.href()) {
            m.url = u.href();
        }
    }
    Some(catalog.models)
}

#[component]
pub fn ModelPicker(
    /// None while the catalog is read or when there is none.
    entries: RwSignal<Option<Vec<Entry>>>,
    /// What this browser keeps (the "in browser cache" marks).
    stored: RwSignal<Vec<Stored>>,
    /// Loads an entry (from the cache when it is there).
    on_pick: Callback<Entry>,
) -> impl IntoView {
    let asking = RwSignal::new(None::<Entry>);
    let is_stored = move |url: &str| stored.with(|s| s.iter().any(|x| x.url == url));
    let pick = move |e: Entry| {
        if e.archive_bytes > ASK_ABOVE_BYTES && !is_stored(&e.url) {
            asking.set(Some(e));
        } else {
            on_pick.run(e);
        }
    };
    let ask_view = move || {
        asking.get().map(|e| {
            let go = e.clone();
            view! {
                <div class="confirm" role="alertdialog" data-testid="confirm-large">
                    <p>{format!("{} is a {} download. It is kept in this browser afterwards, \
                        so it is downloaded once. Download it now?", e.name, size(e.archive_bytes))}</p>
                    <button type="button" data-testid="confirm-large-download" on:click=move |_| {
                        asking.set(None);
                        on_pick.run(go.clone());
                    }>"Download"</button>
                    <button type="button" on:click=move |_| asking.set(None)>"Cancel"</button>
                </div>
            }
        })
    };
    let rows = move || {
        entries
            .get()
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let here = is_stored(&e.url);
                let detail = format!(
                    "{} parameters · {} ({:.1} bits/weight) · {} context",
                    count(e.parameters),
                    e.codec,
                    e.bits_per_weight,
                    if e.context >= 1024 {
                        format!("{}K", e.context / 1024)
                    } else {
                        e.context.to_string()
                    },
                );
                let label = if here {
                    "Load".to_string()
                } else {
                    format!("Download {}", size(e.archive_bytes))
                };
                let chosen = e.clone();
                view! {
                    <li data-testid="catalog-entry" data-id=e.id.clone()>
                        <div>
                            <strong>{e.name.clone()}</strong>
                            {here.then(|| view! {
                                <span class="badge" data-testid="in-cache">"in browser cache"</span>
                            })}
                            <br/>
                            <span class="muted">{detail}</span>
                        </div>
                        <button type="button" data-testid="catalog-load"
                            on:click=move |_| pick(chosen.clone())>{label}</button>
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <Show when=move || entries.with(|e| e.as_ref().is_some_and(|e| !e.is_empty()))>
            <p class="muted">"Pick a model. It downloads once (the size is on its button) and is \
                kept in this browser for the next visit."</p>
            <ul class="catalog" data-testid="catalog">{rows}</ul>
            {ask_view}
        </Show>
    }
}
