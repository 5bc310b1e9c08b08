use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, MAX_CHUNK_RAW};
use crate::codec::{Codec, ErrorStats, SECTION_ALIGN};
use crate::model::ModelConfig;
use crate::{QinsError, Result};

/// Everything about the archive except the tensor bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Tool and version that wrote the archive.
    pub converter: String,
    pub config: ModelConfig,
    /// The Hugging Face `tokenizer.json`, verbatim (or rebuilt from GGUF metadata). Null in a
    /// loaded model's manifest (load::Loaded): its generator's tokenizer was built from it.
    pub tokenizer: serde_json::Value,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub add_bos_token: bool,
    pub generation: GenerationDefaults,
    /// Where the weights came from (file name and format), for provenance.
    pub source: String,
    pub tensors: Vec<TensorEntry>,
    pub chunks: Vec<ChunkEntry>,
    /// Length of the decompressed byte stream.
    pub total_raw_bytes: u64,
}

/// Sampling defaults from generation_config.json (None where the checkpoint gives none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationDefaults {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub repetition_penalty: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub codec: Codec,
    /// Offset in the decompressed stream (a multiple of 256).
    pub offset: u64,
    pub bytes: u64,
    /// Reconstruction error of the codec on this tensor.
    pub error: Option<ErrorStats>,
}

impl TensorEntry {
    /// (rows, cols): a vector is one row.
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => (0, 0),
        }
    }

    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkEncoding {
    Zstd,
    /// Stored as-is: zstd gained too little (learned-LUT codes are incompressible).
    Raw,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Offset of the chunk's first byte in the decompressed stream.
    pub raw_offset: u64,
    pub raw_len: u64,
    /// Offset of the stored bytes from the start of the data section (end of manifest).
    pub stored_offset: u64,
    pub stored_len: u64,
    pub encoding: ChunkEncoding,
    /// CRC-32 of the stored bytes (checked before decoding).
    pub crc32_stored: u32,
    /// CRC-32 of the decompressed bytes (checked after decoding).
    pub crc32_raw: u32,
}

impl Manifest {
    /// A manifest that carries only `tokenizer` (a one-layer model of `vocab_size` tokens and
    /// no tensors): for tokenizer tests and the fuzzer.
    pub fn carrying_tokenizer(tokenizer: serde_json::Value, vocab_size: usize) -> Self {
        serde_json::from_value(serde_json::json!({
            "format_version": super::FORMAT_VERSION, "converter": "test", "tokenizer": tokenizer,
            "chat_template": null, "bos_token": null, "eos_token": null, "add_bos_token": false,
            "generation": {}, "source": "test", "tensors": [], "chunks": [], "total_raw_bytes": 0,
            "config": {"architecture": "llama", "vocab_size": vocab_size, "hidden_size": 4,
                "intermediate_size": 4, "num_layers": 1, "num_heads": 1, "num_kv_heads": 1,
                "head_dim": 4, "rotary_dim": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                "rope_scaling": null, "max_position_embeddings": 16,
                "tie_word_embeddings": true, "bos_token_id": null, "eos_token_ids": []}
        }))
        .expect("a fixed, valid manifest")
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| QinsError::Manifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Bytes of the data section (all stored chunks).
    pub fn stored_bytes(&self) -> u64 {
        self.chunks
            .last()
            .map_or(0, |c| c.stored_offset + c.stored_len)
    }

    /// Checks every size and offset against the others before anything is allocated from them.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(QinsError::Manifest(m));
        if self.format_version != FORMAT_VERSION {
            return Err(QinsError::UnsupportedVersion {
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        if let Err(e) = self.config.validate() {
            return bad(format!("config: {e}"));
        }
        let (mut raw, mut stored) = (0u64, 0u64);
        for (i, c) in self.chunks.iter().enumerate() {
            if c.raw_offset != raw || c.stored_offset != stored {
                return bad(format!("chunk {i} is not contiguous with the one before"));
            }
            if c.raw_len == 0 || c.raw_len > MAX_CHUNK_RAW {
                return bad(format!(
                    "chunk {i} has raw length {} (1..={MAX_CHUNK_RAW})",
                    c.raw_len
                ));
            }
            if c.stored_len == 0 || (c.encoding == ChunkEncoding::Raw && c.stored_len != c.raw_len)
            {
                return bad(format!("chunk {i} has stored length {}", c.stored_len));
            }
            raw += c.raw_len;
            stored = stored
                .checked_add(c.stored_len)
                .ok_or_else(|| QinsError::Manifest("stored sizes overflow".into()))?;
        }
        if raw != self.total_raw_bytes {
            return bad(format!(
                "chunks cover {raw} bytes, manifest says {}",
                self.total_raw_bytes
            ));
        }
        let mut end = 0u64;
        for t in &self.tensors {
            let (rows, cols) = t.rows_cols();
            if rows == 0 || cols == 0 {
                return bad(format!("tensor {} has shape {:?}", t.name, t.shape));
            }
            let layout = t
                .codec
                .layout(rows, cols)
                .map_err(|e| QinsError::Manifest(format!("tensor {}: {e}", t.name)))?;
            if t.bytes != layout.total as u64 {
                return bad(format!(
                    "tensor {} has {} bytes, its codec and shape need {}",
                    t.name, t.bytes, layout.total
                ));
            }
            if t.offset % SECTION_ALIGN as u64 != 0 || t.offset < end {
                return bad(format!(
                    "tensor {} at offset {} is misaligned or overlaps",
                    t.name, t.offset
                ));
            }
            end = t.offset + t.bytes;
            if end > self.total_raw_bytes {
                return bad(format!(
                    "tensor {} ends past the data ({end} > {})",
                    t.name, self.total_raw_bytes
                ));
            }
        }
        Ok(())
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }
}
