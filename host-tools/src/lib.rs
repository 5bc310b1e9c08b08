//! Native tools around the QINS runtime: import (Hugging Face safetensors, GGUF, synthetic),
//! conversion to `.qins`, and the archive writer.

pub mod convert;
pub mod import;
pub mod load;
pub mod writer;

/// Logs go to stderr through `tracing`; RUST_LOG overrides the default level.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
