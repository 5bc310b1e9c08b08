//! The browser side (wasm32 only): [`QinsEngine`] streams an archive from the network or the
//! Cache API into WebGPU and generates, for JavaScript in a Web Worker (web/worker/) or the
//! Leptos app. Protocol and events: docs/WEB_API.md.

mod download;
mod engine;
mod js;
mod source;
mod store;

pub use engine::QinsEngine;
pub use store::Store;
