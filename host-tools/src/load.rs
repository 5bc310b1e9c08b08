//! Opening an archive for the native engines.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use qins_runtime::chat::{Engine, Generator};
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::format::Manifest;
use qins_runtime::gpu::{GpuContext, GpuEngine, GpuModel, GpuOptions};
use qins_runtime::model::Weights;
use web_time::Instant;

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// WGSL kernels on wgpu (Vulkan, Metal, DX12).
    Gpu,
    /// The f32 reference engine.
    Cpu,
}

pub struct Loaded {
    pub manifest: Manifest,
    pub generator: Generator<Box<dyn Engine>>,
    pub load_s: f64,
    /// The adapter, for GPU runs.
    pub adapter: Option<String>,
    pub gpu_bytes: Option<u64>,
}

pub struct LoadOptions {
    pub backend: Backend,
    /// GPU adapter name filter.
    pub adapter: Option<String>,
    /// KV-cache positions on the GPU.
    pub max_ctx: usize,
}

/// Reads, verifies and loads `path` into a ready generator on the chosen engine.
pub fn open(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let t = Instant::now();
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = file.metadata()?.len();
    let reader = BufReader::with_capacity(1 << 20, file);
    let ctx_err = || format!("{}", path.display());
    let (manifest, engine, adapter, gpu_bytes): (Manifest, Box<dyn Engine>, _, _) =
        match opts.backend {
            Backend::Cpu => {
                let (manifest, weights) = Weights::read(reader, Some(len)).with_context(ctx_err)?;
                let engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
                (manifest, Box::new(engine), None, None)
            }
            Backend::Gpu => {
                let ctx = pollster::block_on(GpuContext::new(&GpuOptions {
                    adapter: opts.adapter.clone(),
                }))?;
                let adapter = ctx.describe();
                let (manifest, model) =
                    GpuModel::load(ctx, reader, Some(len), opts.max_ctx).with_context(ctx_err)?;
                let bytes = model.gpu_bytes;
                (
                    manifest,
                    Box::new(GpuEngine::new(model)),
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
