//! Shared helpers for the cross-crate integration tests in `tests/tests/`; the fixtures and the
//! scripts that generate them live in `tests/fixtures/`.

use std::path::{Path, PathBuf};

use qins_host::convert::{convert, ConvertOptions};
use qins_runtime::codec::Codec;
use serde_json::Value;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The SmolLM2 GGUF fetched by `scripts/dev.sh fetch` (or named by QINS_SMOLLM2_GGUF).
pub fn smollm2_gguf() -> PathBuf {
    model_file(
        "QINS_SMOLLM2_GGUF",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "./scripts/dev.sh fetch",
    )
}

/// The Qwen2.5-Coder-0.5B-Instruct GGUF assembled by `scripts/dev.sh fetch qwen2.5-coder-0.5b`
/// into the cache (or named by QINS_QWEN_GGUF).
pub fn qwen_gguf() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_default();
    model_file(
        "QINS_QWEN_GGUF",
        cache.join("qins/qwen2.5-coder-0.5b-instruct.gguf"),
        "./scripts/dev.sh fetch qwen2.5-coder-0.5b",
    )
}

fn model_file(var: &str, default: PathBuf, fetch: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(p.exists(), "{} missing: run {fetch}", p.display());
    p
}

/// The GPU every GPU test runs on: lavapipe (Vulkan on the CPU) in CI. QINS_ADAPTER picks
/// another by name.
pub fn gpu() -> qins_runtime::gpu::GpuContext {
    gpu_with_max_binding(None)
}

/// [`gpu`] with weight tensors split into bindings of at most `max_binding` bytes.
pub fn gpu_with_max_binding(max_binding: Option<u64>) -> qins_runtime::gpu::GpuContext {
    gpu_with(qins_runtime::gpu::GpuOptions {
        max_binding,
        ..Default::default()
    })
}

/// [`gpu`] opened with `opts` (the adapter still from QINS_ADAPTER).
pub fn gpu_with(mut opts: qins_runtime::gpu::GpuOptions) -> qins_runtime::gpu::GpuContext {
    opts.adapter = std::env::var("QINS_ADAPTER").ok();
    pollster::block_on(qins_runtime::gpu::GpuContext::new(&opts))
        .unwrap_or_else(|e| panic!("{e} — install mesa-vulkan-drivers for lavapipe"))
}

/// Converts `input` (a checkpoint folder or GGUF) with `codec` into `dir`; returns the archive.
pub fn convert_to(input: &Path, codec: Codec, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}.qins", codec.name()));
    convert(
        qins_host::import::open(input).unwrap(),
        &ConvertOptions::new(codec),
        &out,
    )
    .unwrap();
    out
}

/// A committed JSON fixture (a file, or `reference.json` inside a checkpoint folder).
pub fn reference(name: &str) -> Value {
    let p = fixture(name);
    let p = if p.is_dir() {
        p.join("reference.json")
    } else {
        p
    };
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
