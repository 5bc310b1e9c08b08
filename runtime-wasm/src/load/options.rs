//! What a caller may ask of a load: one struct for the native tools (a flattened clap group)
//! and for JavaScript (serde, the `load()` options of docs/WEB_API.md).

use serde::{Deserialize, Serialize};

use crate::gpu::{CacheConfig, GpuOptions};

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The GPU when there is a real one, else the CPU engine (a software Vulkan such as
    /// lavapipe is slower than the CPU engine). In the browser: WebGPU, whatever the adapter.
    #[default]
    Auto,
    /// WGSL kernels on wgpu (Vulkan, Metal, DX12, WebGPU), whatever the adapter.
    Gpu,
    /// The CPU engine on the archive's codes (SIMD kernels, all cores).
    Cpu,
    /// The f32 reference engine: every weight expanded to f32, the oracle other engines are
    /// checked against.
    Reference,
}

/// How the KV cache stores its values (attention computes in f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum KvPrecision {
    /// Two values per 32-bit word: half the memory; logits within 1e-3 of the f32 cache's.
    #[default]
    F16,
    /// Exactly the CPU reference's values.
    F32,
}

impl LoadOptions {
    /// Whether an engine keeps f16 keys and values: the GPU and packed CPU engines as
    /// asked, the f32 reference never (`reference`: the engine is the reference).
    pub fn kv_f16(&self, reference: bool) -> bool {
        !reference && self.kv_cache == KvPrecision::F16
    }
}

/// Options of a load. Unknown JavaScript fields are ignored; a known field with a bad value
/// is a `bad-request` before any device is opened or byte downloaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct LoadOptions {
    /// Engine: auto (a real GPU if there is one, else the CPU), gpu (any adapter, lavapipe
    /// included), cpu (on the archive's codes) or reference (the f32 oracle).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Backend::Auto))]
    pub backend: Backend,
    /// Context length: the KV-cache positions (capped by the model's own context).
    #[cfg_attr(feature = "cli", arg(long = "ctx", default_value_t = 4096))]
    pub max_context: usize,
    /// KV-cache precision on the GPU and in the packed CPU engine (the reference keeps f32).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = KvPrecision::F16))]
    pub kv_cache: KvPrecision,
    #[serde(flatten)]
    #[cfg_attr(feature = "cli", command(flatten))]
    pub gpu: GpuOptions,
    /// In the browser, the most WebAssembly memory a model on the CPU engine may need for its
    /// weights and KV cache (default: wasm32's 4 GiB less 256 MiB for the engine itself); a
    /// larger model is refused as soon as its manifest is read. Lower it to keep a tab small.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub wasm_memory_limit: Option<u64>,
    /// Keep grouped 8-bit codes (lut8g, lut8a) as stored on the CPU engine where its kernels
    /// would replace them by 16-bit levels at load (AVX2 without AVX-512 VBMI, the browser):
    /// the archive's memory instead of about twice it, at about a third of the decode speed
    /// there (docs/RESULTS.md, sessions 40–41).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_expand: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            max_context: 4096,
            kv_cache: KvPrecision::F16,
            gpu: GpuOptions::default(),
            wasm_memory_limit: None,
            no_expand: false,
        }
    }
}

impl LoadOptions {
    /// The GPU engine's KV cache as asked for.
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig::new(self.max_context).with_f16(self.kv_cache == KvPrecision::F16)
    }
}
