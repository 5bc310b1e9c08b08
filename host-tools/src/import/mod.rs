//! Importers: each turns a checkpoint into the canonical decoder description
//! ([`qins_runtime::model`]) and a source of canonical f32 tensors.

pub mod gguf;
mod gguf_file;
mod gguf_tokenizer;
pub mod hf;
pub mod hub;
mod kquants;
pub mod synthetic;

use std::path::Path;

use anyhow::{bail, Result};
use qins_runtime::format::GenerationDefaults;
use qins_runtime::model::{ModelConfig, TensorSpec};

/// A checkpoint read into the canonical form; weights are loaded lazily, one tensor at a time,
/// so a 7.6 GB model converts without being held in memory.
pub struct Imported {
    pub config: ModelConfig,
    pub tokenizer: serde_json::Value,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub add_bos_token: bool,
    pub generation: GenerationDefaults,
    pub source: String,
    pub weights: Box<dyn WeightSource>,
}

pub trait WeightSource: Send + Sync {
    /// The canonical tensor `spec` as row-major f32 of exactly `spec.shape`.
    fn load(&self, spec: &TensorSpec) -> Result<Vec<f32>>;
}

/// Picks the importer from what `input` is: a directory is a Hugging Face checkpoint,
/// a `.gguf` file a GGUF model.
pub fn open(input: &Path) -> Result<Imported> {
    if input.is_dir() {
        hf::open(input)
    } else if input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        gguf::open(input)
    } else if !input.exists() {
        bail!("{}: no such file or directory", input.display())
    } else {
        bail!(
            "{}: expected a Hugging Face checkpoint folder or a .gguf file",
            input.display()
        )
    }
}

/// Checks a loaded tensor against its canonical shape (importers call this before returning).
pub(crate) fn check_len(spec: &TensorSpec, data: &[f32], origin: &str) -> Result<()> {
    let want: usize = spec.shape.iter().product();
    if data.len() != want {
        bail!(
            "{origin}: tensor {} has {} values, expected shape {:?} ({want} values)",
            spec.name,
            data.len(),
            spec.shape
        );
    }
    Ok(())
}

/// Parses a GGUF file's header, metadata and tensor table from memory (the fuzzer's entry:
/// tests/src/bin/qins-fuzz.rs).
pub fn parse_gguf(bytes: &[u8]) -> anyhow::Result<()> {
    gguf_file::GgufFile::parse(bytes).map(|_| ())
}
