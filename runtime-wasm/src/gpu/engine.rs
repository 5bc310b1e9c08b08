//! The forward pass on the GPU, op for op the CPU reference's, bound once at load as a list of
//! dispatches and replayed per batch of up to [`BATCH`] tokens: prefill runs the prompt through
//! the batched kernels, decode is the one-token case.

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::io::Read;
use std::time::Duration;

use super::kernels::{AttentionIo, Dispatch, HeadShape, Kernels, RopeTables};
use super::params::{PickParams, RmsnormParams, RopeParams, Rows, SelectParams, Step};
#[cfg(not(target_arch = "wasm32"))]
use super::GpuLoader;
use super::{GpuContext, GpuTensor, Input, KernelTime, MatvecIo, Phase, Profiler};
use crate::engine::{Candidate, Draw, Forward, Select, Sequence};
use crate::format::Manifest;
use crate::model::{take, ModelConfig, Rope, Tensors};
use crate::{QinsError, Result};
use web_time::Instant;

/// Most tokens per prefill batch unless `GpuOptions::prefill_batch` says otherwise: each
/// weight is read once per batch instead of once per token. A model whose per-token work
/// buffers (attention scores at a long context, logits of a large vocabulary) would exceed a
/// binding at this size runs smaller batches (`GpuModel::batch_tokens`) rather than being
/// refused.
pub const BATCH: usize = 64;

/// Words of the candidates buffer select.wgsl fills: its header and every pair it keeps.
const CANDIDATE_WORDS: usize = 4 + 2 * Kernels::SELECT_CAP;

/// The longest head rope_store.wgsl takes (its workgroup array).
const MAX_HEAD_DIM: usize = 256;

/// The KV cache: how many positions it holds, and whether it stores them as f16 (packed two per
/// word, so every adapter can, shader-f16 or not; attention still computes in f32) or f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_ctx: usize,
    pub f16: bool,
}

impl CacheConfig {
    /// f16 by default: at long contexts the cache is most of the GPU memory (Phi-3.5-mini at
    /// 4096 positions: 1.6 GB in f16, 3.2 GB in f32).
    pub fn new(max_ctx: usize) -> Self {
        Self { max_ctx, f16: true }
    }

    pub fn with_f16(self, f16: bool) -> Self {
        Self { f16, ..self }
    }
}

pub struct GpuModel {
    pub ctx: GpuContext,
    pub cfg: ModelConfig,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    inv_freq: wgpu::Buffer,
    rope_params: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// Candidate selection: the penalised tokens (bitset), its parameters, its output.
    seen: wgpu::Buffer,
    select_params: wgpu::Buffer,
    candidates: wgpu::Buffer,
    /// The sampling candidates' dispatches (select.wgsl's rounds and gather).
    choose: Vec<Dispatch>,
    /// The choice on the GPU (pick.wgsl), the next step's token, and how it draws.
    pick: Dispatch,
    pick_params: wgpu::Buffer,
    /// Buffers a step's candidates are copied into for the host to read, by its last
    /// position: the step read, the one queued behind it and the one recorded ahead of that
    /// each have their own (a buffer being mapped may not be in a submission).
    read_outs: [wgpu::Buffer; 3],
    /// Embedding and every layer, for a batch.
    body: Vec<Dispatch>,
    /// Final norm and output head for the batch's last token only, or for all of them.
    head_last: Vec<Dispatch>,
    head_all: Vec<Dispatch>,
    /// Positions the KV cache holds.
    pub max_ctx: usize,
    /// Tokens per batch (the context's `prefill_batch` unless the binding limit asks for fewer).
    pub batch_tokens: usize,
    /// Whether the KV cache stores f16 values.
    pub kv_f16: bool,
    /// Weight tensors split across several bindings (larger than the binding limit).
    pub split_tensors: usize,
    /// Bytes of GPU buffers allocated for weights, caches and activations.
    pub gpu_bytes: u64,
    /// The rotary table in `inv_freq` and `rope_params`.
    rope: Option<Rope>,
    /// Per-dispatch timestamps of every batch (`--profile`).
    profiler: Option<Profiler>,
    /// The next position's one-token step, recorded while the GPU ran this one (see `submit`).
    ahead: Option<(StepKey, wgpu::CommandBuffer)>,
    /// A step submitted before its call (greedy or drawn), its token chosen on the GPU by the
    /// step before it (see `forward_select`).
    queued: Option<Queued>,
    /// Calls that found their step queued.
    queued_used: u64,
    /// One-token steps' host time from the call to their submission, and how many.
    host: (Duration, u32),
}

