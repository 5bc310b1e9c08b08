//! Serves the chat app and the model archives on localhost, and with `--model` an
//! OpenAI-compatible API on the native engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use qins_host::api::{ApiState, EngineHandle, ModelEntry};
use qins_host::serve::{serve, ServeOptions};
use qins_runtime::load::LoadOptions;

/// Serve the built chat app (Trunk's dist/) at / and the archives in --models at /models/;
/// with --model, also /v1/chat/completions, /v1/completions and /v1/models (OpenAI's API).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The built app.
    #[arg(long, default_value = "dist")]
    dist: PathBuf,
    /// Folder of .qins archives, served at /models/.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Address to listen on (port 0 picks a free one; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Send CORS headers allowing any origin (pages served from elsewhere, tests).
    #[arg(long)]
    cors: bool,
    /// An archive to serve through the API (repeat for several; requests name one by its file
    /// stem; one is loaded at a time, the first at start).
    #[arg(long = "model")]
    api_models: Vec<PathBuf>,
    /// Bearer token API requests must carry.
    #[arg(long, env = "QINS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// API requests that may wait while one generates; more get 429 with Retry-After.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    #[command(flatten)]
    load: LoadOptions,
}

fn main() -> ExitCode {
    let args = Args::parse();
    qins_host::main_with("qins-serve", || {
        for (what, dir) in [("--dist", &args.dist), ("--models", &args.models)] {
            if !dir.is_dir() {
                if args.api_models.is_empty() {
                    anyhow::bail!("{what} {}: not a folder", dir.display());
                }
                tracing::warn!("{what} {}: not a folder, not served", dir.display());
            }
        }
        let api = if args.api_models.is_empty() {
            None
        } else {
            let mut entries: Vec<ModelEntry> = Vec::new();
            for path in &args.api_models {
                let id = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if entries.iter().any(|e| e.id == id) {
                    anyhow::bail!("two --model archives are both named {id}");
                }
                entries.push(ModelEntry {
                    id,
                    path: path.clone(),
                });
            }
            let engine = EngineHandle::start(entries, args.load.clone(), args.queue)?;
            Some(Arc::new(ApiState::new(engine, args.api_key.clone())))
        };
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(serve(
            ServeOptions {
                dist: args.dist.clone(),
                models: args.models.clone(),
                cors: args.cors,
                api,
            },
            args.addr,
        ))
    })
}
