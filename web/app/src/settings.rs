//! The settings panel: system prompt, sampling, where the model runs and the GPU arithmetic,
//! kept in localStorage.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub system: String,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub max_tokens: u32,
    /// Empty: a fresh seed per reply.
    pub seed: String,
    /// The engine's `compute` load option: "f32", or "f16" (multiplies in f16 where the GPU
    /// has shader-f16); taken at the next load.
    pub compute: String,
    /// The engine's `backend` load option: "auto" (WebGPU, else the CPU), "gpu" (WebGPU
    /// only: fail without it) or "cpu"; taken at the next load.
    pub backend: String,
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
            backend: "auto".into(),
        }
    }
}

#[component]
pub fn SettingsPanel(settings: RwSignal<Settings>) -> impl IntoView {
    view! {
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
            <label>"Run on (next load)"
                <select data-testid="backend" prop:value=move || settings.get().backend
                    on:change=move |ev| settings.update(|s| s.backend = event_target_value(&ev))>
                    <option value="auto">"GPU (WebGPU), else the CPU"</option>
                    <option value="gpu">"GPU only"</option>
                    <option value="cpu">"CPU (slower; no GPU needed)"</option>
                </select>
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