/// What a step's commands were recorded for: its position, the logits it computes, whether it
/// chooses the sampling candidates, and where it copies them for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StepKey {
    pos: usize,
    head: Option<Rows>,
    choose: bool,
    readout: Option<Readout>,
}

/// A step's candidates for the host: the first `words` of the candidates buffer (header and
/// pairs), copied by the step's own command buffer into read-out buffer `slot` (no submission
/// or buffer of its own, as `GpuContext::read_back` takes), after the greedy pick if `pick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Readout {
    slot: usize,
    words: u64,
    pick: bool,
}

impl Readout {
    /// For the step whose last position is `last`: the slots turn, so three consecutive
    /// steps never share one.
    fn at(last: usize, words: u64, pick: bool) -> Self {
        Self {
            slot: last % 3,
            words,
            pick,
        }
    }
}

/// A step already submitted: the one-token step at `pos` whose token is the previous step's
/// choice on the GPU (`input`, known once that step is read back), with the selection and
/// draw it ran.
struct Queued {
    pos: usize,
    input: Option<u32>,
    k: usize,
    penalty: f32,
    /// The penalised tokens it ran with: the previous call's and the GPU's choice (the pick
    /// adds it to the GPU's bitset).
    seen: Vec<u32>,
    /// Its draw (None: greedy), with the uniform number it drew with.
    draw: Option<PickParams>,
    done: wgpu::SubmissionIndex,
}

impl Queued {
    /// Whether it is the step a call for `tokens` from `start` with `sel` asks for: the token
    /// the host chose is the one the GPU fed it (a draw whose arithmetic rounded otherwise,
    /// or a caller that asks for something else, leaves it unused).
    fn serves(&self, tokens: &[u32], start: usize, sel: &Select, k: usize) -> bool {
        tokens.len() == 1
            && start == self.pos
            && self.input == Some(tokens[0])
            && k == self.k
            && sel.penalty == self.penalty
            && (sel.penalty == 1.0 || sel.seen == self.seen)
            && self.draw == draw_of(sel, k).map(|d| PickParams::new(Some(&d), 0))
    }
}

/// The draw `sel` asks for among its k candidates, if any (with k = 1 there is nothing to
/// draw: the greedy pick is the sampler's choice).
fn draw_of(sel: &Select, k: usize) -> Option<Draw> {
    sel.draw.filter(|_| k > 1)
}

