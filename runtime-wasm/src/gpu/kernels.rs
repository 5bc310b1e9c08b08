//! The compute pipelines, one per WGSL file in shaders/, built once per device.
//!
//! Every per-token kernel takes a batch: a `Step` uniform (first position, token count) shared
//! by all dispatches says how many token rows to process, so decode is the one-token case of
//! prefill and one list of bound dispatches serves both.

use super::params::{
    AttentionParams, BiasParams, EmbedKind, InputKind, MatvecKind, RmsnormParams, RopeParams,
    SelectParams, SiluMulParams,
};
use super::{DecodeAttention, DecodeLoads, GpuContext, Prefill};

/// Which batches a dispatch is recorded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Always,
    /// Batches of more than one token: the op the next mat-vec's decode path fuses.
    Batches,
    /// One-token batches at or past a position: the second half of split decode attention.
    OneTokenFrom(u32),
}

/// A tiled prefill workgroup's shape beyond its 64 rows: tokens (TN), columns per step (TK),
/// rows of a thread's block (BR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub tokens: u32,
    pub k: u32,
    pub block_rows: u32,
}

impl Tile {
    /// matmul_common.wgsl's TILE placeholder: the shape and its workgroup arrays' lengths.
    fn wgsl_consts(&self) -> String {
        let tm = Kernels::TILE_ROWS as u32;
        format!(
            "const TN: u32 = {}u;\nconst TK: u32 = {}u;\nconst BR: u32 = {}u;\n\
             const WS_VECS: u32 = {}u;\nconst XS_VECS: u32 = {}u;",
            self.tokens,
            self.k,
            self.block_rows,
            self.k * tm / 4,
            self.k * self.tokens / 4,
        )
    }
}

/// A kernel bound to its buffers, ready to record into a compute pass.
pub struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// The grid axis that scales with the batch's token count, and tokens per workgroup on it.
    pub tokens: Option<(usize, u32)>,
    /// A one-token variant with its own bind group and grid (the mat-vecs' decode pipeline,
    /// split decode attention), run from position `decode_from` on.
    pub decode: Option<Box<Dispatch>>,
    /// The first position whose one-token batches run `decode` (0: all; auto attention's
    /// threshold, which the combine's `Runs::OneTokenFrom` repeats).
    pub decode_from: u32,
    /// A variant for batches of more than [`Kernels::TILED_ABOVE`] tokens, with its own grid
    /// (the mat-vecs' tiled prefill).
    pub tiled: Option<Box<Dispatch>>,
    /// The batches it is recorded for.
    pub runs: Runs,
    /// What `--profile` reports its time under: the kernel, or a mat-vec's tensor role.
    pub name: String,
}

impl Dispatch {
    /// Scales the grid along `axis` with the number of tokens, `per` tokens per workgroup.
    pub fn per_tokens(mut self, axis: usize, per: u32) -> Self {
        self.tokens = Some((axis, per));
        self
    }

    /// Runs one-token batches with `variant` instead.
    pub fn with_decode(self, variant: Dispatch) -> Self {
        self.with_decode_from(variant, 0)
    }

    /// Runs one-token batches at or past position `from` with `variant` instead.
    pub fn with_decode_from(mut self, variant: Dispatch, from: u32) -> Self {
        self.decode = Some(Box::new(variant));
        self.decode_from = from;
        self
    }

    /// Runs batches of more than [`Kernels::TILED_ABOVE`] tokens with `variant`.
    pub fn with_tiled(mut self, variant: Dispatch) -> Self {
        self.tiled = Some(Box::new(variant));
        self
    }

    /// Names the dispatch for the profile (see [`Dispatch::name`]).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records the dispatch only for the batches `runs` says.
    pub fn only(mut self, runs: Runs) -> Self {
        self.runs = runs;
        self
    }

    /// Whether a batch of `n` tokens from position `pos` records this dispatch.
    pub fn runs_for(&self, n: u32, pos: u32) -> bool {
        match self.runs {
            Runs::Always => true,
            Runs::Batches => n > 1,
            Runs::OneTokenFrom(from) => n <= 1 && pos >= from,
        }
    }

    /// The variant a batch of `n` tokens from `pos` runs: the one-token or the tiled one
    /// where set.
    fn variant(&self, n: u32, pos: u32) -> Option<&Dispatch> {
        let decode = self
            .decode
            .as_deref()
            .filter(|_| n <= 1 && pos >= self.decode_from);
        decode.or(self.tiled.as_deref().filter(|_| n > Kernels::TILED_ABOVE))
    }

    /// The name of what a batch of `n` tokens from `pos` runs (the profile's kernel).
    pub fn name_for(&self, n: u32, pos: u32) -> &str {
        self.variant(n, pos)
            .map_or(&self.name, |v| v.name_for(n, pos))
    }

