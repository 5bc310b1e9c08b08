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
    #[error("WebGPU is not available in this browser (navigator.gpu is missing)")]
    NoWebGpu,
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU adapter's {limit} is {available} bytes; this model needs {needed} ({what})")]
    AdapterLimit {
        limit: &'static str,
        needed: u64,
        available: u64,
        what: String,
    },
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    #[error(
        "this model needs {need:.2} GB of WebAssembly memory ({what}), more than the \
         {avail:.2} GB a browser tab can give it: use a GPU (WebGPU), a smaller model or a \
         shorter context",
        need = *.needed as f64 / 1e9,
        avail = *.available as f64 / 1e9
    )]
    MemoryLimit {
        needed: u64,
        available: u64,
        what: String,
    },
    #[error("HTTP {status} fetching {url}")]
    Http { status: u16, url: String },
    #[error("network error: {0}")]
    Network(String),
    #[error("aborted")]
    Aborted,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no model is loaded")]
    NotLoaded,
    #[error("the engine is busy: abort() or wait for the current load or generation")]
    Busy,
    #[error("cannot read {0}")]
    Io(String),
    #[error("context full: {needed} tokens exceed the {available} positions available")]
    ContextFull { needed: usize, available: usize },
}

impl QinsError {
    /// A stable name for each kind of failure, for UIs that show their own guidance.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadMagic | Self::Corrupt(_) | Self::Manifest(_) | Self::Decompress { .. } => {
                "corrupt-archive"
            }
            Self::Truncated { .. } => "truncated-archive",
            Self::UnsupportedVersion { .. } => "unsupported-version",
            Self::Checksum { .. } => "checksum",
            Self::Tensor { .. } | Self::Codec(_) => "invalid-model",
            Self::Gpu(_) => "gpu",
            Self::NoWebGpu => "no-webgpu",
            Self::NoAdapter(_) => "no-adapter",
            Self::AdapterLimit { .. } => "adapter-limit",
            Self::DeviceLost(_) => "device-lost",
            Self::OutOfMemory(_) => "out-of-memory",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::Http { .. } => "http",
            Self::Network(_) => "network",
            Self::Aborted => "aborted",
            Self::BadRequest(_) => "bad-request",
            Self::NotLoaded => "not-loaded",
            Self::Busy => "busy",
            Self::ContextFull { .. } => "context-full",
            Self::Io(_) => "io",
        }
    }
}
