//! The `.qins` writer: tensors go into ≤ 16 MiB chunks of one byte stream, each chunk zstd
//! compressed (multithreaded) or stored raw when zstd gains too little. Chunks are spooled to a
//! temporary file because the manifest, which precedes them, needs their sizes and checksums.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use qins_runtime::codec::{align_up, Codec, ErrorStats, SECTION_ALIGN};
use qins_runtime::format::{
    ChunkEncoding, ChunkEntry, Header, Manifest, TensorEntry, FORMAT_VERSION, MAX_CHUNK_RAW,
};

/// A chunk is stored raw unless zstd saves at least this fraction of it: decoding in wasm runs
/// at ~100 MB/s, so a few percent of size is not worth the load time.
const MIN_ZSTD_GAIN: f64 = 0.03;

pub struct ArchiveWriter {
    out: PathBuf,
    spool_path: PathBuf,
    spool: BufWriter<File>,
    chunk: Vec<u8>,
    chunk_limit: usize,
    chunks: Vec<ChunkEntry>,
    tensors: Vec<TensorEntry>,
    raw_pos: u64,
    stored_pos: u64,
    level: i32,
    threads: u32,
}

impl ArchiveWriter {
    pub fn create(out: &Path, level: i32) -> Result<Self> {
        let spool_path = sibling(out, "spool");
        let spool = File::create(&spool_path)
            .with_context(|| format!("{}: cannot create", spool_path.display()))?;
        Ok(Self {
            out: out.to_path_buf(),
            spool_path,
            spool: BufWriter::new(spool),
            chunk: Vec::with_capacity(MAX_CHUNK_RAW as usize),
            chunk_limit: MAX_CHUNK_RAW as usize,
            chunks: Vec::new(),
            tensors: Vec::new(),
            raw_pos: 0,
            stored_pos: 0,
            level,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        })
    }

    /// Smaller chunks (tests use this to exercise tensors spanning chunks).
    pub fn with_chunk_limit(mut self, bytes: usize) -> Self {
        self.chunk_limit = bytes.clamp(SECTION_ALIGN, MAX_CHUNK_RAW as usize);
        self
    }

    pub fn add_tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        codec: Codec,
        bytes: &[u8],
        error: Option<ErrorStats>,
    ) -> Result<()> {
        // A tensor that would straddle a chunk but fits in a fresh one starts a fresh one, so
        // most tensors arrive whole with their chunk.
        let pad = (align_up(self.raw_pos as usize, SECTION_ALIGN) as u64 - self.raw_pos) as usize;
        if !self.chunk.is_empty()
            && self.chunk.len() + pad + bytes.len() > self.chunk_limit
            && bytes.len() <= self.chunk_limit
        {
            self.flush_chunk()?;
        }
        let pad = (align_up(self.raw_pos as usize, SECTION_ALIGN) as u64 - self.raw_pos) as usize;
        self.push(&vec![0u8; pad])?;
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            shape: shape.to_vec(),
            codec,
            offset: self.raw_pos,
            bytes: bytes.len() as u64,
            error,
        });
        self.push(bytes)
    }

    fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let take = (self.chunk_limit - self.chunk.len()).min(bytes.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            self.raw_pos += take as u64;
            bytes = &bytes[take..];
            if self.chunk.len() == self.chunk_limit {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.chunk);
        let compressed = compress(&raw, self.level, self.threads)?;
        let use_zstd = (compressed.len() as f64) < raw.len() as f64 * (1.0 - MIN_ZSTD_GAIN);
        let (stored, encoding) = if use_zstd {
            (&compressed, ChunkEncoding::Zstd)
        } else {
            (&raw, ChunkEncoding::Raw)
        };
        self.spool.write_all(stored)?;
        self.chunks.push(ChunkEntry {
            raw_offset: self.raw_pos - raw.len() as u64,
            raw_len: raw.len() as u64,
            stored_offset: self.stored_pos,
            stored_len: stored.len() as u64,
            encoding,
            crc32_stored: crc32fast::hash(stored),
            crc32_raw: crc32fast::hash(&raw),
        });
        self.stored_pos += stored.len() as u64;
        self.chunk = raw;
        self.chunk.clear();
        Ok(())
    }

    /// Completes the archive: `base` supplies everything but the tensor and chunk tables.
    /// Writes to a temporary name and renames, so a failed run never leaves a broken archive
    /// under the requested name or clobbers an existing one.
    pub fn finish(mut self, mut base: Manifest) -> Result<Manifest> {
        self.flush_chunk()?;
        base.format_version = FORMAT_VERSION;
        base.tensors = std::mem::take(&mut self.tensors);
        base.chunks = std::mem::take(&mut self.chunks);
        base.total_raw_bytes = self.raw_pos;
        base.validate()
            .context("internal error: the written manifest does not validate")?;
        let manifest = base.to_json();
        let header = Header {
            version: FORMAT_VERSION,
            flags: 0,
            manifest_len: manifest.len() as u64,
            manifest_crc32: crc32fast::hash(&manifest),
        };
        self.spool.flush()?;
        let partial = sibling(&self.out, "partial");
        {
            let mut f = BufWriter::new(
                File::create(&partial)
                    .with_context(|| format!("{}: cannot create", partial.display()))?,
            );
            f.write_all(&header.to_bytes())?;
            f.write_all(&manifest)?;
            std::io::copy(&mut File::open(&self.spool_path)?, &mut f)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&partial, &self.out)
            .with_context(|| format!("{}: cannot rename into place", self.out.display()))?;
        Ok(base)
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spool_path);
    }
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    out.with_file_name(name)
}

fn compress(raw: &[u8], level: i32, threads: u32) -> Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(raw.len() / 2), level)?;
    if threads > 1 {
        enc.multithread(threads)?;
    }
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(raw.len() as u64))?;
    enc.write_all(raw)?;
    Ok(enc.finish()?)
}
