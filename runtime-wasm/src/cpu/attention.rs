//! Causal grouped-query attention on the CPU, for both CPU engines (and the GPU kernels'
//! reference).
//!
//! The work is split into tasks of one query, one key/value head and one stretch of the
//! context. A task takes the query heads that share its key/value head (GQA) one after the
//! other over the same rows, which the first brings into cache, and keeps an online-softmax
//! partial — the group's unnormalised outputs, their scores' maximum and their exponentials'
//! sum — combined per query afterwards. A decoded token is one query over a long context, so
//! its context is split until every core has tasks (flash-decoding); a prompt has a task per
//! query and key/value head already. The scores and weighted sums are the kernel set's
//! (`Kernels::scores_f32`, `weighted_sum_f32`, and their f16 twins for the packed engine's
//! f16 cache: AVX2 reduces four keys at once and keeps 64 output columns in registers over
//! all the rows).

use super::ops::{exp_from_max, for_each_chunk, threads};
use super::packed::Kernels;

/// The attention heads: query heads, key/value heads they share in groups, head width.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
}

/// The shortest stretch of context worth a task of its own: shorter ones cost more to
/// schedule and combine than they save.
const MIN_SPLIT: usize = 128;

/// A layer's cached keys or values, [positions, nkv · hd]: f32s or f16 bits.
#[derive(Clone, Copy)]
pub enum KvView<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
}

/// Causal grouped-query attention of `n` new queries (positions start..start+n, [n, nh · hd])
/// over the cache's keys and values ([start + n, nkv · hd] each, f32): [n, nh · hd].
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    start: usize,
    n: usize,
    heads: Heads,
) -> Vec<f32> {
    attention_over(q, KvView::F32(k), KvView::F32(v), start, n, heads)
}

/// [`attention`] over keys and values in either precision.
pub fn attention_over(
    q: &[f32],
    k: KvView,
    v: KvView,
    start: usize,
    n: usize,
    heads: Heads,
) -> Vec<f32> {
    let Heads { nh, nkv, hd } = heads;
    let group = nh / nkv;
    let splits = context_splits(n, nkv, start + n);
    // Per task: the group's outputs (group · hd), then each head's maximum and sum.
    let part = group * (hd + 2);
    let mut parts = vec![0f32; n * nkv * splits * part];
    let shape = Shape {
        heads,
        group,
        scale: 1.0 / (hd as f32).sqrt(),
    };
    for_each_chunk(&mut parts, part, |i, p| {
        let (t, g, s) = (i / (nkv * splits), i / splits % nkv, i % splits);
        let visible = start + t + 1;
        let context = s * visible / splits..(s + 1) * visible / splits;
        let queries = &q[(t * nh + g * group) * hd..][..group * hd];
        partial(shape, queries, (k, v), g, context, p);
    });
    let mut out = vec![0f32; n * nh * hd];
    for (o, parts) in out
        .chunks_exact_mut(group * hd)
        .zip(parts.chunks_exact(splits * part))
    {
        combine(shape, parts, o);
    }
    out
}

/// How many stretches each query's context is cut into: one, unless the tasks of one stretch
/// (a query and a key/value head each) leave cores idle and the context is long enough.
fn context_splits(n: usize, nkv: usize, context: usize) -> usize {
    let wanted = 2 * threads();
    let tasks = n * nkv;
    if tasks >= wanted {
        return 1;
    }
    wanted.div_ceil(tasks).min(context / MIN_SPLIT).max(1)
}

#[derive(Clone, Copy)]
struct Shape {
    heads: Heads,
    group: usize,
    scale: f32,
}

/// One task's partial: `queries` (the group's heads, [group, hd]) against key/value head `g`
/// at the positions in `context`, into `part` (outputs, maxima, sums; an empty stretch has
/// maxima of -inf and sums of 0).
fn partial(
    Shape {
        heads,
        group,
        scale,
    }: Shape,
    queries: &[f32],
    (k, v): (KvView, KvView),
    g: usize,
    context: std::ops::Range<usize>,
    part: &mut [f32],
) {
    let Heads { nkv, hd, .. } = heads;
    let kernels = Kernels::best();
    let (outputs, stats) = part.split_at_mut(group * hd);
    let (maxima, sums) = stats.split_at_mut(group);
    let len = context.len();
    if len == 0 {
        maxima.fill(f32::NEG_INFINITY);
        return;
    }
    // The context's key and value rows of head g: a row every nkv · hd values.
    let (stride, first) = (nkv * hd, context.start * nkv * hd + g * hd);
    let mut scores = vec![0f32; group * len];
    for (qh, scores) in queries.chunks_exact(hd).zip(scores.chunks_exact_mut(len)) {
        match k {
            KvView::F32(k) => (kernels.scores_f32)(qh, &k[first..], stride, scores),
            KvView::F16(k) => (kernels.scores_f16)(qh, &k[first..], stride, scores),
        }
        scores.iter_mut().for_each(|s| *s *= scale);
    }
    for (h, scores) in scores.chunks_exact_mut(len).enumerate() {
        (maxima[h], sums[h]) = exp_from_max(scores);
    }
    for (p, o) in scores.chunks_exact(len).zip(outputs.chunks_exact_mut(hd)) {
        match v {
            KvView::F32(v) => (kernels.weighted_sum_f32)(p, &v[first..], stride, o),
            KvView::F16(v) => (kernels.weighted_sum_f16)(p, &v[first..], stride, o),
        }
    }
}

