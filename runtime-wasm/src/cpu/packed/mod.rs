//! The packed CPU engine's matrices: weights stay in the archive's codes in memory and are
//! decoded inside the mat-vec (SIMD where the CPU has it), or once per tile for a mat-mat.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod checks;
mod kernels;
mod matrix;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(test)]
pub(crate) mod tests;

pub use kernels::{Codebook8, Kernels};
pub use matrix::PackedMatrix;
