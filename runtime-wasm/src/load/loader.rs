//! The one load path: the native tools feed it a file, the browser its fetch or Cache API
//! stream (web/engine.rs). Both get the same engine choice, the same checks and the same
//! [`EngineInfo`].

use std::collections::HashMap;

use web_time::Instant;

use super::{AnyEngine, Backend, EngineInfo, LoadOptions, LoadStages};
use crate::background::Background;
use crate::chat::{Generator, Tokenizer};
use crate::codec::decode;
use crate::cpu::packed::Kernels;
use crate::cpu::{CpuEngine, CpuModel, Packed};
use crate::engine::Engine;
use crate::format::{Manifest, TensorReader};
use crate::gpu::{GpuContext, GpuEngine, GpuLoader, LoadProgress};
use crate::load::info::AdapterInfo;
use crate::model::{TensorSpec, Tensors, Weights};
use crate::{QinsError, Result};

/// Where the model will run: chosen, and the GPU device opened, before any byte is read.
// One per load: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Device {
    /// The packed CPU engine; `fallback` says why when `auto` found no usable GPU.
    Cpu {
        fallback: Option<String>,
    },
    /// The f32 reference engine.
    Reference,
    Gpu(GpuContext),
}

impl Device {
    /// The device `opts` ask for. `auto` takes a real GPU when there is one and the CPU
    /// otherwise (a software adapter such as lavapipe is slower than the CPU engine); in the
    /// browser `auto` is WebGPU whatever the adapter, and the CPU engine when the browser has
    /// no WebGPU or gives no adapter or device.
    pub async fn open(opts: &LoadOptions) -> Result<Self> {
        let cpu = |why: String| {
            tracing::info!("{why}: using the CPU engine");
            Ok(Self::Cpu {
                fallback: Some(why),
            })
        };
        match opts.backend {
            Backend::Cpu => Ok(Self::Cpu { fallback: None }),
            Backend::Reference => Ok(Self::Reference),
            Backend::Gpu => Ok(Self::Gpu(GpuContext::new(&opts.gpu).await?)),
            #[cfg(target_arch = "wasm32")]
            Backend::Auto => match GpuContext::new(&opts.gpu).await {
                Ok(ctx) => Ok(Self::Gpu(ctx)),
                // Short reasons for the page; wgpu's full wording goes to the console.
                Err(e @ (QinsError::NoWebGpu | QinsError::NoAdapter(_) | QinsError::Gpu(_))) => {
                    tracing::info!("WebGPU: {e}");
                    cpu(match e {
                        QinsError::NoWebGpu => "this browser has no WebGPU".into(),
                        QinsError::NoAdapter(_) => "WebGPU offered no GPU adapter".into(),
                        e => format!("no GPU device could be opened ({e})"),
                    })
                }
                Err(e) => Err(e),
            },
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Auto => match GpuContext::new(&opts.gpu).await {
                Ok(ctx) if ctx.info.device_type != wgpu::DeviceType::Cpu => Ok(Self::Gpu(ctx)),
                Ok(ctx) => cpu(format!("{} is a software adapter", ctx.describe())),
                Err(e) => cpu(format!("no GPU ({e})")),
            },
        }
    }
}

/// What a tab's WebAssembly memory can hold: wasm32 addresses 4 GiB, and the engine's own
/// code, stack and the chunk in flight need some of it.
#[cfg(target_arch = "wasm32")]
const WASM_MEMORY_LIMIT: u64 = (4 << 30) - (256 << 20);

/// Refuses, as soon as the manifest is read and before any tensor, a model whose weights and
/// full KV cache cannot fit in `limit` bytes of wasm32 memory (only the CPU engines keep
/// weights there).
#[cfg(target_arch = "wasm32")]
fn check_fits_in_wasm(m: &Manifest, packed: bool, opts: &LoadOptions, limit: u64) -> Result<()> {
    let (weights, kv, positions) = wasm_bytes(m, packed, opts);
    let needed = weights + kv;
    if needed > limit {
        return Err(QinsError::MemoryLimit {
            needed,
            available: limit,
            what: format!(
                "{:.2} GB of weights and {:.2} GB of KV cache for {positions} positions",
                weights as f64 / 1e9,
                kv as f64 / 1e9
            ),
        });
    }
    Ok(())
}

