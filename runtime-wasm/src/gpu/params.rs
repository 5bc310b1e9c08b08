//! The kernels' uniform parameters: one `#[repr(C)]` struct per WGSL struct, with the same
//! name and fields in the same order (shaders/*.wgsl), so a field is named on both sides and
//! never a position in a word array. Every struct is a multiple of 16 bytes, as uniforms are.

use bytemuck::{Pod, Zeroable};

use crate::codec::Codec;

/// Which token rows a kernel writes: all of the batch's, or its last one into row 0 (the
/// output head when only the next token's logits are wanted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    Last,
}

/// Whether a mat-vec overwrites its output or adds to it (the fused residual adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Write,
    Accumulate,
}

/// `Step` in every per-token kernel: the batch's first position and token count, rewritten
/// before each batch.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct Step {
    pub pos: u32,
    pub n: u32,
    pub _pad: [u32; 2],
}

impl Step {
    pub fn new(pos: usize, n: usize) -> Self {
        Self {
            pos: pos as u32,
            n: n as u32,
            _pad: [0; 2],
        }
    }
}

/// rmsnorm.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RmsnormParams {
    pub n: u32,
    pub eps: f32,
    pub last_only: u32,
    pub _pad: u32,
}

impl RmsnormParams {
    pub fn new(n: usize, eps: f32, rows: Rows) -> Self {
        Self {
            n: n as u32,
            eps,
            last_only: (rows == Rows::Last) as u32,
            _pad: 0,
        }
    }
}

/// rope_common.wgsl (rope_store.wgsl, and attention's own rotation). `scale` changes with
/// longrope's table: the engine rewrites it in place at [`RopeParams::SCALE_OFFSET`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RopeParams {
    pub nh: u32,
    pub nkv: u32,
    pub hd: u32,
    pub rot_half: u32,
    pub scale: f32,
    pub kv_f16: u32,
    pub _pad: [u32; 2],
}

impl RopeParams {
    pub const SCALE_OFFSET: u64 = std::mem::offset_of!(RopeParams, scale) as u64;
}

/// attention.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct AttentionParams {
    pub nh: u32,
    pub nkv: u32,
    pub hd: u32,
    pub max_ctx: u32,
    pub scale: f32,
    pub kv_f16: u32,
    /// A one-token batch adds its bias, rotates its q and k and appends its k and v itself
    /// (add_bias and rope_store run for batches only).
    pub rope_fused: u32,
    /// The qkv bias binding holds the projection's bias (else a placeholder).
    pub bias: u32,
}

/// silu_mul.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct SiluMulParams {
    pub ff: u32,
    pub _pad: [u32; 3],
}

/// add_bias.wgsl: values per row.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BiasParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

/// select.wgsl: `n` logits, the `k`-th largest, the repetition penalty and its reciprocal.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct SelectParams {
    pub n: u32,
    pub k: u32,
    pub penalty: f32,
    pub inv_penalty: f32,
}

impl SelectParams {
    pub fn new(n: usize, k: usize, penalty: f32) -> Self {
        Self {
            n: n as u32,
            k: k as u32,
            penalty,
            inv_penalty: 1.0 / penalty,
        }
    }
}

/// pick.wgsl's draw: greedy (`sample` 0), or the sampler's draw with the uniform number `u`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Pod, Zeroable)]
pub struct PickParams {
    pub temperature: f32,
    pub top_p: f32,
    pub min_p: f32,
    pub u: f32,
    pub sample: u32,
    pub _pad: [u32; 3],
}

impl PickParams {
    /// The draw `d` makes with its uniform number `u` (None: greedy).
    pub fn new(d: Option<&crate::engine::Draw>, u: usize) -> Self {
        match d {
            None => Self::default(),
            Some(d) => Self {
                temperature: d.temperature,
                top_p: d.top_p,
                min_p: d.min_p,
                u: d.u[u],
                sample: 1,
                _pad: [0; 3],
            },
        }
    }
}

