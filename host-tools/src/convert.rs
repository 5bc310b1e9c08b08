//! The conversion pipeline: canonical tensors in forward order → codec → archive writer,
//! one tensor in memory at a time, with progress and a closing summary.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use qins_runtime::codec::{encode_weighted, repeat_rows, Codec, ErrorStats, Importance};
use qins_runtime::format::Manifest;
use qins_runtime::model::{TensorRole, Tensors};

use crate::calibrate::Calibration;
use crate::import::Imported;
use crate::writer::ArchiveWriter;

pub struct ConvertOptions {
    /// Codec of the matrices (linear weights, embedding, output head).
    pub codec: Codec,
    /// Codec of the embedding table and output head, when they should differ from the body's
    /// (they are the most sensitive matrices: llama.cpp keeps them at 6–8 bits in Q4_K_M).
    pub embed_codec: Option<Codec>,
    /// Codec of the output head alone (the embedding when tied), before `embed_codec`: llama.cpp
    /// keeps the head at Q6_K or Q8_0 in its 4-bit file types and the embedding at 4 bits.
    pub output_codec: Option<Codec>,
    pub zstd_level: i32,
    /// Raw chunk size (defaults to the format's 16 MiB maximum).
    pub chunk_limit: Option<usize>,
    pub progress: bool,
    /// Activation statistics weighting the learned codecs' errors (see [`crate::calibrate`]).
    pub calibration: Option<Calibration>,
    /// Encode only each matrix's first N rows and repeat them down the matrix (synthetic speed
    /// archives: real shapes and stored sizes in a fraction of the time; the error figures are
    /// the samples').
    pub repeat_rows: Option<usize>,
}

impl ConvertOptions {
    /// `codec` for every matrix, zstd level 3, 16 MiB chunks, no progress bar.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            embed_codec: None,
            output_codec: None,
            zstd_level: 3,
            chunk_limit: None,
            progress: false,
            calibration: None,
            repeat_rows: None,
        }
    }
}

/// Figures of one conversion, for the closing table and for tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub codec: String,
    pub parameters: u64,
    pub matrix_parameters: u64,
    /// Stored bytes of the quantized matrices (codes + scales + codebooks + alignment).
    pub matrix_bytes: u64,
    pub bits_per_weight: f64,
    pub raw_bytes: u64,
    pub archive_bytes: u64,
    /// Archive size relative to the same parameters stored as f16.
    pub ratio_vs_f16: f64,
    /// Error over all matrices together (energy-weighted).
    pub matrix_error: ErrorStats,
    pub worst_tensor: Option<(String, f64)>,
    /// Tokens of calibration text the learned codebooks were weighted by (None: unweighted).
    pub calibration_tokens: Option<usize>,
}

