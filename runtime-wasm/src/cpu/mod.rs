//! The f32 reference engine on the CPU: the oracle every GPU and browser result is held to.

mod engine;
mod forward;
mod ops;

pub use engine::{CpuEngine, CpuRunner};
pub use forward::{
    attention, decoder_layer, embed, CpuModel, Heads, KvCache, LayerKv, MatrixInput,
};
pub use ops::{add_bias, matmul_t, rms_norm, silu_mul, softmax_in_place};
