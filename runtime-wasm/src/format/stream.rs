//! Streaming archive reader: feed bytes as they arrive (a fetch body, a file), get verified
//! tensor bytes out. Buffering is bounded by one stored chunk plus one decompressed chunk
//! (≤ 16 MiB each) or the manifest, never the archive.

use std::io::Read;

use web_time::Instant;

use super::{ChunkEncoding, ChunkEntry, Header, Manifest, TensorEntry, HEADER_LEN};
use crate::{QinsError, Result};

pub enum Event<'a> {
    /// The manifest was read and validated; tensors follow in its order.
    Manifest(&'a Manifest),
    /// Verified bytes of tensor `index` (`entry` in the manifest), starting `offset` bytes into
    /// the tensor.
    TensorPiece {
        index: usize,
        entry: &'a TensorEntry,
        offset: u64,
        bytes: &'a [u8],
        /// This piece ends the tensor.
        complete: bool,
    },
}

enum Stage {
    Header,
    Manifest(Header),
    Chunks(usize),
    Done,
}

/// Seconds spent verifying and decompressing, for the load's stage table.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadTimes {
    pub checksum_s: f64,
    pub decompress_s: f64,
}

pub struct StreamReader {
    times: ReadTimes,
    /// The last decompressed chunk, its allocation reused.
    decoded: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    stage: Stage,
    buf: Vec<u8>,
    manifest: Option<Manifest>,
    /// Total archive length when known (file size, Content-Length): checked against the manifest.
    expected_len: Option<u64>,
    consumed: u64,
    next_tensor: usize,
}

impl Default for StreamReader {
    fn default() -> Self {
        Self::new(None)
    }
}

