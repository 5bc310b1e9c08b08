//! The canonical decoder: one description and one tensor layout for every supported family.

mod config;
mod names;
mod rope;
mod weights;

pub use config::{ModelConfig, RopeScaling};
pub use names::{canonical_tensors, split_name, TensorRole, TensorSpec};
pub use rope::Rope;
pub use weights::{LayerWeights, Weights};
