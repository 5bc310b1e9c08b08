//! The page: its state, the worker's replies routed into it, and the actions (load, send)
//! the components below call: model.rs, conversation.rs, composer.rs, settings.rs.

use leptos::prelude::*;
use serde_json::json;

use crate::catalog::{fetch_catalog, Entry, ModelPicker};
use crate::composer::Composer;
use crate::conversation::{Conversation, Stats, Turn};
use crate::engine::{self, Reply};
use crate::model::{percent, Load, ModelPanel};
use crate::settings::{Settings, SettingsPanel};
use crate::storage::{self, StoragePanel, Stored};
use crate::{guidance, store};

/// The converted SmolLM2-135M-Instruct that `scripts/dev.sh demo` serves.
const DEFAULT_MODEL: &str = "models/smollm2.lut8g.qins";
const TURNS_KEY: &str = "qins.turns";
const SETTINGS_KEY: &str = "qins.settings";

/// `?model=URL` from the page's address.
fn model_from_query() -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get("model")
        .filter(|m| !m.is_empty())
}

/// A `?model=` link to an archive on another site: what the page asks about before it
/// downloads anything (a link must not start a large download from elsewhere unasked).
#[derive(Debug, Clone, PartialEq)]
struct RemoteAsk {
    url: String,
    origin: String,
    name: String,
    /// From a HEAD request, when the other site answers it (CORS).
    bytes: Option<f64>,
}

/// `url` made absolute, and its origin when that is not the page's.
fn other_origin(url: &str) -> Option<(String, String)> {
    let w = web_sys::window()?;
    let u = web_sys::Url::new_with_base(url, &w.location().href().ok()?).ok()?;
    let page = w.location().origin().ok()?;
    (u.origin() != page).then(|| (u.href(), u.origin()))
}

/// The archive's size from a HEAD request, None when the site does not say (or refuses).
async fn head_size(url: &str) -> Option<f64> {
    use wasm_bindgen::JsCast;
    let init = web_sys::RequestInit::new();
    init.set_method("HEAD");
    let req = web_sys::Request::new_with_str_and_init(url, &init).ok()?;
    let resp = wasm_bindgen_futures::JsFuture::from(web_sys::window()?.fetch_with_request(&req))
        .await
        .ok()?
        .dyn_into::<web_sys::Response>()
        .ok()?;
    resp.headers().get("content-length").ok()??.parse().ok()
}

/// `?test-hooks` adds `window.qinsLoseDevice()`, which makes the worker lose its GPU device
/// as a driver reset would (the e2e test of the device-lost path, tests/e2e/chat.mjs).
fn install_test_hooks() {
    use wasm_bindgen::prelude::*;
    let Some(w) = web_sys::window() else { return };
    let wanted = w
        .location()
        .search()
        .ok()
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
        .is_some_and(|p| p.has("test-hooks"));
    if wanted {
        let hook = Closure::<dyn Fn()>::new(|| {
            engine::request("lose_device", json!({}));
        });
        let _ = js_sys::Reflect::set(&w, &"qinsLoseDevice".into(), &hook.into_js_value());
    }
}

fn now_seed() -> u64 {
    js_sys::Date::now() as u64
}