/// Where a stored tensor's sections sit, in the u32 words the kernels index (docs/FORMAT.md):
/// the fields the mat-vec and embedding parameters share, flattened into their WGSL structs
/// (a `#[repr(C)]` struct of u32s nests without padding).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct Sections {
    /// Words per code row.
    pub stride_words: u32,
    /// Word offset of the scales in `w` (the bytes before the codes).
    pub scales_off: u32,
    /// Columns per scale group (0 without groups).
    pub group: u32,
    /// Groups per row.
    pub groups: u32,
    /// 1 where the groups have offsets: then each group is one word at `scales_off`, its
    /// (scale, offset) f16 pair (`GpuTensor`'s `GroupPairs`); 0: an f16 scale each.
    pub paired: u32,
}

/// matvec_common.wgsl's `MatvecParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct MatvecParams {
    /// Rows of this part, and the tensor's row of its first.
    pub rows: u32,
    pub cols: u32,
    pub row0: u32,
    pub x_stride: u32,
    pub y_stride: u32,
    pub accumulate: u32,
    pub last_only: u32,
    pub sections: Sections,
    /// What the decode path computes x from ([`InputKind`]), and the fused norm's epsilon.
    pub input: u32,
    pub eps: f32,
    pub _pad: [u32; 2],
}

/// What a mat-vec's decode path computes its x from: the x binding as it is, or the op that
/// writes x fused into the mat-vec (matvec_common.wgsl's `INPUT_*`, generated from this by
/// [`InputKind::wgsl_consts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum InputKind {
    Plain = 0,
    /// RMSNorm of the residual rows times the norm weight (binding 7).
    Norm = 1,
    /// silu(gate) · up of [gate; up] rows.
    SiluMul = 2,
}

impl InputKind {
    /// `const INPUT_…: u32 = n;` for each kind.
    pub fn wgsl_consts() -> String {
        wgsl_consts(
            "INPUT",
            &[
                (Self::Plain as u32, "PLAIN"),
                (Self::Norm as u32, "NORM"),
                (Self::SiluMul as u32, "SILU"),
            ],
        )
    }
}

/// A decode mat-vec with part of its work left out: qins-bench's diagnosis of what bounds the
/// kernel (`GpuContext::matvec_probe`; the engine never sets one). Each probe computes what the
/// whole kernel does on a tensor fitted by [`MatvecProbe::fit`], so the bench can check that
/// the output did not change, and the time saved is that part's cost (matvec_common.wgsl's
/// `PROBE_*`, generated by [`MatvecProbe::wgsl_consts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum MatvecProbe {
    #[default]
    None = 0,
    /// Codebook values computed from the code (k / 256 − 0.5) instead of looked up in
    /// workgroup memory, and the codebook not loaded there: the lookups' cost with the
    /// codebook's load and barrier, a link of the chain of dependent loads every decode
    /// workgroup waits on (since session 36; before, the load and barrier stayed).
    ArithmeticCodebook = 1,
    /// Group scales and offsets not read or applied: their loads' and arithmetic's cost.
    NoGroups = 2,
}

impl MatvecProbe {
    /// `const PROBE_…: u32 = n;` for each probe, then `PROBE`, this one's.
    pub fn wgsl_consts(self) -> String {
        let mut s = wgsl_consts(
            "PROBE",
            &[
                (Self::None as u32, "NONE"),
                (Self::ArithmeticCodebook as u32, "ARITHMETIC"),
                (Self::NoGroups as u32, "NO_GROUPS"),
            ],
        );
        s += &format!("const PROBE: u32 = {}u;\n", self as u32);
        s
    }

    /// Whether the probe leaves part of the decode work out on `codec`'s tensors: a codebook
    /// to compute (LUT codecs), group scales to skip (grouped ones); 4-bit codes with groups
    /// that split words decode code by code, where no probe applies.
    pub fn applies(self, codec: Codec) -> bool {
        let whole_words = codec.code_bits() != 4 || codec.group().is_some_and(|g| g % 8 == 0);
        let part = match self {
            Self::None => false,
            Self::ArithmeticCodebook => codec.is_lut(),
            Self::NoGroups => codec.group().is_some(),
        };
        part && whole_words
    }

