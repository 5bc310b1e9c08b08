//! The page: model picker and load progress, the conversation, the composer and settings.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wasm_bindgen::JsCast;

use crate::engine::{self, Reply};
use crate::{guidance, markdown, store};

/// The converted SmolLM2-135M-Instruct that `scripts/dev.sh demo` serves.
const DEFAULT_MODEL: &str = "models/smollm2.lut8g.qins";
const TURNS_KEY: &str = "qins.turns";
const SETTINGS_KEY: &str = "qins.settings";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stats {
    ttft_ms: f64,
    decode_tok_s: f64,
    generated_tokens: u64,
    stop_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Turn {
    role: String,
    content: String,
    stats: Option<Stats>,
    /// A failure shown under the reply instead of stats.
    error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    system: String,
    temperature: f32,
    top_p: f32,
    top_k: u32,
    max_tokens: u32,
    /// Empty: a fresh seed per reply.
    seed: String,
    /// The engine's `compute` load option: "f32", or "f16" (multiplies in f16 where the GPU
    /// has shader-f16); taken at the next load.
    compute: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            system: String::new(),
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            max_tokens: 512,
            seed: String::new(),
            compute: "f32".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Load {
    Idle,
    Loading {
        stage: String,
        done: f64,
        total: f64,
        mb_s: f64,
    },
    Ready(Value),
    Failed {
        kind: String,
        message: String,
    },
}

fn percent(done: f64, total: f64) -> u32 {
    if total > 0.0 {
        ((done / total) * 100.0).clamp(0.0, 100.0).round() as u32
    } else {
        0
    }
}

fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} B", n / 1e9),
        n if n >= 1e6 => format!("{:.0} M", n / 1e6),
        n => format!("{:.0} K", n / 1e3),
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

/// `?model=URL` from the page's address.
fn model_from_query() -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get("model")
        .filter(|m| !m.is_empty())
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

    // A reply still streaming is not saved half-way: it is saved when it ends.
    Effect::new(move |_| {
        if !generating.get() {
            store::save(TURNS_KEY, &turns.get());
        }
    });
    Effect::new(move |_| store::save(SETTINGS_KEY, &settings.get()));

    let on_reply = move |r: Reply| {
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
                }
                _ => {}
            }
        }
    };
    if let Err(e) = engine::start(on_reply) {
        startup_error.set(Some(e));
    }

    let start_load = move |url: String, label: String, cache: bool| {
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
        let compute = settings.get_untracked().compute;
        let id = engine::request(
            "load",
            json!({"url": url, "options": {"cache": cache, "compute": compute}}),
        );
        load_id.set(id);
    };
    if start_model.is_some() {
        let url = model_url.get_untracked();
        start_load(url.clone(), url, true);
    }

    let send = move |regenerate: bool| {
        if generating.get_untracked() || !matches!(load.get_untracked(), Load::Ready(_)) {
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
        }
        let s = settings.get_untracked();
        let mut messages = Vec::new();
        if !s.system.trim().is_empty() {
            messages.push(json!({"role": "system", "content": s.system}));
        }
        for t in turns.get_untracked() {
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

    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        match web_sys::Url::create_object_url_with_blob(&file) {
            // A local file needs no cache: it is already on this machine.
            Ok(url) => start_load(url, file.name(), false),
            Err(_) => load.set(Load::Failed {
                kind: "bad-request".into(),
                message: "cannot read the chosen file".into(),
            }),
        }
    };

    // Copy buttons live inside rendered Markdown: one delegated handler serves them all.
    let on_chat_click = move |ev: leptos::ev::MouseEvent| {
        let Some(target) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        if !target.class_list().contains("copy") {
            return;
        }
        let code = target
            .closest(".code")
            .ok()
            .flatten()
            .and_then(|c| c.query_selector("code").ok().flatten())
            .and_then(|c| c.text_content());
        if let (Some(code), Some(w)) = (code, web_sys::window()) {
            let _ = w.navigator().clipboard().write_text(&code);
            target.set_text_content(Some("Copied"));
        }
    };

    let status = move || match load.get() {
        Load::Idle => view! { <p class="muted">"No model loaded."</p> }.into_any(),
        Load::Loading {
            stage,
            done,
            total,
            mb_s,
        } => {
            let what = match stage.as_str() {
                "cache" => "Reading from the browser cache",
                "build" => "Preparing the GPU pipelines",
                _ => "Downloading, decompressing and uploading to the GPU",
            };
            let eta = if mb_s > 0.0 && total > done {
                format!(" · about {:.0} s left", (total - done) / (mb_s * 1e6))
            } else {
                String::new()
            };
            view! {
                <p data-testid="load-status" data-state="loading">
                    {what} ": " {mb(done)} " of " {mb(total)} " · "
                    {format!("{mb_s:.1} MB/s")} {eta}
                </p>
            }
            .into_any()
        }
        Load::Ready(info) => {
            let adapter = &info["adapter"];
            let browser = &adapter["browser"];
            let gpu = [
                browser["vendor"].as_str().unwrap_or_default(),
                browser["architecture"].as_str().unwrap_or_default(),
                adapter["name"].as_str().unwrap_or_default(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
            // A quota or storage failure only costs the next visit a download: say so.
            let cache_note = info["cache"]
                .as_str()
                .filter(|c| c.starts_with("not stored"))
                .map(|c| {
                    view! {
                        <br/>
                        <span class="muted" data-testid="cache-note">
                            {format!("Not kept in the browser cache ({c}): the next visit downloads it again.")}
                        </span>
                    }
                });
            let from = if info["from_cache"] == true {
                "loaded from the browser cache"
            } else {
                "downloaded"
            };
            view! {
                <p data-testid="load-status" data-state="ready">
                    <strong>{model_label.get()}</strong> " · "
                    {count(info["params"].as_f64().unwrap_or(0.0))} " parameters · "
                    {info["codec"].as_str().unwrap_or_default().to_string()} " · "
                    {mb(info["archive_bytes"].as_f64().unwrap_or(0.0))} " · " {from} " in "
                    {format!("{:.1} s", info["load_ms"].as_f64().unwrap_or(0.0) / 1e3)}
                    <br/>
                    "GPU: " {if gpu.is_empty() { "WebGPU adapter".to_string() } else { gpu }} " · "
                    {info["precision"].as_str().unwrap_or_default().to_string()} " compute · "
                    {info["kv_cache"].as_str().unwrap_or("f32").to_string()} " KV cache · "
                    {mb(info["gpu_bytes"].as_f64().unwrap_or(0.0))} " of GPU memory"
                    {cache_note}
                </p>
            }
            .into_any()
        }
        Load::Failed { kind, message } => view! {
            <div class="error" role="alert" data-testid="load-status" data-state="failed">
                <p><strong>{guidance::for_kind(&kind)}</strong></p>
                <p class="muted">{message}</p>
            </div>
        }
        .into_any(),
    };

    let chat = move || {
        turns
            .get()
            .into_iter()
            .map(|t| {
                let is_user = t.role == "user";
                let body = if is_user {
                    view! { <p class="text">{t.content.clone()}</p> }.into_any()
                } else {
                    view! { <div class="text" inner_html=markdown::to_html(&t.content)></div> }
                        .into_any()
                };
                let foot = match (&t.stats, &t.error) {
                    (_, Some(e)) => view! { <p class="error">{e.clone()}</p> }.into_any(),
                    (Some(s), None) => view! {
                        <p class="stats" data-testid="reply-stats">
                            {format!(
                                "{} tokens · {} tok/s · first token after {:.0} ms{}",
                                s.generated_tokens,
                                if s.decode_tok_s < 1.0 {
                                    format!("{:.2}", s.decode_tok_s)
                                } else {
                                    format!("{:.1}", s.decode_tok_s)
                                },
                                s.ttft_ms,
                                if s.stop_reason == "aborted" { " · stopped" } else { "" }
                            )}
                        </p>
                    }
                    .into_any(),
                    _ => ().into_any(),
                };
                let chars = t.content.chars().count().to_string();
                view! {
                    <article class=if is_user { "turn user" } else { "turn assistant" }
                        data-testid=if is_user { "user-turn" } else { "assistant-turn" }
                        data-chars=chars>
                        <h2 class="who">{if is_user { "You" } else { "Assistant" }}</h2>
                        {body}
                        {foot}
                    </article>
                }
            })
            .collect_view()
    };

    let ready = move || matches!(load.get(), Load::Ready(_));
    let can_regenerate = move || {
        ready() && !generating.get() && turns.get().last().is_some_and(|t| t.role == "assistant")
    };

    view! {
        <header>
            <h1>"QINS chat"</h1>
            <p class="muted">"A language model running on your GPU, in this tab. Nothing leaves your machine."</p>
        </header>
        {move || startup_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <section class="model" aria-label="Model">
            <form on:submit=move |ev| {
                ev.prevent_default();
                let url = model_url.get_untracked();
                start_load(url.clone(), url, true);
            }>
                <label for="model-url">"Model archive URL"</label>
                <div class="row">
                    <input id="model-url" type="url" data-testid="model-url"
                        prop:value=move || model_url.get()
                        on:input=move |ev| model_url.set(event_target_value(&ev))/>
                    <button type="submit" data-testid="load">"Load"</button>
                </div>
            </form>
            <label class="file">"…or a .qins file from this computer: "
                <input type="file" accept=".qins" on:change=on_file/>
            </label>
            <progress data-testid="progress" max="100"
                prop:value=move || last_percent.get()
                data-percent=move || last_percent.get().to_string()
                aria-label="Load progress"></progress>
            {status}
        </section>
        <main class="chat" aria-live="polite" on:click=on_chat_click data-testid="chat">
            {chat}
        </main>
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(false); }>
            <label for="prompt" class="visually-hidden">"Message"</label>
            <textarea id="prompt" data-testid="prompt" rows="3"
                placeholder="Message (Enter to send, Shift+Enter for a new line)"
                prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send(false);
                    }
                }></textarea>
            <div class="row buttons">
                <button type="submit" data-testid="send" disabled=move || !ready() || generating.get()>"Send"</button>
                <button type="button" data-testid="stop" disabled=move || !generating.get()
                    on:click=move |_| engine::abort()>"Stop"</button>
                <button type="button" data-testid="regenerate" disabled=move || !can_regenerate()
                    on:click=move |_| send(true)>"Regenerate"</button>
                <button type="button" data-testid="clear" disabled=move || generating.get()
                    on:click=move |_| turns.set(Vec::new())>"Clear"</button>
            </div>
        </form>
        <details class="settings">
            <summary>"Settings"</summary>
            <label>"System prompt"
                <textarea rows="2" prop:value=move || settings.get().system
                    on:input=move |ev| settings.update(|s| s.system = event_target_value(&ev))></textarea>
            </label>
            <div class="grid">
                <label>"Temperature"
                    <input type="number" min="0" max="2" step="0.05"
                        prop:value=move || settings.get().temperature.to_string()
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.temperature = v) }/>
                </label>
                <label>"Top-p"
                    <input type="number" min="0" max="1" step="0.05"
                        prop:value=move || settings.get().top_p.to_string()
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.top_p = v) }/>
                </label>
                <label>"Top-k (0: off)"
                    <input type="number" min="0" step="1"
                        prop:value=move || settings.get().top_k.to_string()
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.top_k = v) }/>
                </label>
                <label>"Max tokens"
                    <input type="number" min="1" step="1" data-testid="max-tokens"
                        prop:value=move || settings.get().max_tokens.to_string()
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.max_tokens = v) }/>
                </label>
                <label>"GPU arithmetic (next load)"
                    <select prop:value=move || settings.get().compute
                        on:change=move |ev| settings.update(|s| s.compute = event_target_value(&ev))>
                        <option value="f32">"f32 (matches the reference)"</option>
                        <option value="f16">"f16 products (needs shader-f16)"</option>
                    </select>
                </label>
                <label>"Seed (empty: random)"
                    <input type="text" inputmode="numeric"
                        prop:value=move || settings.get().seed
                        on:change=move |ev| settings.update(|s| s.seed = event_target_value(&ev))/>
                </label>
            </div>
            <button type="button" on:click=move |_| settings.set(Settings::default())>"Reset settings"</button>
        </details>
    }
}
