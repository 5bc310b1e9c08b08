//! Native tools around the QINS runtime: import (Hugging Face safetensors, GGUF, synthetic),
//! conversion to `.qins`, and the archive writer.

pub mod api;
pub mod convert;
pub mod import;
pub mod load;
pub mod serve;
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

/// The shared `main` of the tools: logging, then `run`; an error is one line on stderr and a
/// failing exit status, never a panic or a backtrace.
pub fn main_with(tool: &str, run: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
