//! The CPU engines: the f32 reference (every tensor expanded to f32), the oracle every other
//! result is held to, and the packed engine, which runs the same forward pass on the stored
//! codes (`packed/`).

mod attention;
mod engine;
mod forward;
mod ops;
pub mod packed;
mod tensor;

pub use attention::{attention, attention_over, Heads, KvView};
pub use engine::{CpuEngine, CpuRunner, PackedEngine};
pub use forward::{decoder_layer, embed, CpuModel, KvCache, KvRows, LayerKv, MatrixInput};
pub use ops::{add_bias, matmul_t, rms_norm, silu_mul, softmax_in_place};
pub use tensor::{CpuTensor, Packed};