    /// Records the dispatch for a batch of `n` tokens from position `pos`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n: u32, pos: u32) {
        if !self.runs_for(n, pos) {
            return;
        }
        if let Some(v) = self.variant(n, pos) {
            return v.record(pass, n, pos);
        }
        let mut g = self.groups;
        if let Some((axis, per)) = self.tokens {
            g[axis] = n.div_ceil(per).max(1);
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(g[0], g[1], g[2]);
    }
}

/// Attention's buffers: the batch's q, k and v rows in (biased and rotated in place), the qkv
/// projection's bias if it has one, the rotary tables, the layer's caches, the work buffers
/// (scores of the batched kernel, partial sums of split decode) and the output rows.
pub struct AttentionIo<'a> {
    pub qkv: &'a wgpu::Buffer,
    pub bias: Option<&'a wgpu::Buffer>,
    pub rope: RopeTables<'a>,
    pub caches: [&'a wgpu::Buffer; 2],
    pub scores: &'a wgpu::Buffer,
    pub parts: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// The rotary tables: `inv_freq` (f32s) and a [`Kernels::rope_params`] uniform.
#[derive(Clone, Copy)]
pub struct RopeTables<'a> {
    pub inv_freq: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
}

/// What rope_store.wgsl and attention.wgsl need to know of the heads and the KV cache.
#[derive(Debug, Clone, Copy)]
pub struct HeadShape {
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
    /// rotary_dim / 2: dimensions past 2·rot_half are not rotated (partial rotary).
    pub rot_half: usize,
    /// Positions the caches hold.
    pub max_ctx: usize,
    /// Caches of packed f16 pairs instead of f32s.
    pub kv_f16: bool,
}

impl HeadShape {
    /// f32s of split decode attention's partial sums: per query head and range of the
    /// context ([`Kernels::ATTENTION_SPLITS`]), the max, the sum and head_dim weighted values.
    pub fn attention_parts(&self) -> usize {
        self.nh * Kernels::ATTENTION_SPLITS * (self.hd + 2)
    }

    /// u32 words of one layer's K (or V) cache.
    pub fn cache_words(&self) -> usize {
        let values = self.max_ctx * self.nkv * self.hd;
        if self.kv_f16 {
            values / 2
        } else {
            values
        }
    }
}

/// A mat-vec kernel built twice from its file: for batches (prefill) and for one token
/// (decode). Apart, the decode pipeline is not sized by the batched path's 32 accumulators: with
/// both in one shader, lavapipe's decode ran 17 % slower, and a GPU's occupancy follows a
/// kernel's largest register need. The tiled kernel for larger batches (matmul_lut8.wgsl,
/// matmul_lut4.wgsl, matmul_float.wgsl) comes third unless the device was opened with
/// `Prefill::Rows`.
pub struct Matvec {
    pub prefill: wgpu::ComputePipeline,
    /// The decode pipelines of 64, 128, 192 and 256 threads a workgroup, each built on first
    /// use (`Kernels::matvec_decode`).
    decode: [std::sync::OnceLock<wgpu::ComputePipeline>; 4],
    pub tiled: Option<wgpu::ComputePipeline>,
}

pub struct Kernels {
    /// Built on first use: a model needs one or two of the four, and each pipeline costs
    /// compile time at load (most in browsers; SwiftShader's first load went from 3.0 to 8.4 s
    /// when all eight were built up front).
    matvec: [std::sync::OnceLock<Matvec>; 4],
    /// The device the kernels run on.
    pub ctx: GpuContext,
    /// The mat-vecs' cross-thread reduction for this device, and the built-ins it needs.
    reduce: (&'static str, &'static str),
    pub rmsnorm: wgpu::ComputePipeline,
    pub rope_store: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    /// attention_split.wgsl and attention_combine.wgsl, built on first use: only
    /// `DecodeAttention::Split` needs them, and every pipeline costs compile time at load.
    split_attention: std::sync::OnceLock<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
    pub silu_mul: wgpu::ComputePipeline,
    pub add_bias: wgpu::ComputePipeline,
    pub embed: wgpu::ComputePipeline,
    pub select: wgpu::ComputePipeline,
    pub pick: wgpu::ComputePipeline,
    pub copy: wgpu::ComputePipeline,
}

/// What attention.wgsl and attention_split.wgsl share (spliced in at ATTENTION_COMMON), with
/// the rotation they share with rope_store.wgsl (at ROPE_COMMON, inside it).
const ATTENTION_COMMON: [(&str, &str); 2] = [
    (
        "ATTENTION_COMMON",
        include_str!("../../../shaders/attention_common.wgsl"),
    ),
    ("ROPE_COMMON", ROPE_COMMON),
];
const ROPE_COMMON: &str = include_str!("../../../shaders/rope_common.wgsl");

