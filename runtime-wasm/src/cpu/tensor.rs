//! What the forward pass asks of a tensor, so one pass serves both CPU engines: the f32
//! reference (every tensor a `Vec<f32>`) and the packed engine (matrices in their stored
//! codes, [`Packed`]).

use super::ops::matmul_t;
use super::packed::PackedMatrix;
use crate::codec::{decode, Codec};
use crate::model::TensorRole;
use crate::Result;

pub trait CpuTensor: Send + Sync {
    /// A vector's values (norm weights, biases).
    fn values(&self) -> &[f32];
    /// `x` ([n, k]) times this [m, k] matrix transposed: [n, m].
    fn matmul_t(&self, x: &[f32], n: usize, k: usize, m: usize) -> Vec<f32>;
    /// Appends row `r` of this [rows, width] matrix to `out` (embedding lookups).
    fn extend_with_row(&self, r: usize, width: usize, out: &mut Vec<f32>);
}

impl CpuTensor for Vec<f32> {
    fn values(&self) -> &[f32] {
        self
    }
    fn matmul_t(&self, x: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
        matmul_t(x, self, n, k, m)
    }
    fn extend_with_row(&self, r: usize, width: usize, out: &mut Vec<f32>) {
        out.extend_from_slice(&self[r * width..(r + 1) * width]);
    }
}

/// A tensor of the packed engine: vectors in f32 (they are small), matrices as stored.
pub enum Packed {
    Vector(Vec<f32>),
    Matrix(PackedMatrix),
}

impl Packed {
    /// A stored tensor: a matrix kept as stored, a vector ([n]) decoded to f32.
    pub fn from_stored(codec: Codec, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        Ok(if rows == 1 {
            Packed::Vector(decode(codec, bytes, rows, cols)?)
        } else {
            Packed::Matrix(PackedMatrix::new(codec, rows, cols, bytes)?)
        })
    }

    /// Made fit for its place in the model: where a vector belongs it is one, whatever shape
    /// the archive gave it.
    pub fn for_role(self, role: TensorRole) -> Self {
        match (self, role) {
            (Packed::Matrix(m), TensorRole::Vector) => {
                let mut v = vec![0f32; m.rows() * m.cols()];
                m.decode_rows(0, &mut v);
                Packed::Vector(v)
            }
            (t, _) => t,
        }
    }

    /// Values it stands for.
    pub fn values_len(&self) -> usize {
        match self {
            Packed::Vector(v) => v.len(),
            Packed::Matrix(m) => m.rows() * m.cols(),
        }
    }
}

impl CpuTensor for Packed {
    fn values(&self) -> &[f32] {
        match self {
            Packed::Vector(v) => v,
            // The loader makes each tensor by its role in Tensors::describe, so a vector's
            // place never holds a matrix.
            Packed::Matrix(_) => unreachable!("a matrix where a vector belongs"),
        }
    }
    fn matmul_t(&self, x: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
        match self {
            Packed::Matrix(w) => {
                debug_assert_eq!((w.cols(), w.rows()), (k, m));
                w.matmul_t(x, n)
            }
            Packed::Vector(v) => matmul_t(x, v, n, k, m),
        }
    }
    fn extend_with_row(&self, r: usize, width: usize, out: &mut Vec<f32>) {
        match self {
            Packed::Matrix(w) => {
                let start = out.len();
                out.resize(start + width, 0.0);
                w.decode_rows(r, &mut out[start..]);
            }
            Packed::Vector(v) => v.extend_with_row(r, width, out),
        }
    }
}
