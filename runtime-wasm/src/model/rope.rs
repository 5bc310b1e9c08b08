//! Rotary position embedding tables, computed exactly as transformers does for each scaling.

use super::{ModelConfig, RopeScaling};

/// Per-frequency inverse wavelengths and the cos/sin magnitude for one forward call.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// rotary_dim / 2 entries.
    pub inv_freq: Vec<f32>,
    /// Multiplies cos and sin (longrope's attention factor; 1 otherwise).
    pub scale: f32,
    pub rotary_dim: usize,
}

impl Rope {
    /// The table for a forward call whose sequence (cache included) is `seq_len` tokens long:
    /// longrope switches from its short to its long factors once `seq_len` exceeds
    /// `original_max_position_embeddings`.
    pub fn for_len(cfg: &ModelConfig, seq_len: usize) -> Self {
        let d = cfg.rotary_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / (cfg.rope_theta as f64).powf(2.0 * i as f64 / d as f64))
            .collect();
        let (inv_freq, scale): (Vec<f64>, f64) = match &cfg.rope_scaling {
            None => (base, 1.0),
            Some(RopeScaling::Linear { factor }) => {
                (base.iter().map(|f| f / *factor as f64).collect(), 1.0)
            }
            Some(RopeScaling::Longrope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            }) => {
                let factors = if seq_len > *original_max_position_embeddings {
                    long_factor
                } else {
                    short_factor
                };
                (
                    base.iter()
                        .zip(factors)
                        .map(|(f, s)| f / *s as f64)
                        .collect(),
                    *attention_factor as f64,
                )
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let (factor, low, high) = (
                    *factor as f64,
                    *low_freq_factor as f64,
                    *high_freq_factor as f64,
                );
                let orig = *original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) = (orig / low, orig / high);
                let f = base
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (orig / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                (f, 1.0)
            }
        };
        Self {
            // transformers keeps inv_freq in f32 and multiplies positions in f32.
            inv_freq: inv_freq.iter().map(|&f| f as f32).collect(),
            scale: scale as f32,
            rotary_dim: d,
        }
    }

    /// Rotates the first `rotary_dim` dimensions of one head in place (rotate-half layout:
    /// dimension i pairs with i + rotary_dim/2).
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let half = self.rotary_dim / 2;
        for i in 0..half {
            let angle = pos as f32 * self.inv_freq[i];
            let (sin, cos) = angle.sin_cos();
            let (cos, sin) = (cos * self.scale, sin * self.scale);
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * cos - b * sin;
            x[i + half] = b * cos + a * sin;
        }
    }
}