/// The tensor bindings the mat-vec and tiled kernels share (spliced in at WEIGHTS), with the
/// group scale decoding they share with embed.wgsl (at GROUP_AFFINE, inside it).
const WEIGHTS: [(&str, &str); 2] = [
    ("WEIGHTS", include_str!("../../../shaders/weights.wgsl")),
    ("GROUP_AFFINE", GROUP_AFFINE),
];
const GROUP_AFFINE: &str = include_str!("../../../shaders/group_affine.wgsl");

/// A token's penalised value and its ordering key, for select.wgsl and pick.wgsl.
const SELECT_COMMON: &str = include_str!("../../../shaders/select_common.wgsl");

/// The explicit preprocessing step: `{{NAME}}` placeholders replaced by values. A placeholder
/// left without a value, or a value whose placeholder is not in `src`, is a bug in this
/// crate's shaders, caught by the first test that builds the kernel.
fn preprocess(name: &str, src: &str, defs: &[(&str, &str)]) -> String {
    let mut out = src.to_string();
    for (k, v) in defs {
        let placeholder = format!("{{{{{k}}}}}");
        assert!(
            out.contains(&placeholder),
            "{name}: no {placeholder} to replace"
        );
        out = out.replace(&placeholder, v);
    }
    if let Some(at) = out.find("{{") {
        let rest = &out[at..];
        let end = rest.find("}}").map_or(rest.len(), |e| e + 2);
        panic!("{name}: placeholder {} has no value", &rest[..end]);
    }
    out
}

fn pipeline(ctx: &GpuContext, name: &str, src: &str) -> wgpu::ComputePipeline {
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
    ctx.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            // Every kernel writes its workgroup memory before reading it, so the zeroing WGSL
            // asks for (up to 9 KiB per mat-vec workgroup) is skipped where wgpu allows it
            // (natively; browsers always zero).
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: false,
                ..Default::default()
            },
            cache: None,
        })
}

impl Kernels {
    /// Most candidates select.wgsl returns (CAP there); more means many tied values.
    pub const SELECT_CAP: usize = 1024;

    /// Values of the row a select.wgsl workgroup takes (SLICE there).
    pub const SELECT_SLICE: usize = 1024;

    /// Dispatches of select.wgsl a selection takes: a radix round per byte of the keys, then
    /// the gather.
    pub const SELECT_DISPATCHES: u32 = 5;

    /// Ranges a decoded token's attention cuts the context into, a workgroup each per KV head
    /// (spliced into attention_split.wgsl and attention_combine.wgsl): 32 gives Phi-3.5 1024
    /// workgroups and SmolLM2 96 at any length.
    pub const ATTENTION_SPLITS: usize = 32;

    /// The position from which `DecodeAttention::Auto` splits a decoded token's attention
    /// unless `GpuOptions::split_attention_from` says otherwise: on
    /// the H200 the whole kernel was faster at ~60 positions for both models (with the combine
    /// before its fix), split faster from 512 on Phi-3.5's heads and at 4096 on SmolLM2's.
    pub const SPLIT_ATTENTION_FROM: u32 = 256;
    const _SPLITS_FIT_COMBINE: () = assert!(
        Self::ATTENTION_SPLITS <= 64 && Self::ATTENTION_SPLITS % 4 == 0,
        "attention_combine.wgsl takes a thread per range and sums four ranges a turn"
    );

    /// The default of `GpuContext::prefill_rows` (ROWS in matvec_common.wgsl): rows per mat-vec
    /// workgroup on the prefill path.
    pub const MATVEC_ROWS: usize = 4;

    /// The default of `GpuContext::decode_rows` (DROWS in matvec_common.wgsl): on the H200 8
    /// rows decode Phi-3.5 23 % faster than 4, in both lut8g and lut4a (docs/RESULTS.md).
    pub const DECODE_ROWS: usize = 8;

    /// Tensors (parts) of fewer rows than this decode in workgroups of 256 threads (or 192), the
    /// rest in 64 (`GpuContext::decode_threads_for`). On the H200 (session 35) 256 threads took Phi-3.5's
    /// o_proj, qkv and down (3072-9216 rows: at most 1152 workgroups of 8 rows, under nine a
    /// multiprocessor) from 15-26 % of the copy kernel's bandwidth to 27-39 % in lut8g and from
    /// 12-15 % to 18-27 % in lut4a, from memory; gate_up (16384 rows) and the 49152-row head
    /// lost with them (51 → 42 %, 30 → 14 %).
    pub const WIDE_DECODE_BELOW_ROWS: usize = 16384;

