//! The forward pass on the GPU, op for op the CPU reference's, recorded once at load as a list
//! of bound dispatches and replayed for every token in one submission.

use std::collections::HashMap;
use std::io::Read;

use super::kernels::{Dispatch, Kernels};
use super::{GpuContext, GpuTensor};
use crate::chat::Engine;
use crate::format::{read_archive, Manifest};
use crate::model::{ModelConfig, Rope};
use crate::{QinsError, Result};

pub struct GpuModel {
    pub ctx: GpuContext,
    pub cfg: ModelConfig,
    kernels: Kernels,
    step: wgpu::Buffer,
    inv_freq: wgpu::Buffer,
    rope_params: wgpu::Buffer,
    logits: wgpu::Buffer,
    argmax: wgpu::Buffer,
    forward: Vec<Dispatch>,
    pick: Dispatch,
    /// Positions the KV cache holds.
    pub max_ctx: usize,
    /// Bytes of GPU buffers allocated for weights, caches and activations.
    pub gpu_bytes: u64,
}

impl GpuModel {
    /// Streams the archive straight into GPU buffers, one tensor at a time.
    pub fn load<R: Read>(
        ctx: GpuContext,
        r: R,
        len: Option<u64>,
        max_ctx: usize,
    ) -> Result<(Manifest, Self)> {
        let mut tensors: HashMap<String, GpuTensor> = HashMap::new();
        let mut gpu_bytes = 0u64;
        let manifest = read_archive(r, len, |entry, bytes| {
            gpu_bytes += bytes.len() as u64;
            tensors.insert(entry.name.clone(), GpuTensor::upload(&ctx, entry, &bytes)?);
            Ok(())
        })?;
        let model = Self::build(ctx, manifest.config.clone(), tensors, max_ctx, gpu_bytes)?;
        Ok((manifest, model))
    }

    fn build(
        ctx: GpuContext,
        cfg: ModelConfig,
        mut t: HashMap<String, GpuTensor>,
        max_ctx: usize,
        mut gpu_bytes: u64,
    ) -> Result<Self> {
        let max_ctx = max_ctx.min(cfg.max_position_embeddings).max(1);
        let k = Kernels::new(&ctx);
        let mut take = |name: &str| {
            t.remove(name).ok_or_else(|| QinsError::Tensor {
                name: name.into(),
                msg: "missing from the archive".into(),
            })
        };
        let (h, ff, vocab) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
        let mut scratch = |label: &str, n: usize| {
            gpu_bytes += (n * 4) as u64;
            ctx.scratch(label, n)
        };
        let x = scratch("x", h);
        let xn = scratch("xn", h);
        let qkv = scratch("qkv", q_dim + 2 * kv_dim);
        let attn = scratch("attn", q_dim);
        let gu = scratch("gate_up", 2 * ff);
        let act = scratch("act", ff);
        let logits = scratch("logits", vocab);
        let scores = scratch("scores", cfg.num_heads * max_ctx);
        let argmax = scratch("argmax", 1);
        let caches: Vec<(wgpu::Buffer, wgpu::Buffer)> = (0..cfg.num_layers)
            .map(|_| {
                (
                    scratch("k_cache", max_ctx * kv_dim),
                    scratch("v_cache", max_ctx * kv_dim),
                )
            })
            .collect();
        let step = ctx.uniform("step", &[0, 0, 0, 0]);
        let rope = Rope::for_len(&cfg, 1);
        let inv_freq = ctx.storage("inv_freq", bytemuck::cast_slice(&rope.inv_freq));
        let rope_params = ctx.uniform(
            "rope",
            &[
                cfg.num_heads as u32,
                cfg.num_kv_heads as u32,
                cfg.head_dim as u32,
                (cfg.rotary_dim / 2) as u32,
                rope.scale.to_bits(),
            ],
        );
        let attn_params = ctx.uniform(
            "attention",
            &[
                cfg.num_heads as u32,
                cfg.num_kv_heads as u32,
                cfg.head_dim as u32,
                max_ctx as u32,
                (1.0 / (cfg.head_dim as f32).sqrt()).to_bits(),
            ],
        );

        let embd = take("token_embd")?;
        let mut forward = vec![embd.embed(&ctx, &k, &x, &step)];
        for (l, (kc, vc)) in caches.iter().enumerate() {
            let p = |n: &str| format!("layers.{l}.{n}");
            let (attn_norm, w_qkv, w_o) = (
                take(&p("attn_norm"))?,
                take(&p("attn_qkv"))?,
                take(&p("attn_output"))?,
            );
            let (ffn_norm, w_gu, w_down) = (
                take(&p("ffn_norm"))?,
                take(&p("ffn_gate_up"))?,
                take(&p("ffn_down"))?,
            );
            forward.push(k.rmsnorm(&ctx, &x, &attn_norm.buffer, &xn, h, cfg.rms_norm_eps));
            forward.push(w_qkv.matvec(&ctx, &k, &xn, 0, &qkv, 0, false));
            let heads = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim;
            forward.push(Kernels::bind(
                &ctx,
                &k.rope_store,
                &[&qkv, &inv_freq, kc, vc, &rope_params, &step],
                [(heads as u32).div_ceil(64), 1, 1],
            ));
            forward.push(Kernels::bind(
                &ctx,
                &k.attention,
                &[&qkv, kc, vc, &scores, &attn, &attn_params, &step],
                [cfg.num_heads as u32, 1, 1],
            ));
            forward.push(w_o.matvec(&ctx, &k, &attn, 0, &x, 0, true));
            forward.push(k.rmsnorm(&ctx, &x, &ffn_norm.buffer, &xn, h, cfg.rms_norm_eps));
            forward.push(w_gu.matvec(&ctx, &k, &xn, 0, &gu, 0, false));
            forward.push(k.silu_mul(&ctx, &gu, &act, ff));
            forward.push(w_down.matvec(&ctx, &k, &act, 0, &x, 0, true));
        }
        let out_norm = take("output_norm")?;
        forward.push(k.rmsnorm(&ctx, &x, &out_norm.buffer, &xn, h, cfg.rms_norm_eps));
        let head = if cfg.tie_word_embeddings {
            &embd
        } else {
            &take("output")?
        };
        forward.push(head.matvec(&ctx, &k, &xn, 0, &logits, 0, false));
        let pick = k.argmax(&ctx, &logits, &argmax, vocab);
        Ok(Self {
            ctx,
            cfg,
            kernels: k,
            step,
            inv_freq,
            rope_params,
            logits,
            argmax,
            forward,
            pick,
            max_ctx,
            gpu_bytes,
        })
    }

