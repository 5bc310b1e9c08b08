use wgpu::util::DeviceExt;

use crate::{QinsError, Result};

/// How the GPU engine's LUT mat-vecs multiply (sums are f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Compute {
    /// f32 throughout: within 1e-3 of the CPU reference.
    #[default]
    F32,
    /// Codebook values times activations in f16 where the adapter has shader-f16 (else f32,
    /// with a warning), in the decode path.
    F16,
}

/// How the GPU device is opened. In the native tools a flattened clap group; in the browser
/// part of the `load()` options (docs/WEB_API.md).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct GpuOptions {
    /// GPU adapter to use (a part of its name, case-insensitive); default: the
    /// high-performance one.
    #[cfg_attr(feature = "cli", arg(long))]
    pub adapter: Option<String>,
    /// Split weight tensors into GPU bindings of at most this many bytes, as on an adapter with
    /// that maxStorageBufferBindingSize (WebGPU's default is 134217728): shows how a model
    /// behaves on a smaller adapter, and tests the splitting.
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_binding: Option<u64>,
    /// Reduce through workgroup memory even where the adapter offers subgroups (A/B runs; the
    /// tests run both paths).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_subgroups: bool,
    /// Arithmetic of the LUT mat-vecs' products on the GPU: f32, or f16 where the adapter has
    /// shader-f16 (sums stay f32).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Compute::F32))]
    pub compute: Compute,
    /// How prefill batches of more than 8 tokens run: the mat-vec kernels' 4 rows × 8 tokens
    /// (default: the fastest on the H200, docs/RESULTS.md), tiles of 64 rows × 32 tokens
    /// through workgroup memory, or tiles of 64 × 64 (A/B runs; the tests run all three).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Prefill::Rows))]
    pub prefill: Prefill,
    /// How the LUT decode mat-vecs read codes: a u32 word per row at a time, or a 16-byte
    /// vector (where rows start on 16 bytes and groups hold whole vectors); auto: vectors for
    /// 8-bit codes, words for 4-bit ones (the H200's best of each).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = DecodeLoads::Auto))]
    pub decode_loads: DecodeLoads,
    /// Run RMSNorm, SiLU·mul and rope_store (rotation and cache append) as their own
    /// dispatches in decode too, instead of fused into the mat-vec or the attention that reads
    /// their output (A/B runs; the tests run both).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_fusion: bool,
    /// A decoded token's attention: one workgroup per query head over the whole context,
    /// split over ranges of the context (many workgroups, then a combine), or auto (the
    /// default): whole for short contexts, split from 256 positions. The tests run all three.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = DecodeAttention::Auto))]
    pub decode_attention: DecodeAttention,
    /// With auto decode attention, the position from which a decoded token's attention is
    /// split (default 256: `Kernels::SPLIT_ATTENTION_FROM`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub split_attention_from: Option<u32>,
    /// Most prompt tokens per batch (1 to 1024; default 64): each weight is read once per
    /// batch, and a larger batch gives the tiled kernels more workgroups. Fewer where a
    /// binding cannot hold that many tokens' work buffers.
    #[cfg_attr(feature = "cli", arg(long))]
    pub prefill_batch: Option<usize>,
    /// Rows per decode mat-vec workgroup: 8 (default), two quads sharing each load of x, or 4
    /// (A/B runs; the tests run both).
    #[cfg_attr(feature = "cli", arg(long))]
    pub decode_rows: Option<usize>,
    /// Rows per mat-vec workgroup on the prefill path (`Prefill::Rows`): 4 (default) or 8, two
    /// quads sharing each load of the 8 tokens' x (A/B runs; the tests run both).
    #[cfg_attr(feature = "cli", arg(long))]
    pub prefill_rows: Option<usize>,
    /// Threads per decode mat-vec workgroup: 64, 128, 192 or 256 for every tensor, or unset
    /// (auto) 256 for tensors of fewer than [`Kernels::WIDE_DECODE_BELOW_ROWS`] rows (192 where
    /// those take a row in as few turns) and 64 for the rest, as the H200 measured them
    /// fastest. More than 64 with subgroups only (else 64 with a warning).
    ///
    /// [`Kernels::WIDE_DECODE_BELOW_ROWS`]: crate::gpu::Kernels::WIDE_DECODE_BELOW_ROWS
    #[cfg_attr(feature = "cli", arg(long))]
    pub decode_threads: Option<usize>,
    /// Time each dispatch of a decoded token with GPU timestamps, where the adapter has
    /// timestamps inside passes (Vulkan, Metal, DX12; not WebGPU): `qins-run --bench` then
    /// prints where a token's time goes, per kernel. Adds a read-back a token.
    #[cfg_attr(feature = "cli", arg(long))]
    pub profile: bool,
    /// Decoding (greedy, or sampling with top-k) queues each decoded token's next step before
    /// reading it back, the token chosen on the GPU (pick.wgsl) and confirmed by the host's
    /// own choice; this turns that off (A/B runs: each step then waits for the host to read
    /// the last one back).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_speculation: bool,
}