impl StreamReader {
    pub fn new(expected_len: Option<u64>) -> Self {
        Self {
            times: ReadTimes::default(),
            decoded: Vec::new(),
            zstd: None,
            stage: Stage::Header,
            buf: Vec::new(),
            manifest: None,
            expected_len,
            consumed: 0,
            next_tensor: 0,
        }
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The manifest, once read.
    pub fn into_manifest(self) -> Option<Manifest> {
        self.manifest
    }

    pub fn times(&self) -> ReadTimes {
        self.times
    }

    /// Archive bytes accepted so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// Bytes the current stage needs in one piece.
    fn need(&self) -> u64 {
        match &self.stage {
            Stage::Header => HEADER_LEN as u64,
            Stage::Manifest(h) => h.manifest_len,
            Stage::Chunks(i) => self
                .manifest
                .as_ref()
                .map_or(0, |m| m.chunks[*i].stored_len),
            Stage::Done => 0,
        }
    }

    pub fn feed(
        &mut self,
        mut data: &[u8],
        on: &mut dyn FnMut(Event<'_>) -> Result<()>,
    ) -> Result<()> {
        while !data.is_empty() {
            if self.is_done() {
                return Err(QinsError::Corrupt(format!(
                    "{} unexpected bytes after the last chunk",
                    data.len()
                )));
            }
            let need = self.need() as usize;
            if self.buf.is_empty() && data.len() >= need {
                // Whole unit present: no copy.
                let (unit, rest) = data.split_at(need);
                self.process(unit, on)?;
                data = rest;
            } else {
                let take = (need - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buf.len() == need {
                    let unit = std::mem::take(&mut self.buf);
                    self.process(&unit, on)?;
                }
            }
        }
        Ok(())
    }

    /// Call at end of input: an archive that stopped early is an error, never a partial model.
    pub fn finish(&self) -> Result<()> {
        if self.is_done() {
            return Ok(());
        }
        let what = match &self.stage {
            Stage::Header => "header".to_string(),
            Stage::Manifest(_) => "manifest".to_string(),
            Stage::Chunks(i) => format!("chunk {i}"),
            Stage::Done => unreachable!(),
        };
        Err(QinsError::Truncated {
            what,
            need: self.need(),
            have: self.buf.len() as u64,
        })
    }

    fn process(&mut self, unit: &[u8], on: &mut dyn FnMut(Event<'_>) -> Result<()>) -> Result<()> {
        self.consumed += unit.len() as u64;
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Header => {
                let h = Header::parse(unit)?;
                if let Some(len) = self.expected_len {
                    if HEADER_LEN as u64 + h.manifest_len > len {
                        return Err(QinsError::Truncated {
                            what: "manifest".into(),
                            need: h.manifest_len,
                            have: len.saturating_sub(HEADER_LEN as u64),
                        });
                    }
                }
                self.stage = Stage::Manifest(h);
            }
            Stage::Manifest(h) => {
                check_crc("manifest", h.manifest_crc32, unit)?;
                let m = Manifest::from_json(unit)?;
                if let Some(len) = self.expected_len {
                    let want = HEADER_LEN as u64 + h.manifest_len + m.stored_bytes();
                    if len < want {
                        return Err(QinsError::Truncated {
                            what: "archive".into(),
                            need: want,
                            have: len,
                        });
                    }
                    if len > want {
                        return Err(QinsError::Corrupt(format!(
                            "{} unexpected bytes after the last chunk",
                            len - want
                        )));
                    }
                }
                on(Event::Manifest(&m))?;
                self.stage = if m.chunks.is_empty() {
                    Stage::Done
                } else {
                    Stage::Chunks(0)
                };
                self.manifest = Some(m);
            }
            Stage::Chunks(i) => {
                let m = self.manifest.as_ref().expect("manifest precedes chunks");
                let chunk = &m.chunks[i];
                let raw = decode_chunk(
                    i,
                    chunk,
                    unit,
                    &mut self.times,
                    &mut self.zstd,
                    &mut self.decoded,
                )?;
                let chunk_end = chunk.raw_offset + chunk.raw_len;
                while let Some(t) = m.tensors.get(self.next_tensor) {
                    let t_end = t.offset + t.bytes;
                    if t.offset >= chunk_end {
                        break;
                    }
                    let start = t.offset.max(chunk.raw_offset);
                    let end = t_end.min(chunk_end);
                    if start < end {
                        let lo = (start - chunk.raw_offset) as usize;
                        let hi = (end - chunk.raw_offset) as usize;
                        on(Event::TensorPiece {
                            index: self.next_tensor,
                            entry: t,
                            offset: start - t.offset,
                            bytes: &raw[lo..hi],
                            complete: t_end <= chunk_end,
                        })?;
                    }
                    if t_end > chunk_end {
                        break;
                    }
                    self.next_tensor += 1;
                }
                self.stage = if i + 1 < m.chunks.len() {
                    Stage::Chunks(i + 1)
                } else {
                    Stage::Done
                };
            }
            Stage::Done => unreachable!("feed checks for Done"),
        }
        Ok(())
    }
}

fn check_crc(what: &str, expected: u32, bytes: &[u8]) -> Result<()> {
    let found = crc32fast::hash(bytes);
    if found != expected {
        return Err(QinsError::Checksum {
            what: what.into(),
            expected,
            found,
        });
    }
    Ok(())
}

/// Verifies a stored chunk, decompresses it, and verifies the result.
fn decode_chunk<'a>(
    index: usize,
    c: &ChunkEntry,
    stored: &'a [u8],
    times: &mut ReadTimes,
    zstd: &mut Option<zstd::bulk::Decompressor<'static>>,
    decoded: &'a mut Vec<u8>,
) -> Result<&'a [u8]> {
    let t = Instant::now();
    check_crc(
        &format!("chunk {index} (stored bytes)"),
        c.crc32_stored,
        stored,
    )?;
    times.checksum_s += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let raw: &'a [u8] = match c.encoding {
        ChunkEncoding::Raw => {
            // The same bytes: hashing them again would find the stored checksum, so the two
            // must agree (one pass over the chunk instead of two).
            if c.crc32_raw != c.crc32_stored {
                return Err(QinsError::Checksum {
                    what: format!("chunk {index} (decoded bytes)"),
                    expected: c.crc32_raw,
                    found: c.crc32_stored,
                });
            }
            stored
        }
        ChunkEncoding::Zstd => {
            let err = |msg: String| QinsError::Decompress { chunk: index, msg };
            let dec = match zstd {
                Some(d) => d,
                None => {
                    zstd.insert(zstd::bulk::Decompressor::new().map_err(|e| err(e.to_string()))?)
                }
            };
            // At most the promised length: a frame that inflates further fails here ("buffer
            // too small") instead of growing the buffer. The manifest bounds raw_len.
            decoded.clear();
            decoded.reserve_exact(c.raw_len as usize);
            dec.decompress_to_buffer(stored, decoded)
                .map_err(|e| err(e.to_string()))?;
            decoded.as_slice()
        }
    };
    times.decompress_s += t.elapsed().as_secs_f64();
    if raw.len() as u64 != c.raw_len {
        return Err(QinsError::Corrupt(format!(
            "chunk {index} decodes to {} bytes, manifest says {}",
            raw.len(),
            c.raw_len
        )));
    }
    if c.encoding != ChunkEncoding::Raw {
        let t = Instant::now();
        check_crc(&format!("chunk {index} (decoded bytes)"), c.crc32_raw, raw)?;
        times.checksum_s += t.elapsed().as_secs_f64();
    }
    Ok(raw)
}

