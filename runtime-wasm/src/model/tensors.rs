use super::ModelConfig;
use crate::Result;

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

/// One decoder layer's tensors, in forward order. With [`Tensors`], the one description of a
/// model's tensors: the converter lists it ([`canonical_tensors`]), and each engine fills it
/// with its own kind of tensor (f32 vectors on the CPU, GPU buffers), so a new tensor (a bias,
/// an extra norm) is added here once.
///
/// Q, K and V are fused row-wise into `attn_qkv` ([q; k; v]) and gate and up into
/// `ffn_gate_up` ([gate; up]) for every family: one mat-vec each.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer<T> {
    pub attn_norm: T,
    /// [q_dim + 2·kv_dim, hidden]
    pub attn_qkv: T,
    /// [q_dim + 2·kv_dim], added to the projection (Qwen2); None without attention biases.
    pub attn_qkv_bias: Option<T>,
    /// [hidden, q_dim]
    pub attn_output: T,
    pub ffn_norm: T,
    /// [2·intermediate, hidden]: gate rows then up rows.
    pub ffn_gate_up: T,
    /// [hidden, intermediate]
    pub ffn_down: T,
}

/// A whole model's tensors (see [`Layer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensors<T> {
    /// [vocab, hidden]
    pub token_embd: T,
    pub layers: Vec<Layer<T>>,
    pub output_norm: T,
    /// [vocab, hidden]; None when tied to the embedding.
    pub output: Option<T>,
}

impl Tensors<TensorSpec> {
    /// Names, shapes and roles of the tensors a model of `cfg` has.
    pub fn describe(cfg: &ModelConfig) -> Self {
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
        let layers = (0..cfg.num_layers)
            .map(|i| {
                let p = |n: &str| format!("layers.{i}.{n}");
                Layer {
                    attn_norm: v(p("attn_norm"), h),
                    attn_qkv: m(p("attn_qkv"), cfg.q_dim() + 2 * cfg.kv_dim(), h),
                    attn_qkv_bias: cfg
                        .attention_bias
                        .then(|| v(p("attn_qkv_bias"), cfg.q_dim() + 2 * cfg.kv_dim())),
                    attn_output: m(p("attn_output"), h, cfg.q_dim()),
                    ffn_norm: v(p("ffn_norm"), h),
                    ffn_gate_up: m(p("ffn_gate_up"), 2 * cfg.intermediate_size, h),
                    ffn_down: m(p("ffn_down"), h, cfg.intermediate_size),
                }
            })
            .collect();
        Self {
            token_embd: m("token_embd".into(), cfg.vocab_size, h),
            layers,
            output_norm: v("output_norm".into(), h),
            output: (!cfg.tie_word_embeddings).then(|| m("output".into(), cfg.vocab_size, h)),
        }
    }
}

impl<T> Layer<T> {
    /// Each tensor through `f`, in forward order (a converter loads one layer this way).
    pub fn try_map<U, E>(
        self,
        f: &mut impl FnMut(T) -> std::result::Result<U, E>,
    ) -> std::result::Result<Layer<U>, E> {
        Ok(Layer {
            attn_norm: f(self.attn_norm)?,
            attn_qkv: f(self.attn_qkv)?,
            attn_qkv_bias: self.attn_qkv_bias.map(&mut *f).transpose()?,
            attn_output: f(self.attn_output)?,
            ffn_norm: f(self.ffn_norm)?,
            ffn_gate_up: f(self.ffn_gate_up)?,
            ffn_down: f(self.ffn_down)?,
        })
    }

    fn into_list(self) -> Vec<T> {
        let mut out = vec![self.attn_norm, self.attn_qkv];
        out.extend(self.attn_qkv_bias);
        out.extend([
            self.attn_output,
            self.ffn_norm,
            self.ffn_gate_up,
            self.ffn_down,
        ]);
        out
    }
}

impl<T> Tensors<T> {
    /// Each tensor through `f`, in forward order (the order they are stored and streamed).
    pub fn try_map<U>(self, mut f: impl FnMut(T) -> Result<U>) -> Result<Tensors<U>> {
        Ok(Tensors {
            token_embd: f(self.token_embd)?,
            layers: self
                .layers
                .into_iter()
                .map(|l| l.try_map(&mut f))
                .collect::<Result<_>>()?,
            output_norm: f(self.output_norm)?,
            output: self.output.map(&mut f).transpose()?,
        })
    }

    /// Every tensor in forward order.
    pub fn into_list(self) -> Vec<T> {
        let mut out = vec![self.token_embd];
        out.extend(self.layers.into_iter().flat_map(Layer::into_list));
        out.push(self.output_norm);
        out.extend(self.output);
        out
    }

    /// The output projection (the embedding when tied).
    pub fn lm_head(&self) -> &T {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// The canonical tensor list in forward order (the order they are stored and streamed).
pub fn canonical_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    Tensors::describe(cfg).into_list()
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
