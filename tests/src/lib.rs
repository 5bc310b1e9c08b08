//! Shared helpers for the cross-crate integration tests in `tests/tests/`; the fixtures and the
//! scripts that generate them live in `tests/fixtures/`.

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The SmolLM2 GGUF fetched by `scripts/dev.sh fetch` (or named by QINS_SMOLLM2_GGUF).
pub fn smollm2_gguf() -> PathBuf {
    let p = std::env::var_os("QINS_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "{} missing: run ./scripts/dev.sh fetch",
        p.display()
    );
    p
}

/// The GPU every GPU test runs on: lavapipe (Vulkan on the CPU) in CI. QINS_ADAPTER picks
/// another by name.
pub fn gpu() -> qins_runtime::gpu::GpuContext {
    let opts = qins_runtime::gpu::GpuOptions {
        adapter: std::env::var("QINS_ADAPTER").ok(),
    };
    pollster::block_on(qins_runtime::gpu::GpuContext::new(&opts))
        .unwrap_or_else(|e| panic!("{e} — install mesa-vulkan-drivers for lavapipe"))
}
