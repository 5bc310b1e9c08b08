use super::kernels::{Dispatch, Kernels};
use super::GpuContext;
use crate::codec::{Codec, Layout};
use crate::format::TensorEntry;
use crate::Result;

/// An archive tensor uploaded as-is: the kernels decode the stored layout in place.
pub struct GpuTensor {
    pub name: String,
    pub buffer: wgpu::Buffer,
    pub codec: Codec,
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
}

impl GpuTensor {
    /// Allocates the tensor's buffer, to be filled by [`GpuTensor::write`] as the archive
    /// streams in. Refuses a tensor larger than one storage binding may be.
    pub fn create(ctx: &GpuContext, entry: &TensorEntry) -> Result<Self> {
        let (rows, cols) = entry.rows_cols();
        let layout = entry.codec.layout(rows, cols)?;
        ctx.check_binding(&entry.name, entry.bytes)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&entry.name),
            size: entry.bytes.next_multiple_of(4).max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Self {
            name: entry.name.clone(),
            buffer,
            codec: entry.codec,
            rows,
            cols,
            layout,
        })
    }

    /// Writes `bytes` at `offset`; both must be multiples of 4 (the loader carries the rest).
    pub fn write(&self, ctx: &GpuContext, offset: u64, bytes: &[u8]) {
        ctx.queue.write_buffer(&self.buffer, offset, bytes);
    }

    /// The whole tensor at once (tests and tools that hold it in memory).
    pub fn upload(ctx: &GpuContext, entry: &TensorEntry, bytes: &[u8]) -> Result<Self> {
        let t = Self::create(ctx, entry)?;
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().next_multiple_of(4), 0);
        t.write(ctx, 0, &padded);
        Ok(t)
    }

    /// Words (u32) offsets of the sections, as the kernels take them.
    fn words(&self) -> (u32, u32, u32) {
        (
            (self.layout.code_stride / 4) as u32,
            (self.layout.scales.offset / 4) as u32,
            (self.layout.codes.offset / 4) as u32,
        )
    }

    /// The kernels' group parameters: columns per group, groups per row, and the offsets'
    /// word offset (0 when the codec has none: word 0 is always the codebook).
    fn group_words(&self) -> [u32; 3] {
        let Some(group) = self.codec.group() else {
            return [0; 3];
        };
        let offsets = if self.codec.has_offset() {
            self.layout.offsets.offset / 4
        } else {
            0
        };
        [
            group as u32,
            self.cols.div_ceil(group) as u32,
            offsets as u32,
        ]
    }

    /// `Y[t] (+)= W · X[t]` for each token row of the batch (`x_stride`, `y_stride` apart), with
    /// the kernel for this tensor's codec; `last_only` computes row 0 alone.
    #[allow(clippy::too_many_arguments)]
    pub fn matvec(
        &self,
        ctx: &GpuContext,
        k: &Kernels,
        x: &wgpu::Buffer,
        x_stride: usize,
        y: &wgpu::Buffer,
        y_stride: usize,
        accumulate: bool,
        last_only: bool,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        let (stride, scales, codes) = self.words();
        let mut params = vec![
            self.rows as u32,
            self.cols as u32,
            stride,
            scales,
            codes,
            x_stride as u32,
            y_stride as u32,
            accumulate as u32,
            last_only as u32,
        ];
        params.extend(self.group_words());
        let pipeline = match (self.codec, self.codec.code_bits()) {
            (Codec::F32, _) => &k.matvec_f32,
            (Codec::F16, _) => &k.matvec_f16,
            (_, 4) => &k.matvec_lut4,
            _ => &k.matvec_lut8,
        };
        let p = ctx.uniform(&self.name, &params);
        let d = Kernels::bind(
            ctx,
            pipeline,
            &[&self.buffer, x, y, &p, step],
            Kernels::grid(self.rows as u32),
        );
        if last_only {
            d
        } else {
            d.per_tokens(2, 8)
        }
    }

    /// Rows `tokens[t]` of this table into `x` (the embedding lookup of a batch).
    pub fn embed(
        &self,
        ctx: &GpuContext,
        k: &Kernels,
        tokens: &wgpu::Buffer,
        x: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        let (stride, scales, codes) = self.words();
        let kind = match (self.codec, self.codec.code_bits(), self.codec.group()) {
            (Codec::F32, _, _) => 2,
            (Codec::F16, _, _) => 3,
            (_, 4, _) => 1,
            (_, _, Some(_)) => 4,
            _ => 0,
        };
        let [group, groups, offsets] = self.group_words();
        let p = ctx.uniform(
            "embed",
            &[
                kind,
                self.cols as u32,
                stride,
                scales,
                codes,
                group,
                groups,
                offsets,
            ],
        );
        Kernels::bind(
            ctx,
            &k.embed,
            &[&self.buffer, tokens, x, &p, step],
            [(self.cols as u32).div_ceil(64), 1, 1],
        )
        .per_tokens(1, 1)
    }
}
