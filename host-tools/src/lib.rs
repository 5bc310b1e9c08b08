//! Native tools around the QINS runtime: import (Hugging Face safetensors, GGUF, synthetic),
//! conversion to `.qins`, and the archive writer.

pub mod api;
pub mod calibrate;
pub mod catalog;
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

/// glibc gives each thread that meets a busy heap its own arena, and memory freed in one
/// arena is not reused by another: a model built on the thread pool kept ~8 MB more resident
/// (SmolLM2 lut4a-g32 on the CPU engine: 120 → 112 MB with one arena, decode speed unchanged
/// in an A/B). The tools allocate little once a model is loaded, so one arena costs nothing.
fn one_malloc_arena() {
    // SAFETY: mallopt only changes the allocator's policy; it runs before any other thread.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The shared `main` of the tools: logging, then `run`; an error is one line on stderr and a
/// failing exit status, never a panic or a backtrace.
pub fn main_with(tool: &str, run: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    one_malloc_arena();
    init_logging();
    let _runtime_dir = headless::quiet_wayland_probe();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
mod headless {
    use std::path::PathBuf;

    /// Removes the private runtime folder when the tool ends.
    pub struct RuntimeDir(PathBuf);

    impl Drop for RuntimeDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// On a machine without a desktop (servers, containers, CI), opening a Vulkan device makes
    /// the loader's Wayland probe (libwayland-client) print "error: XDG_RUNTIME_DIR is invalid
    /// or not set in the environment." though nothing is wrong, and a user reads it as a
    /// failure. Where neither a runtime folder nor a Wayland display is set, a private one is
    /// made, as a login session would (mode 0700, removed at exit), before any thread starts.
    pub fn quiet_wayland_probe() -> Option<RuntimeDir> {
        use std::os::unix::fs::DirBuilderExt;
        if std::env::var_os("XDG_RUNTIME_DIR").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some()
        {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("qins-runtime-{}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
        // Safe here: called at the start of main, before the tools start any thread.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
        Some(RuntimeDir(dir))
    }
}

#[cfg(not(unix))]
mod headless {
    pub fn quiet_wayland_probe() -> Option<()> {
        None
    }
}
