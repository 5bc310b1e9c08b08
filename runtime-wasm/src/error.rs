use thiserror::Error;

pub type Result<T, E = QinsError> = std::result::Result<T, E>;

/// Every way an archive or a tensor can be refused. Each variant reads as one clear line.
#[derive(Debug, Error)]
pub enum QinsError {
    #[error("not a .qins archive (bad magic bytes)")]
    BadMagic,
    #[error("unsupported archive format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("archive truncated: {what} needs {need} bytes, only {have} present")]
    Truncated { what: String, need: u64, have: u64 },
    #[error("checksum mismatch in {what}: expected {expected:08x}, found {found:08x}")]
    Checksum {
        what: String,
        expected: u32,
        found: u32,
    },
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("chunk {chunk}: zstd decode failed: {msg}")]
    Decompress { chunk: usize, msg: String },
    #[error("tensor {name}: {msg}")]
    Tensor { name: String, msg: String },
    #[error("codec: {0}")]
    Codec(String),
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("context full: {needed} tokens exceed the {available} positions available")]
    ContextFull { needed: usize, available: usize },
}