/// How a decoded token's attention runs (see [`GpuOptions::decode_attention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DecodeAttention {
    /// Whole below [`Kernels::SPLIT_ATTENTION_FROM`](crate::gpu::Kernels::SPLIT_ATTENTION_FROM)
    /// positions, split from there: each where the H200 measured it faster.
    #[default]
    Auto,
    /// attention.wgsl, one workgroup per query head (as batches run it). Faster on lavapipe
    /// (two cores gain nothing from the parallelism) and on the H200 at short contexts (~60
    /// positions: Phi-3.5 lut8g 106.5 against 102.2 tok/s split, SmolLM2 322 against 261).
    Whole,
    /// attention_split.wgsl over 32 ranges of the context per KV head, then
    /// attention_combine.wgsl: on the H200 7× the whole kernel's speed at 4096 positions and
    /// 1.6× at 512 (Phi-3.5's heads); SmolLM2 after a 3000-token prompt decodes at 170 tok/s
    /// against 68.
    Split,
}

/// The LUT decode mat-vecs' code loads (see [`GpuOptions::decode_loads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DecodeLoads {
    /// Vectors in the 8-bit kernels, words in the 4-bit ones: on the H200 16-byte loads took
    /// Phi-3.5's 8-bit mat-vecs from 23–28 % of the copy kernel's bandwidth to 34–38 % (decode
    /// 102 → 137 tok/s), and its 4-bit ones from 19–25 % down to 14–22 %.
    #[default]
    Auto,
    /// One u32 word (4 or 8 codes) per row and iteration.
    U32,
    /// One vec4<u32> (16 or 32 codes) per row and iteration, the word loop for the rest.
    Vec4,
}

/// The mat-vecs' path for prefill batches (see [`GpuOptions::prefill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Prefill {
    /// matmul_lut8/lut4/float.wgsl: each weight decoded once per 32 tokens. Faster on the
    /// software adapters (SwiftShader 2.8×, lavapipe 1.1×), slower on the H200 (0.3–0.85× per
    /// Phi-3.5 shape).
    Tiled,
    /// The same kernels with tiles of 64 rows × 64 tokens and 8 × 4 sums a thread: each
    /// weight decoded once per 64 tokens, 32 products per three workgroup-memory loads instead
    /// of 16 per two (A/B runs; the ops tests run both tile shapes).
    Tiled64,
    /// The mat-vec kernels' batched path: each weight decoded once per 8 tokens. The default:
    /// on the H200 a 512-token Phi-3.5 prompt runs at 879 tok/s this way against 475 tiled.
    #[default]
    Rows,
}

/// Device, queue and what the adapter can do (cheap to clone: wgpu handles are shared).
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Largest storage binding a weight tensor part may take (the adapter's limit, or less).
    pub max_binding: u64,
    /// What the adapter offers beyond core WebGPU (reported; the kernels need none of it).
    pub features: wgpu::Features,
    /// The device was opened with subgroups: the mat-vec kernels reduce with subgroupAdd.
    /// Native only: wgpu 30's WebGPU backend does not pass the browser's "subgroups" feature on.
    pub subgroups: bool,
    /// The device was opened with shader-f16 for the LUT mat-vecs' f16 products (opt-in).
    pub f16: bool,
    /// The mat-vecs' path for prefill batches.
    pub prefill: Prefill,
    /// The LUT decode mat-vecs' code loads.
    pub decode_loads: DecodeLoads,
    /// Decode fuses RMSNorm and SiLU·mul into the mat-vecs that read their output, and the
    /// rotation and cache append into attention.
    pub fusion: bool,
    /// How a decoded token's attention runs.
    pub decode_attention: DecodeAttention,
    /// With auto attention, the position from which decode attention is split.
    pub split_attention_from: u32,
    /// Most prompt tokens per batch, before the binding limit's cap.
    pub prefill_batch: usize,
    /// Rows per decode mat-vec workgroup (8 or 4).
    pub decode_rows: usize,
    /// Rows per mat-vec workgroup on the prefill path (4 or 8).
    pub prefill_rows: usize,
    /// Threads per decode mat-vec workgroup (64, 128, 192 or 256 with subgroups), or None: by
    /// the tensor's shape (`decode_threads_for`).
    pub decode_threads: Option<usize>,
    /// The device was opened with timestamps inside passes: decoded tokens are timed per
    /// dispatch (`--profile`).
    pub profile: bool,
    /// Decoding queues the next step before reading this one back (see
    /// [`GpuOptions::no_speculation`]).
    pub speculate: bool,
    /// Part of the decode mat-vecs' work left out, for qins-bench's diagnosis (set on a clone
    /// of the context before `Kernels::new`; never by the engine, whose results it changes).
    pub matvec_probe: crate::gpu::MatvecProbe,
    lost: Slot,
    /// The first error no error scope caught (a kernel or buffer misuse): reported at the next
    /// read-back instead of wgpu's default handler, which panics (an abort in the browser).
    uncaptured: Slot,
}

