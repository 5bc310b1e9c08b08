//! The CPU engines: the f32 reference (every tensor expanded to f32), the oracle every other
//! result is held to, and the packed engine, which runs the same forward pass on the stored
//! codes (`packed/`).

mod engine;
mod forward;
mod ops;
pub mod packed;
mod tensor;

pub use engine::{CpuEngine, CpuRunner, PackedEngine};
pub use forward::{
    attention, decoder_layer, embed, CpuModel, Heads, KvCache, LayerKv, MatrixInput,
};
pub use ops::{add_bias, matmul_t, rms_norm, silu_mul, softmax_in_place};
pub use tensor::{CpuTensor, Packed};
