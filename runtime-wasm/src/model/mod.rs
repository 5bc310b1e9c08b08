//! The canonical decoder: one description and one tensor layout for every supported family.

mod config;
mod rope;
mod tensors;
mod weights;

pub use config::{ModelConfig, RopeScaling};
pub use rope::Rope;
pub use tensors::{canonical_tensors, split_name, Layer, TensorRole, TensorSpec, Tensors};
pub(crate) use weights::take;
pub use weights::{LayerWeights, Weights};