    /// Tokens per mat-vec workgroup in prefill (TB in matvec_common.wgsl).
    pub const MATVEC_TOKENS: u32 = 8;

    /// Rows per tiled workgroup (TM in matmul_common.wgsl).
    pub const TILE_ROWS: usize = 64;

    /// The tiled kernels' shape for the context's prefill path (see matmul_common.wgsl).
    pub fn tile(&self) -> Tile {
        match self.ctx.prefill {
            Prefill::Tiled64 => Tile {
                tokens: 64,
                k: 16,
                block_rows: 8,
            },
            Prefill::Tiled | Prefill::Rows => Tile {
                tokens: 32,
                k: 32,
                block_rows: 4,
            },
        }
    }

    /// Batches of more tokens than this take the tiled kernel where there is one: up to one
    /// mat-vec token block, the tile would compute 32 tokens' sums for at most 8.
    pub const TILED_ABOVE: u32 = Self::MATVEC_TOKENS;

    pub fn new(ctx: &GpuContext) -> Self {
        // The reduction each mat-vec ends with: subgroupAdd where the device has subgroups.
        // Naga 30 gates subgroup built-ins by the device feature and rejects WGSL's
        // `enable subgroups;`, so none is written (native only; see GpuContext::subgroups).
        let (lane_id, reduce) = if ctx.subgroups {
            (
                "@builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_id) subgroup: u32,
                 @builtin(num_subgroups) subgroups: u32,",
                include_str!("../../../shaders/reduce_subgroup.wgsl"),
            )
        } else {
            ("", include_str!("../../../shaders/reduce_shared.wgsl"))
        };

        Self {
            matvec: Default::default(),
            ctx: ctx.clone(),
            reduce: (lane_id, reduce),
            rmsnorm: pipeline(
                ctx,
                "rmsnorm",
                include_str!("../../../shaders/rmsnorm.wgsl"),
            ),
            rope_store: pipeline(
                ctx,
                "rope_store",
                &preprocess(
                    "rope_store",
                    include_str!("../../../shaders/rope_store.wgsl"),
                    &[("ROPE_COMMON", ROPE_COMMON)],
                ),
            ),
            attention: pipeline(
                ctx,
                "attention",
                &preprocess(
                    "attention",
                    include_str!("../../../shaders/attention.wgsl"),
                    &ATTENTION_COMMON,
                ),
            ),
            split_attention: Default::default(),
            silu_mul: pipeline(
                ctx,
                "silu_mul",
                include_str!("../../../shaders/silu_mul.wgsl"),
            ),
            add_bias: pipeline(
                ctx,
                "add_bias",
                include_str!("../../../shaders/add_bias.wgsl"),
            ),
            embed: pipeline(
                ctx,
                "embed",
                &preprocess(
                    "embed",
                    include_str!("../../../shaders/embed.wgsl"),
                    &[
                        ("EMBED_KINDS", &EmbedKind::wgsl_consts()),
                        ("GROUP_AFFINE", GROUP_AFFINE),
                    ],
                ),
            ),
            select: pipeline(
                ctx,
                "select",
                &preprocess(
                    "select",
                    include_str!("../../../shaders/select.wgsl"),
                    &[("SELECT_COMMON", SELECT_COMMON)],
                ),
            ),
            pick: pipeline(
                ctx,
                "pick",
                &preprocess(
                    "pick",
                    include_str!("../../../shaders/pick.wgsl"),
                    &[("SELECT_COMMON", SELECT_COMMON)],
                ),
            ),
            copy: pipeline(ctx, "copy", include_str!("../../../shaders/copy.wgsl")),
        }
    }

    /// The split decode attention pipelines (ranges, then their combine), built the first time
    /// they are asked for.
    fn split_attention(&self) -> &(wgpu::ComputePipeline, wgpu::ComputePipeline) {
        self.split_attention.get_or_init(|| {
            let splits = format!("const SPLITS: u32 = {}u;", Self::ATTENTION_SPLITS);
            let build = |name: &str, src: &str, defs: &[(&str, &str)]| {
                pipeline(&self.ctx, name, &preprocess(name, src, defs))
            };
            (
                build(
                    "attention_split",
                    include_str!("../../../shaders/attention_split.wgsl"),
                    &[
                        ATTENTION_COMMON[0],
                        ATTENTION_COMMON[1],
                        ("SPLIT_CONSTS", &splits),
                    ],
                ),
                build(
                    "attention_combine",
                    include_str!("../../../shaders/attention_combine.wgsl"),
                    &[("SPLIT_CONSTS", &splits)],
                ),
            )
        })
    }

