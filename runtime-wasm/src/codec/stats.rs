use serde::{Deserialize, Serialize};

/// Reconstruction error of one encoded tensor, kept in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// ‖W − Ŵ‖_F / ‖W‖_F
    pub rel_fro: f64,
    /// 10·log10(‖W‖² / ‖W − Ŵ‖²); capped at 200 dB for exact round trips.
    pub sqnr_db: f64,
}

impl ErrorStats {
    pub fn measure(original: &[f32], decoded: &[f32]) -> Self {
        let (mut sig, mut err) = (0f64, 0f64);
        for (&a, &b) in original.iter().zip(decoded) {
            sig += (a as f64) * (a as f64);
            let d = a as f64 - b as f64;
            err += d * d;
        }
        Self::from_sums(sig, err)
    }

    /// From summed signal and error energies (lets callers aggregate many tensors).
    pub fn from_sums(signal: f64, error: f64) -> Self {
        let rel_fro = if signal > 0.0 {
            (error / signal).sqrt()
        } else {
            error.sqrt()
        };
        let sqnr_db = if error <= 0.0 || signal <= 0.0 {
            200.0
        } else {
            (10.0 * (signal / error).log10()).min(200.0)
        };
        Self { rel_fro, sqnr_db }
    }
}
