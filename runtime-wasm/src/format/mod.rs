//! The `.qins` archive (spec: docs/FORMAT.md).
//!
//! `header (32 bytes) · manifest (JSON) · chunks`, where the chunks are independent zstd frames
//! (or raw bytes where zstd gains too little) of one logical byte stream holding every tensor,
//! 256-byte aligned, in forward order.

mod header;
mod manifest;
mod stream;

pub use header::{Header, FORMAT_VERSION, HEADER_LEN, MAGIC};
pub use manifest::{ChunkEncoding, ChunkEntry, GenerationDefaults, Manifest, TensorEntry};
pub use stream::{read_all, read_archive, Event, ReadTimes, StreamReader, TensorReader};

/// Largest decompressed chunk a reader accepts (and the writer produces).
pub const MAX_CHUNK_RAW: u64 = 16 << 20;
/// Largest manifest a reader accepts: the tokenizer of a 128k-vocabulary model is ~10 MiB.
pub const MAX_MANIFEST_LEN: u64 = 64 << 20;
