//! Push-style loading: archive bytes go in as they arrive (a fetch body, a file), verified
//! tensor bytes go straight into GPU buffers. Host memory holds one stored chunk, one decoded
//! chunk and at most 3 carried bytes, never a whole tensor or the archive.

use std::collections::HashMap;

use super::{kernels_for, CacheConfig, GpuContext, GpuModel, GpuTensor, Kernels, MatvecKind};
use web_time::Instant;

use crate::background::Background;
use crate::format::{Event, Manifest, ReadTimes, StreamReader};
use crate::{QinsError, Result};

/// The tensor being filled and the tail of its last piece that did not make a 4-byte word
/// (queue writes must be word-aligned; chunk boundaries need not be).
struct Filling {
    tensor: GpuTensor,
    written: u64,
    carry: Vec<u8>,
}

/// The pipelines of the mat-vecs `m`'s matrices need (the embedding's only when it is the
/// head), compiled while the tensors stream in rather than after the last byte: each kind's
/// prefill pipeline and the decode pipeline of each matrix's shape (a tensor split across
/// bindings whose parts pick another size builds that one when its dispatches are made).
fn compile_kernels(ctx: &GpuContext, m: &Manifest) -> Background<Kernels> {
    let mut shapes: Vec<(MatvecKind, usize, usize)> = Vec::new();
    for t in m.tensors.iter().filter(|t| t.shape.len() == 2) {
        if t.name == "token_embd" && !m.config.tie_word_embeddings {
            continue;
        }
        shapes.push((kernels_for(t.codec).0, t.shape[0], t.shape[1]));
    }
    let ctx = ctx.clone();
    Background::start("pipelines", move || {
        // Error scopes belong to the thread that pushes them: a thread reports its own; in
        // the browser the loader's scopes, on this same thread, catch any error.
        #[cfg(not(target_arch = "wasm32"))]
        let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let k = Kernels::new(&ctx);
        for (kind, rows, cols) in shapes {
            k.matvec(kind);
            k.matvec_decode_for(kind, rows, cols);
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = crate::engine::block_on(validation.pop()) {
            return Err(QinsError::Gpu(e.to_string()));
        }
        Ok(k)
    })
}

pub struct GpuLoader {
    ctx: GpuContext,
    compiling: Option<Background<Kernels>>,
    reader: StreamReader,
    manifest: Option<Manifest>,
    tensors: HashMap<String, GpuTensor>,
    filling: Option<Filling>,
    /// Archive bytes taken so far (the reader may hold some of them until a unit is whole).
    received: u64,
    gpu_bytes: u64,
    /// Seconds creating GPU buffers and writing tensor bytes into them.
    upload_s: f64,
    cache: CacheConfig,
    /// Allocation and validation failures surface asynchronously; these scopes collect them.
    scopes: Scopes,
}

/// Error scopes must be popped innermost first, also when a load is abandoned half-way
/// (wgpu panics on an out-of-order pop), which field drop order would not do.
struct Scopes(Vec<wgpu::ErrorScopeGuard>);

impl Drop for Scopes {
    fn drop(&mut self) {
        while let Some(scope) = self.0.pop() {
            drop(scope);
        }
    }
}

/// How far a load has got.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadProgress {
    /// Archive bytes received: where a resumed download continues.
    pub bytes_done: u64,
    pub tensors_done: usize,
    pub tensors_total: usize,
}

impl GpuLoader {
    /// `expected_len`: the archive's length when known (Content-Length, file size).
    pub fn new(ctx: GpuContext, expected_len: Option<u64>, cache: CacheConfig) -> Self {
        let scopes = Scopes(vec![
            ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            ctx.device.push_error_scope(wgpu::ErrorFilter::Validation),
        ]);
        Self {
            ctx,
            compiling: None,
            reader: StreamReader::new(expected_len),
            manifest: None,
            tensors: HashMap::new(),
            filling: None,
            received: 0,
            gpu_bytes: 0,
            upload_s: 0.0,
            cache,
            scopes,
        }
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    pub fn progress(&self) -> LoadProgress {
        LoadProgress {
            bytes_done: self.received,
            tensors_done: self.tensors.len(),
            tensors_total: self.manifest.as_ref().map_or(0, |m| m.tensors.len()),
        }
    }

    /// Seconds verifying and decompressing, and uploading.
    pub fn times(&self) -> (ReadTimes, f64) {
        (self.reader.times(), self.upload_s)
    }

    /// Takes the next bytes of the archive.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        self.received += bytes.len() as u64;
        let Self {
            ctx,
            reader,
            manifest,
            tensors,
            filling,
            gpu_bytes,
            upload_s,
            cache,
            compiling,
            ..
        } = self;
        reader.feed(bytes, &mut |ev| {
            match ev {
                Event::Manifest(m) => {
                    GpuModel::check_limits(ctx, &m.config, m, *cache)?;
                    *compiling = Some(compile_kernels(ctx, m));
                    *manifest = Some(m.clone());
                }
                Event::TensorPiece {
                    entry,
                    bytes,
                    complete,
                    ..
                } => {
                    let t = Instant::now();
                    let f = match filling {
                        Some(f) => f,
                        None => filling.insert(Filling {
                            tensor: GpuTensor::create(ctx, entry)?,
                            written: 0,
                            carry: Vec::with_capacity(4),
                        }),
                    };
                    let mut piece = bytes;
                    if !f.carry.is_empty() {
                        let take = (4 - f.carry.len()).min(piece.len());
                        f.carry.extend_from_slice(&piece[..take]);
                        piece = &piece[take..];
                        if f.carry.len() == 4 {
                            f.tensor.write(ctx, f.written, &f.carry);
                            f.written += 4;
                            f.carry.clear();
                        }
                    }
                    let whole = piece.len() / 4 * 4;
                    if whole > 0 {
                        f.tensor.write(ctx, f.written, &piece[..whole]);
                        f.written += whole as u64;
                    }
                    f.carry.extend_from_slice(&piece[whole..]);
                    if complete {
                        let mut f = filling.take().expect("filling");
                        if !f.carry.is_empty() {
                            f.carry.resize(4, 0);
                            f.tensor.write(ctx, f.written, &f.carry);
                        }
                        // Natively, queued writes are staged until a submit: flush per tensor
                        // so staging memory stays one tensor deep.
                        ctx.queue.submit([]);
                        *gpu_bytes += entry.bytes;
                        tensors.insert(entry.name.clone(), f.tensor);
                    }
                    *upload_s += t.elapsed().as_secs_f64();
                }
            }
            Ok(())
        })
    }

    /// Ends the input: a short archive is an error, never a partial model. Then builds the
    /// forward pass and reports any allocation failure the GPU raised meanwhile.
    pub async fn finish(mut self) -> Result<(Manifest, GpuModel)> {
        self.reader.finish()?;
        let manifest = self
            .manifest
            .take()
            .expect("a finished reader has read its manifest");
        let kernels = self
            .compiling
            .take()
            .expect("compiling since the manifest")
            .finish()?;
        let model = GpuModel::build(
            self.ctx,
            kernels,
            manifest.config.clone(),
            self.tensors,
            self.cache,
            self.gpu_bytes,
        )?;
        let validation = self.scopes.0.pop().expect("two scopes").pop().await;
        let oom = self.scopes.0.pop().expect("two scopes").pop().await;
        if let Some(e) = oom {
            return Err(QinsError::OutOfMemory(e.to_string()));
        }
        if let Some(e) = validation {
            return Err(QinsError::Gpu(e.to_string()));
        }
        model.ctx.lost()?;
        Ok((manifest, model))
    }
}