/// A query's group of heads from its stretches' partials: each stretch weighted by
/// exp(its maximum − the largest), the sum of outputs over the sum of exponentials.
fn combine(
    Shape {
        heads: Heads { hd, .. },
        group,
        ..
    }: Shape,
    parts: &[f32],
    out: &mut [f32],
) {
    let part = group * (hd + 2);
    for (h, o) in out.chunks_exact_mut(hd).enumerate() {
        let stat = |p: &[f32], i: usize| p[group * hd + i * group + h];
        let max = parts
            .chunks_exact(part)
            .fold(f32::NEG_INFINITY, |m, p| m.max(stat(p, 0)));
        let mut total = 0.0;
        for p in parts.chunks_exact(part) {
            let w = (stat(p, 0) - max).exp();
            total += w * stat(p, 1);
            let outputs = &p[h * hd..(h + 1) * hd];
            o.iter_mut().zip(outputs).for_each(|(o, x)| *o += w * x);
        }
        o.iter_mut().for_each(|o| *o /= total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::packed::tests::weights as values;
    use half::f16;

    /// Attention as the formula reads: per query and head, softmax of the scaled scores over
    /// the visible positions, then the weighted sum of values.
    fn naive(q: &[f32], k: &[f32], v: &[f32], start: usize, n: usize, h: Heads) -> Vec<f32> {
        let (group, scale) = (h.nh / h.nkv, 1.0 / (h.hd as f32).sqrt());
        let mut out = vec![0f32; n * h.nh * h.hd];
        for t in 0..n {
            for head in 0..h.nh {
                let g = head / group;
                let qh = &q[(t * h.nh + head) * h.hd..][..h.hd];
                let row = |m: &[f32], j: usize| m[(j * h.nkv + g) * h.hd..][..h.hd].to_vec();
                let scores: Vec<f32> = (0..start + t + 1)
                    .map(|j| qh.iter().zip(row(k, j)).map(|(a, b)| a * b).sum::<f32>() * scale)
                    .collect();
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                let o = &mut out[(t * h.nh + head) * h.hd..][..h.hd];
                for (j, p) in e.iter().enumerate() {
                    for (o, v) in o.iter_mut().zip(row(v, j)) {
                        *o += p / sum * v;
                    }
                }
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what} [{j}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn attention_matches_the_formula_on_odd_shapes() {
        // Decode steps over contexts long enough to split, prompts after a cache and without,
        // one head per key/value head and groups, a head width off the SIMD width.
        let cases = [
            (
                Heads {
                    nh: 9,
                    nkv: 3,
                    hd: 64,
                },
                700,
                1,
            ),
            (
                Heads {
                    nh: 14,
                    nkv: 2,
                    hd: 64,
                },
                1500,
                1,
            ),
            (
                Heads {
                    nh: 4,
                    nkv: 4,
                    hd: 12,
                },
                300,
                1,
            ),
            (
                Heads {
                    nh: 6,
                    nkv: 2,
                    hd: 20,
                },
                0,
                37,
            ),
            (
                Heads {
                    nh: 3,
                    nkv: 1,
                    hd: 9,
                },
                260,
                5,
            ),
            (
                Heads {
                    nh: 2,
                    nkv: 2,
                    hd: 8,
                },
                0,
                1,
            ),
        ];
        for (i, &(h, start, n)) in cases.iter().enumerate() {
            let len = start + n;
            let seed = 3 * i as u32;
            let q = values(n * h.nh * h.hd, seed + 1);
            let k = values(len * h.nkv * h.hd, seed + 2);
            let v = values(len * h.nkv * h.hd, seed + 3);
            let want = naive(&q, &k, &v, start, n, h);
            let got = attention(&q, &k, &v, start, n, h);
            let what = format!("{h:?} start {start} n {n}");
            assert_close(&got, &want, &what);
            // An f16 cache: the formula on the values its bits hold.
            let bits =
                |x: &[f32]| -> Vec<u16> { x.iter().map(|&x| f16::from_f32(x).to_bits()).collect() };
            let of =
                |b: &[u16]| -> Vec<f32> { b.iter().map(|&h| f16::from_bits(h).to_f32()).collect() };
            let (k16, v16) = (bits(&k), bits(&v));
            let want = naive(&q, &of(&k16), &of(&v16), start, n, h);
            let got = attention_over(&q, KvView::F16(&k16), KvView::F16(&v16), start, n, h);
            assert_close(&got, &want, &format!("{what}, f16"));
        }
    }

    #[test]
    fn a_decoded_token_s_context_is_split_only_when_cores_wait_and_it_is_long() {
        let wanted = 2 * threads();
        assert_eq!(context_splits(wanted, 1, 100_000), 1, "enough queries");
        assert_eq!(context_splits(1, 1, MIN_SPLIT - 1), 1, "a short context");
        let splits = context_splits(1, 1, 100_000);
        assert_eq!(splits, wanted, "one query, one head, a long context");
    }
}