/// The bytes of wasm32 memory a model's weights (`packed`: as stored, else f32) and its full
/// KV cache for the context `opts` asks take (in f16 or f32), and those positions.
#[cfg(target_arch = "wasm32")]
fn wasm_bytes(m: &Manifest, packed: bool, opts: &LoadOptions) -> (u64, u64, u64) {
    let weights: u64 = if packed {
        m.tensors.iter().map(|t| t.bytes).sum()
    } else {
        m.tensors.iter().map(|t| t.elements() as u64 * 4).sum()
    };
    let c = &m.config;
    let positions = opts.max_context.min(c.max_position_embeddings) as u64;
    let value = if opts.kv_f16(!packed) { 2 } else { 4 };
    let kv = 2 * c.num_layers as u64 * positions * c.kv_dim() as u64 * value;
    (weights, kv, positions)
}

/// The CPU engines' side of a load: each tensor, as it completes, kept in its codes (the
/// packed engine) or decoded to f32 (the reference).
struct CpuSink {
    reader: TensorReader,
    tensors: CpuTensors,
    decode_s: f64,
    fallback: Option<String>,
}

/// Most memory the packed CPU engine spends on expanded 8-bit levels (2 bytes a weight), at
/// the end of a load: a model up to about half a billion multiplied 8-bit weights runs
/// without lookups on AVX2; a larger one expands its first matrices (in forward order) only,
/// so its memory stays near the archive's size plus this.
const EXPAND_BUDGET: usize = 1 << 30;

/// [`EXPAND_BUDGET`] (0 with `no_expand`), less in a tab: what wasm32 memory has left once the
/// model's codes and full KV cache are counted (the limit `check_fits_in_wasm` applies), so
/// that expanding never makes a model that fits run out of memory.
fn expand_budget(_m: &Manifest, opts: &LoadOptions) -> usize {
    if opts.no_expand {
        return 0;
    }
    #[cfg(target_arch = "wasm32")]
    {
        let limit = opts.wasm_memory_limit.unwrap_or(WASM_MEMORY_LIMIT);
        let (weights, kv, _) = wasm_bytes(_m, true, opts);
        let left = limit.saturating_sub(weights + kv);
        EXPAND_BUDGET.min(usize::try_from(left).unwrap_or(usize::MAX))
    }
    #[cfg(not(target_arch = "wasm32"))]
    EXPAND_BUDGET
}

enum CpuTensors {
    Packed(HashMap<String, Packed>),
    Reference(HashMap<String, Vec<f32>>),
}

impl CpuTensors {
    fn len(&self) -> usize {
        match self {
            Self::Packed(t) => t.len(),
            Self::Reference(t) => t.len(),
        }
    }
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
    /// Seconds inside `feed`: everything but waiting for bytes.
    feed_s: f64,
    /// Built from the manifest while the tensors stream in.
    tokenizer: Option<Background<Tokenizer>>,
}

/// A model ready to chat, and what runs it.
pub struct Loaded {
    pub manifest: Manifest,
    pub generator: Generator<AnyEngine>,
    pub info: EngineInfo,
}

/// Says so where matrices of 8-bit codes are left to slow lookups (AVX2 gathers, SIMD128's
/// one by one, past the expansion budget): a user who sees only a slow chat would not guess
/// that a lut4a archive of the same model is several times faster.
fn warn_of_slow_lookups(matrices: usize, kernels: &Kernels, budget: usize) {
    tracing::warn!(
        "{matrices} matrices of 8-bit codes run slowly on this CPU: its {} kernels look each \
         code up on its own (AVX2 gathers, SIMD128 one by one), and only grouped codes (lut8g, lut8a) within \
         {} MiB a model are expanded to levels instead; a lut4a archive of the same model \
         decodes several times faster here",
        kernels.name,
        budget >> 20
    );
}

impl Loader {
    /// `expected_len`: the archive's length when known (file size, Content-Length).
    pub fn new(device: &Device, expected_len: Option<u64>, opts: &LoadOptions) -> Self {
        let cpu = |tensors, fallback| {
            Sink::Cpu(CpuSink {
                reader: TensorReader::new(expected_len),
                tensors,
                decode_s: 0.0,
                fallback,
            })
        };
        let sink = match device {
            Device::Cpu { fallback } => cpu(CpuTensors::Packed(HashMap::new()), fallback.clone()),
            Device::Reference => cpu(CpuTensors::Reference(HashMap::new()), None),
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
            feed_s: 0.0,
            tokenizer: None,
        }
    }

