//! The composer: the message box and the Send, Stop, Regenerate and Clear buttons.

use leptos::prelude::*;

use crate::conversation::Turn;
use crate::engine;

#[component]
pub fn Composer(
    draft: RwSignal<String>,
    turns: RwSignal<Vec<Turn>>,
    generating: RwSignal<bool>,
    #[prop(into)] ready: Signal<bool>,
    /// Sends the draft (false) or regenerates the last reply (true).
    send: Callback<bool>,
) -> impl IntoView {
    let ready = move || ready.get();
    let can_regenerate = move || {
        ready() && !generating.get() && turns.get().last().is_some_and(|t| t.role == "assistant")
    };
    let send = move |regenerate: bool| send.run(regenerate);
    view! {
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
            // Before the model is ready a message waits (the page says so) rather than vanish.
            <button type="submit" data-testid="send" disabled=move || generating.get()>"Send"</button>
            <button type="button" data-testid="stop" disabled=move || !generating.get()
                on:click=move |_| engine::abort()>"Stop"</button>
            <button type="button" data-testid="regenerate" disabled=move || !can_regenerate()
                on:click=move |_| send(true)>"Regenerate"</button>
            <button type="button" data-testid="clear" disabled=move || generating.get()
                on:click=move |_| turns.set(Vec::new())>"Clear"</button>
        </div>
    </form>
    }
}
