//! The chat page. Everything runs in the browser: the page (this crate, Leptos) keeps the
//! conversation and settings, the engine runs in a Web Worker (crate qins-worker).

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod catalog;
#[cfg(target_arch = "wasm32")]
mod composer;
#[cfg(target_arch = "wasm32")]
mod conversation;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod guidance;
// Native too, for its tests: model output is hostile input.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod markdown;
#[cfg(target_arch = "wasm32")]
mod model;
#[cfg(target_arch = "wasm32")]
mod settings;
#[cfg(target_arch = "wasm32")]
mod storage;
#[cfg(target_arch = "wasm32")]
mod store;

fn main() {
    #[cfg(target_arch = "wasm32")]
    leptos::mount::mount_to_body(app::App);
}
