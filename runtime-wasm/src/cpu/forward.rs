//! The decoder forward pass, written as one readable pass over the canonical tensors.

use super::attention::{attention_over, Heads, KvView};
use super::ops::{add_bias, rms_norm, silu_mul};
use super::tensor::CpuTensor;
use crate::model::{Layer, ModelConfig, Rope, Tensors};
use crate::{QinsError, Result};

/// One layer's keys or values, [positions, kv_dim]: f32 (the reference's), or f16 bits, half
/// the memory and half of what a long context's attention reads per token (the packed
/// engine's default, as the GPU engine's).
#[derive(Clone, Debug)]
pub enum KvRows {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl KvRows {
    pub fn new(f16: bool) -> Self {
        match f16 {
            true => Self::F16(Vec::new()),
            false => Self::F32(Vec::new()),
        }
    }
    /// Appends rows (rounded to the nearest f16 in an f16 cache).
    pub fn push(&mut self, rows: &[f32]) {
        match self {
            Self::F32(v) => v.extend_from_slice(rows),
            Self::F16(v) => v.extend(rows.iter().map(|&x| half::f16::from_f32(x).to_bits())),
        }
    }
    /// The values held.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keeps the first `values`.
    pub fn truncate(&mut self, values: usize) {
        match self {
            Self::F32(v) => v.truncate(values),
            Self::F16(v) => v.truncate(values),
        }
    }
    pub fn view(&self) -> KvView<'_> {
        match self {
            Self::F32(v) => KvView::F32(v),
            Self::F16(v) => KvView::F16(v),
        }
    }
}

/// Keys and values of every layer for the positions computed so far ([len, kv_dim] each).
pub struct KvCache {
    k: Vec<KvRows>,
    v: Vec<KvRows>,
    len: usize,
}

impl KvCache {
    /// An empty cache of `layers` layers, in f16 or f32.
    pub fn new(layers: usize, f16: bool) -> Self {
        Self {
            k: vec![KvRows::new(f16); layers],
            v: vec![KvRows::new(f16); layers],
            len: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether it keeps f16s.
    pub fn is_f16(&self) -> bool {
        matches!(self.k.first(), Some(KvRows::F16(_)))
    }
    /// Keeps the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let old = self.len;
        for c in self.k.iter_mut().chain(self.v.iter_mut()) {
            let per = c.len() / old;
            c.truncate(len * per);
        }
        self.len = len;
    }
    pub fn clear(&mut self) {
        self.k
            .iter_mut()
            .chain(self.v.iter_mut())
            .for_each(|c| c.truncate(0));
        self.len = 0;
    }
}

/// A model on the CPU: the f32 reference (`T = Vec<f32>`) or the packed engine
/// (`T = Packed`), both through the same forward pass.
pub struct CpuModel<T = Vec<f32>> {
    pub cfg: ModelConfig,
    pub w: Tensors<T>,
}

impl<T: CpuTensor> CpuModel<T> {
    pub fn new(cfg: ModelConfig, w: Tensors<T>) -> Self {
        Self { cfg, w }
    }

    /// Runs `tokens` at positions `cache.len()..` and returns logits ([n, vocab] when `all`,
    /// else the last position's [vocab]).
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        rope: &Rope,
        all: bool,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let (n, h) = (tokens.len(), cfg.hidden_size);
        let start = cache.len;

        let mut x = embed(cfg, &self.w.token_embd, tokens)?;

        for (l, lw) in self.w.layers.iter().enumerate() {
            let (k, v) = (&mut cache.k[l], &mut cache.v[l]);
            decoder_layer(
                cfg,
                lw,
                &mut x,
                LayerKv { k, v, start },
                rope,
                &mut |_, _| {},
            );
        }
        cache.len += n;

        // Final norm and output head, only where logits are wanted.
        let rows = if all { n } else { 1 };
        let mut last = x[(n - rows) * h..].to_vec();
        rms_norm(&mut last, self.w.output_norm.values(), cfg.rms_norm_eps);
        Ok(self.w.lm_head().matmul_t(&last, rows, h, cfg.vocab_size))
    }
}

