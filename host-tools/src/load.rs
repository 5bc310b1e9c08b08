//! Opening an archive for the native tools: the runtime's one load path
//! ([`qins_runtime::load`]), with the file's name on any error.

use std::path::Path;

use anyhow::{Context, Result};
pub use qins_runtime::load::{AnyEngine, Backend, KvPrecision, LoadOptions, Loaded};

/// Reads, verifies and loads `path` into a ready generator on the engine `opts` ask for.
pub fn open(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let started = web_time::Instant::now();
    let mut loaded =
        qins_runtime::load::open(path, opts).with_context(|| path.display().to_string())?;
    // From before the device was opened, as the browser counts it.
    loaded.info.load_ms = started.elapsed().as_secs_f64() * 1e3;
    loaded
        .info
        .load_stages
        .measured_from_start(loaded.info.load_ms);
    Ok(loaded)
}
