//! The dot products the packed CPU engine is made of, on the stored codes: one portable
//! version of each (the reference the SIMD ones are tested against, and what other CPUs and a
//! wasm32 build without SIMD128 run) and a table of whichever versions this CPU can run.
//!
//! A row is `groups` of `group` columns, each with its own scale: the kernels return
//! Σ_g scale_g · Σ_{c∈g} codebook[code_c] · x_c. Offsets (the affine codecs) are not theirs:
//! Σ_g offset_g · Σ_{c∈g} x_c needs only the activations' group sums, computed once per token
//! by the caller.

/// A 256-entry codebook as values and as four byte planes (byte p of every value's f32 bits),
/// which byte-permute instructions look up 64 codes at a time.
pub struct Codebook8 {
    pub values: [f32; 256],
    pub planes: [[u8; 256]; 4],
}

impl Codebook8 {
    pub fn new(values: [f32; 256]) -> Self {
        let mut planes = [[0u8; 256]; 4];
        for (i, v) in values.iter().enumerate() {
            for (p, b) in v.to_le_bytes().into_iter().enumerate() {
                planes[p][i] = b;
            }
        }
        Self { values, planes }
    }
}

/// One row of 8-bit codes: `codes.len() == x.len()`, `scales.len() == x.len().div_ceil(group)`.
pub type Row8 =
    fn(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32;
/// One row of 4-bit codes, two per byte, the even column in the low nibble: `codes.len() ==
/// x.len().div_ceil(2)`; `group` is even, so no byte straddles two groups. The codebook's
/// first 16 entries are the 4-bit codebook.
pub type Row4 =
    fn(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32;
/// Σ w_c · x_c over f16 weights (as stored bits).
pub type DotF16 = fn(w: &[u16], x: &[f32]) -> f32;
/// Σ w_c · x_c over f32 weights.
pub type DotF32 = fn(w: &[f32], x: &[f32]) -> f32;

/// A set of kernels, all from one instruction set.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub row8: Row8,
    pub row4: Row4,
    pub dot_f16: DotF16,
    pub dot_f32: DotF32,
}

impl Kernels {
    pub const PORTABLE: Kernels = Kernels {
        name: "portable",
        row8,
        row4,
        dot_f16,
        dot_f32,
    };

    /// The fastest set this CPU runs, detected once; `QINS_CPU_KERNELS=portable` (or another
    /// set's name) picks one by name, for benchmarks and for ruling a kernel out.
    pub fn best() -> &'static Kernels {
        static BEST: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
        BEST.get_or_init(|| {
            let all = Self::available();
            let asked = std::env::var("QINS_CPU_KERNELS").ok();
            let named = asked.and_then(|n| all.iter().find(|k| k.name == n).copied());
            named.or(all.last().copied()).unwrap_or(Self::PORTABLE)
        })
    }

    /// Every set this CPU runs, the portable one first: the tests check each against it.
    pub fn available() -> Vec<Kernels> {
        #[allow(unused_mut)]
        let mut all = vec![Self::PORTABLE];
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = super::avx2::kernels() {
            all.push(k);
            all.extend(super::avx512::kernels(&k));
        }
        #[cfg(target_arch = "aarch64")]
        all.push(super::neon::kernels());
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        all.push(super::simd128::kernels());
        all
    }
}

fn row8(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let codebook = &codebook.values;
    codes
        .chunks(group)
        .zip(x.chunks(group))
        .zip(scales)
        .map(|((q, x), s)| {
            s * q
                .iter()
                .zip(x)
                .map(|(&q, x)| codebook[q as usize] * x)
                .sum::<f32>()
        })
        .sum()
}

fn row4(codes: &[u8], codebook: &Codebook8, x: &[f32], group: usize, scales: &[f32]) -> f32 {
    let codebook = &codebook.values;
    codes
        .chunks(group / 2)
        .zip(x.chunks(group))
        .zip(scales)
        .map(|((q, x), s)| {
            let mut sum = 0.0;
            for (&b, x) in q.iter().zip(x.chunks(2)) {
                sum += codebook[(b & 15) as usize] * x[0];
                if let Some(x1) = x.get(1) {
                    sum += codebook[(b >> 4) as usize] * x1;
                }
            }
            s * sum
        })
        .sum()
}

fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(&w, x)| half::f16::from_bits(w).to_f32() * x)
        .sum()
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    // Eight partial sums so the compiler can keep them in one vector register.
    let mut acc = [0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (w, x) in wc.zip(xc) {
        for i in 0..8 {
            acc[i] += w[i] * x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