#[component]
pub fn App() -> impl IntoView {
    let start_model = model_from_query();
    let model_url = RwSignal::new(start_model.clone().unwrap_or(DEFAULT_MODEL.into()));
    let model_label = RwSignal::new(String::new());
    let load = RwSignal::new(Load::Idle);
    let last_percent = RwSignal::new(0u32);
    let turns = RwSignal::new(store::load::<Vec<Turn>>(TURNS_KEY).unwrap_or_default());
    let settings = RwSignal::new(store::load::<Settings>(SETTINGS_KEY).unwrap_or_default());
    let draft = RwSignal::new(String::new());
    let load_id = RwSignal::new(0u64);
    let gen_id = RwSignal::new(0u64);
    let generating = RwSignal::new(false);
    let startup_error = RwSignal::new(None::<String>);
    // The first turn the model still sees: older ones no longer fit its context (the engine
    // leaves them out and says how many); the page keeps showing them above a mark.
    let memory_start = RwSignal::new(0usize);
    // A message sent before the model is ready waits here, shown in the conversation, and goes
    // when the model is ready.
    let queued = RwSignal::new(false);
    Effect::new(move |_| {
        if turns.with(|t| t.is_empty()) {
            memory_start.set(0);
            queued.set(false);
        }
    });
    let catalog = RwSignal::new(None::<Vec<Entry>>);
    wasm_bindgen_futures::spawn_local(async move { catalog.set(fetch_catalog().await) });
    let stored = RwSignal::new(Vec::<Stored>::new());

    // A reply still streaming is not saved half-way: it is saved when it ends.
    Effect::new(move |_| {
        if !generating.get() {
            store::save(TURNS_KEY, &turns.get());
        }
    });
    Effect::new(move |_| store::save(SETTINGS_KEY, &settings.get()));

    let on_reply = move |r: Reply| {
        match r.kind.as_str() {
            "cached" => {
                stored.set(serde_json::from_value(r.data).unwrap_or_default());
                return;
            }
            "deleted" => {
                storage::refresh();
                return;
            }
            _ => {}
        }
        if r.id == load_id.get_untracked() {
            match r.kind.as_str() {
                "progress" => {
                    let d = &r.data;
                    let (done, total) = (
                        d["bytes_done"].as_f64().unwrap_or(0.0),
                        d["bytes_total"].as_f64().unwrap_or(0.0),
                    );
                    if d["stage"] != "build" {
                        last_percent.set(percent(done, total));
                    }
                    load.set(Load::Loading {
                        stage: d["stage"].as_str().unwrap_or_default().into(),
                        done,
                        total,
                        mb_s: d["mb_per_s"].as_f64().unwrap_or(0.0),
                    });
                }
                "ready" => {
                    // The archive's own sampling defaults, where it has them.
                    let g = &r.data["generation"];
                    settings.update(|s| {
                        if let Some(t) = g["temperature"].as_f64() {
                            s.temperature = t as f32;
                        }
                        if let Some(p) = g["top_p"].as_f64() {
                            s.top_p = p as f32;
                        }
                        if let Some(k) = g["top_k"].as_u64() {
                            s.top_k = k as u32;
                        }
                    });
                    // A large archive just stored: ask the browser not to evict it.
                    let large = r.data["cache"] == "stored"
                        && r.data["archive_bytes"].as_f64().unwrap_or(0.0)
                            > storage::PERSIST_ABOVE_BYTES;
                    wasm_bindgen_futures::spawn_local(async move {
                        if large {
                            storage::persist().await;
                        }
                        storage::refresh();
                    });
                    load.set(Load::Ready(r.data));
                }
                "error" => load.set(Load::Failed {
                    kind: r.error_kind,
                    message: r.message,
                }),
                _ => {}
            }
        } else if r.id == gen_id.get_untracked() {
            match r.kind.as_str() {
                "token" => {
                    if let Some(text) = r.data["text"].as_str() {
                        turns.update(|t| {
                            if let Some(last) = t.last_mut() {
                                last.content.push_str(text);
                            }
                        });
                    }
                }
                "done" => {
                    let dropped = r.data["dropped_messages"].as_u64().unwrap_or(0) as usize;
                    memory_start.update(|m| *m += dropped);
                    let stats: Stats = serde_json::from_value(r.data).unwrap_or_default();
                    turns.update(|t| {
                        if let Some(last) = t.last_mut() {
                            last.stats = Some(stats);
                        }
                    });
                    generating.set(false);
                }
                "error" => {
                    turns.update(|t| {
                        if let Some(last) = t.last_mut() {
                            last.error = Some(format!(
                                "{} ({})",
                                guidance::for_kind(&r.error_kind),
                                r.message
                            ));
                        }
                    });
                    generating.set(false);
                    if r.error_kind == "device-lost" {
                        // The worker has dropped the model: the panel offers to load it again.
                        load.set(Load::Failed {
                            kind: r.error_kind,
                            message: r.message,
                        });
                    }
                }
                _ => {}
            }
        }
    };
    if let Err(e) = engine::start(on_reply) {
        startup_error.set(Some(e));
    }
    storage::refresh();
    install_test_hooks();

    let last_request = RwSignal::new(None);
    let start_load = move |url: String, label: String, cache: bool| {
        last_request.set(Some((url.clone(), label.clone(), cache)));
        // The worker resolves relative URLs against its own script: make it absolute here.
        let href = web_sys::window().and_then(|w| w.location().href().ok());
        let url = href
            .and_then(|base| web_sys::Url::new_with_base(&url, &base).ok())
            .map_or(url, |u| u.href());
        if generating.get_untracked() {
            engine::abort();
        }
        model_label.set(label);
        last_percent.set(0);
        load.set(Load::Loading {
            stage: "network".into(),
            done: 0.0,
            total: 0.0,
            mb_s: 0.0,
        });
        let Settings {
            compute, backend, ..
        } = settings.get_untracked();
        let options = json!({"cache": cache, "compute": compute, "backend": backend});
        let id = engine::request("load", json!({"url": url, "options": options}));
        load_id.set(id);
    };
    let remote_ask = RwSignal::new(None::<RemoteAsk>);
    if start_model.is_some() {
        let url = model_url.get_untracked();
        match other_origin(&url) {
            Some((url, origin)) => {
                let name = url.rsplit('/').next().unwrap_or(&url).to_string();
                remote_ask.set(Some(RemoteAsk {
                    url: url.clone(),
                    origin,
                    name,
                    bytes: None,
                }));
                wasm_bindgen_futures::spawn_local(async move {
                    let bytes = head_size(&url).await;
                    remote_ask.update(|a| {
                        if let Some(a) = a {
                            a.bytes = bytes;
                        }
                    });
                });
            }
            None => start_load(url.clone(), url, true),
        }
    }
    let ask_view = move || {
        remote_ask.get().map(|ask| {
            let size = ask
                .bytes
                .map_or("size unknown".to_string(), |b| format!("{:.1} MB", b / 1e6));
            let url = ask.url.clone();
            view! {
                <div class="confirm" role="alertdialog" data-testid="confirm-remote">
                    <p>"This link asks to download " <strong>{ask.name.clone()}</strong>
                        " (" <span data-testid="remote-size">{size}</span> ") from "
                        <strong>{ask.origin.clone()}</strong> ", another site. Download it?"</p>
                    <button type="button" data-testid="confirm-download" on:click=move |_| {
                        remote_ask.set(None);
                        start_load(url.clone(), url.clone(), true);
                    }>"Download"</button>
                    <button type="button" on:click=move |_| remote_ask.set(None)>"Cancel"</button>
                </div>
            }
        })
    };

    // The reply to the conversation as it stands.
    let reply = move || {
        let s = settings.get_untracked();
        let mut messages = Vec::new();
        if !s.system.trim().is_empty() {
            messages.push(json!({"role": "system", "content": s.system}));
        }
        // Turns the model already lost stay out: the engine only drops more as needed.
        for t in turns
            .get_untracked()
            .into_iter()
            .skip(memory_start.get_untracked())
        {
            messages.push(json!({"role": t.role, "content": t.content}));
        }
        turns.update(|t| {
            t.push(Turn {
                role: "assistant".into(),
                content: String::new(),
                stats: None,
                error: None,
            })
        });
        let seed = s.seed.trim().parse::<u64>().unwrap_or_else(|_| now_seed());
        let options = json!({
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "max_tokens": s.max_tokens,
            "seed": seed,
        });
        generating.set(true);
        let id = engine::request(
            "generate",
            json!({"messages": messages, "options": options}),
        );
        gen_id.set(id);
    };
    let send = move |regenerate: bool| {
        let ready = matches!(load.get_untracked(), Load::Ready(_));
        if generating.get_untracked() || (regenerate && !ready) {
            return;
        }
        if regenerate {
            turns.update(|t| {
                if t.last().is_some_and(|l| l.role == "assistant") {
                    t.pop();
                }
            });
        } else {
            let text = draft.get_untracked();
            if text.trim().is_empty() {
                return;
            }
            draft.set(String::new());
            turns.update(|t| {
                t.push(Turn {
                    role: "user".into(),
                    content: text,
                    stats: None,
                    error: None,
                })
            });
            if !ready {
                queued.set(true);
                return;
            }
        }
        reply();
    };
    Effect::new(move |_| {
        if matches!(load.get(), Load::Ready(_)) && queued.get_untracked() {
            queued.set(false);
            reply();
        }
    });
    let queued_note = move || {
        queued.get().then(|| {
            let why = match load.get() {
                Load::Loading { .. } => "Your message will be sent when the model has loaded.",
                Load::Failed { .. } => {
                    "The model did not load: load it again and your message will be sent."
                }
                _ => "Pick or load a model above: your message will be sent when it is ready.",
            };
            view! { <p class="muted" data-testid="queued" role="status">{why}</p> }
        })
    };
    let pick = move |e: Entry| {
        model_url.set(e.url.clone());
        start_load(e.url, e.name, true);
    };

    let ready = Signal::derive(move || matches!(load.get(), Load::Ready(_)));

    view! {
        <header>
            <h1>"QINS chat"</h1>
            <p class="muted">"A language model running in this tab, on your GPU (or, without WebGPU, your CPU). Nothing leaves your machine."</p>
        </header>
        {move || startup_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {ask_view}
        <ModelPicker entries=catalog stored on_pick=Callback::new(pick)/>
        <ModelPanel model_url model_label load last_percent last_request
            on_load=Callback::new(move |(url, label, cache)| start_load(url, label, cache))/>
        <Conversation turns memory_start/>
        {queued_note}
        <Composer draft turns generating ready send=Callback::new(send)/>
        <SettingsPanel settings/>
        <StoragePanel stored/>
    }
}
