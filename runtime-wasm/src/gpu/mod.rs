//! The GPU engine on wgpu: the same WGSL kernels (shaders/) natively (Vulkan, Metal) and in the
//! browser (WebGPU). Every kernel has a CPU reference it is tested against (tests/tests/gpu_*.rs).

mod context;
mod engine;
mod kernels;
mod loader;
mod params;
mod profile;
mod tensor;

pub use context::{
    matvec_partial_len, Compute, DecodeAttention, DecodeLoads, GpuContext, GpuOptions, Prefill,
};
pub use engine::{CacheConfig, GpuEngine, GpuModel, BATCH};
pub use kernels::{AttentionIo, Dispatch, HeadShape, Kernels, Matvec, RopeTables, Runs, Tile};
pub use loader::{GpuLoader, LoadProgress};
pub use params::{
    kernels_for, AttentionParams, EmbedKind, EmbedParams, MatvecKind, MatvecParams, MatvecProbe,
    Output, PickParams, RmsnormParams, RopeParams, Rows, Sections, SelectParams, SiluMulParams,
    Step,
};
pub use profile::{KernelTime, Phase, Profiler};
pub use tensor::{GpuTensor, Input, MatvecIo, Part};
