use serde::{Deserialize, Serialize};

/// Hyper-parameters of the canonical decoder, as imported from config.json or GGUF metadata.
///
/// Llama, Phi-3 and Qwen2 differ only in data here (fused projections are fused for every family at
/// import), so the forward pass needs no architecture switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Source family: "llama", "phi3" or "qwen2" (informational; the forward pass is the same).
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that are rotated (head_dim × partial_rotary_factor).
    pub rotary_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// The Q, K and V projections add a bias (Qwen2); archives written before it was a field
    /// have none.
    #[serde(default)]
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// Rotary scaling variants. Values are kept exactly as the checkpoint states them, plus the
/// derived factors the runtime needs so that it does not re-derive them differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Phi-3 "longrope" (also called su): per-frequency divisors, short below
    /// `original_max_position_embeddings`, long above, and a cos/sin magnitude factor.
    Longrope {
        short_factor: Vec<f32>,
        long_factor: Vec<f32>,
        original_max_position_embeddings: usize,
        /// sqrt(1 + ln(max/orig) / ln(orig)) unless the checkpoint gives its own.
        attention_factor: f32,
    },
    /// Llama 3.1 frequency-dependent scaling.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Plain position interpolation.
    Linear { factor: f32 },
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Checks the relations the forward pass relies on, so a bad config fails at import.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.rotary_dim == 0
            || self.rotary_dim > self.head_dim
            || !self.rotary_dim.is_multiple_of(2)
        {
            return Err(format!(
                "rotary_dim {} must be even and within head_dim {}",
                self.rotary_dim, self.head_dim
            ));
        }
        if let Some(RopeScaling::Longrope {
            short_factor,
            long_factor,
            ..
        }) = &self.rope_scaling
        {
            let half = self.rotary_dim / 2;
            if short_factor.len() != half || long_factor.len() != half {
                return Err(format!(
                    "longrope factors have {} and {} entries, rotary_dim/2 is {half}",
                    short_factor.len(),
                    long_factor.len()
                ));
            }
        }
        Ok(())
    }
}