impl GpuModel {
    /// Streams the archive straight into GPU buffers (native readers; the browser feeds a
    /// [`GpuLoader`] from its fetch stream).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load<R: Read>(
        ctx: GpuContext,
        mut r: R,
        len: Option<u64>,
        cache: CacheConfig,
    ) -> Result<(Manifest, Self)> {
        let mut loader = GpuLoader::new(ctx, len, cache);
        crate::format::read_all(&mut r, |b| loader.feed(b))?;
        crate::engine::block_on(loader.finish())
    }

    /// Tokens per batch on `ctx`: its `prefill_batch`, or as many as the per-token work
    /// buffers allow under its binding limit (at least one; a token that does not fit is
    /// refused by `check_limits`).
    fn batch_size(cfg: &ModelConfig, shape: &HeadShape, ctx: &GpuContext) -> usize {
        let per_token = Self::per_token_sizes(cfg, shape)
            .iter()
            .map(|&(_, bytes)| bytes)
            .max()
            .unwrap_or(1)
            .max(1);
        ctx.prefill_batch
            .min((ctx.max_binding / per_token) as usize)
            .max(1)
    }

    /// The largest work buffers that grow with the batch: (label, bytes for one token).
    fn per_token_sizes(cfg: &ModelConfig, shape: &HeadShape) -> [(&'static str, u64); 3] {
        [
            ("logits", cfg.vocab_size as u64 * 4),
            (
                "attention scores",
                cfg.num_heads as u64 * shape.max_ctx as u64 * 4,
            ),
            ("feed-forward", 2 * cfg.intermediate_size as u64 * 4),
        ]
    }

    /// Work buffers for the heads and cache of `shape` and batches of `b` tokens: (label,
    /// bytes) of the largest ones.
    fn scratch_sizes(cfg: &ModelConfig, shape: &HeadShape, b: usize) -> Vec<(&'static str, u64)> {
        let fixed = [
            ("KV cache of one layer", shape.cache_words() as u64 * 4),
            ("attention partial sums", shape.attention_parts() as u64 * 4),
        ];
        let per_token =
            Self::per_token_sizes(cfg, shape).map(|(what, bytes)| (what, bytes * b as u64));
        fixed.into_iter().chain(per_token).collect()
    }

    /// Refuses, before any download, a model whose tensors or work buffers exceed the
    /// adapter's limits, naming the limit and the size needed.
    pub fn check_limits(
        ctx: &GpuContext,
        cfg: &ModelConfig,
        manifest: &Manifest,
        cache: CacheConfig,
    ) -> Result<()> {
        if cfg.head_dim > MAX_HEAD_DIM || !cfg.head_dim.is_multiple_of(2) {
            return Err(QinsError::Manifest(format!(
                "head_dim {} is not supported by the GPU engine (an even number up to \
                 {MAX_HEAD_DIM})",
                cfg.head_dim
            )));
        }
        let shape = Self::head_shape(cfg, cache);
        // Tensors are split across bindings by rows; each must still have rows that fit.
        for t in &manifest.tensors {
            GpuTensor::rows_per_part(t, ctx.max_binding)?;
        }
        let b = Self::batch_size(cfg, &shape, ctx);
        for (what, bytes) in Self::scratch_sizes(cfg, &shape, b) {
            ctx.check_binding(what, bytes)?;
        }
        Ok(())
    }

    /// The heads and the cache asked for, its length capped by the model's own context: what
    /// the limits are checked against and what `build` allocates.
    fn head_shape(cfg: &ModelConfig, cache: CacheConfig) -> HeadShape {
        HeadShape {
            nh: cfg.num_heads,
            nkv: cfg.num_kv_heads,
            hd: cfg.head_dim,
            rot_half: cfg.rotary_dim / 2,
            max_ctx: cache.max_ctx.min(cfg.max_position_embeddings).max(1),
            kv_f16: cache.f16,
        }
    }

    pub(super) fn build(
        ctx: GpuContext,
        k: Kernels,
        cfg: ModelConfig,
        mut t: HashMap<String, GpuTensor>,
        cache: CacheConfig,
        mut gpu_bytes: u64,
    ) -> Result<Self> {
        let shape = Self::head_shape(&cfg, cache);
        let max_ctx = shape.max_ctx;
        let split_tensors = t.values().filter(|t| t.parts.len() > 1).count();
        let w = Tensors::describe(&cfg).try_map(|spec| take(&mut t, &spec.name))?;
        let (h, ff, vocab, b) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.vocab_size,
            Self::batch_size(&cfg, &shape, &ctx),
        );
        let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
        let qkv_dim = q_dim + 2 * kv_dim;
        let mut scratch = |label: &str, n: usize| {
            gpu_bytes += (n * 4) as u64;
            ctx.scratch(label, n)
        };
        let x = scratch("x", b * h);
        let xn = scratch("xn", b * h);
        let qkv = scratch("qkv", b * qkv_dim);
        let attn = scratch("attn", b * q_dim);
        let gu = scratch("gate_up", b * 2 * ff);
        let act = scratch("act", b * ff);
        let logits = scratch("logits", b * vocab);
        let scores = scratch("scores", b * cfg.num_heads * max_ctx);
        let parts = scratch("attention partial sums", shape.attention_parts());
        let seen = scratch("seen", vocab.div_ceil(32));
        let candidates = scratch("candidates", CANDIDATE_WORDS);
        let tokens = scratch("tokens", b);
        let caches: Vec<(wgpu::Buffer, wgpu::Buffer)> = (0..cfg.num_layers)
            .map(|_| {
                (
                    scratch("k_cache", shape.cache_words()),
                    scratch("v_cache", shape.cache_words()),
                )
            })
            .collect();
        let step = ctx.uniform("step", &Step::default());
        let rope = Rope::for_len(&cfg, 1);
        let inv_freq = ctx.storage("inv_freq", bytemuck::cast_slice(&rope.inv_freq));
        let rope_params = k.rope_params(&shape, rope.scale);
        let norm = |rows| RmsnormParams::new(h, cfg.rms_norm_eps, rows);
        let mut body = w.token_embd.embed(&k, &tokens, &x, &step);
        // RMSNorm of the residual x as a mat-vec's decode path computes it (fused: see
        // GpuTensor::matvec_after).
        let normed = |weight| Input::Norm {
            raw: &x,
            stride: h,
            weight,
            eps: cfg.rms_norm_eps,
        };
        for (lw, (kc, vc)) in w.layers.iter().zip(&caches) {
            let attn_norm = k.rmsnorm(&x, lw.attn_norm.values(), &xn, norm(Rows::All), &step);
            let qkv_io = MatvecIo::new(&xn, h, &qkv, qkv_dim);
            let input = normed(lw.attn_norm.values());
            body.extend(
                lw.attn_qkv
                    .matvec_after(&k, attn_norm, input, qkv_io, &step),
            );
            let io = AttentionIo {
                qkv: &qkv,
                bias: lw.attn_qkv_bias.as_ref().map(|b| b.values()),
                rope: RopeTables {
                    inv_freq: &inv_freq,
                    params: &rope_params,
                },
                caches: [kc, vc],
                scores: &scores,
                parts: &parts,
                out: &attn,
            };
            body.extend(k.attention(&shape, io, &step, k.ctx.decode_attention));
            // Residual adds are fused: the output and down projections accumulate onto x.
            let o = MatvecIo::new(&attn, q_dim, &x, h).accumulate();
            body.extend(lw.attn_output.matvec(&k, &o, &step));
            let ffn_norm = k.rmsnorm(&x, lw.ffn_norm.values(), &xn, norm(Rows::All), &step);
            let gate_up = MatvecIo::new(&xn, h, &gu, 2 * ff);
            let input = normed(lw.ffn_norm.values());
            body.extend(
                lw.ffn_gate_up
                    .matvec_after(&k, ffn_norm, input, gate_up, &step),
            );
            let silu = k.silu_mul(&gu, &act, ff, &step);
            let down = MatvecIo::new(&act, ff, &x, h).accumulate();
            let input = Input::SiluMul {
                gu: &gu,
                stride: 2 * ff,
            };
            body.extend(lw.ffn_down.matvec_after(&k, silu, input, down, &step));
        }
        let head = |rows: Rows| {
            let output_norm = k.rmsnorm(&x, w.output_norm.values(), &xn, norm(rows), &step);
            let io = MatvecIo::new(&xn, h, &logits, vocab).rows(rows);
            let input = normed(w.output_norm.values());
            w.lm_head().matvec_after(&k, output_norm, input, io, &step)
        };
        let (head_last, head_all) = (head(Rows::Last), head(Rows::All));
        let select_params = k.select_params(SelectParams::new(vocab, 1, 1.0));
        let choose = k.select(&logits, &seen, &candidates, &select_params, vocab);
        let pick_params = ctx.uniform("pick", &PickParams::default());
        let pick = k.pick(
            &logits,
            &seen,
            &candidates,
            &select_params,
            &tokens,
            &pick_params,
        );
        let read_outs = [0, 1, 2]
            .map(|_| ctx.read_out_buffer("candidates read-out", CANDIDATE_WORDS as u64 * 4));
        let profiler = ctx.profile.then(|| Profiler::new(&ctx));
        Ok(Self {
            ctx,
            cfg,
            step,
            tokens,
            inv_freq,
            rope_params,
            logits,
            seen,
            select_params,
            candidates,
            choose,
            pick,
            pick_params,
            read_outs,
            body,
            head_last,
            head_all,
            max_ctx,
            batch_tokens: b,
            kv_f16: shape.kv_f16,
            split_tensors,
            gpu_bytes,
            rope: Some(rope),
            profiler,
            ahead: None,
            queued: None,
            queued_used: 0,
            host: (Duration::ZERO, 0),
        })
    }

    /// Switches the rotary tables to `rope` if the cache was built with others; a step
    /// queued with the old ones is then not the one asked for.
    fn use_rope(&mut self, rope: &Rope) {
        if self.rope.as_ref() != Some(rope) {
            self.set_rope(rope);
            self.rope = Some(rope.clone());
            self.queued = None;
        }
    }

    /// Rotary tables for a (re)encoding of a sequence of `len` tokens.
    fn set_rope(&self, rope: &Rope) {
        self.ctx
            .queue
            .write_buffer(&self.inv_freq, 0, bytemuck::cast_slice(&rope.inv_freq));
        self.ctx.queue.write_buffer(
            &self.rope_params,
            RopeParams::SCALE_OFFSET,
            bytemuck::bytes_of(&rope.scale),
        );
    }

    /// The dispatches of a batch: the body, then the logits `head` picks (None: none, the
    /// last token's into row 0, or every token's), the sampling candidates if `choose`, and
    /// the greedy choice if `pick`.
    fn dispatches(&self, head: Option<Rows>, choose: bool, pick: bool) -> Vec<&Dispatch> {
        let mut all: Vec<&Dispatch> = self.body.iter().collect();
        match head {
            Some(Rows::All) => all.extend(&self.head_all),
            Some(Rows::Last) => all.extend(&self.head_last),
            None => {}
        }
        if choose {
            all.extend(&self.choose);
        }
        if pick {
            all.push(&self.pick);
        }
        all
    }

    /// The commands of the step `key` of `n` tokens: its dispatches in one pass, then its
    /// read-out copy.
    fn record(&self, n: usize, key: StepKey) -> wgpu::CommandBuffer {
        let pick = key.readout.is_some_and(|r| r.pick);
        let all = self.dispatches(key.head, key.choose, pick);
        let mut enc = Kernels::encode(&self.ctx, &all, n as u32, key.pos as u32, None);
        if let Some(r) = key.readout {
            enc.copy_buffer_to_buffer(&self.candidates, 0, &self.read_outs[r.slot], 0, r.words * 4);
        }
        enc.finish()
    }

    /// Queues one batch of `tokens` (≤ `batch_tokens`) as the step `key` (see `submit`).
    fn batch(&mut self, tokens: &[u32], key: StepKey) -> Option<wgpu::SubmissionIndex> {
        self.ctx
            .queue
            .write_buffer(&self.tokens, 0, bytemuck::cast_slice(tokens));
        self.submit(tokens.len(), key)
    }

    /// Submits the step `key` of `n` tokens, whose ids are in the tokens buffer already
    /// (written by `batch`, or by the previous step's pick); None when profiled (the profiler
    /// submits).
    ///
    /// After a one-token batch, or a batch that computes its last token's logits (the prompt's
    /// last), it records the one-token step at the next position while the GPU runs this one,
    /// and the next submission uses that if it is the same step: the host's recording of a
    /// decoded token's dispatches (SmolLM2's 158: ≈ 400 µs on a 2-core VM) then overlaps the
    /// GPU's work instead of coming between the read-back of one token and the start of the
    /// next. Only the step uniform and the token ids change between steps, and both are
    /// written with `write_buffer`, which lands before the next submission.
    fn submit(&mut self, n: usize, key: StepKey) -> Option<wgpu::SubmissionIndex> {
        let started = Instant::now();
        let ahead = self.ahead.take().filter(|(k, _)| n == 1 && *k == key);
        self.ctx.write_uniform(&self.step, &Step::new(key.pos, n));
        if let Some(p) = &self.profiler {
            let all = self.dispatches(key.head, key.choose, false);
            p.run(&self.ctx, &all, n as u32, key.pos as u32);
            return None;
        }
        let commands = match ahead {
            Some((_, recorded)) => recorded,
            None => self.record(n, key),
        };
        let done = self.ctx.queue.submit([commands]);
        if n == 1 {
            self.host.0 += started.elapsed();
            self.host.1 += 1;
        }
        // A decoded token, or the prompt's last batch, is followed by a decoded token.
        if n == 1 || key.head == Some(Rows::Last) {
            let pos = key.pos + n;
            let next = StepKey {
                pos,
                readout: key.readout.map(|r| Readout::at(pos, r.words, r.pick)),
                ..key
            };
            if pos < self.max_ctx {
                self.ahead = Some((next, self.record(1, next)));
            }
        }
        Some(done)
    }

    /// One-token batches' mean host time from the call to their submission, in µs (the
    /// host's own share of a decoded token's critical path, the read-back aside).
    pub fn host_step_us(&self) -> Option<f64> {
        let (time, steps) = self.host;
        (steps > 0).then(|| time.as_secs_f64() * 1e6 / steps as f64)
    }

    /// Adds the last batch's kernel times to the profile, if it was timed.
    async fn collect_profile(&self) -> Result<()> {
        match &self.profiler {
            Some(p) => p.collect(&self.ctx).await,
            None => Ok(()),
        }
    }

    /// Where decoded tokens' (`Phase::Decode`) or prompt tokens' GPU time went, per kernel,
    /// and how many tokens were timed (None without `--profile` or timestamps).
    pub fn profile(&self, phase: Phase) -> Option<(Vec<KernelTime>, u64)> {
        self.profiler
            .as_ref()
            .map(|p| (p.report(phase), p.tokens(phase)))
    }

    /// Dispatches one decoded token (greedy or top-k) records at the context's start: the
    /// body, the last token's head, the sampling candidates and the pick (unless profiled or
    /// `no_speculation`) — one submission, one read-back (auto decode attention adds a
    /// dispatch a layer from `GpuContext::split_attention_from` positions).
    pub fn dispatches_per_token(&self) -> usize {
        let recorded = |d: &[Dispatch]| d.iter().filter(|d| d.runs_for(1, 0)).count();
        recorded(&self.body)
            + recorded(&self.head_last)
            + self.choose.len()
            + usize::from(self.speculates())
    }

    /// Decoded tokens whose step was queued before their call (greedy or top-k decoding).
    pub fn queued_steps(&self) -> u64 {
        self.queued_used
    }

    /// Whether decoding queues each next step before reading this one back (greedy, or a
    /// draw the sampler describes).
    pub fn speculates(&self) -> bool {
        self.ctx.speculate && self.profiler.is_none()
    }

    async fn read_logits(&self, rows: usize) -> Result<Vec<f32>> {
        self.ctx
            .read_f32(&self.logits, 0, rows * self.cfg.vocab_size)
            .await
    }

    /// Writes what the select kernel needs for `sel` (penalised tokens, k); returns k. The
    /// kernel runs in the same submission as the token's forward pass (a submission costs tens
    /// of microseconds on a fast GPU, a sizable share of a token there).
    fn prepare_select(&self, sel: &Select) -> usize {
        let vocab = self.cfg.vocab_size;
        let k = sel.k.clamp(1, vocab);
        if sel.penalty != 1.0 {
            let mut bits = vec![0u32; vocab.div_ceil(32)];
            for &t in sel.seen.iter().filter(|&&t| (t as usize) < vocab) {
                bits[t as usize / 32] |= 1 << (t % 32);
            }
            self.ctx
                .queue
                .write_buffer(&self.seen, 0, bytemuck::cast_slice(&bits));
        }
        self.ctx.write_uniform(
            &self.select_params,
            &SelectParams::new(vocab, k, sel.penalty),
        );
        self.ctx.write_uniform(
            &self.pick_params,
            &PickParams::new(draw_of(sel, k).as_ref(), 0),
        );
        k
    }

    /// Words of the candidates buffer a read for `k` takes: the header and pairs up to k
    /// (most rows have few ties).
    fn candidate_words(k: usize) -> usize {
        4 + 2 * (k + 16).min(Kernels::SELECT_CAP)
    }

    /// The candidates the select kernel chose (up to `k` and their ties), None when more
    /// values tie at the k-th than the kernel returns (the caller then reads the row).
    async fn read_candidates(&self, k: usize) -> Result<Option<Vec<Candidate>>> {
        let words = Self::candidate_words(k);
        let b = self
            .ctx
            .read_back(&self.candidates, 0, words as u64 * 4)
            .await?;
        Ok(Self::candidates_in(&bytemuck::pod_collect_to_vec(&b)))
    }

    /// The candidates in the first words of the candidates buffer, None when more tie than
    /// those hold.
    fn candidates_in(w: &[u32]) -> Option<Vec<Candidate>> {
        let count = w[0] as usize;
        (4 + 2 * count <= w.len()).then(|| {
            (0..count)
                .map(|j| (w[4 + 2 * j], f32::from_bits(w[5 + 2 * j])))
                .collect()
        })
    }

    /// Queues `tokens` from `start` in batches, the last computing its last token's logits and
    /// candidates (copied out as `readout` says); each batch timed when profiled.
    async fn select_batches(
        &mut self,
        tokens: &[u32],
        start: usize,
        readout: Option<Readout>,
    ) -> Result<Option<wgpu::SubmissionIndex>> {
        let end = start + tokens.len();
        let mut done = None;
        for (i, chunk) in tokens.chunks(self.batch_tokens).enumerate() {
            let pos = start + i * self.batch_tokens;
            let last = pos + chunk.len() == end;
            let key = StepKey {
                pos,
                head: last.then_some(Rows::Last),
                choose: last,
                readout: readout.filter(|_| last),
            };
            done = self.batch(chunk, key);
            self.collect_profile().await?;
        }
        Ok(done)
    }

    /// The candidates for `sel` chosen on the GPU from the last computed logits row 0: a few
    /// hundred bytes come back instead of the row. None when more values tie at the k-th than
    /// the kernel returns (the caller then reads the row).
    pub async fn select(&self, sel: &Select) -> Result<Option<Vec<Candidate>>> {
        let k = self.prepare_select(sel);
        Kernels::run(&self.ctx, &self.choose.iter().collect::<Vec<_>>(), 1);
        self.read_candidates(k).await
    }
}

