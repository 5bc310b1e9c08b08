//! Opening an archive for the native engines.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use qins_runtime::chat::{Engine, Generator};
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::format::Manifest;
use qins_runtime::gpu::{CacheConfig, GpuContext, GpuEngine, GpuModel, GpuOptions};
use qins_runtime::model::{ModelConfig, Weights};
use web_time::Instant;

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The GPU when there is a real one, else the CPU reference (a software Vulkan such as
    /// lavapipe is slower than the CPU engine).
    Auto,
    /// WGSL kernels on wgpu (Vulkan, Metal, DX12), whatever the adapter.
    Gpu,
    /// The f32 reference engine.
    Cpu,
}

/// The engine chosen at run time (an enum: `Engine::extend` is async, so not object-safe).
/// One per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnyEngine {
    Cpu(CpuEngine),
    Gpu(GpuEngine),
}

impl Engine for AnyEngine {
    fn config(&self) -> &ModelConfig {
        match self {
            Self::Cpu(e) => e.config(),
            Self::Gpu(e) => e.config(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Self::Cpu(e) => e.len(),
            Self::Gpu(e) => e.len(),
        }
    }
    fn reset(&mut self) {
        match self {
            Self::Cpu(e) => e.reset(),
            Self::Gpu(e) => e.reset(),
        }
    }
    fn tokens(&self) -> &[u32] {
        match self {
            Self::Cpu(e) => e.tokens(),
            Self::Gpu(e) => e.tokens(),
        }
    }
    fn truncate(&mut self, len: usize) {
        match self {
            Self::Cpu(e) => e.truncate(len),
            Self::Gpu(e) => e.truncate(len),
        }
    }
    async fn extend(&mut self, tokens: &[u32], all: bool) -> qins_runtime::Result<Vec<f32>> {
        match self {
            Self::Cpu(e) => e.extend(tokens, all).await,
            Self::Gpu(e) => e.extend(tokens, all).await,
        }
    }
    async fn extend_select(
        &mut self,
        tokens: &[u32],
        sel: &qins_runtime::chat::Select,
    ) -> qins_runtime::Result<Vec<qins_runtime::chat::Candidate>> {
        match self {
            Self::Cpu(e) => e.extend_select(tokens, sel).await,
            Self::Gpu(e) => e.extend_select(tokens, sel).await,
        }
    }
}

pub struct Loaded {
    pub manifest: Manifest,
    pub generator: Generator<AnyEngine>,
    pub load_s: f64,
    /// The adapter, for GPU runs.
    pub adapter: Option<String>,
    pub gpu_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub backend: Backend,
    /// GPU adapter name filter.
    pub adapter: Option<String>,
    /// KV-cache positions on the GPU.
    pub max_ctx: usize,
    /// KV-cache values on the GPU: f16 (half the memory) or f32.
    pub kv_cache: KvPrecision,
    /// Split weight tensors into GPU bindings of at most this many bytes (default: the
    /// adapter's maxStorageBufferBindingSize).
    pub max_binding: Option<u64>,
    /// Reduce through workgroup memory even where the adapter offers subgroups.
    pub no_subgroups: bool,
    /// Arithmetic of the LUT mat-vecs' products on the GPU.
    pub compute: Compute,
}

/// How the GPU engine's LUT mat-vecs multiply (sums are f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compute {
    /// f32 throughout: within 1e-3 of the CPU reference.
    #[default]
    F32,
    /// Codebook values times activations in f16 where the adapter has shader-f16 (else f32).
    F16,
}

/// How the GPU engine stores its KV cache (compute is f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KvPrecision {
    /// Two values per 32-bit word: half the memory; logits within 1e-3 of the f32 cache's.
    #[default]
    F16,
    /// Exactly the CPU reference's values.
    F32,
}

/// Reads, verifies and loads `path` into a ready generator on the chosen engine.
pub fn open(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let t = Instant::now();
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = file.metadata()?.len();
    let reader = BufReader::with_capacity(1 << 20, file);
    let ctx_err = || format!("{}", path.display());
    let open_gpu = || {
        pollster::block_on(GpuContext::new(&GpuOptions {
            adapter: opts.adapter.clone(),
            max_binding: opts.max_binding,
            no_subgroups: opts.no_subgroups,
            f16_compute: opts.compute == Compute::F16,
        }))
    };
    let gpu = match opts.backend {
        Backend::Cpu => None,
        Backend::Gpu => Some(open_gpu()?),
        Backend::Auto => match open_gpu() {
            Ok(ctx) if ctx.info.device_type != wgpu::DeviceType::Cpu => Some(ctx),
            Ok(ctx) => {
                tracing::info!(
                    "{} is a software adapter: using the CPU engine",
                    ctx.describe()
                );
                None
            }
            Err(e) => {
                tracing::info!("no GPU ({e}): using the CPU engine");
                None
            }
        },
    };
    let (manifest, engine, adapter, gpu_bytes): (Manifest, AnyEngine, _, _) = match gpu {
        None => {
            let (manifest, weights) = Weights::read(reader, Some(len)).with_context(ctx_err)?;
            let engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
            (manifest, AnyEngine::Cpu(engine), None, None)
        }
        Some(ctx) => {
            let adapter = ctx.describe();
            let (manifest, model) = GpuModel::load(
                ctx,
                reader,
                Some(len),
                CacheConfig::new(opts.max_ctx).with_f16(opts.kv_cache == KvPrecision::F16),
            )
            .with_context(ctx_err)?;
            let bytes = model.gpu_bytes;
            let mut adapter = format!(
                "{adapter}, {} KV cache",
                if model.kv_f16 { "f16" } else { "f32" }
            );
            if model.split_tensors > 0 {
                adapter += &format!(", {} tensors split across bindings", model.split_tensors);
            }
            (
                manifest,
                AnyEngine::Gpu(GpuEngine::new(model)),
                Some(adapter),
                Some(bytes),
            )
        }
    };
    let generator = Generator::new(engine, &manifest)?;
    if generator.tokenizer.vocab_size() > manifest.config.vocab_size {
        bail!(
            "{}: the tokenizer has {} tokens but the model only {}",
            path.display(),
            generator.tokenizer.vocab_size(),
            manifest.config.vocab_size
        );
    }
    Ok(Loaded {
        manifest,
        generator,
        load_s: t.elapsed().as_secs_f64(),
        adapter,
        gpu_bytes,
    })
}