    /// Rotary tables for a (re)encoding of a sequence of `len` tokens.
    fn set_rope(&self, rope: &Rope) {
        self.ctx
            .queue
            .write_buffer(&self.inv_freq, 0, bytemuck::cast_slice(&rope.inv_freq));
        self.ctx.queue.write_buffer(
            &self.rope_params,
            16,
            bytemuck::cast_slice(&[rope.scale.to_bits()]),
        );
    }

    /// Runs one token at `pos` (queued; nothing is read back).
    fn step(&self, token: u32, pos: usize) {
        let words = [pos as u32, pos as u32 + 1, token, 0];
        self.ctx
            .queue
            .write_buffer(&self.step, 0, bytemuck::cast_slice(&words));
        let all: Vec<&Dispatch> = self.forward.iter().collect();
        Kernels::run(&self.ctx, &all);
    }

    fn read_logits(&self) -> Result<Vec<f32>> {
        self.ctx.read_f32(&self.logits, 0, self.cfg.vocab_size)
    }

    /// Greedy choice made on the GPU: only 4 bytes come back.
    pub fn argmax(&self) -> Result<u32> {
        Kernels::run(&self.ctx, &[&self.pick]);
        let b = self.ctx.read_back(&self.argmax, 0, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }
}

/// The GPU model with its sequence state, mirroring [`crate::cpu::CpuEngine`].
pub struct GpuEngine {
    pub model: GpuModel,
    history: Vec<u32>,
    rope: Option<Rope>,
}

impl GpuEngine {
    pub fn new(model: GpuModel) -> Self {
        Self {
            model,
            history: Vec::new(),
            rope: None,
        }
    }

    /// Runs `tokens` from position `start`, reading logits back for every one (`all`) or the last.
    fn run(&mut self, tokens: &[u32], start: usize, all: bool) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            if t as usize >= self.model.cfg.vocab_size {
                return Err(QinsError::Tensor {
                    name: "token_embd".into(),
                    msg: format!(
                        "token id {t} is outside the vocabulary of {}",
                        self.model.cfg.vocab_size
                    ),
                });
            }
            self.model.step(t, start + i);
            if all || i + 1 == tokens.len() {
                out.extend(self.model.read_logits()?);
            }
        }
        Ok(out)
    }
}

impl Engine for GpuEngine {
    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    fn len(&self) -> usize {
        self.history.len()
    }

    fn reset(&mut self) {
        self.history.clear();
        self.rope = None;
    }

    fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(QinsError::Codec("extend needs at least one token".into()));
        }
        let total = self.history.len() + tokens.len();
        if total > self.model.max_ctx {
            return Err(QinsError::Gpu(format!(
                "context full: {total} tokens exceed the {} cache positions",
                self.model.max_ctx
            )));
        }
        let rope = Rope::for_len(&self.model.cfg, total);
        let start = self.history.len();
        self.history.extend_from_slice(tokens);
        if self.rope.as_ref() != Some(&rope) {
            self.model.set_rope(&rope);
        }
        if self.rope.as_ref().is_some_and(|r| *r != rope) {
            // Longrope switched factor sets: re-encode the whole sequence (see CpuEngine).
            self.rope = Some(rope);
            let history = self.history.clone();
            let logits = self.run(&history, 0, all)?;
            let vocab = self.model.cfg.vocab_size;
            return Ok(if all {
                logits[logits.len() - tokens.len() * vocab..].to_vec()
            } else {
                logits
            });
        }
        self.rope = Some(rope);
        self.run(tokens, start, all)
    }
}