/// Whole tensors out of archive bytes pushed in as they arrive (a file's reads, a fetch
/// body's pieces). Holds at most one tensor plus one chunk in memory.
pub struct TensorReader {
    reader: StreamReader,
    current: Vec<u8>,
}

impl TensorReader {
    /// `expected_len`: the archive's length when known (file size, Content-Length).
    pub fn new(expected_len: Option<u64>) -> Self {
        Self {
            reader: StreamReader::new(expected_len),
            current: Vec::new(),
        }
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.reader.manifest()
    }

    pub fn times(&self) -> ReadTimes {
        self.reader.times()
    }

    /// Takes the next archive bytes, handing each tensor to `on_tensor` once it is complete.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        on_tensor: &mut dyn FnMut(&TensorEntry, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let current = &mut self.current;
        self.reader.feed(bytes, &mut |ev| {
            if let Event::TensorPiece {
                entry,
                bytes,
                complete,
                ..
            } = ev
            {
                if current.is_empty() {
                    current.reserve_exact(entry.bytes as usize);
                    crate::huge_pages::advise(current);
                }
                current.extend_from_slice(bytes);
                if complete {
                    on_tensor(entry, std::mem::take(current))?;
                }
            }
            Ok(())
        })
    }

    /// Ends the input: a short archive is an error, never a partial model.
    pub fn finish(self) -> Result<Manifest> {
        self.reader.finish()?;
        Ok(self
            .reader
            .into_manifest()
            .expect("a finished reader has read its manifest"))
    }
}

/// Reads a whole archive from `r`, handing each tensor to `on_tensor` as soon as it is complete.
/// Holds at most one tensor plus one chunk in memory.
pub fn read_archive<R: Read>(
    mut r: R,
    len: Option<u64>,
    mut on_tensor: impl FnMut(&TensorEntry, Vec<u8>) -> Result<()>,
) -> Result<Manifest> {
    let mut reader = TensorReader::new(len);
    read_all(&mut r, |bytes| reader.feed(bytes, &mut on_tensor))?;
    reader.finish()
}

/// Reads `r` to its end in 1 MiB pieces, handing each to `feed`.
pub fn read_all<R: Read>(r: &mut R, mut feed: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => feed(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(QinsError::Corrupt(format!("read failed: {e}"))),
        }
    }
}
