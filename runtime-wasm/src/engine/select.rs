//! What sampling asks of an engine: the candidates of a logits row. Part of the engine
//! contract because engines may answer it on the device (shaders/select.wgsl) instead of
//! returning the whole row.

/// A token and its (penalised) logit: what sampling chooses among.
pub type Candidate = (u32, f32);

/// What the sampler needs of a logits row: every token whose penalised logit is at least the
/// `k`-th largest (ties included). Engines may answer it on the device
/// (shaders/select.wgsl) instead of returning the whole row; for k = 1 they may answer with
/// the lowest id among the largest value's ties alone, the one the sampler picks from them
/// (the GPU engine does, so that it can queue the next step with it: shaders/pick.wgsl).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Select {
    pub k: usize,
    /// 1 disables; see `SamplingParams::repetition_penalty` (chat).
    pub penalty: f32,
    /// Distinct tokens the penalty applies to.
    pub seen: Vec<u32>,
    /// The sampler's draw among the k candidates, for an engine that draws on the device too
    /// (None: greedy, or the engine is not asked to).
    pub draw: Option<Draw>,
}

/// How the sampler will draw among a row's k candidates (`Sampler::sample_with`), for an
/// engine that makes the same draw on the device so that the next step can start before the
/// host has drawn (the GPU engine's pick.wgsl). The device's arithmetic (its `exp`, its
/// division) may differ from the CPU's in the last bits, so the host's draw decides: the
/// engine feeds the next step the device's choice and drops that step where the host chose
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub temperature: f32,
    pub top_p: f32,
    pub min_p: f32,
    /// The uniform numbers of this draw and of the next step's (the sampler's random stream
    /// looked ahead).
    pub u: [f32; 2],
}

impl Select {
    /// The candidates of `logits`, in id order (the reference the GPU kernel is tested against).
    pub fn pick(&self, logits: &[f32]) -> Vec<Candidate> {
        let mut values = logits.to_vec();
        penalize(&mut values, &self.seen, self.penalty);
        if values.is_empty() {
            return Vec::new();
        }
        let k = self.k.clamp(1, values.len());
        let mut order = values.clone();
        let (_, &mut kth, _) = order.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        values
            .into_iter()
            .enumerate()
            .filter(|(_, v)| v.total_cmp(&kth).is_ge())
            .map(|(i, v)| (i as u32, v))
            .collect()
    }
}

/// Divides positive logits of `seen` tokens by `penalty` and multiplies negative ones — as a
/// multiplication by the f32 reciprocal, which the GPU kernel rounds identically.
pub(crate) fn penalize(values: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let inv = 1.0 / penalty;
    for &t in seen {
        if let Some(v) = values.get_mut(t as usize) {
            *v = if *v > 0.0 { *v * inv } else { *v * penalty };
        }
    }
}
