//! `--profile`: GPU timestamps between the dispatches of each batch, summed per kernel (a
//! mat-vec per tensor role) apart for decoded tokens and for prompt batches, so that one run on
//! a GPU says where a token's time goes — which `qins-bench`'s kernels in isolation cannot
//! (caches, barriers between dependent dispatches, the small kernels' share). Native only:
//! WebGPU has no timestamps inside a pass. Timing adds a read-back per batch, so profiled runs
//! are not speed runs.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::kernels::{Dispatch, Kernels};
use super::GpuContext;
use crate::Result;

/// A token's time in one kernel, summed over its dispatches (a prompt token's: its batch's
/// time over the batch's tokens).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelTime {
    /// The kernel, or "matvec ROLE" for a mat-vec (see [`Dispatch::name`]).
    pub kernel: String,
    pub dispatches_per_token: f64,
    pub us_per_token: f64,
    /// Share of the token's time from its first dispatch's start to its last one's end.
    pub share: f64,
}

/// Which batches a profile sums: one-token ones (decode) or longer ones (the prompt's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Decode,
    Prefill,
}

impl Phase {
    fn of(n: u32) -> Self {
        if n <= 1 {
            Phase::Decode
        } else {
            Phase::Prefill
        }
    }
}

/// One phase's sums: kernel → (nanoseconds, dispatches), and the tokens they cover.
#[derive(Default)]
struct Totals {
    kernels: BTreeMap<String, (f64, u64)>,
    tokens: u64,
}

pub struct Profiler {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    period_ns: f64,
    /// The last timed submission: its batch's token count and its dispatches' names, in order.
    pending: RefCell<Option<(u32, Vec<String>)>>,
    decode: RefCell<Totals>,
    prefill: RefCell<Totals>,
}

impl Profiler {
    /// Timestamps per submission: wgpu's most per query set (a token with more dispatches
    /// is run untimed, with a warning).
    const QUERIES: u32 = 4096;

    pub fn new(ctx: &GpuContext) -> Self {
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: Self::QUERIES,
        });
        let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile stamps"),
            size: Self::QUERIES as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Self {
            set,
            resolved,
            period_ns: ctx.queue.get_timestamp_period() as f64,
            pending: RefCell::default(),
            decode: RefCell::default(),
            prefill: RefCell::default(),
        }
    }

    fn totals(&self, phase: Phase) -> &RefCell<Totals> {
        match phase {
            Phase::Decode => &self.decode,
            Phase::Prefill => &self.prefill,
        }
    }

    /// Records and submits `dispatches` for a batch of `n` tokens like [`Kernels::run`], with
    /// a timestamp before each recorded dispatch and one after the last; [`Profiler::collect`]
    /// then reads them.
    pub fn run(&self, ctx: &GpuContext, dispatches: &[&Dispatch], n: u32, pos: u32) {
        let names: Vec<String> = dispatches
            .iter()
            .filter(|d| d.runs_for(n, pos))
            .map(|d| d.name_for(n, pos).to_string())
            .collect();
        let stamps = names.len() as u32 + 1;
        let timed = stamps <= Self::QUERIES;
        if !timed {
            tracing::warn!("{} dispatches: too many to time", names.len());
        }
        let mut enc = Kernels::encode(ctx, dispatches, n, pos, timed.then_some(&self.set));
        if timed {
            enc.resolve_query_set(&self.set, 0..stamps, &self.resolved, 0);
            *self.pending.borrow_mut() = Some((n, names));
        }
        ctx.queue.submit([enc.finish()]);
    }

    /// Adds the last timed submission's kernel times to the totals (nothing when none is
    /// pending).
    pub async fn collect(&self, ctx: &GpuContext) -> Result<()> {
        let Some((n, names)) = self.pending.borrow_mut().take() else {
            return Ok(());
        };
        let bytes = ctx
            .read_back(&self.resolved, 0, (names.len() as u64 + 1) * 8)
            .await?;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let mut totals = self.totals(Phase::of(n)).borrow_mut();
        for (name, pair) in names.into_iter().zip(stamps.windows(2)) {
            // Wrapping: a device's timestamps may have fewer than 64 valid bits.
            let ns = pair[1].wrapping_sub(pair[0]) as f64 * self.period_ns;
            let e = totals.kernels.entry(name).or_default();
            e.0 += ns;
            e.1 += 1;
        }
        totals.tokens += n as u64;
        Ok(())
    }

    /// Per-token kernel times of `phase` over its timed tokens, the largest first.
    pub fn report(&self, phase: Phase) -> Vec<KernelTime> {
        let totals = self.totals(phase).borrow();
        let tokens = totals.tokens.max(1) as f64;
        let all: f64 = totals.kernels.values().map(|(ns, _)| ns).sum();
        let mut rows: Vec<KernelTime> = totals
            .kernels
            .iter()
            .map(|(kernel, &(ns, count))| KernelTime {
                kernel: kernel.clone(),
                dispatches_per_token: count as f64 / tokens,
                us_per_token: ns / tokens / 1e3,
                share: if all > 0.0 { ns / all } else { 0.0 },
            })
            .collect();
        rows.sort_by(|a, b| b.us_per_token.total_cmp(&a.us_per_token));
        rows
    }

    /// Tokens of `phase` timed so far.
    pub fn tokens(&self, phase: Phase) -> u64 {
        self.totals(phase).borrow().tokens
    }
}
