use super::kernels::{Dispatch, Kernels, Runs};
use super::params::{
    kernels_for, EmbedParams, InputKind, MatvecKind, MatvecParams, Output, Rows, Sections,
};
use super::GpuContext;
use crate::codec::{Codec, Layout};
use crate::format::TensorEntry;
use crate::{QinsError, Result};

/// Code rows `row0 .. row0 + rows` of a tensor in one buffer (one storage binding).
pub struct Part {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

/// An archive tensor uploaded in its stored layout (the kernels decode it in place), as two
/// kinds of buffer: `meta` holds the bytes before the codes section (codebook, scales,
/// offsets: small), `parts` the code rows, cut into row ranges that each fit one storage
/// binding. A tensor larger than the adapter's maxStorageBufferBindingSize (Phi-3.5's
/// embedding in f16, or any big matrix on an adapter with WebGPU's default 128 MiB) is thus
/// split by rows rather than refused; most tensors are one part.
pub struct GpuTensor {
    pub name: String,
    pub meta: wgpu::Buffer,
    pub parts: Vec<Part>,
    pub codec: Codec,
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
    /// Rows per part (the last may hold fewer).
    rows_per_part: usize,
    /// Codecs with group offsets: their scales and offsets as they stream in, until the last
    /// byte of both arrives (see [`GroupPairs`]).
    pairs: Option<std::sync::Mutex<GroupPairs>>,
}

/// A tensor's group scales and offsets gathered as they stream in, then written to `meta` as
/// one word a group, its (scale, offset) f16 pair, at the scales' offset (the pairs take the
/// bytes of both sections): the kernels load a group's scale and offset in one word instead of
/// a half of each of two words (weights.wgsl's `affine_at`). On the H200, leaving the group
/// loads out of the decode mat-vecs saved lut4a 20-40 % (docs/RESULTS.md, session 35). Each
/// byte of the range is written once, in any order (the loader streams a tensor's bytes in
/// order, `upload` writes them at once); host memory is one tensor's scales and offsets while
/// it streams (12 MB for Phi-3.5's lut4a embedding).
struct GroupPairs {
    /// The archive bytes from the scales' start to the word holding the offsets' end.
    start: u64,
    bytes: Vec<u8>,
    filled: usize,
    /// Where the offsets start in `bytes` (the scales start at 0).
    offsets: usize,
    groups: usize,
}

impl GroupPairs {
    fn new(layout: &Layout) -> Self {
        let start = layout.scales.offset;
        Self {
            start: start as u64,
            // To a word: the codes' section, aligned further, follows.
            bytes: vec![0; layout.offsets.end().next_multiple_of(4) - start],
            filled: 0,
            offsets: layout.offsets.offset - start,
            groups: layout.scales.len / 2,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Stages `bytes` at archive offset `at` (within the range); once the range is whole,
    /// writes the pairs to `meta`.
    fn stage(&mut self, ctx: &GpuContext, meta: &wgpu::Buffer, at: u64, bytes: &[u8]) {
        let i = (at - self.start) as usize;
        self.bytes[i..i + bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
        if self.filled < self.bytes.len() {
            return;
        }
        let half = |at: usize| [self.bytes[at], self.bytes[at + 1]];
        let pairs: Vec<u8> = (0..self.groups)
            .flat_map(|g| {
                let [s0, s1] = half(2 * g);
                let [o0, o1] = half(self.offsets + 2 * g);
                [s0, s1, o0, o1]
            })
            .collect();
        ctx.queue.write_buffer(meta, self.start, &pairs);
        self.bytes = Vec::new();
    }
}

impl GpuTensor {
    /// Rows per part for a tensor of this codec and shape under a binding limit of `limit`
    /// bytes: as many whole rows as fit, and an even count when rows are an odd number of
    /// f16 values so that every part starts on a 4-byte boundary. Errors when not even that
    /// fits (one row, or the codebook and scales, larger than a binding).
    pub fn rows_per_part(entry: &TensorEntry, limit: u64) -> Result<usize> {
        let (rows, cols) = entry.rows_cols();
        let layout = entry.codec.layout(rows, cols)?;
        let too_big = |what: &str, needed: u64| QinsError::AdapterLimit {
            limit: "maxStorageBufferBindingSize",
            needed,
            available: limit,
            what: format!("{what} of tensor {}", entry.name),
        };
        if layout.codes.offset as u64 > limit {
            return Err(too_big("codebook and scales", layout.codes.offset as u64));
        }
        // Parts are rounded up to 16 bytes (see `create`), so they are cut within a multiple.
        let limit = limit / 16 * 16;
        let stride = layout.code_stride as u64;
        let pair = if stride.is_multiple_of(4) { 1 } else { 2 };
        let fit = (limit / stride.max(1)) as usize / pair * pair;
        if fit == 0 {
            return Err(too_big("one row", stride * pair as u64));
        }
        Ok(fit.min(rows))
    }

    /// Allocates the tensor's buffers, to be filled by [`GpuTensor::write`] as the archive
    /// streams in.
    pub fn create(ctx: &GpuContext, entry: &TensorEntry) -> Result<Self> {
        let (rows, cols) = entry.rows_cols();
        let layout = entry.codec.layout(rows, cols)?;
        let per = Self::rows_per_part(entry, ctx.max_binding)?;
        // Storage buffers of whole words, like any work buffer.
        let buffer = |label: &str, bytes: u64| ctx.scratch(label, bytes.div_ceil(4) as usize);
        let parts = (0..rows)
            .step_by(per)
            .map(|row0| {
                let n = per.min(rows - row0);
                // The last part also takes the codes section's end padding.
                let bytes = if row0 + n == rows {
                    layout.codes.len - row0 * layout.code_stride
                } else {
                    n * layout.code_stride
                };
                // Whole 16-byte vectors: the LUT mat-vecs also bind the codes as vec4<u32>
                // (WebGPU wants at least one element in a binding).
                Part {
                    buffer: buffer(&entry.name, bytes.next_multiple_of(16) as u64),
                    row0,
                    rows: n,
                }
            })
            .collect();
        Ok(Self {
            name: entry.name.clone(),
            meta: buffer(&entry.name, layout.codes.offset as u64),
            parts,
            codec: entry.codec,
            rows,
            cols,
            pairs: entry
                .codec
                .has_offset()
                .then(|| std::sync::Mutex::new(GroupPairs::new(&layout))),
            layout,
            rows_per_part: per,
        })
    }

    /// Writes `bytes` of the stored tensor at `offset`; both must be multiples of 4 (the loader
    /// carries the rest). Bytes are routed to the meta buffer or the parts they belong to, the
    /// group scales and offsets of a codec with offsets through [`GroupPairs`].
    pub fn write(&self, ctx: &GpuContext, offset: u64, bytes: &[u8]) {
        if let Some(pairs) = &self.pairs {
            let mut pairs = pairs.lock().unwrap_or_else(|e| e.into_inner());
            let end = offset + bytes.len() as u64;
            if offset < pairs.end() && end > pairs.start {
                // Section offsets are multiples of 4, so each piece stays whole words.
                let (a, b) = (pairs.start.max(offset), pairs.end().min(end));
                let (before, rest) = bytes.split_at((a - offset) as usize);
                let (staged, after) = rest.split_at((b - a) as usize);
                pairs.stage(ctx, &self.meta, a, staged);
                drop(pairs);
                self.write_raw(ctx, offset, before);
                self.write_raw(ctx, b, after);
                return;
            }
        }
        self.write_raw(ctx, offset, bytes)
    }

    /// `write` without the group pairs' staging.
    fn write_raw(&self, ctx: &GpuContext, mut offset: u64, mut bytes: &[u8]) {
        let codes_at = self.layout.codes.offset as u64;
        let part_bytes = (self.rows_per_part * self.layout.code_stride) as u64;
        while !bytes.is_empty() {
            let (buffer, start, end) = if offset < codes_at {
                (&self.meta, 0, codes_at)
            } else {
                let i = (((offset - codes_at) / part_bytes) as usize).min(self.parts.len() - 1);
                let start = codes_at + i as u64 * part_bytes;
                let end = if i + 1 == self.parts.len() {
                    u64::MAX
                } else {
                    start + part_bytes
                };
                (&self.parts[i].buffer, start, end)
            };
            let n = ((end - offset) as usize).min(bytes.len());
            ctx.queue.write_buffer(buffer, offset - start, &bytes[..n]);
            offset += n as u64;
            bytes = &bytes[n..];
        }
    }

    /// The whole tensor at once (tests and tools that hold it in memory).
    pub fn upload(ctx: &GpuContext, entry: &TensorEntry, bytes: &[u8]) -> Result<Self> {
        let t = Self::create(ctx, entry)?;
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().next_multiple_of(4), 0);
        t.write(ctx, 0, &padded);
        Ok(t)
    }

    /// The values of a one-part float tensor (norm weights), for kernels that read them whole.
    pub fn values(&self) -> &wgpu::Buffer {
        &self.parts[0].buffer
    }

    /// Where this tensor's sections sit, as the kernels take them.
    fn sections(&self) -> Sections {
        let (group, groups) = match self.codec.group() {
            None => (0, 0),
            Some(group) => (group as u32, self.cols.div_ceil(group) as u32),
        };
        Sections {
            stride_words: (self.layout.code_stride / 4) as u32,
            scales_off: (self.layout.scales.offset / 4) as u32,
            group,
            groups,
            paired: self.pairs.is_some() as u32,
        }
    }

    /// Whether this tensor's decode mat-vec can compute its x from `input` itself (and the
    /// device was not opened with `no_fusion`). Not: 4-bit groups that split code words (that
    /// decode takes the batched path's loads), and the norm under f16 products, which would
    /// round the residual before its 1 / rms scaling brings it into range.
    pub fn fuses(&self, k: &Kernels, input: &Input<'_>) -> bool {
        let kind = kernels_for(self.codec).0;
        let whole_words =
            kind != MatvecKind::Lut4 || self.codec.group().is_some_and(|g| g % 8 == 0);
        let lut = matches!(kind, MatvecKind::Lut8 | MatvecKind::Lut4);
        let f16_norm = k.ctx.f16 && lut && matches!(input, Input::Norm { .. });
        matches!(input, Input::Plain) || (k.ctx.fusion && whole_words && !f16_norm)
    }

    /// `producer` (the RMSNorm or SiLU·mul that writes `io.x`) then this tensor's mat-vec,
    /// with the producer fused into the decode path where [`GpuTensor::fuses`] says it can be:
    /// then the producer runs for batches only, or (a last-row head) not at all.
    pub fn matvec_after(
        &self,
        k: &Kernels,
        producer: Dispatch,
        input: Input<'_>,
        io: MatvecIo<'_>,
        step: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        if !self.fuses(k, &input) {
            return std::iter::once(producer)
                .chain(self.matvec(k, &io, step))
                .collect();
        }
        let io = io.input(input);
        let producer = (io.rows == Rows::All).then(|| producer.only(Runs::Batches));
        producer
            .into_iter()
            .chain(self.matvec(k, &io, step))
            .collect()
    }

    /// The profile's name for this tensor's mat-vecs: "matvec " and the name without its
    /// layer ("layers.7.attn_qkv" → "matvec attn_qkv"), so that a model's layers add up; the
    /// tied head is "matvec token_embd".
    fn role(&self) -> String {
        let role = match self.name.strip_prefix("layers.") {
            Some(rest) => rest.split_once('.').map_or(rest, |(_, r)| r),
            None => &self.name,
        };
        format!("matvec {role}")
    }

    /// `Y[t] (+)= W · X[t]` for each token row of the batch, with the kernel for this tensor's
    /// codec; one dispatch per part. The decode path computes x from `io`'s input.
    pub fn matvec(&self, k: &Kernels, io: &MatvecIo<'_>, step: &wgpu::Buffer) -> Vec<Dispatch> {
        let ctx = &k.ctx;
        let (kind, _) = kernels_for(self.codec);
        let pipeline = k.matvec(kind);
        let sections = self.sections();
        // The decode path's x binding, its row stride and binding 7 (the norm weight; the
        // layout has the binding whether or not it is read).
        let (dx, dx_stride, norm, kind_in, eps) = match io.input {
            Input::Plain => (io.x, io.x_stride, io.x, InputKind::Plain, 0.0),
            Input::Norm {
                raw,
                stride,
                weight,
                eps,
            } => (raw, stride, weight, InputKind::Norm, eps),
            Input::SiluMul { gu, stride } => (gu, stride, gu, InputKind::SiluMul, 0.0),
        };
        self.parts
            .iter()
            .map(|part| {
                let params = |x_stride: usize, input: InputKind| {
                    ctx.uniform(
                        &self.name,
                        &MatvecParams {
                            rows: part.rows as u32,
                            cols: self.cols as u32,
                            row0: part.row0 as u32,
                            x_stride: x_stride as u32,
                            y_stride: io.y_stride as u32,
                            accumulate: (io.output == Output::Accumulate) as u32,
                            last_only: (io.rows == Rows::Last) as u32,
                            sections,
                            input: input as u32,
                            eps,
                            _pad: [0; 2],
                        },
                    )
                };
                // The float kernels read no codebook or scales, so their layout has no
                // binding 0; the LUT mat-vecs also see the codes, x and the norm weight as
                // vectors (bindings 6, 8 and 9), the tiled kernels x (8).
                let lut = !matches!(kind, MatvecKind::F32 | MatvecKind::F16);
                let dp = params(dx_stride, kind_in);
                let mut decode_b = vec![(1, dx), (2, io.y), (3, &dp), (4, step), (5, &part.buffer)];
                decode_b.push((7, norm));
                if lut {
                    decode_b.extend([(0, &self.meta), (6, &part.buffer), (8, dx), (9, norm)]);
                }
                let decode_groups = Kernels::grid(part.rows.div_ceil(ctx.decode_rows) as u32);
                let decode_pipeline = k.matvec_decode_for(kind, part.rows, self.cols);
                let decode = Kernels::bind_at(ctx, decode_pipeline, &decode_b, decode_groups)
                    .named(self.role());
                // Prefill grids put the token blocks on x (see `block` in matvec_common.wgsl).
                let [gx, gy, _] = Kernels::grid(part.rows.div_ceil(ctx.prefill_rows) as u32);
                if io.rows == Rows::Last {
                    return decode;
                }
                // Batches read x as it is: the decode parameters serve them unless decode
                // computes its x.
                let p = if kind_in == InputKind::Plain {
                    dp.clone()
                } else {
                    params(io.x_stride, InputKind::Plain)
                };
                let mut batched_b =
                    vec![(1, io.x), (2, io.y), (3, &p), (4, step), (5, &part.buffer)];
                if lut {
                    batched_b.push((0, &self.meta));
                }
                let mut tiled_b = batched_b.clone();
                tiled_b.push((8, io.x));
                batched_b.push((7, io.x));
                if lut {
                    batched_b.extend([(6, &part.buffer), (8, io.x), (9, io.x)]);
                }
                let batched = Kernels::bind_at(ctx, &pipeline.prefill, &batched_b, [1, gx, gy])
                    .named(self.role())
                    .per_tokens(0, Kernels::MATVEC_TOKENS)
                    .with_decode(decode);
                match &pipeline.tiled {
                    Some(tiled) => {
                        let groups = Kernels::grid(part.rows.div_ceil(Kernels::TILE_ROWS) as u32);
                        batched.with_tiled(
                            Kernels::bind_at(ctx, tiled, &tiled_b, groups)
                                .named(self.role())
                                .per_tokens(2, k.tile().tokens),
                        )
                    }
                    None => batched,
                }
            })
            .collect()
    }

    /// Rows `tokens[t]` of this table into `x` (the embedding lookup of a batch): one dispatch
    /// per part, each writing the tokens whose rows it holds.
    pub fn embed(
        &self,
        k: &Kernels,
        tokens: &wgpu::Buffer,
        x: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let (_, kind) = kernels_for(self.codec);
        let sections = self.sections();
        self.parts
            .iter()
            .map(|part| {
                let p = k.ctx.uniform(
                    "embed",
                    &EmbedParams {
                        kind: kind as u32,
                        cols: self.cols as u32,
                        row0: part.row0 as u32,
                        rows: part.rows as u32,
                        sections,
                        _pad: [0; 3],
                    },
                );
                Kernels::bind(
                    &k.ctx,
                    &k.embed,
                    &[&self.meta, tokens, x, &p, step, &part.buffer],
                    [(self.cols as u32).div_ceil(64), 1, 1],
                )
                .per_tokens(1, 1)
                .named("embed")
            })
            .collect()
    }
}

/// What a mat-vec's decode path computes its x from (matvec_common.wgsl's `INPUT_*`): the x
/// binding as it is, or the op that writes x, fused so that a decoded token skips that op's
/// dispatch (see [`GpuTensor::matvec_after`]).
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Plain,
    /// RMSNorm (`eps`) of `raw`'s rows, `stride` apart, times `weight`.
    Norm {
        raw: &'a wgpu::Buffer,
        stride: usize,
        weight: &'a wgpu::Buffer,
        eps: f32,
    },
    /// silu(gate) · up of `gu`'s rows, `stride` apart: the mat-vec's columns of gate values,
    /// then as many up values.
    SiluMul {
        gu: &'a wgpu::Buffer,
        stride: usize,
    },
}

/// A mat-vec's activations: `x` rows `x_stride` apart in, `y` rows `y_stride` apart out.
pub struct MatvecIo<'a> {
    pub x: &'a wgpu::Buffer,
    pub x_stride: usize,
    pub y: &'a wgpu::Buffer,
    pub y_stride: usize,
    pub output: Output,
    pub rows: Rows,
    /// What the decode path reads instead of `x` (batches always read `x`).
    pub input: Input<'a>,
}

impl<'a> MatvecIo<'a> {
    /// Every token row of the batch, `y` overwritten.
    pub fn new(x: &'a wgpu::Buffer, x_stride: usize, y: &'a wgpu::Buffer, y_stride: usize) -> Self {
        Self {
            x,
            x_stride,
            y,
            y_stride,
            output: Output::Write,
            rows: Rows::All,
            input: Input::Plain,
        }
    }

    /// Decode computes x from `input` (the producer of `x` fused).
    pub fn input(self, input: Input<'a>) -> Self {
        Self { input, ..self }
    }

    /// Adds onto `y` instead (the fused residual adds).
    pub fn accumulate(self) -> Self {
        Self {
            output: Output::Accumulate,
            ..self
        }
    }

    /// Only for `rows`: [`Rows::Last`] computes the batch's last row into row 0.
    pub fn rows(self, rows: Rows) -> Self {
        Self { rows, ..self }
    }
}
