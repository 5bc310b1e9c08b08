//! Opening an archive for the native engines.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use qins_runtime::chat::Generator;
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::format::Manifest;
use qins_runtime::model::Weights;
use web_time::Instant;

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The f32 reference engine.
    Cpu,
}

/// Reads, verifies and decodes `path` into a ready generator; returns it with the load time.
pub fn open(path: &Path, backend: Backend) -> Result<(Manifest, Generator<CpuEngine>, f64)> {
    let t = Instant::now();
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = file.metadata()?.len();
    let (manifest, weights) = Weights::read(BufReader::with_capacity(1 << 20, file), Some(len))
        .with_context(|| format!("{}", path.display()))?;
    let engine = match backend {
        Backend::Cpu => CpuEngine::new(CpuModel::new(manifest.config.clone(), weights)),
    };
    let gen = Generator::new(engine, &manifest)?;
    if gen.tokenizer.vocab_size() > manifest.config.vocab_size {
        bail!(
            "{}: the tokenizer has {} tokens but the model only {}",
            path.display(),
            gen.tokenizer.vocab_size(),
            manifest.config.vocab_size
        );
    }
    Ok((manifest, gen, t.elapsed().as_secs_f64()))
}
