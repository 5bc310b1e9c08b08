//! Serves the chat app and the model archives on localhost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use qins_host::serve::{serve, ServeOptions};

/// Serve the built chat app (Trunk's dist/) at / and the archives in --models at /models/.
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    qins_host::main_with("qins-serve", || {
        for (what, dir) in [("--dist", &args.dist), ("--models", &args.models)] {
            if !dir.is_dir() {
                anyhow::bail!("{what} {}: not a folder", dir.display());
            }
        }
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(serve(
            ServeOptions {
                dist: args.dist.clone(),
                models: args.models.clone(),
                cors: args.cors,
            },
            args.addr,
        ))
    })
}
