//! The one load path: the native tools feed it a file, the browser its fetch or Cache API
//! stream (web/engine.rs). Both get the same engine choice, the same checks and the same
//! [`EngineInfo`].

use std::collections::HashMap;

use web_time::Instant;

use super::{AnyEngine, Backend, EngineInfo, LoadOptions};
use crate::chat::Generator;
use crate::codec::decode;
use crate::cpu::{CpuEngine, CpuModel};
use crate::engine::Engine;
use crate::format::{Manifest, TensorReader};
use crate::gpu::{GpuContext, GpuEngine, GpuLoader, LoadProgress};
use crate::load::info::AdapterInfo;
use crate::model::Weights;
use crate::{QinsError, Result};

/// Where the model will run: chosen, and the GPU device opened, before any byte is read.
// One per load: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(GpuContext),
}

impl Device {
    /// The device `opts` ask for. `auto` takes a real GPU when there is one and the CPU
    /// otherwise (a software adapter such as lavapipe is slower than the CPU engine); in the
    /// browser `auto` is WebGPU whatever the adapter.
    pub async fn open(opts: &LoadOptions) -> Result<Self> {
        match opts.backend {
            Backend::Cpu => Ok(Self::Cpu),
            Backend::Gpu => Ok(Self::Gpu(GpuContext::new(&opts.gpu).await?)),
            #[cfg(target_arch = "wasm32")]
            Backend::Auto => Ok(Self::Gpu(GpuContext::new(&opts.gpu).await?)),
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Auto => match GpuContext::new(&opts.gpu).await {
                Ok(ctx) if ctx.info.device_type != wgpu::DeviceType::Cpu => Ok(Self::Gpu(ctx)),
                Ok(ctx) => {
                    tracing::info!(
                        "{} is a software adapter: using the CPU engine",
                        ctx.describe()
                    );
                    Ok(Self::Cpu)
                }
                Err(e) => {
                    tracing::info!("no GPU ({e}): using the CPU engine");
                    Ok(Self::Cpu)
                }
            },
        }
    }
}

/// The CPU engine's side of a load: each tensor decoded to f32 as it completes.
struct CpuSink {
    reader: TensorReader,
    decoded: HashMap<String, Vec<f32>>,
}

#[allow(clippy::large_enum_variant)] // one per load
enum Sink {
    Cpu(CpuSink),
    Gpu(GpuLoader),
}

/// A load in progress: archive bytes go in as they arrive, a ready [`Loaded`] comes out.
pub struct Loader {
    sink: Sink,
    opts: LoadOptions,
    received: u64,
    started: Instant,
}

/// A model ready to chat, and what runs it.
pub struct Loaded {
    pub manifest: Manifest,
    pub generator: Generator<AnyEngine>,
    pub info: EngineInfo,
}

impl Loader {
    /// `expected_len`: the archive's length when known (file size, Content-Length).
    pub fn new(device: &Device, expected_len: Option<u64>, opts: &LoadOptions) -> Self {
        let sink = match device {
            Device::Cpu => Sink::Cpu(CpuSink {
                reader: TensorReader::new(expected_len),
                decoded: HashMap::new(),
            }),
            Device::Gpu(ctx) => Sink::Gpu(GpuLoader::new(
                ctx.clone(),
                expected_len,
                opts.cache_config(),
            )),
        };
        Self {
            sink,
            opts: opts.clone(),
            received: 0,
            started: Instant::now(),
        }
    }

    /// Takes the next bytes of the archive.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        self.received += bytes.len() as u64;
        match &mut self.sink {
            Sink::Gpu(g) => g.feed(bytes),
            Sink::Cpu(c) => {
                let decoded = &mut c.decoded;
                c.reader.feed(bytes, &mut |t, bytes| {
                    let (rows, cols) = t.rows_cols();
                    decoded.insert(t.name.clone(), decode(t.codec, &bytes, rows, cols)?);
                    Ok(())
                })
            }
        }
    }

    pub fn progress(&self) -> LoadProgress {
        match &self.sink {
            Sink::Gpu(g) => g.progress(),
            Sink::Cpu(c) => LoadProgress {
                bytes_done: self.received,
                tensors_done: c.decoded.len(),
                tensors_total: c.reader.manifest().map_or(0, |m| m.tensors.len()),
            },
        }
    }

    /// Ends the input and builds the engine: a short or damaged archive is an error, never a
    /// partial model; so is a tokenizer that names tokens the model does not have.
    pub async fn finish(self) -> Result<Loaded> {
        let (manifest, engine, mut info) = match self.sink {
            Sink::Cpu(c) => {
                let manifest = c.reader.finish()?;
                let weights = Weights::from_tensors(&manifest.config, c.decoded)?;
                let model = CpuModel::new(manifest.config.clone(), weights);
                let engine = CpuEngine::with_context(model, self.opts.max_context);
                let info = EngineInfo::of_manifest(&manifest, self.received);
                (manifest, AnyEngine::Cpu(engine), info)
            }
            Sink::Gpu(g) => {
                let (manifest, model) = g.finish().await?;
                let mut info = EngineInfo::of_manifest(&manifest, self.received);
                info.backend = "gpu";
                info.adapter = Some(AdapterInfo::of(&model.ctx));
                info.precision = model.ctx.compute();
                info.kv_cache = if model.kv_f16 { "f16" } else { "f32" };
                info.split_tensors = model.split_tensors;
                info.gpu_bytes = model.gpu_bytes;
                (manifest, AnyEngine::Gpu(GpuEngine::new(model)), info)
            }
        };
        let generator = Generator::new(engine, &manifest)?;
        info.context = generator.engine.capacity();
        let (tokens, vocab) = (generator.tokenizer.vocab_size(), manifest.config.vocab_size);
        if tokens > vocab {
            return Err(QinsError::Manifest(format!(
                "the tokenizer has {tokens} tokens but the model only {vocab}"
            )));
        }
        info.load_ms = self.started.elapsed().as_secs_f64() * 1e3;
        Ok(Loaded {
            manifest,
            generator,
            info,
        })
    }
}

/// Opens the archive at `path` on the device `opts` ask for: read, verified and loaded into a
/// ready generator (the native tools' entry point).
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path, opts: &LoadOptions) -> Result<Loaded> {
    use crate::engine::block_on;
    let cannot = |e: std::io::Error| QinsError::Io(format!("{}: {e}", path.display()));
    let device = block_on(Device::open(opts))?;
    let file = std::fs::File::open(path).map_err(cannot)?;
    let len = file.metadata().map(|m| m.len()).ok();
    let mut loader = Loader::new(&device, len, opts);
    crate::format::read_all(&mut std::io::BufReader::with_capacity(1 << 20, file), |b| {
        loader.feed(b)
    })?;
    block_on(loader.finish())
}
