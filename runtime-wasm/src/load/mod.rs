//! Loading an archive into an engine, the same way natively and in the browser: the options
//! ([`LoadOptions`]), the engine choice ([`Device`]), the push-style [`Loader`] both sides feed
//! (a file natively, a fetch or Cache API stream in the browser) and the [`EngineInfo`] it
//! reports. Above `cpu/` and `gpu/`, below `web/` and the native tools.

mod any;
mod info;
mod loader;
mod options;

pub use any::AnyEngine;
pub use info::{AdapterInfo, EngineInfo, LoadStages};
#[cfg(not(target_arch = "wasm32"))]
pub use loader::open;
pub use loader::{Device, Loaded, Loader};
pub use options::{Backend, KvPrecision, LoadOptions};