/// Floats of a mat-vec workgroup's reduction memory (matvec_common.wgsl's `partial`, 32 items a
/// slot) for workgroups of `threads`: a slot per thread, or with subgroups per subgroup, of
/// which there are at most threads / the adapter's smallest subgroup (8 KiB became 256 bytes on
/// the H200).
pub fn matvec_partial_len(subgroups: bool, min_subgroup: u32, threads: usize) -> usize {
    let slots = if subgroups {
        threads / (min_subgroup.max(1) as usize)
    } else {
        threads
    };
    slots.max(1) * 32
}

/// A message set from a wgpu callback, read by the engine.
type Slot = std::sync::Arc<std::sync::Mutex<Option<String>>>;

fn set_once(slot: &Slot, msg: String) {
    if let Ok(mut s) = slot.lock() {
        s.get_or_insert(msg);
    }
}

fn read(slot: &Slot) -> Option<String> {
    slot.lock().ok().and_then(|s| s.clone())
}

fn gpu_err(what: &str, e: impl std::fmt::Display) -> QinsError {
    QinsError::Gpu(format!("{what}: {e}"))
}

impl GpuContext {
    pub async fn new(opts: &GpuOptions) -> Result<Self> {
        if let Some(b) = opts.prefill_batch.filter(|b| !(1..=1024).contains(b)) {
            return Err(QinsError::BadRequest(format!(
                "prefill_batch {b}: from 1 to 1024 tokens"
            )));
        }
        if let Some(r) = opts.decode_rows.filter(|r| ![4, 8].contains(r)) {
            return Err(QinsError::BadRequest(format!("decode_rows {r}: 8 or 4")));
        }
        if let Some(r) = opts.prefill_rows.filter(|r| ![4, 8].contains(r)) {
            return Err(QinsError::BadRequest(format!("prefill_rows {r}: 4 or 8")));
        }
        if let Some(t) = opts
            .decode_threads
            .filter(|t| ![64, 128, 192, 256].contains(t))
        {
            return Err(QinsError::BadRequest(format!(
                "decode_threads {t}: 64, 128, 192 or 256"
            )));
        }
        #[cfg(target_arch = "wasm32")]
        if !has_webgpu() {
            return Err(QinsError::NoWebGpu);
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if std::env::var_os("WGPU_BACKEND").is_none() {
            // Vulkan, Metal, DX12 or WebGPU: the GL fallback lacks what the kernels need.
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = match &opts.adapter {
            Some(name) => {
                let want = name.to_lowercase();
                let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| {
                        QinsError::NoAdapter(format!(
                            "none matches \"{name}\" (found: {})",
                            names.join(", ")
                        ))
                    })?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    QinsError::NoAdapter(format!(
                        "{e} (WebGPU, Vulkan, Metal or DX12 must offer one)"
                    ))
                })?,
        };
        let info = adapter.get_info();
        let features = adapter.features();
        // The adapter's real limits: WebGPU's defaults (128 MiB bindings) are too small for
        // large tensors.
        let limits = adapter.limits();
        let subgroups = features.contains(wgpu::Features::SUBGROUP) && !opts.no_subgroups;
        let mut required_features = wgpu::Features::empty();
        if subgroups {
            required_features |= wgpu::Features::SUBGROUP;
        }
        let f16_asked = opts.compute == Compute::F16;
        let f16 = f16_asked && features.contains(wgpu::Features::SHADER_F16);
        if f16 {
            required_features |= wgpu::Features::SHADER_F16;
        } else if f16_asked {
            tracing::warn!("{}: no shader-f16, computing in f32", info.name);
        }
        let stamps =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let profile = opts.profile && features.contains(stamps);
        if profile {
            required_features |= stamps;
        } else if opts.profile {
            tracing::warn!("{}: no timestamps inside passes, not profiling", info.name);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qins"),
                required_features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err("cannot open the GPU device", e))?;
        let lost = Slot::default();
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!(?reason, %msg, "GPU device lost");
            set_once(&flag, format!("{reason:?}: {msg}"));
        });
        let uncaptured = Slot::default();
        let flag = uncaptured.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e| {
            tracing::error!(error = %e, "GPU error");
            set_once(&flag, e.to_string());
        }));
        let mut decode_threads = opts.decode_threads;
        if !subgroups {
            if let Some(t) = decode_threads.filter(|&t| t > 64) {
                tracing::warn!(
                    "{}: decode_threads {t} needs subgroups, using 64",
                    info.name
                );
            }
            decode_threads = Some(64);
        }
        let adapter_max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(Self {
            device,
            queue,
            info,
            max_binding: opts.max_binding.map_or(adapter_max, |m| m.min(adapter_max)),
            features,
            subgroups,
            f16,
            prefill: opts.prefill,
            decode_loads: opts.decode_loads,
            fusion: !opts.no_fusion,
            decode_attention: opts.decode_attention,
            split_attention_from: opts
                .split_attention_from
                .unwrap_or(crate::gpu::Kernels::SPLIT_ATTENTION_FROM),
            prefill_batch: opts.prefill_batch.unwrap_or(crate::gpu::BATCH),
            decode_rows: opts.decode_rows.unwrap_or(crate::gpu::Kernels::DECODE_ROWS),
            prefill_rows: opts
                .prefill_rows
                .unwrap_or(crate::gpu::Kernels::MATVEC_ROWS),
            decode_threads,
            profile,
            speculate: !opts.no_speculation,
            matvec_probe: Default::default(),
            limits,
            lost,
            uncaptured,
        })
    }

    /// Threads per decode mat-vec workgroup for a tensor part of `rows` rows whose decode loop
    /// takes `items` loads a row (`Kernels::decode_items`): the option, or by default 64 from
    /// [`Kernels::WIDE_DECODE_BELOW_ROWS`](crate::gpu::Kernels::WIDE_DECODE_BELOW_ROWS) rows,
    /// below it 256, or 192 where those take a row in as few turns. Phi-3.5's 3072-column rows
    /// are 192 vectors of 16 codes (or 384 words of 4-bit codes): 256 threads left a quarter of
    /// theirs idle (half in the second turn), still holding a slot on the multiprocessor, and
    /// 192 fit a third more workgroups in a wave. Unmeasured on a GPU.
    pub fn decode_threads_for(&self, rows: usize, items: usize) -> usize {
        if let Some(t) = self.decode_threads {
            return t;
        }
        if rows >= crate::gpu::Kernels::WIDE_DECODE_BELOW_ROWS {
            return 64;
        }
        let turns = |threads: usize| items.div_ceil(threads);
        if turns(192) <= turns(256) {
            192
        } else {
            256
        }
    }

    /// One line naming the adapter, its backend, its kind, whether it offers shader-f16 and
    /// whether the kernels use subgroups.
    pub fn describe(&self) -> String {
        let f16 = if self.features.contains(wgpu::Features::SHADER_F16) {
            "shader-f16 available"
        } else {
            "no shader-f16"
        };
        let subgroups = match (
            self.features.contains(wgpu::Features::SUBGROUP),
            self.subgroups,
        ) {
            (true, true) => format!(
                "subgroups of {}-{} lanes",
                self.info.subgroup_min_size, self.info.subgroup_max_size
            ),
            (true, false) => "subgroups not used".to_string(),
            (false, _) => "no subgroups".to_string(),
        };
        format!(
            "{} ({:?}, {:?}, {f16}, {subgroups}, {} compute)",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.compute()
        )
    }

    /// "f16" where the LUT mat-vecs multiply in f16, else "f32" (sums are f32 either way).
    pub fn compute(&self) -> &'static str {
        if self.f16 {
            "f16"
        } else {
            "f32"
        }
    }

    /// A clear error when one binding of `bytes` exceeds the adapter's limits.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let checks = [
            (
                "maxStorageBufferBindingSize",
                self.limits.max_storage_buffer_binding_size,
            ),
            ("maxBufferSize", self.limits.max_buffer_size),
        ];
        for (limit, available) in checks {
            if bytes > available {
                return Err(QinsError::AdapterLimit {
                    limit,
                    needed: bytes,
                    available,
                    what: what.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Set once the device is lost (driver reset, tab in background too long, GPU removed).
    pub fn lost(&self) -> Result<()> {
        match read(&self.lost) {
            Some(msg) => Err(QinsError::DeviceLost(msg)),
            None => Ok(()),
        }
    }

    /// Loses the device on purpose, as a driver reset would (tests of the device-lost path:
    /// tests/tests/load.rs natively, runtime-wasm/tests/web.rs and the page's e2e in Chromium).
    pub fn destroy_for_test(&self) {
        self.device.destroy();
    }

    pub fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zeroed f32 work buffer of `n` values.
    pub fn scratch(&self, label: &str, n: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `params` (one of gpu/params.rs's structs).
    pub fn uniform<P: bytemuck::Pod>(&self, label: &str, params: &P) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Rewrites a uniform made by [`GpuContext::uniform`] with new values.
    pub fn write_uniform<P: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, params: &P) {
        self.queue
            .write_buffer(buffer, 0, bytemuck::bytes_of(params));
    }

    /// Copies `len` bytes of `src` back to the host. Natively this waits on the device; in the
    /// browser the map completes from the event loop, so the caller must be async there.
    pub async fn read_back(&self, src: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        let staging = self.read_out_buffer("readback", len);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, len);
        let done = self.queue.submit([enc.finish()]);
        self.finish_read(self.begin_read(&staging, len, done)).await
    }

    /// A buffer to copy results into and map for reading (`begin_read`).
    pub fn read_out_buffer(&self, label: &str, len: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Asks for the map of `staging`'s first `len` bytes (a `read_out_buffer`, last written by
    /// submission `done`) now, for `finish_read` to wait on:
    /// a step submitted between the two does not delay the read, although WebGPU resolves a
    /// map only after every submission made before the map was asked for (natively it waits
    /// for submission `done` alone).
    pub fn begin_read(
        &self,
        staging: &wgpu::Buffer,
        len: u64,
        done: wgpu::SubmissionIndex,
    ) -> PendingRead {
        let (tx, rx) = futures_channel::oneshot::channel();
        staging
            .slice(..len)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        PendingRead {
            staging: staging.clone(),
            len,
            done,
            mapped: rx,
        }
    }

    /// The bytes of a `begin_read`, once its map completes.
    pub async fn finish_read(&self, pending: PendingRead) -> Result<Vec<u8>> {
        let PendingRead {
            staging,
            len,
            done,
            mapped,
        } = pending;
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(done),
            timeout: None,
        }) {
            self.lost()?;
            return Err(gpu_err("GPU wait failed", e));
        }
        #[cfg(target_arch = "wasm32")]
        let _ = done;
        let mapped = mapped.await;
        // Unmapped before any error returns: the engine's read-out buffers are used again.
        let bytes = match &mapped {
            Ok(Ok(())) => {
                let bytes = staging.slice(..len).get_mapped_range().map(|r| r.to_vec());
                staging.unmap();
                Some(bytes.map_err(|e| gpu_err("readback range", e)))
            }
            _ => None,
        };
        self.lost()?;
        if let Some(e) = read(&self.uncaptured) {
            return Err(gpu_err("GPU error", e));
        }
        // A map fails only when the device is gone (a buffer mapped already would be this
        // crate's bug); the lost callback may not have run yet (the browser resolves
        // `device.lost` in a later task).
        mapped
            .map_err(|_| QinsError::DeviceLost("the read-back was dropped".into()))?
            .map_err(|e| QinsError::DeviceLost(format!("the GPU did not return results ({e})")))?;
        bytes.expect("mapped")
    }

    pub async fn read_f32(
        &self,
        src: &wgpu::Buffer,
        offset_values: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        let bytes = self
            .read_back(src, (offset_values * 4) as u64, (n * 4) as u64)
            .await?;
        // Copied, not cast: a Vec<u8> need not be 4-byte aligned.
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// A read-out buffer's map asked for (`GpuContext::begin_read`), not yet waited on.
pub struct PendingRead {
    staging: wgpu::Buffer,
    len: u64,
    done: wgpu::SubmissionIndex,
    mapped: futures_channel::oneshot::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

/// `navigator.gpu` exists (in a page or a worker): wgpu would only say "no adapter" otherwise.
#[cfg(target_arch = "wasm32")]
fn has_webgpu() -> bool {
    let get = |o: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).ok();
    get(&js_sys::global(), "navigator")
        .and_then(|n| get(&n, "gpu"))
        .is_some_and(|g| !g.is_undefined() && !g.is_null())
}