    /// Takes the next bytes of the archive.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        let t = Instant::now();
        self.received += bytes.len() as u64;
        let fed = match &mut self.sink {
            Sink::Gpu(g) => g.feed(bytes),
            Sink::Cpu(c) => {
                let (tensors, decode_s) = (&mut c.tensors, &mut c.decode_s);
                c.reader.feed(bytes, &mut |t, bytes| {
                    let start = Instant::now();
                    let (rows, cols) = t.rows_cols();
                    let name = t.name.clone();
                    match tensors {
                        CpuTensors::Packed(p) => {
                            p.insert(name, Packed::from_stored(t.codec, rows, cols, &bytes)?);
                        }
                        CpuTensors::Reference(d) => {
                            d.insert(name, decode(t.codec, &bytes, rows, cols)?);
                        }
                    }
                    *decode_s += start.elapsed().as_secs_f64();
                    Ok(())
                })
            }
        };
        if fed.is_ok() && self.tokenizer.is_none() {
            if let Some(m) = self.manifest() {
                #[cfg(target_arch = "wasm32")]
                if let Sink::Cpu(c) = &self.sink {
                    let packed = matches!(c.tensors, CpuTensors::Packed(_));
                    let limit = self.opts.wasm_memory_limit.unwrap_or(WASM_MEMORY_LIMIT);
                    check_fits_in_wasm(m, packed, &self.opts, limit)?;
                }
                let source = Tokenizer::checked(m)?;
                self.tokenizer = Some(Background::start("tokenizer", move || source.build()));
            }
        }
        self.feed_s += t.elapsed().as_secs_f64();
        fed
    }

    fn manifest(&self) -> Option<&Manifest> {
        match &self.sink {
            Sink::Gpu(g) => g.manifest(),
            Sink::Cpu(c) => c.reader.manifest(),
        }
    }

    /// Where the time went up to now (the build after the last byte comes on top).
    fn stages(&self) -> LoadStages {
        let (read, upload_s) = match &self.sink {
            Sink::Gpu(g) => g.times(),
            Sink::Cpu(c) => (c.reader.times(), c.decode_s),
        };
        let ms = 1e3;
        let total = self.started.elapsed().as_secs_f64();
        let other = self.feed_s - read.checksum_s - read.decompress_s - upload_s;
        LoadStages {
            device_ms: 0.0,
            read_ms: (total - self.feed_s).max(0.0) * ms,
            checksum_ms: read.checksum_s * ms,
            decompress_ms: read.decompress_s * ms,
            upload_ms: upload_s * ms,
            other_ms: other.max(0.0) * ms,
            build_ms: 0.0,
            total_ms: total * ms,
        }
    }

    pub fn progress(&self) -> LoadProgress {
        match &self.sink {
            Sink::Gpu(g) => g.progress(),
            Sink::Cpu(c) => LoadProgress {
                bytes_done: self.received,
                tensors_done: c.tensors.len(),
                tensors_total: c.reader.manifest().map_or(0, |m| m.tensors.len()),
            },
        }
    }

    /// Ends the input and builds the engine: a short or damaged archive is an error, never a
    /// partial model; so is a tokenizer that names tokens the model does not have.
    pub async fn finish(self) -> Result<Loaded> {
        let build_started = Instant::now();
        let fed = self.stages();
        let (manifest, engine, mut info) = match self.sink {
            Sink::Cpu(c) => {
                let manifest = c.reader.finish()?;
                let (cfg, ctx) = (&manifest.config, self.opts.max_context);
                let mut info = EngineInfo::of_manifest(&manifest, self.received);
                let engine = match c.tensors {
                    CpuTensors::Packed(t) => {
                        let kernels = Kernels::best();
                        // Bytes of 8-bit levels expanded, and matrices left to slow lookups.
                        let (mut expanded, mut slow) = (0, 0);
                        let budget = expand_budget(&manifest, &self.opts);
                        // The embedding table is multiplied only where the output is tied
                        // to it; otherwise its rows are only read.
                        let multiplied =
                            |name: &str| name != "token_embd" || cfg.tie_word_embeddings;
                        let place = |t: Packed, spec: &TensorSpec| {
                            let mut t = t.for_role(spec.role);
                            if let Packed::Matrix(m) = &mut t {
                                if multiplied(&spec.name) {
                                    expanded += m.expand_levels(kernels, budget - expanded);
                                    slow += usize::from(m.slow_lookups(kernels));
                                }
                            }
                            Ok(t)
                        };
                        let w = Tensors::from_named(cfg, t, place, Packed::values_len)?;
                        info.cpu_kernels = Some(kernels.name);
                        info.expanded_bytes = expanded as u64;
                        if slow > 0 && !self.opts.no_expand {
                            warn_of_slow_lookups(slow, kernels, budget);
                        }
                        info.cpu_fallback = c.fallback;
                        let kv_f16 = self.opts.kv_f16(false);
                        info.kv_cache = if kv_f16 { "f16" } else { "f32" };
                        let model = CpuModel::new(cfg.clone(), w);
                        AnyEngine::Cpu(CpuEngine::with_context(model, ctx, kv_f16))
                    }
                    CpuTensors::Reference(t) => {
                        let w = Weights::from_tensors(cfg, t)?;
                        info.backend = "reference";
                        AnyEngine::Reference(CpuEngine::with_context(
                            CpuModel::new(cfg.clone(), w),
                            ctx,
                            false,
                        ))
                    }
                };
                (manifest, engine, info)
            }
            Sink::Gpu(g) => {
                let (manifest, model) = g.finish().await?;
                let mut info = EngineInfo::of_manifest(&manifest, self.received);
                info.backend = if cfg!(target_arch = "wasm32") {
                    "webgpu"
                } else {
                    "gpu"
                };
                info.adapter = Some(AdapterInfo::of(&model.ctx));
                info.precision = model.ctx.compute();
                info.kv_cache = if model.kv_f16 { "f16" } else { "f32" };
                info.split_tensors = model.split_tensors;
                info.gpu_bytes = model.gpu_bytes;
                info.dispatches_per_token = model.dispatches_per_token();
                (manifest, AnyEngine::Gpu(GpuEngine::new(model)), info)
            }
        };
        let tokenizer = match self.tokenizer {
            Some(t) => t.finish()?,
            None => Tokenizer::from_manifest(&manifest)?,
        };
        let generator = Generator::with_tokenizer(engine, &manifest, tokenizer)?;
        // The built tokenizer holds what it needs; the JSON tree (~9 MB for a 49k vocabulary)
        // would only sit in memory.
        let mut manifest = manifest;
        manifest.tokenizer = serde_json::Value::Null;
        info.context = generator.engine.capacity();
        let (tokens, vocab) = (generator.tokenizer.vocab_size(), manifest.config.vocab_size);
        if tokens > vocab {
            return Err(QinsError::Manifest(format!(
                "the tokenizer has {tokens} tokens but the model only {vocab}"
            )));
        }
        info.load_ms = self.started.elapsed().as_secs_f64() * 1e3;
        info.load_stages = LoadStages {
            build_ms: build_started.elapsed().as_secs_f64() * 1e3,
            total_ms: info.load_ms,
            ..fed
        };
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
    // Mapped and fed whole, every chunk is verified and decoded where the page cache holds it,
    // never copied into a chunk buffer first (the copy cost ~10 % of a load).
    // SAFETY: the file is only read. A writer changing it meanwhile could change bytes after
    // their checksum was verified (wrong weights, as a changed file would give), not memory
    // safety: every length comes from the verified manifest.
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => {
            // In large pieces (only a chunk straddling two is copied), each piece's pages
            // dropped from this process once fed: the loaded tensors are copies, so keeping
            // the file's pages too would double the load's peak resident memory.
            const PIECE: usize = 64 << 20;
            for start in (0..map.len()).step_by(PIECE) {
                let end = (start + PIECE).min(map.len());
                loader.feed(&map[start..end])?;
                // SAFETY: a read-only file mapping: dropped pages are read from the file again
                // if touched, and no reference into them outlives `feed`.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        // Not mappable (a pipe, some network filesystems): read it in pieces.
        Err(_) => {
            crate::format::read_all(&mut std::io::BufReader::with_capacity(1 << 20, file), |b| {
                loader.feed(b)
            })?
        }
    }
    let loaded = block_on(loader.finish())?;
    // The load's chunk buffers are free now, but glibc keeps freed heap pages (its mmap
    // threshold grows past 16 MiB chunks): give them back, or they stay resident (~20 MB).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(loaded)
}
