//! QINS runtime engine, target-independent (native and wasm32).
//!
//! - [`format`]: the `.qins` archive: header, manifest, streaming chunk reader.
//! - [`codec`]: LUT codebooks (qins8, lut8, lut4) and plain floats, CPU encode and decode.
//! - [`model`]: the canonical decoder description shared by every architecture.
//! - [`engine`]: the contract every engine implements (`Engine`, `Forward`, `Select`).
//! - [`cpu`]: the f32 reference forward pass.
//! - [`gpu`]: the same forward pass in WGSL kernels on wgpu.
//! - [`chat`]: tokenizer, chat template, sampler, generation loop.
//! - [`load`]: one load path for every engine and both sides (options, engine info).
//! - `web` (wasm32 only): the JavaScript-facing engine: streaming fetch, Cache API, WebGPU.

mod background;
pub mod chat;
pub mod codec;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod format;
pub mod gpu;
mod huge_pages;
pub mod load;
pub mod model;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{QinsError, Result};