/// The embedding rows of `tokens` ([n, hidden]); an id outside the vocabulary is an error.
pub fn embed<T: CpuTensor>(cfg: &ModelConfig, token_embd: &T, tokens: &[u32]) -> Result<Vec<f32>> {
    let h = cfg.hidden_size;
    let mut x = Vec::with_capacity(tokens.len() * h);
    for &t in tokens {
        let t = t as usize;
        if t >= cfg.vocab_size {
            return Err(QinsError::Tensor {
                name: "token_embd".into(),
                msg: format!(
                    "token id {t} is outside the vocabulary of {}",
                    cfg.vocab_size
                ),
            });
        }
        token_embd.extend_with_row(t, h, &mut x);
    }
    Ok(x)
}

/// The input of one of a layer's matrices, as [`decoder_layer`] shows it to its observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixInput {
    AttnQkv,
    AttnOutput,
    FfnGateUp,
    FfnDown,
}

/// One layer's key/value cache: the positions before `start` are in `k` and `v`, and the new
/// positions are appended.
pub struct LayerKv<'a> {
    pub k: &'a mut KvRows,
    pub v: &'a mut KvRows,
    pub start: usize,
}

/// One decoder layer over the rows of `x` ([n, hidden]) in place. `observe` sees each matrix's
/// input ([n, in_features]) before it is multiplied: calibration reads activation statistics
/// through it, so the statistics come from the very pass the engine runs.
pub fn decoder_layer<T: CpuTensor>(
    cfg: &ModelConfig,
    lw: &Layer<T>,
    x: &mut [f32],
    kv: LayerKv,
    rope: &Rope,
    observe: &mut dyn FnMut(MatrixInput, &[f32]),
) {
    let h = cfg.hidden_size;
    let n = x.len() / h;
    let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
    let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
    let LayerKv { k, v, start } = kv;

    // Attention block.
    let mut a = x.to_vec();
    rms_norm(&mut a, lw.attn_norm.values(), cfg.rms_norm_eps);
    observe(MatrixInput::AttnQkv, &a);
    let mut qkv = lw.attn_qkv.matmul_t(&a, n, h, q_dim + 2 * kv_dim);
    if let Some(bias) = &lw.attn_qkv_bias {
        add_bias(&mut qkv, bias.values());
    }
    let mut q = Vec::with_capacity(n * q_dim);
    for (t, row) in qkv.chunks_exact(q_dim + 2 * kv_dim).enumerate() {
        let pos = start + t;
        let (qs, kvs) = row.split_at(q_dim);
        let (ks, vs) = kvs.split_at(kv_dim);
        let mut qs = qs.to_vec();
        let mut ks = ks.to_vec();
        qs.chunks_exact_mut(hd)
            .for_each(|head| rope.apply(head, pos));
        ks.chunks_exact_mut(hd)
            .for_each(|head| rope.apply(head, pos));
        q.extend_from_slice(&qs);
        k.push(&ks);
        v.push(vs);
    }
    let attn = attention_over(&q, k.view(), v.view(), start, n, Heads { nh, nkv, hd });
    observe(MatrixInput::AttnOutput, &attn);
    let o = lw.attn_output.matmul_t(&attn, n, q_dim, h);
    x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

    // MLP block.
    let mut m = x.to_vec();
    rms_norm(&mut m, lw.ffn_norm.values(), cfg.rms_norm_eps);
    observe(MatrixInput::FfnGateUp, &m);
    let ff = cfg.intermediate_size;
    let gu = lw.ffn_gate_up.matmul_t(&m, n, h, 2 * ff);
    let act = silu_mul(&gu, ff);
    observe(MatrixInput::FfnDown, &act);
    let down = lw.ffn_down.matmul_t(&act, n, ff, h);
    x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
}
