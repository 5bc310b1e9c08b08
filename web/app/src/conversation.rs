//! The conversation: each turn, the assistant's as sanitized Markdown with copy buttons on
//! code blocks, and each reply's stats or error.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;

use crate::markdown;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub ttft_ms: f64,
    pub decode_tok_s: f64,
    pub generated_tokens: u64,
    pub stop_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
    pub stats: Option<Stats>,
    /// A failure shown under the reply instead of stats.
    pub error: Option<String>,
}

#[component]
pub fn Conversation(turns: RwSignal<Vec<Turn>>, memory_start: RwSignal<usize>) -> impl IntoView {
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

    let chat = move || {
        let start = memory_start.get();
        turns
            .get()
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                // Where the model's memory now starts: the turns above no longer fit its
                // context.
                let mark = (i == start && start > 0).then(|| {
                    view! {
                        <p class="memory-mark" data-testid="memory-mark" role="note">
                            "The model no longer sees the messages above: the conversation outgrew its context."
                        </p>
                    }
                });
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
                    {mark}
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

    view! {
        <main class="chat" aria-live="polite" on:click=on_chat_click data-testid="chat">
            {chat}
        </main>
    }
}
