//! The canonical tensors of an archive, decoded to f32 for the CPU reference engine.

use std::collections::HashMap;
use std::io::Read;

use super::{Layer, ModelConfig, TensorSpec, Tensors};
use crate::codec::decode;
use crate::format::{read_archive, Manifest};
use crate::{QinsError, Result};

/// A layer's tensors decoded to f32.
pub type LayerWeights = Layer<Vec<f32>>;

/// A model's tensors decoded to f32 for the CPU reference engine.
pub type Weights = Tensors<Vec<f32>>;

impl Weights {
    /// Reads and decodes a whole archive (every chunk verified on the way).
    pub fn read<R: Read>(r: R, len: Option<u64>) -> Result<(Manifest, Weights)> {
        let mut decoded: HashMap<String, Vec<f32>> = HashMap::new();
        let manifest = read_archive(r, len, |t, bytes| {
            let (rows, cols) = t.rows_cols();
            decoded.insert(t.name.clone(), decode(t.codec, &bytes, rows, cols)?);
            Ok(())
        })?;
        let w = Self::from_tensors(&manifest.config, decoded)?;
        Ok((manifest, w))
    }

    /// The model's tensors taken out of `decoded` by name, each checked against its shape.
    pub(crate) fn from_tensors(
        cfg: &ModelConfig,
        decoded: HashMap<String, Vec<f32>>,
    ) -> Result<Self> {
        Tensors::from_named(cfg, decoded, |v, _| Ok(v), Vec::len)
    }
}

impl<T> Tensors<T> {
    /// The model's tensors taken out of `named` by name, each made fit for its place by
    /// `place` (given the spec) and checked to hold the values its shape needs (`values`).
    pub(crate) fn from_named<U>(
        cfg: &ModelConfig,
        mut named: HashMap<String, U>,
        mut place: impl FnMut(U, &TensorSpec) -> Result<T>,
        values: impl Fn(&T) -> usize,
    ) -> Result<Self> {
        Tensors::describe(cfg).try_map(|spec| {
            let t = place(take(&mut named, &spec.name)?, &spec)?;
            let len: usize = spec.shape.iter().product();
            if values(&t) != len {
                return Err(QinsError::Tensor {
                    name: spec.name,
                    msg: format!("has {} values, the config needs {len}", values(&t)),
                });
            }
            Ok(t)
        })
    }
}

/// Tensor `name` out of `tensors`, or the error that names it missing.
pub(crate) fn take<T>(tensors: &mut HashMap<String, T>, name: &str) -> Result<T> {
    tensors.remove(name).ok_or_else(|| QinsError::Tensor {
        name: name.into(),
        msg: "missing from the archive".into(),
    })
}
