//! The model panel: the archive URL or a local file, load progress, and what loaded on which
//! GPU (or on the CPU, and why), or why it failed.

use leptos::prelude::*;
use serde_json::Value;

use crate::guidance;

#[derive(Debug, Clone, PartialEq)]
pub enum Load {
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

pub fn percent(done: f64, total: f64) -> u32 {
    if total > 0.0 {
        ((done / total) * 100.0).clamp(0.0, 100.0).round() as u32
    } else {
        0
    }
}

pub fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} B", n / 1e9),
        n if n >= 1e6 => format!("{:.0} M", n / 1e6),
        n => format!("{:.0} K", n / 1e3),
    }
}

pub fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

/// A download or storage size: GB from a gigabyte up.
pub fn size(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{:.1} GB", bytes / 1e9)
    } else {
        mb(bytes)
    }
}

/// What to load: the archive's URL, the label to show, and whether to use the browser's store.
pub type LoadRequest = (String, String, bool);

#[component]
pub fn ModelPanel(
    model_url: RwSignal<String>,
    model_label: RwSignal<String>,
    load: RwSignal<Load>,
    last_percent: RwSignal<u32>,
    /// The last load asked for: what "Load the model again" repeats.
    last_request: RwSignal<Option<LoadRequest>>,
    on_load: Callback<LoadRequest>,
) -> impl IntoView {
    let start_load =
        move |url: String, label: String, cache: bool| on_load.run((url, label, cache));
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
                "build" => "Preparing the engine",
                _ => "Downloading, decompressing and loading",
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
            let runs_on = if info["backend"] == "cpu" {
                // Said plainly: the user may not know the page can run without a GPU, nor why
                // replies are slow.
                let why = info["cpu_fallback"]
                    .as_str()
                    .map(|w| format!(" WebGPU could not be used: {w}."))
                    .unwrap_or_default();
                view! {
                    <span data-testid="cpu-note">
                        {format!(
                            "Runs on the CPU (WebAssembly, {} kernels, one thread): replies are \
                             much slower than on a GPU.{why}",
                            info["cpu_kernels"].as_str().unwrap_or("portable")
                        )}
                    </span>
                }
                .into_any()
            } else {
                view! {
                    "GPU: " {if gpu.is_empty() { "WebGPU adapter".to_string() } else { gpu }} " · "
                    {info["precision"].as_str().unwrap_or_default().to_string()} " compute · "
                    {info["kv_cache"].as_str().unwrap_or("f32").to_string()} " KV cache · "
                    {mb(info["gpu_bytes"].as_f64().unwrap_or(0.0))} " of GPU memory"
                }
                .into_any()
            };
            view! {
                <p data-testid="load-status" data-state="ready"
                    data-backend=info["backend"].as_str().unwrap_or_default().to_string()>
                    <strong>{model_label.get()}</strong> " · "
                    {count(info["params"].as_f64().unwrap_or(0.0))} " parameters · "
                    {info["codec"].as_str().unwrap_or_default().to_string()} " · "
                    {mb(info["archive_bytes"].as_f64().unwrap_or(0.0))} " · " {from} " in "
                    {format!("{:.1} s", info["load_ms"].as_f64().unwrap_or(0.0) / 1e3)}
                    <br/>
                    {runs_on}
                    {cache_note}
                </p>
            }
            .into_any()
        }
        Load::Failed { kind, message } => {
            // What a new attempt may fix: a lost device, a full GPU, a dropped network.
            let retry = (last_request.with(Option::is_some)
                && matches!(
                    kind.as_str(),
                    "device-lost" | "out-of-memory" | "network" | "http" | "aborted"
                ))
            .then(|| {
                view! {
                    <button type="button" data-testid="reload" on:click=move |_| {
                        if let Some((url, label, cache)) = last_request.get_untracked() {
                            start_load(url, label, cache);
                        }
                    }>"Load the model again"</button>
                }
            });
            view! {
                <div class="error" role="alert" data-testid="load-status" data-state="failed"
                    data-kind=kind.clone()>
                    <p><strong>{guidance::for_kind(&kind)}</strong></p>
                    <p class="muted">{message}</p>
                    {retry}
                </div>
            }
            .into_any()
        }
    };

    view! {
    <section class="model" aria-label="Model">
        // novalidate: a relative archive path ("models/x.qins") is fine, resolved below.
        <form novalidate on:submit=move |ev| {
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
    }
}