    /// The mat-vec pipelines of `kind`, built the first time they are asked for; the decode
    /// pipelines are built as tensors ask for them (see [`Kernels::matvec_decode_for`]).
    pub fn matvec(&self, kind: MatvecKind) -> &Matvec {
        self.matvec[kind as usize].get_or_init(|| {
            let tiled = (self.ctx.prefill != Prefill::Rows).then(|| self.matmul_pipeline(kind));
            Matvec {
                prefill: self.matvec_pipeline(kind, false, 64),
                decode: Default::default(),
                tiled,
            }
        })
    }

    /// The decode pipeline of `kind` for a tensor (part) of `rows × cols`: the workgroup size
    /// the context picks for that shape (`GpuContext::decode_threads_for`).
    pub fn matvec_decode_for(
        &self,
        kind: MatvecKind,
        rows: usize,
        cols: usize,
    ) -> &wgpu::ComputePipeline {
        let threads = self
            .ctx
            .decode_threads_for(rows, self.decode_items(kind, cols));
        self.matvec_decode(kind, threads)
    }

    /// The decode pipeline of `kind` with `threads` per workgroup (64, 128, 192 or 256), built
    /// the first time it is asked for.
    fn matvec_decode(&self, kind: MatvecKind, threads: usize) -> &wgpu::ComputePipeline {
        let m = self.matvec(kind);
        let slot = match threads {
            64 => 0,
            128 => 1,
            192 => 2,
            256 => 3,
            _ => unreachable!("GpuContext::new refuses decode_threads {threads}"),
        };
        m.decode[slot].get_or_init(|| self.matvec_pipeline(kind, true, threads))
    }

    /// Whether the LUT decode kernels of `kind` read 16-byte code vectors (WIDE).
    fn wide_decode(&self, kind: MatvecKind) -> bool {
        matches!(
            (self.ctx.decode_loads, kind),
            (DecodeLoads::Vec4, _) | (DecodeLoads::Auto, MatvecKind::Lut8)
        )
    }

    /// Loads a decode mat-vec's threads take to cover a row of `cols` of `kind` (the turns of
    /// its decode loop, all threads together): 16-byte vectors of codes where the kernel reads
    /// them (WIDE; the few tensors whose rows or groups do not hold whole vectors, which the
    /// kernel reads in words, are counted the same: this only picks a workgroup size), else
    /// words, or a column each for float weights.
    fn decode_items(&self, kind: MatvecKind, cols: usize) -> usize {
        let codes_per_word = match kind {
            MatvecKind::Lut8 => 4,
            MatvecKind::Lut4 => 8,
            MatvecKind::F32 | MatvecKind::F16 => return cols,
        };
        let words = cols.div_ceil(codes_per_word);
        if self.wide_decode(kind) {
            words.div_ceil(4)
        } else {
            words
        }
    }

    /// matvec_lut8.wgsl, matvec_lut4.wgsl or matvec_float.wgsl for `kind`: the decode pipeline
    /// (one-token batches) or the prefill one, with `threads` per workgroup.
    fn matvec_pipeline(
        &self,
        kind: MatvecKind,
        decode: bool,
        threads: usize,
    ) -> wgpu::ComputePipeline {
        let (name, src, f16) = match kind {
            MatvecKind::Lut8 => (
                "matvec_lut8",
                include_str!("../../../shaders/matvec_lut8.wgsl"),
                "0",
            ),
            MatvecKind::Lut4 => (
                "matvec_lut4",
                include_str!("../../../shaders/matvec_lut4.wgsl"),
                "0",
            ),
            MatvecKind::F32 => (
                "matvec_f32",
                include_str!("../../../shaders/matvec_float.wgsl"),
                "0",
            ),
            MatvecKind::F16 => (
                "matvec_f16",
                include_str!("../../../shaders/matvec_float.wgsl"),
                "1",
            ),
        };
        // The codebook's type in the LUT kernels: f16 (opt-in, shader-f16) or f32.
        let (enable, lut_t) = if self.ctx.f16 {
            ("enable f16;\n", "f16")
        } else {
            ("", "f32")
        };
        // The float kernels have no codebook type and no wide loads, the LUT ones no element
        // type.
        let wide = if self.wide_decode(kind) {
            "true"
        } else {
            "false"
        };
        let input_kinds = InputKind::wgsl_consts();
        let decode_rows = self.ctx.decode_rows.to_string();
        let prefill_rows = self.ctx.prefill_rows.to_string();
        let probes = self.ctx.matvec_probe.wgsl_consts();
        let partial = crate::gpu::matvec_partial_len(
            self.ctx.subgroups,
            self.ctx.info.subgroup_min_size,
            threads,
        );
        let [decode, threads, partial] =
            [decode.to_string(), threads.to_string(), partial.to_string()];
        let mut defs = vec![
            // In this order: the common part brings the placeholders after it.
            (
                "MATVEC_COMMON",
                include_str!("../../../shaders/matvec_common.wgsl"),
            ),
            WEIGHTS[0],
            WEIGHTS[1],
            ("DECODE_ROWS", &decode_rows),
            ("PREFILL_ROWS", &prefill_rows),
            ("REDUCE", self.reduce.1),
            ("LANE_ID", self.reduce.0),
            ("DECODE", &decode),
            ("INPUT_KINDS", &input_kinds),
            ("PROBES", &probes),
            ("WG", &threads),
            ("PARTIAL", &partial),
        ];
        match kind {
            MatvecKind::F32 | MatvecKind::F16 => defs.push(("ELEM_F16", f16)),
            MatvecKind::Lut8 | MatvecKind::Lut4 => defs.extend([("LUT_T", lut_t), ("WIDE", wide)]),
        }
        let src = preprocess(name, src, &defs);
        let enable = if src.contains("alias Lut") {
            enable
        } else {
            ""
        };
        pipeline(&self.ctx, name, &format!("{enable}{src}"))
    }

