use crate::cpu::{CpuEngine, PackedEngine};
use crate::engine::{Candidate, Engine, Select};
use crate::gpu::GpuEngine;
use crate::model::ModelConfig;
use crate::Result;

/// The engine chosen at run time (an enum: `Engine::extend` is async, so not object-safe).
/// One per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnyEngine {
    /// The packed CPU engine (the archive's codes in memory).
    Cpu(PackedEngine),
    /// The f32 reference engine.
    Reference(CpuEngine),
    Gpu(GpuEngine),
}

/// Forwards a call to whichever engine this is.
macro_rules! each {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Cpu($e) => $call,
            AnyEngine::Reference($e) => $call,
            AnyEngine::Gpu($e) => $call,
        }
    };
}

impl AnyEngine {
    /// The GPU engine, for what only it has (device-side selection, its model's buffers).
    pub fn gpu(&self) -> Option<&GpuEngine> {
        match self {
            Self::Gpu(e) => Some(e),
            Self::Cpu(_) | Self::Reference(_) => None,
        }
    }
}

impl Engine for AnyEngine {
    fn config(&self) -> &ModelConfig {
        each!(self, e => e.config())
    }
    fn len(&self) -> usize {
        each!(self, e => e.len())
    }
    fn capacity(&self) -> usize {
        each!(self, e => e.capacity())
    }
    fn reset(&mut self) {
        each!(self, e => e.reset())
    }
    fn tokens(&self) -> &[u32] {
        each!(self, e => e.tokens())
    }
    fn truncate(&mut self, len: usize) {
        each!(self, e => e.truncate(len))
    }
    async fn extend(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        each!(self, e => e.extend(tokens, all).await)
    }
    async fn extend_select(&mut self, tokens: &[u32], sel: &Select) -> Result<Vec<Candidate>> {
        each!(self, e => e.extend_select(tokens, sel).await)
    }
}