impl Forward for GpuModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    fn max_len(&self) -> usize {
        self.max_ctx
    }
    /// The cache needs no clearing: positions are overwritten before they are read.
    fn clear(&mut self) {}
    /// Likewise: attention reads positions below the current one only.
    fn truncate(&mut self, _len: usize) {}

    /// Runs `tokens` like `forward` without reading logits back, then chooses the candidates
    /// on the GPU; with k = 1 (greedy) only the choice comes back, the lowest id among the
    /// largest values' ties (what the sampler picks from all of them).
    ///
    /// Greedy decoding, and sampling whose draw `sel` describes, queue the next position's
    /// step before reading this one back (unless `no_speculation`): that step's token is the
    /// one this step's pick chose on the GPU, so the GPU runs it while the host reads,
    /// samples and streams this token, and the next call finds it running (`Queued::serves`)
    /// and queues the one after. A call that asks for anything else — a token the host drew
    /// otherwise than the GPU, other tokens, logits — leaves it to finish unread: what it wrote
    /// (the cache one position past the sequence, the token buffer, a penalty bit, the logits)
    /// is rewritten before anything reads it.
    async fn forward_select(
        &mut self,
        tokens: &[u32],
        start: usize,
        rope: &Rope,
        sel: &Select,
    ) -> Result<Vec<Candidate>> {
        self.use_rope(rope);
        let k = sel.k.clamp(1, self.cfg.vocab_size);
        let queued = self
            .queued
            .take()
            .filter(|q| q.serves(tokens, start, sel, k));
        let end = start + tokens.len();
        if self.profiler.is_some() {
            // Each batch timed and waited for, the candidates read in a submission of their own.
            self.prepare_select(sel);
            self.select_batches(tokens, start, None).await?;
            return match self.read_candidates(k).await? {
                Some(c) => Ok(c),
                None => Ok(sel.pick(&self.read_logits(1).await?)),
            };
        }
        let draw = draw_of(sel, k);
        // A draw among more candidates than the kernel keeps would find nothing to draw from
        // on the GPU and run every step twice (see the fallback below).
        let ahead = self.speculates() && (k == 1 || (draw.is_some() && k <= Kernels::SELECT_CAP));
        // Greedy reads the choice alone; a draw every candidate the kernel keeps, since the
        // row it was chosen from is gone once the queued step has run.
        let words = match (ahead, k) {
            (false, _) => Self::candidate_words(k),
            (true, 1) => 4,
            (true, _) => CANDIDATE_WORDS,
        } as u64;
        let readout = Readout::at(end - 1, words, ahead);
        let done = match queued {
            Some(q) => {
                self.queued_used += 1;
                q.done
            }
            None => {
                self.prepare_select(sel);
                let done = self.select_batches(tokens, start, Some(readout)).await?;
                done.expect("one batch at least, not profiled")
            }
        };
        // The map asked for before the next step is queued (see `GpuContext::begin_read`).
        let read = self
            .ctx
            .begin_read(&self.read_outs[readout.slot], words * 4, done);
        if ahead && end < self.max_ctx {
            let next = StepKey {
                pos: end,
                head: Some(Rows::Last),
                choose: true,
                readout: Some(Readout::at(end, words, true)),
            };
            // Its draw's uniform number is the one after this step's.
            let params = PickParams::new(draw.as_ref(), 1);
            self.ctx.write_uniform(&self.pick_params, &params);
            let queued = self.submit(1, next).expect("not profiled");
            self.queued = Some(Queued {
                pos: end,
                input: None,
                k,
                penalty: sel.penalty,
                seen: Vec::new(),
                draw: draw.map(|_| params),
                done: queued,
            });
        }
        let b = self.ctx.finish_read(read).await?;
        let w: Vec<u32> = bytemuck::pod_collect_to_vec(&b);
        if !ahead {
            return match Self::candidates_in(&w) {
                Some(c) => Ok(c),
                None => Ok(sel.pick(&self.read_logits(1).await?)),
            };
        }
        let chosen = w[2];
        if let Some(q) = &mut self.queued {
            q.input = Some(chosen);
            if sel.penalty != 1.0 {
                q.seen = sel.seen.clone();
                if let Err(at) = q.seen.binary_search(&chosen) {
                    q.seen.insert(at, chosen);
                }
            }
        }
        if k == 1 {
            return Ok(vec![(chosen, f32::from_bits(w[3]))]);
        }
        match Self::candidates_in(&w) {
            Some(c) => Ok(c),
            None => {
                // More tied than the kernel keeps (SELECT_CAP): the row again, from this step
                // run once more (it writes the same cache entries), nothing queued after it.
                self.queued = None;
                let last = &tokens[tokens.len() - 1..];
                Ok(sel.pick(&self.forward(last, end - 1, rope, false).await?))
            }
        }
    }

    /// Runs `tokens` from position `start` in batches, reading back logits for every token
    /// (`all`) or the last.
    async fn forward(
        &mut self,
        tokens: &[u32],
        start: usize,
        rope: &Rope,
        all: bool,
    ) -> Result<Vec<f32>> {
        self.use_rope(rope);
        self.queued = None;
        let mut out = Vec::new();
        let batches = tokens.len().div_ceil(self.batch_tokens);
        for (i, chunk) in tokens.chunks(self.batch_tokens).enumerate() {
            let last = i + 1 == batches;
            let head = if all {
                Some(Rows::All)
            } else if last {
                Some(Rows::Last)
            } else {
                None
            };
            let key = StepKey {
                pos: start + i * self.batch_tokens,
                head,
                choose: false,
                readout: None,
            };
            self.batch(chunk, key);
            self.collect_profile().await?;
            if all {
                out.extend(self.read_logits(chunk.len()).await?);
            } else if last {
                out = self.read_logits(1).await?;
            }
        }
        Ok(out)
    }
}

/// The GPU engine: model, KV cache and sequence state.
pub type GpuEngine = Sequence<GpuModel>;

impl GpuEngine {
    pub fn new(model: GpuModel) -> Self {
        Sequence::with(model)
    }
}