    /// The tiled prefill kernel of `kind` (matmul_lut8.wgsl, matmul_lut4.wgsl,
    /// matmul_float.wgsl).
    fn matmul_pipeline(&self, kind: MatvecKind) -> wgpu::ComputePipeline {
        let (name, src) = match kind {
            MatvecKind::Lut8 => (
                "matmul_lut8",
                include_str!("../../../shaders/matmul_lut8.wgsl"),
            ),
            MatvecKind::Lut4 => (
                "matmul_lut4",
                include_str!("../../../shaders/matmul_lut4.wgsl"),
            ),
            MatvecKind::F32 | MatvecKind::F16 => (
                "matmul_float",
                include_str!("../../../shaders/matmul_float.wgsl"),
            ),
        };
        let tile = self.tile().wgsl_consts();
        let f16 = if kind == MatvecKind::F16 { "1" } else { "0" };
        let mut defs = vec![
            (
                "MATMUL_COMMON",
                include_str!("../../../shaders/matmul_common.wgsl"),
            ),
            WEIGHTS[0],
            WEIGHTS[1],
            ("TILE", &tile),
        ];
        if matches!(kind, MatvecKind::F32 | MatvecKind::F16) {
            defs.push(("ELEM_F16", f16));
        }
        pipeline(&self.ctx, name, &preprocess(name, src, &defs))
    }