pub fn convert(imp: Imported, opts: &ConvertOptions, out: &Path) -> Result<Summary> {
    let described = Tensors::describe(&imp.config);
    let head = described.lm_head().name.clone();
    let specs = described.into_list();
    let total: u64 = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>() as u64)
        .sum();
    let bar = if opts.progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent}% {msg}")
            .expect("valid template"),
    );
    let mut writer = ArchiveWriter::create(out, opts.zstd_level)?;
    if let Some(limit) = opts.chunk_limit {
        writer = writer.with_chunk_limit(limit);
    }
    let (mut params, mut mparams, mut mbytes) = (0u64, 0u64, 0u64);
    let (mut signal, mut noise) = (0f64, 0f64);
    let mut worst: Option<(String, f64)> = None;
    for spec in &specs {
        bar.set_message(spec.name.clone());
        let data = imp.weights.load(spec)?;
        let (rows, cols) = match spec.shape.as_slice() {
            [r, c] => (*r, *c),
            s => (1, s.iter().product()),
        };
        let codec = match spec.role {
            TensorRole::Vector => Codec::F32,
            _ if spec.name == head => opts.output_codec.or(opts.embed_codec).unwrap_or(opts.codec),
            _ if spec.name == "token_embd" => opts.embed_codec.unwrap_or(opts.codec),
            TensorRole::Matrix => opts.codec,
        };
        let importance = opts
            .calibration
            .as_ref()
            .map_or(Importance::Uniform, |c| c.importance(&spec.name));
        let sample_rows = match opts.repeat_rows {
            Some(n) if spec.role == TensorRole::Matrix => n.max(1).min(rows),
            _ => rows,
        };
        let sample = &data[..sample_rows * cols];
        let (mut bytes, err) = encode_weighted(codec, sample, sample_rows, cols, importance)
            .with_context(|| format!("encoding {}", spec.name))?;
        if sample_rows < rows {
            bytes = repeat_rows(codec, &bytes, sample_rows, rows, cols)?;
        }
        let n = data.len() as u64;
        params += n;
        if spec.role == TensorRole::Matrix {
            mparams += n;
            mbytes += bytes.len() as u64;
            let sig: f64 = sample.iter().map(|&v| (v as f64) * (v as f64)).sum();
            signal += sig;
            noise += err.rel_fro * err.rel_fro * sig;
            if worst.as_ref().is_none_or(|w| err.sqnr_db < w.1) {
                worst = Some((spec.name.clone(), err.sqnr_db));
            }
        }
        tracing::debug!(tensor = %spec.name, codec = %codec.name(), sqnr_db = err.sqnr_db, "encoded");
        writer.add_tensor(&spec.name, &spec.shape, codec, &bytes, Some(err))?;
        bar.inc(n);
    }
    let base = Manifest {
        format_version: 0,
        converter: format!("qins-convert {}", env!("CARGO_PKG_VERSION")),
        config: imp.config,
        tokenizer: imp.tokenizer,
        chat_template: imp.chat_template,
        bos_token: imp.bos_token,
        eos_token: imp.eos_token,
        add_bos_token: imp.add_bos_token,
        generation: imp.generation,
        source: imp.source,
        tensors: vec![],
        chunks: vec![],
        total_raw_bytes: 0,
    };
    bar.set_message("writing archive");
    let manifest = writer.finish(base)?;
    bar.finish_and_clear();
    let archive_bytes = std::fs::metadata(out)?.len();
    Ok(Summary {
        codec: codec_label(opts),
        parameters: params,
        matrix_parameters: mparams,
        matrix_bytes: mbytes,
        bits_per_weight: mbytes as f64 * 8.0 / mparams.max(1) as f64,
        raw_bytes: manifest.total_raw_bytes,
        archive_bytes,
        ratio_vs_f16: archive_bytes as f64 / (params as f64 * 2.0),
        matrix_error: ErrorStats::from_sums(signal, noise),
        worst_tensor: worst,
        calibration_tokens: opts.calibration.as_ref().map(|c| c.tokens),
    })
}

/// `lut4-g32`, or with the exceptions: `lut4-g32 (embedding lut8g-g32, output lut8g-g32)`.
fn codec_label(opts: &ConvertOptions) -> String {
    let embed = opts.embed_codec.unwrap_or(opts.codec);
    let output = opts.output_codec.unwrap_or(embed);
    let mut parts = Vec::new();
    if embed != opts.codec {
        parts.push(format!("embedding {}", embed.name()));
    }
    if output != opts.codec {
        parts.push(format!("output {}", output.name()));
    }
    if parts.is_empty() {
        opts.codec.name()
    } else {
        format!("{} ({})", opts.codec.name(), parts.join(", "))
    }
}

impl Summary {
    pub fn table(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut s = String::new();
        let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<34} {v}\n"));
        row("codec (matrices)", self.codec.clone());
        row(
            "parameters",
            format!(
                "{} ({} in quantized matrices)",
                self.parameters, self.matrix_parameters
            ),
        );
        row(
            "matrix bytes (codes+scales+codebooks)",
            format!("{:.2} MiB", mib(self.matrix_bytes)),
        );
        row(
            "bits per weight (matrices)",
            format!("{:.3}", self.bits_per_weight),
        );
        row(
            "decompressed stream",
            format!("{:.2} MiB", mib(self.raw_bytes)),
        );
        row(
            "archive size",
            format!("{:.2} MiB", mib(self.archive_bytes)),
        );
        row("ratio vs f16", format!("{:.3}", self.ratio_vs_f16));
        row(
            "matrix error",
            format!(
                "rel. Frobenius {:.5}, SQNR {:.2} dB",
                self.matrix_error.rel_fro, self.matrix_error.sqnr_db
            ),
        );
        if let Some((name, db)) = &self.worst_tensor {
            row("worst tensor", format!("{name} ({db:.2} dB)"));
        }
        if let Some(t) = self.calibration_tokens {
            row("importance weighting", format!("{t} calibration tokens"));
        }
        s
    }
}
