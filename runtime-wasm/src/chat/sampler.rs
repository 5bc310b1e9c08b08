use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::{Candidate, Draw, Select};

/// Sampling settings; temperature 0 is greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables: drop tokens below min_p × the top probability.
    pub min_p: f32,
    /// 1 disables: divides positive logits (multiplies negative) of tokens already seen.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    /// A seed from the clock, for callers that give none (a fresh reply each run).
    pub fn fresh_seed() -> u64 {
        web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

fn distinct(history: &[u32]) -> Vec<u32> {
    let mut seen = history.to_vec();
    seen.sort_unstable();
    seen.dedup();
    seen
}

pub struct Sampler {
    params: SamplingParams,
    rng: SmallRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = SmallRng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    /// The candidates the next choice needs after `history`, or None when it needs the whole
    /// row (sampling without top-k: top-p and min-p are relative to every token); with top-k
    /// sampling, the draw it will make among them, for engines that make it on the device.
    pub fn selection(&self, history: &[u32]) -> Option<Select> {
        let p = &self.params;
        let k = if p.temperature <= 0.0 {
            1
        } else if p.top_k > 0 {
            p.top_k
        } else {
            return None;
        };
        let seen = if p.repetition_penalty == 1.0 {
            Vec::new()
        } else {
            distinct(history)
        };
        // A draw among more than one candidate: its uniform numbers are the next two of the
        // stream (`sample_from` takes one a token).
        let draw = (k > 1).then(|| {
            let mut ahead = self.rng.clone();
            Draw {
                temperature: p.temperature,
                top_p: p.top_p,
                min_p: p.min_p,
                u: [ahead.random::<f32>(), ahead.random::<f32>()],
            }
        });
        Some(Select {
            k,
            penalty: p.repetition_penalty,
            seen,
            draw,
        })
    }

    /// Picks the next token from a whole row of `logits`, penalising `history` if asked.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let every = Select {
            k: logits.len(),
            penalty: self.params.repetition_penalty,
            seen: distinct(history),
            draw: None,
        };
        self.sample_from(every.pick(logits))
    }

    /// Picks the next token from candidates (penalised already): all of a row, or at least
    /// what [`Sampler::selection`] asked for — the choice is the same either way.
    pub fn sample_from(&mut self, cands: Vec<Candidate>) -> u32 {
        // One uniform number a draw, none when greedy (what `selection` looks ahead at).
        let draws = self.params.temperature > 0.0 && !cands.is_empty();
        let u = if draws { self.rng.random::<f32>() } else { 0.0 };
        Self::sample_with(&self.params, cands, u)
    }

    /// The choice among candidates for `p` with the uniform number `u` (in [0, 1)): what
    /// `sample_from` draws, and what shaders/pick.wgsl computes in the same order of
    /// operations (tested against it).
    pub fn sample_with(p: &SamplingParams, mut cands: Vec<Candidate>, u: f32) -> u32 {
        // By descending value, ties by id (for determinism).
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.temperature <= 0.0 || cands.is_empty() {
            return cands.first().map_or(0, |c| c.0);
        }
        if p.top_k > 0 {
            cands.truncate(p.top_k);
        }
        let max = cands[0].1;
        let mut probs: Vec<f32> = cands
            .iter()
            .map(|c| ((c.1 - max) / p.temperature).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            keep = probs
                .iter()
                .take_while(|&&x| x >= p.min_p * probs[0])
                .count()
                .max(1);
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let n = probs.iter().take_while(|&&x| {
                let before = acc;
                acc += x;
                before < p.top_p
            });
            keep = keep.min(n.count().max(1));
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut r = u * total;
        for (i, &pr) in probs[..keep].iter().enumerate() {
            r -= pr;
            if r <= 0.0 {
                return cands[i].0;
            }
        }
        cands[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![0.1, 2.0, -1.0, 1.9, 0.5, 3.0, -2.0, 2.5]
    }

    #[test]
    fn greedy_takes_the_largest() {
        assert_eq!(
            Sampler::new(SamplingParams::default()).sample(&logits(), &[]),
            5
        );
    }

    #[test]
    fn same_seed_same_tokens_and_filters_hold() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 3,
            seed: 42,
            ..Default::default()
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..200)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<Vec<_>>()
        };
        let a = run(&params);
        assert_eq!(a, run(&params));
        assert!(
            a.iter().all(|t| [5, 7, 1].contains(t)),
            "top-k 3 keeps only the 3 best"
        );
        assert!(a.contains(&7) && a.contains(&1), "sampling explores");
        let top_p = SamplingParams {
            temperature: 1.0,
            top_p: 0.3,
            seed: 1,
            ..Default::default()
        };
        assert!(
            run(&top_p).iter().all(|&t| t == 5),
            "top-p 0.3 keeps the top token only"
        );
        let min_p = SamplingParams {
            temperature: 1.0,
            min_p: 0.5,
            seed: 1,
            ..Default::default()
        };
        assert!(run(&min_p).iter().all(|t| [5, 7].contains(t)));
        assert_ne!(
            run(&SamplingParams {
                seed: 43,
                ..params.clone()
            }),
            a
        );
    }

    #[test]
    fn candidates_choose_like_the_whole_row() {
        // Ties at the k-th value come along; sampling from them equals sampling from the row.
        let row: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for (k, penalty, temperature) in [
            (1, 1.0, 0.0),
            (1, 1.0, 0.9),
            (5, 1.3, 0.8),
            (40, 1.1, 1.2),
            (300, 1.0, 0.5),
        ] {
            let params = SamplingParams {
                temperature,
                top_k: k,
                top_p: 0.9,
                repetition_penalty: penalty,
                seed: 7,
                ..Default::default()
            };
            let history = [3u32, 99, 3, 250];
            let (mut a, mut b) = (Sampler::new(params.clone()), Sampler::new(params));
            let sel = a.selection(&history).unwrap();
            let cands = sel.pick(&row);
            assert!(cands.len() >= k, "{} < {k}", cands.len());
            for _ in 0..50 {
                assert_eq!(a.sample(&row, &history), b.sample_from(cands.clone()));
            }
        }
        let sampled = SamplingParams {
            temperature: 0.7,
            ..Default::default()
        };
        assert_eq!(
            Sampler::new(sampled).selection(&[]),
            None,
            "no top-k: whole row"
        );
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        assert_eq!(Sampler::new(p).sample(&logits(), &[5]), 7);
    }
}