    /// Binds `buffers` to bindings 0, 1, … in order.
    pub fn bind(
        ctx: &GpuContext,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Dispatch {
        let numbered: Vec<(u32, &wgpu::Buffer)> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, *b))
            .collect();
        Self::bind_at(ctx, pipeline, &numbered, groups)
    }

    /// Binds each buffer to the binding number beside it (a pipeline's layout holds only the
    /// bindings its shader uses).
    pub fn bind_at(
        ctx: &GpuContext,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Dispatch {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: *i,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            groups,
            tokens: None,
            decode: None,
            decode_from: 0,
            tiled: None,
            runs: Runs::Always,
            name: String::new(),
        }
    }

    /// Workgroups for `n` independent items, as a 2-D grid past the 65535 per-dimension limit.
    pub fn grid(n: u32) -> [u32; 3] {
        const MAX: u32 = 65535;
        if n <= MAX {
            [n.max(1), 1, 1]
        } else {
            [MAX, n.div_ceil(MAX), 1]
        }
    }

    /// RMSNorm of each token row of `x` into `out` (`p.last_only`: the batch's last row into
    /// row 0).
    pub fn rmsnorm(
        &self,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        out: &wgpu::Buffer,
        p: RmsnormParams,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        let p_buf = self.ctx.uniform("rmsnorm", &p);
        let d = Self::bind(
            &self.ctx,
            &self.rmsnorm,
            &[x, weight, out, &p_buf, step],
            [1, 1, 1],
        )
        .named("rmsnorm");
        if p.last_only == 1 {
            d
        } else {
            d.per_tokens(0, 1)
        }
    }

    /// The rotation's parameters for the heads of `s` (rope_common.wgsl); the engine rewrites
    /// `scale` when longrope switches tables.
    pub fn rope_params(&self, s: &HeadShape, scale: f32) -> wgpu::Buffer {
        self.ctx.uniform(
            "rope",
            &RopeParams {
                nh: s.nh as u32,
                nkv: s.nkv as u32,
                hd: s.hd as u32,
                rot_half: s.rot_half as u32,
                scale,
                kv_f16: s.kv_f16 as u32,
                _pad: [0; 2],
            },
        )
    }

    /// The qkv bias, rotary embedding and cache append, then causal attention of each new
    /// token's q heads over the caches into `out`; `scores` holds BATCH × nh × max_ctx f32s.
    /// add_bias.wgsl adds the bias to a batch's rows, rope_store.wgsl rotates its q and k heads
    /// in `qkv` in place and appends k and v to the caches; a one-token batch does all three
    /// inside its attention instead (a dispatch or two a layer less), unless the device was
    /// opened with `no_fusion`. With [`DecodeAttention::Split`] a one-token batch
    /// runs attention_split.wgsl over ranges of the context into `parts` (f32s:
    /// [`HeadShape::attention_parts`]) and attention_combine.wgsl, a dispatch recorded for
    /// one-token batches only.
    pub fn attention(
        &self,
        s: &HeadShape,
        io: AttentionIo<'_>,
        step: &wgpu::Buffer,
        mode: DecodeAttention,
    ) -> Vec<Dispatch> {
        let fused = self.ctx.fusion;
        let p = self.ctx.uniform(
            "attention",
            &AttentionParams {
                nh: s.nh as u32,
                nkv: s.nkv as u32,
                hd: s.hd as u32,
                max_ctx: s.max_ctx as u32,
                scale: 1.0 / (s.hd as f32).sqrt(),
                kv_f16: s.kv_f16 as u32,
                rope_fused: fused as u32,
                bias: io.bias.is_some() as u32,
            },
        );
        let fused_runs = if fused { Runs::Batches } else { Runs::Always };
        let heads = (s.nh + 2 * s.nkv) as u32;
        let placeholder;
        let bias = match io.bias {
            Some(b) => b,
            None => {
                placeholder = self.ctx.scratch("no qkv bias", 1);
                &placeholder
            }
        };
        let add_bias = io.bias.map(|b| {
            let n = heads as usize * s.hd;
            self.add_bias(io.qkv, b, n, step).only(fused_runs)
        });
        let [kc, vc] = io.caches;
        let (inv_freq, rope) = (io.rope.inv_freq, io.rope.params);
        let rope_store = Self::bind_at(
            &self.ctx,
            &self.rope_store,
            &[
                (0, io.qkv),
                (1, kc),
                (2, vc),
                (6, step),
                (7, inv_freq),
                (8, rope),
            ],
            [heads, 1, 1],
        )
        .named("rope_store")
        .per_tokens(1, 1)
        .only(fused_runs);
        // attention.wgsl and attention_split.wgsl bind the same buffers but their output.
        let bind = |pipeline, out, groups| {
            let buffers = [
                (0, io.qkv),
                (1, kc),
                (2, vc),
                (3, io.scores),
                (4, out),
                (5, &p),
                (6, step),
                (7, inv_freq),
                (8, rope),
                (9, bias),
            ];
            Self::bind_at(&self.ctx, pipeline, &buffers, groups)
        };
        let whole = bind(&self.attention, io.out, [s.nh as u32, 1, 1])
            .named("attention")
            .per_tokens(1, 1);
        let mut all: Vec<Dispatch> = add_bias.into_iter().chain([rope_store]).collect();
        if mode == DecodeAttention::Whole {
            all.push(whole);
            return all;
        }
        let (split, combine) = self.split_attention();
        let groups = [s.nkv as u32, Self::ATTENTION_SPLITS as u32, 1];
        let split = bind(split, io.parts, groups).named("attention_split");
        let combine = Self::bind(
            &self.ctx,
            combine,
            &[io.parts, io.out, &p],
            [s.nh as u32, 1, 1],
        )
        .named("attention_combine");
        let from = match mode {
            DecodeAttention::Auto => self.ctx.split_attention_from,
            _ => 0,
        };
        all.push(whole.with_decode_from(split, from));
        all.push(combine.only(Runs::OneTokenFrom(from)));
        all
    }

    /// `act[t] = silu(gate[t]) * up[t]` for rows of `ff` gate values then `ff` up values.
    pub fn silu_mul(
        &self,
        gu: &wgpu::Buffer,
        act: &wgpu::Buffer,
        ff: usize,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        let p = self.ctx.uniform(
            "silu_mul",
            &SiluMulParams {
                ff: ff as u32,
                _pad: [0; 3],
            },
        );
        Self::bind(
            &self.ctx,
            &self.silu_mul,
            &[gu, act, &p, step],
            [(ff as u32).div_ceil(64), 1, 1],
        )
        .named("silu_mul")
        .per_tokens(1, 1)
    }

    /// `y[t] += bias` for rows of `n` values (add_bias.wgsl).
    pub fn add_bias(
        &self,
        y: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        n: usize,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        let p = self.ctx.uniform(
            "add_bias",
            &BiasParams {
                n: n as u32,
                _pad: [0; 3],
            },
        );
        Self::bind(
            &self.ctx,
            &self.add_bias,
            &[y, bias, &p, step],
            [(n as u32).div_ceil(64), 1, 1],
        )
        .named("add_bias")
        .per_tokens(1, 1)
    }

    /// The sampling candidates of `logits` (select.wgsl) into `out`: a 4-word header (count,
    /// threshold key) and up to [`Kernels::SELECT_CAP`] (id, value bits) pairs. `params` holds
    /// a [`SelectParams`] for rows of `n` values; `seen` the penalised tokens as a bitset. Five
    /// dispatches, the rounds of the radix select and the gather, sharing a work buffer of
    /// theirs (zeroed at creation; each run leaves it ready for the next).
    pub fn select(
        &self,
        logits: &wgpu::Buffer,
        seen: &wgpu::Buffer,
        out: &wgpu::Buffer,
        params: &wgpu::Buffer,
        n: usize,
    ) -> Vec<Dispatch> {
        let work = self.ctx.scratch("select work", 4 * 256 + 16);
        let groups = n.div_ceil(Self::SELECT_SLICE).max(1) as u32;
        (0..Self::SELECT_DISPATCHES)
            .map(|r| {
                let round = self.ctx.uniform("select round", &[r, 0, 0, 0]);
                Self::bind(
                    &self.ctx,
                    &self.select,
                    &[logits, seen, out, params, &work, &round],
                    Self::grid(groups),
                )
                .named("select")
            })
            .collect()
    }

    /// The choice after `select`'s dispatches (pick.wgsl), greedy or drawn as the uniform
    /// `draw` (a [`PickParams`](super::PickParams)) says: into `out`'s words 2 and 3 (id,
    /// value bits), `tokens[0]` (the next step's input) and, with a penalty, the `seen` bitset.
    pub fn pick(
        &self,
        logits: &wgpu::Buffer,
        seen: &wgpu::Buffer,
        out: &wgpu::Buffer,
        params: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        draw: &wgpu::Buffer,
    ) -> Dispatch {
        Self::bind(
            &self.ctx,
            &self.pick,
            &[logits, seen, out, params, tokens, draw],
            Self::grid(1),
        )
        .named("pick")
    }

    /// A uniform holding `p`, to rewrite per call with [`GpuContext::write_uniform`].
    pub fn select_params(&self, p: SelectParams) -> wgpu::Buffer {
        self.ctx.uniform("select", &p)
    }

    /// `dst = src` for buffers of `bytes` (a multiple of 16).
    pub fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) -> Dispatch {
        let groups = (bytes / 16).div_ceil(256) as u32;
        Self::bind(&self.ctx, &self.copy, &[src, dst], Self::grid(groups))
    }

    /// Blocks until the queue is idle (native targets).
    pub fn wait(ctx: &GpuContext) -> crate::Result<()> {
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| crate::QinsError::Gpu(format!("GPU wait failed: {e}")))
    }

    /// Records `dispatches` for a batch of `n` tokens in one compute pass and submits them, as
    /// at the context's start (what a dispatch run from a position needs: [`Kernels::run_at`]).
    pub fn run(ctx: &GpuContext, dispatches: &[&Dispatch], n: u32) {
        Self::run_at(ctx, dispatches, n, 0);
    }

    /// [`Kernels::run`] for a batch from position `pos`.
    pub fn run_at(ctx: &GpuContext, dispatches: &[&Dispatch], n: u32, pos: u32) {
        ctx.queue
            .submit([Self::encode(ctx, dispatches, n, pos, None).finish()]);
    }

    /// Records `dispatches` for a batch of `n` tokens from `pos` in one compute pass; with
    /// `stamps`, a timestamp before each dispatch the batch records and one after the last
    /// (queries 0 to their count), which the set must hold (see `Profiler`).
    pub fn encode(
        ctx: &GpuContext,
        dispatches: &[&Dispatch],
        n: u32,
        pos: u32,
        stamps: Option<&wgpu::QuerySet>,
    ) -> wgpu::CommandEncoder {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let mut recorded = 0;
            for d in dispatches.iter().filter(|d| d.runs_for(n, pos)) {
                if let Some(set) = stamps {
                    pass.write_timestamp(set, recorded);
                }
                recorded += 1;
                d.record(&mut pass, n, pos);
            }
            if let Some(set) = stamps {
                pass.write_timestamp(set, recorded);
            }
        }
        enc
    }
}
