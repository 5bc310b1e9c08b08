use super::ModelConfig;

/// What a tensor is for: decides how the converter stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// A matrix multiplied with activations (or the embedding table): quantized by the codec.
    Matrix,
    /// Norm weights and other vectors: kept in float.
    Vector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    /// [rows, cols] for matrices (rows = output features), [n] for vectors.
    pub shape: Vec<usize>,
    pub role: TensorRole,
}

/// The canonical tensor list in forward order (the order they are stored and streamed).
///
/// Q, K and V are fused row-wise into `attn_qkv` ([q; k; v]) and gate and up into
/// `ffn_gate_up` ([gate; up]) for every family: one mat-vec each on the GPU.
pub fn canonical_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let h = cfg.hidden_size;
    let m = |name: String, rows: usize, cols: usize| TensorSpec {
        name,
        shape: vec![rows, cols],
        role: TensorRole::Matrix,
    };
    let v = |name: String, n: usize| TensorSpec {
        name,
        shape: vec![n],
        role: TensorRole::Vector,
    };
    let mut out = vec![m("token_embd".into(), cfg.vocab_size, h)];
    for i in 0..cfg.num_layers {
        let p = format!("layers.{i}");
        out.push(v(format!("{p}.attn_norm"), h));
        out.push(m(
            format!("{p}.attn_qkv"),
            cfg.q_dim() + 2 * cfg.kv_dim(),
            h,
        ));
        out.push(m(format!("{p}.attn_output"), h, cfg.q_dim()));
        out.push(v(format!("{p}.ffn_norm"), h));
        out.push(m(format!("{p}.ffn_gate_up"), 2 * cfg.intermediate_size, h));
        out.push(m(format!("{p}.ffn_down"), h, cfg.intermediate_size));
    }
    out.push(v("output_norm".into(), h));
    if !cfg.tie_word_embeddings {
        out.push(m("output".into(), cfg.vocab_size, h));
    }
    out
}

/// A canonical name split into its layer index (None for model-level tensors) and the tensor's
/// role: `layers.3.attn_qkv` → (Some(3), "attn_qkv"), `token_embd` → (None, "token_embd").
pub fn split_name(name: &str) -> (Option<usize>, &str) {
    if let Some((i, what)) = name.strip_prefix("layers.").and_then(|r| r.split_once('.')) {
        if let Ok(i) = i.parse() {
            return (Some(i), what);
        }
    }
    (None, name)
}
