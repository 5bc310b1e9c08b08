//! Activation statistics from a calibration text, for importance-weighted codebook fitting.
//!
//! A matrix W multiplies activations x; its quantization error costs E‖(W − Ŵ)x‖², which under a
//! diagonal approximation of E[xxᵀ] is Σ_c E[x_c²]·Σ_r (w_rc − ŵ_rc)². The converter hands each
//! matrix the mean square of its input channels over a calibration text (normalised to mean 1)
//! and the learned codecs minimise that weighted error instead of the plain one.
//!
//! The pass runs layer by layer in f32 through the CPU reference's own [`decoder_layer`], so
//! only one layer's weights and the calibration windows' hidden states are in memory at a time
//! (a Phi-3.5-sized model needs no f32 copy of itself).

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use qins_runtime::chat::Tokenizer;
use qins_runtime::codec::Importance;
use qins_runtime::cpu::{decoder_layer, embed, rms_norm, KvRows, LayerKv, MatrixInput};
use qins_runtime::model::{Rope, Tensors};

use crate::import::Imported;

/// How much of the calibration text is run.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationOptions {
    /// Windows of `window_len` tokens, each run from position 0 like qins-eval's windows.
    pub windows: usize,
    pub window_len: usize,
    pub progress: bool,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        Self {
            windows: 8,
            window_len: 512,
            progress: false,
        }
    }
}

/// Per-matrix importance of each input column, keyed by canonical tensor name.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    importance: HashMap<String, Vec<f32>>,
    /// Tokens the statistics were measured on.
    pub tokens: usize,
}

impl Calibration {
    /// The weighting for tensor `name` (uniform for tensors that see no activations, such as an
    /// untied embedding table, or the vectors).
    pub fn importance(&self, name: &str) -> Importance<'_> {
        self.importance
            .get(name)
            .map_or(Importance::Uniform, |v| Importance::PerColumn(v))
    }
}

/// Σ x² per column over the rows seen, for one matrix input (the row count cancels in the
/// normalisation to mean 1).
struct SquareSums {
    sums: Vec<f64>,
}

impl SquareSums {
    fn new(cols: usize) -> Self {
        Self {
            sums: vec![0.0; cols],
        }
    }

    fn add(&mut self, x: &[f32]) {
        let cols = self.sums.len();
        for row in x.chunks_exact(cols) {
            self.sums
                .iter_mut()
                .zip(row)
                .for_each(|(s, &v)| *s += (v as f64) * (v as f64));
        }
    }

    /// Mean squares scaled to mean 1; a floor of 1e-3 keeps a channel the text never lit from
    /// being quantized as if it could never matter.
    fn importance(&self) -> Vec<f32> {
        let mean = self.sums.iter().sum::<f64>() / self.sums.len().max(1) as f64;
        if mean <= 0.0 || !mean.is_finite() {
            return vec![1.0; self.sums.len()];
        }
        self.sums
            .iter()
            .map(|s| (s / mean).max(1e-3) as f32)
            .collect()
    }
}

pub fn calibrate(imp: &Imported, text: &str, opts: &CalibrationOptions) -> Result<Calibration> {
    let cfg = &imp.config;
    let bos = if imp.add_bos_token {
        cfg.bos_token_id
    } else {
        None
    };
    let tokenizer = Tokenizer::from_json(&imp.tokenizer, bos)?;
    let tokens = tokenizer.encode(text, false)?;
    let len = opts.window_len.min(cfg.max_position_embeddings).max(2);
    let windows = opts.windows.min(tokens.len() / len);
    if windows == 0 {
        bail!(
            "the calibration text has {} tokens, fewer than one window of {len}",
            tokens.len()
        );
    }
    let specs = Tensors::describe(cfg);
    let h = cfg.hidden_size;

    // Hidden states of every window, [len, hidden] each.
    let embd = imp.weights.load(&specs.token_embd)?;
    let mut xs: Vec<Vec<f32>> = (0..windows)
        .map(|w| {
            let mut ids = tokens[w * len..(w + 1) * len].to_vec();
            if let Some(b) = bos {
                ids[0] = b;
            }
            embed(cfg, &embd, &ids)
        })
        .collect::<qins_runtime::Result<_>>()?;
    drop(embd);

    let bar = if opts.progress {
        ProgressBar::new(cfg.num_layers as u64 + 1)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} calibrating [{elapsed_precise}] {wide_bar} {pos}/{len} layers",
        )
        .expect("valid template"),
    );
    let rope = Rope::for_len(cfg, len);
    let mut importance = HashMap::new();
    for (l, layer_specs) in specs.layers.iter().enumerate() {
        let lw = layer_specs
            .clone()
            .try_map(&mut |s| imp.weights.load(&s))
            .with_context(|| format!("loading layer {l} for calibration"))?;
        let mut sums = [
            SquareSums::new(h),
            SquareSums::new(cfg.q_dim()),
            SquareSums::new(h),
            SquareSums::new(cfg.intermediate_size),
        ];
        for x in xs.iter_mut() {
            let (mut k, mut v) = (KvRows::new(false), KvRows::new(false));
            let kv = LayerKv {
                k: &mut k,
                v: &mut v,
                start: 0,
            };
            decoder_layer(cfg, &lw, x, kv, &rope, &mut |input, a| {
                let i = match input {
                    MatrixInput::AttnQkv => 0,
                    MatrixInput::AttnOutput => 1,
                    MatrixInput::FfnGateUp => 2,
                    MatrixInput::FfnDown => 3,
                };
                sums[i].add(a);
            });
        }
        let names = [
            &layer_specs.attn_qkv.name,
            &layer_specs.attn_output.name,
            &layer_specs.ffn_gate_up.name,
            &layer_specs.ffn_down.name,
        ];
        for (name, s) in names.into_iter().zip(&sums) {
            importance.insert(name.clone(), s.importance());
        }
        bar.inc(1);
    }

    // The output head sees the final-normed hidden states (the embedding table when tied).
    let norm = imp.weights.load(&specs.output_norm)?;
    let mut head = SquareSums::new(h);
    for x in xs.iter_mut() {
        rms_norm(x, &norm, cfg.rms_norm_eps);
        head.add(x);
    }
    let head_name = specs
        .output
        .as_ref()
        .unwrap_or(&specs.token_embd)
        .name
        .clone();
    importance.insert(head_name, head.importance());
    bar.finish_and_clear();
    Ok(Calibration {
        importance,
        tokens: windows * len,
    })
}
