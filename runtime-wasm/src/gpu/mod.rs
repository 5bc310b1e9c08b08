//! The GPU engine on wgpu: the same WGSL kernels (shaders/) natively (Vulkan, Metal) and in the
//! browser (WebGPU). Every kernel has a CPU reference it is tested against (tests/tests/gpu_*.rs).

mod context;
mod engine;
mod kernels;
mod loader;
mod tensor;

pub use context::{GpuContext, GpuOptions};
pub use engine::{CacheConfig, GpuEngine, GpuModel};
pub use kernels::{Dispatch, HeadShape, Kernels, Matvec, MatvecKind};
pub use loader::{GpuLoader, LoadProgress};
pub use tensor::{GpuTensor, Part};
