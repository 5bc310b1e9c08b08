//! What the engine used, made once by the loader: printed by the native tools, sent to
//! JavaScript as the `ready` event's description (docs/WEB_API.md).

use serde::Serialize;

use crate::format::{GenerationDefaults, Manifest};
use crate::gpu::GpuContext;

/// The GPU adapter a model runs on.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub vendor: u32,
    /// wgpu's backend: Vulkan, Metal, Dx12, BrowserWebGpu.
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, Cpu (a software adapter), …
    pub device_type: String,
    pub max_storage_buffer_binding_size: u64,
    pub shader_f16: bool,
    /// Whether the mat-vecs reduce with subgroup operations.
    pub subgroups: bool,
    /// One line: name, backend, kind, shader-f16 and subgroups.
    pub summary: String,
    /// What the browser says of its adapter (`GPUAdapterInfo`), which wgpu does not keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<serde_json::Value>,
}

impl AdapterInfo {
    pub fn of(ctx: &GpuContext) -> Self {
        Self {
            name: ctx.info.name.clone(),
            vendor: ctx.info.vendor,
            backend: format!("{:?}", ctx.info.backend),
            device_type: format!("{:?}", ctx.info.device_type),
            max_storage_buffer_binding_size: ctx.limits.max_storage_buffer_binding_size,
            shader_f16: ctx.features.contains(wgpu::Features::SHADER_F16),
            subgroups: ctx.subgroups,
            summary: ctx.describe(),
            browser: None,
        }
    }
}

/// Where a load's time went, in milliseconds (the stage table of `qins-run --bench-load` and
/// the browser's ready info). Fetching, verifying, decompressing and uploading overlap chunk by
/// chunk on one thread, so the stages add up to the total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStages {
    /// Opening the device (adapter, device, limits) before the first byte.
    pub device_ms: f64,
    /// Waiting for bytes: file reads natively, the network or the Cache API in the browser
    /// (what is left of the total).
    pub read_ms: f64,
    /// CRC-32 of stored and decoded chunks.
    pub checksum_ms: f64,
    /// zstd.
    pub decompress_ms: f64,
    /// GPU buffers created and written (queue writes and submits); on the CPU engines, taking
    /// each tensor in (kept in its codes, or decoded to f32 by the reference).
    pub upload_ms: f64,
    /// The rest of taking bytes in: copying them into whole chunks, the manifest.
    pub other_ms: f64,
    /// After the last byte: the forward pass built (pipelines, work buffers), tokenizer checks.
    pub build_ms: f64,
    pub total_ms: f64,
}

impl LoadStages {
    /// The whole load as its caller measured it, from before the device was opened: the
    /// difference is the device's time.
    pub fn measured_from_start(&mut self, total_ms: f64) {
        self.device_ms = (total_ms - self.total_ms).max(0.0);
        self.total_ms = total_ms;
    }
}

/// The loaded model and what runs it.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub architecture: String,
    /// Where the weights came from (file name and format).
    pub source: String,
    pub params: usize,
    /// The codec holding most weight bytes ("lut8g-g32", "lut4a-g32", …).
    pub codec: String,
    pub archive_bytes: u64,
    /// "gpu" (natively), "webgpu" (in the browser), "cpu" (the packed CPU engine) or
    /// "reference" (the f32 CPU engine).
    pub backend: &'static str,
    /// The packed CPU engine's kernels ("avx512", "avx2", "simd128", "portable"); None on the
    /// others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_kernels: Option<&'static str>,
    /// Why the CPU engine runs when `auto` was asked for: no WebGPU, no adapter or device, a
    /// software adapter. None when the CPU was asked for, or a GPU runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_fallback: Option<String>,
    /// Bytes the packed CPU engine spends on 8-bit levels expanded at load (2 a weight; 0
    /// where its kernels read the codes as they are, or none were within the budget: natively
    /// 1 GiB, in a tab at most what WebAssembly memory has left beside the codes and the KV
    /// cache).
    pub expanded_bytes: u64,
    /// None on the CPU engines.
    pub adapter: Option<AdapterInfo>,
    /// Arithmetic of the LUT mat-vecs' products: "f16" only where asked for and available.
    pub precision: &'static str,
    /// "f16" or "f32".
    pub kv_cache: &'static str,
    /// Positions the KV cache holds.
    pub context: usize,
    pub vocab_size: usize,
    pub layers: usize,
    /// Weight tensors split across several GPU bindings (larger than the binding limit).
    pub split_tensors: usize,
    /// GPU buffer bytes for weights, caches and activations (0 on the CPU engine).
    pub gpu_bytes: u64,
    /// Kernel dispatches a decoded token records, in one submission with one read-back
    /// (0 on the CPU engine): with `qins-bench`'s per-dispatch and per-submission costs, the
    /// fixed part of a token's time.
    pub dispatches_per_token: usize,
    pub load_ms: f64,
    pub load_stages: LoadStages,
    pub generation: GenerationDefaults,
    pub has_chat_template: bool,
}

impl EngineInfo {
    /// The model half, from the manifest; the loader fills in the engine half.
    pub fn of_manifest(m: &Manifest, archive_bytes: u64) -> Self {
        let params: usize = m.tensors.iter().map(|t| t.elements()).sum();
        let mut by_codec = std::collections::BTreeMap::<String, u64>::new();
        for t in &m.tensors {
            *by_codec.entry(t.codec.name()).or_default() += t.bytes;
        }
        let codec = by_codec
            .into_iter()
            .max_by_key(|(_, b)| *b)
            .map(|(c, _)| c)
            .unwrap_or_default();
        Self {
            architecture: m.config.architecture.clone(),
            source: m.source.clone(),
            params,
            codec,
            archive_bytes,
            backend: "cpu",
            cpu_kernels: None,
            cpu_fallback: None,
            expanded_bytes: 0,
            adapter: None,
            precision: "f32",
            kv_cache: "f32",
            context: m.config.max_position_embeddings,
            vocab_size: m.config.vocab_size,
            layers: m.config.num_layers,
            split_tensors: 0,
            gpu_bytes: 0,
            dispatches_per_token: 0,
            load_ms: 0.0,
            load_stages: LoadStages::default(),
            generation: m.generation.clone(),
            has_chat_template: m.chat_template.is_some(),
        }
    }

    /// One line for a terminal: where the model runs and how.
    pub fn summary(&self) -> String {
        match &self.adapter {
            None => {
                let engine = match self.cpu_kernels {
                    Some(k) => format!(
                        "the CPU ({k} kernels on the archive's codes, {} KV cache)",
                        self.kv_cache
                    ),
                    None => "the CPU (f32 reference)".to_string(),
                };
                match &self.cpu_fallback {
                    Some(why) => format!("{engine}: {why}"),
                    None => engine,
                }
            }
            Some(a) => {
                let mut s = format!("{}, {} KV cache", a.summary, self.kv_cache);
                if self.split_tensors > 0 {
                    s += &format!(", {} tensors split across bindings", self.split_tensors);
                }
                s
            }
        }
    }
}