    /// Rewrites a stored tensor's codebook to entry k = k / 256 − 0.5, its scales to 1 and its
    /// offsets to 0, keeping its codes: a tensor on which every probe computes exactly what the
    /// whole kernel does.
    pub fn fit(codec: Codec, layout: &crate::codec::Layout, bytes: &mut [u8]) {
        let codebook = &mut bytes[..layout.codebook.len];
        for (i, c) in codebook.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&(i as f32 / 256.0 - 0.5).to_le_bytes());
        }
        let one: &[u8] = if codec.group().is_some() {
            &[0x00, 0x3c] // f16 1.0
        } else {
            &[0, 0, 0x80, 0x3f] // f32 1.0
        };
        let scales = &mut bytes[layout.scales.offset..layout.scales.offset + layout.scales.len];
        for c in scales.chunks_exact_mut(one.len()) {
            c.copy_from_slice(one);
        }
        bytes[layout.offsets.offset..layout.offsets.offset + layout.offsets.len].fill(0);
    }
}

/// `const {prefix}_{name}: u32 = n;` for each (n, name): the WGSL side of a Rust enum, so its
/// numbers live in Rust only.
fn wgsl_consts(prefix: &str, items: &[(u32, &str)]) -> String {
    items
        .iter()
        .map(|(n, name)| format!("const {prefix}_{name}: u32 = {n}u;\n"))
        .collect()
}

/// embed.wgsl's `EmbedParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct EmbedParams {
    pub kind: u32,
    pub cols: u32,
    pub row0: u32,
    pub rows: u32,
    pub sections: Sections,
    pub _pad: [u32; 3],
}

/// The mat-vec kernel files: LUT codes of 8 and 4 bits, f32 and f16 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatvecKind {
    Lut8,
    Lut4,
    F32,
    F16,
}

/// How embed.wgsl decodes a table row; the WGSL constants are generated from this
/// ([`EmbedKind::wgsl_consts`]), so the numbers live here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum EmbedKind {
    /// 8-bit codes with a per-row scale (qins8, lut8, int8).
    Lut8Row = 0,
    /// 4-bit codes with group scales (and offsets) (lut4, lut4a, int4).
    Lut4 = 1,
    F32 = 2,
    F16 = 3,
    /// 8-bit codes with group scales (and offsets) (lut8g, lut8a).
    Lut8Group = 4,
}

impl EmbedKind {
    const ALL: [(Self, &'static str); 5] = [
        (Self::Lut8Row, "LUT8_ROW"),
        (Self::Lut4, "LUT4"),
        (Self::F32, "F32"),
        (Self::F16, "F16"),
        (Self::Lut8Group, "LUT8_GROUP"),
    ];

    /// `const KIND_…: u32 = n;` for each kind, spliced into embed.wgsl.
    pub fn wgsl_consts() -> String {
        let items: Vec<(u32, &str)> = Self::ALL
            .iter()
            .map(|&(k, name)| (k as u32, name))
            .collect();
        wgsl_consts("KIND", &items)
    }
}

/// The one codec → kernel mapping: which mat-vec and which embedding decode a codec's stored
/// layout. A new codec is added here (and in its kernel file).
pub fn kernels_for(codec: Codec) -> (MatvecKind, EmbedKind) {
    match (codec, codec.code_bits(), codec.group()) {
        (Codec::F32, _, _) => (MatvecKind::F32, EmbedKind::F32),
        (Codec::F16, _, _) => (MatvecKind::F16, EmbedKind::F16),
        (_, 4, _) => (MatvecKind::Lut4, EmbedKind::Lut4),
        (_, _, Some(_)) => (MatvecKind::Lut8, EmbedKind::Lut8Group),
        _ => (MatvecKind::Lut8, EmbedKind::Lut8Row),
    }
}
