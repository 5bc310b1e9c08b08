//! Weighted 1-D Lloyd (k-means) for learning codebooks.
//!
//! Written by hand because the problem is one-dimensional: sorting the centroids turns the
//! assignment step into a sweep, and running Lloyd on a fine weighted histogram instead of on
//! the raw values makes fitting a 135M-weight model cost milliseconds per iteration while
//! centroid values still come from exact per-bin means. General k-means crates do neither.

/// A weighted histogram of scale-normalized values in [-1, 1].
pub struct Histogram {
    /// Σ weight per bin.
    w: Vec<f64>,
    /// Σ weight·value per bin (so a bin's mean is exact, not its centre).
    wx: Vec<f64>,
}

impl Histogram {
    pub fn new(bins: usize) -> Self {
        Self {
            w: vec![0.0; bins],
            wx: vec![0.0; bins],
        }
    }

    pub fn add(&mut self, value: f32, weight: f64) {
        let bins = self.w.len();
        let pos = ((value as f64 + 1.0) * 0.5 * bins as f64).floor();
        let b = (pos.max(0.0) as usize).min(bins - 1);
        self.w[b] += weight;
        self.wx[b] += weight * value as f64;
    }

    /// Adds another histogram's counts (of the same number of bins).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.w.iter_mut().zip(&other.w) {
            *a += b;
        }
        for (a, b) in self.wx.iter_mut().zip(&other.wx) {
            *a += b;
        }
    }

    /// Non-empty bins as (mean value, weight), ascending by value.
    fn points(&self) -> Vec<(f64, f64)> {
        self.w
            .iter()
            .zip(&self.wx)
            .filter(|(w, _)| **w > 0.0)
            .map(|(w, wx)| (wx / w, *w))
            .collect()
    }
}

/// Fits `k` centroids minimising Σ weight·(value − centroid)². Returns them ascending.
/// With fewer distinct values than `k`, the unused entries repeat the largest centroid.
pub fn fit(hist: &Histogram, k: usize, max_iters: usize) -> Vec<f32> {
    let pts = hist.points();
    if pts.is_empty() {
        return vec![0.0; k];
    }
    if pts.len() <= k {
        let mut c: Vec<f32> = pts.iter().map(|p| p.0 as f32).collect();
        let last = *c.last().unwrap_or(&0.0);
        c.resize(k, last);
        return c;
    }
    // Lloyd only descends to a local optimum, and for mixtures (a bulk plus outliers) the
    // optimum found depends on the start: try the companding start and the uniform grid and
    // keep the better, so a learned codebook is never worse than uniform quantization.
    let uniform = (0..k)
        .map(|j| -1.0 + 2.0 * (j as f64 + 0.5) / k as f64)
        .collect();
    let (a, da) = lloyd(&pts, init_quantiles(&pts, k), max_iters);
    let (b, db) = lloyd(&pts, uniform, max_iters);
    let best = if da <= db { a } else { b };
    best.iter().map(|&v| v as f32).collect()
}

/// Lloyd iterations from ascending `c`; returns the centroids and their weighted distortion.
fn lloyd(pts: &[(f64, f64)], mut c: Vec<f64>, max_iters: usize) -> (Vec<f64>, f64) {
    let k = c.len();
    let mut sum_w = vec![0f64; k];
    let mut sum_wx = vec![0f64; k];
    for _ in 0..max_iters {
        sum_w.iter_mut().for_each(|v| *v = 0.0);
        sum_wx.iter_mut().for_each(|v| *v = 0.0);
        let mut j = 0;
        for &(x, w) in pts {
            // Points are ascending, so the nearest centroid index never decreases.
            while j + 1 < k && x > 0.5 * (c[j] + c[j + 1]) {
                j += 1;
            }
            sum_w[j] += w;
            sum_wx[j] += w * x;
        }
        let mut moved = 0f64;
        for i in 0..k {
            if sum_w[i] > 0.0 {
                let n = sum_wx[i] / sum_w[i];
                moved = moved.max((n - c[i]).abs());
                c[i] = n;
            }
        }
        if moved < 1e-9 {
            break;
        }
    }
    let mut j = 0;
    let mut distortion = 0.0;
    for &(x, w) in pts {
        while j + 1 < k && x > 0.5 * (c[j] + c[j + 1]) {
            j += 1;
        }
        distortion += w * (x - c[j]) * (x - c[j]);
    }
    (c, distortion)
}

/// Starts from the quantiles of density^(1/3): the level density of the MSE-optimal quantizer
/// at high resolution (Panter–Dite). Plain quantiles crowd the centre and leave the tails to
/// Lloyd, which moves them over only slowly. Bins have equal widths, so a bin's weight stands
/// for the density there.
fn init_quantiles(pts: &[(f64, f64)], k: usize) -> Vec<f64> {
    let mass: Vec<f64> = pts.iter().map(|p| p.1.cbrt()).collect();
    let total: f64 = mass.iter().sum();
    let mut c = Vec::with_capacity(k);
    let mut acc = 0.0;
    let mut i = 0;
    for j in 0..k {
        let target = (j as f64 + 0.5) / k as f64 * total;
        while i + 1 < pts.len() && acc + mass[i] < target {
            acc += mass[i];
            i += 1;
        }
        c.push(pts[i].0);
    }
    // Distinct starting centroids: a repeated one would stay empty forever.
    let (lo, hi) = (pts[0].0, pts[pts.len() - 1].0);
    let eps = (hi - lo) / (k as f64 * 1e3);
    for j in 1..k {
        if c[j] <= c[j - 1] {
            c[j] = c[j - 1] + eps;
        }
    }
    c
}

/// Index of the nearest entry of an ascending codebook: the number of midpoints below `x`.
///
/// A binary search over 255 midpoints is a chain of eight dependent loads per weight, and
/// the encoder asks about every weight some fifteen times (three starting scales, four refits
/// and the error of each), which made it most of a conversion. A uniform grid fine enough
/// that a cell holds at most one midpoint gives the answer from one cell and one comparison,
/// without a data-dependent branch; a check (almost never true) falls back to a walk, so the
/// result is the binary search's for every `x`, NaN included (0).
pub struct Nearest {
    /// The midpoints, then +∞ so that the one comparison needs no bounds branch.
    mids: Vec<f32>,
    lo: f32,
    /// Grid cells per unit of `x`.
    per_unit: f32,
    /// Per cell, the number of midpoints below its lower edge; then one more entry, so that a
    /// 32-bit gather at the last cell stays inside.
    first: Vec<u16>,
    cells: usize,
}

impl Nearest {
    /// The grid's size bounds: a cell per midpoint at least, 2^16 cells at most (256 KiB).
    const MIN_CELLS_PER_MID: usize = 8;
    const MAX_CELLS: usize = 1 << 16;

    pub fn new(sorted: &[f32]) -> Self {
        let mut mids: Vec<f32> = sorted.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let (lo, hi) = match (mids.first(), mids.last()) {
            (Some(&lo), Some(&hi)) if hi > lo && (hi - lo).is_finite() => (lo, hi),
            _ => (0.0, 0.0),
        };
        // Cells half as wide as the closest two distinct midpoints hold one midpoint each.
        let gap = mids
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|&g| g > 0.0)
            .fold(f32::INFINITY, f32::min);
        let wanted = (2.0 * (hi - lo) / gap).ceil();
        let cells = if wanted.is_finite() {
            wanted as usize
        } else {
            0
        }
        .clamp(mids.len() * Self::MIN_CELLS_PER_MID, Self::MAX_CELLS)
        .max(1);
        let per_unit = if hi > lo {
            cells as f32 / (hi - lo)
        } else {
            0.0
        };
        let mut first: Vec<u16> = (0..cells)
            .map(|c| {
                let edge = lo + c as f32 / per_unit.max(f32::MIN_POSITIVE);
                mids.partition_point(|&m| m < edge) as u16
            })
            .collect();
        first.push(0);
        mids.push(f32::INFINITY);
        Self {
            mids,
            lo,
            per_unit,
            first,
            cells,
        }
    }

    /// `out[i] = self.index(xs[i])`, eight at a time with AVX2 gathers where the CPU has
    /// them: the group fit assigns every weight 16 times, and one lookup's chain of dependent
    /// loads (cell, first midpoint, midpoints) bounded it.
    pub fn indices(&self, xs: &[f32], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        let done = match std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            true => unsafe { self.indices_avx2(xs, out) },
            false => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for (o, &x) in out[done..].iter_mut().zip(&xs[done..]) {
            *o = self.index(x) as u32;
        }
    }

    /// The whole groups of eight of [`Self::indices`]; returns how many values it did.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn indices_avx2(&self, xs: &[f32], out: &mut [u32]) -> usize {
        use std::arch::x86_64::*;
        let n = xs.len().min(out.len()) / 8 * 8;
        let len = self.mids.len() - 1;
        let (lo, per_unit) = (_mm256_set1_ps(self.lo), _mm256_set1_ps(self.per_unit));
        let last_cell = _mm256_set1_ps((self.cells - 1) as f32);
        let (low16, one, zero) = (
            _mm256_set1_epi32(0xffff),
            _mm256_set1_epi32(1),
            _mm256_setzero_ps(),
        );
        let (first, mids) = (self.first.as_ptr() as *const i32, self.mids.as_ptr());
        for c in (0..n).step_by(8) {
            // SAFETY (every load and gather): c + 8 <= n; cells are clamped to the grid (whose
            // table has a padding entry for the 4-byte read), indices to 0..=len (mids has
            // len + 1 entries, +inf last).
            let x = _mm256_loadu_ps(xs.as_ptr().add(c));
            // As `index`: NaN and values below the grid to cell 0 (max returns its second
            // operand for NaN), values above it to the last cell.
            let t = _mm256_mul_ps(_mm256_sub_ps(x, lo), per_unit);
            let cell = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t, zero), last_cell));
            let i0 = _mm256_and_si256(_mm256_i32gather_epi32::<2>(first, cell), low16);
            let below = |i: __m256i| {
                let m = _mm256_i32gather_ps::<4>(mids, i);
                _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(m, x))
            };
            // A true comparison is all ones: subtracting it adds one.
            let up = below(i0);
            let i = _mm256_sub_epi32(i0, up);
            // Right when the midpoint after (having moved up; i0 < len then) is not below x,
            // or, not having moved, when the one before is (or there is none).
            let before = _mm256_max_epi32(_mm256_sub_epi32(i0, one), _mm256_setzero_si256());
            let next = _mm256_blendv_epi8(before, i, up);
            let next_below = below(next);
            let has_before = _mm256_cmpgt_epi32(i0, _mm256_setzero_si256());
            let wrong =
                _mm256_blendv_epi8(_mm256_andnot_si256(next_below, has_before), next_below, up);
            _mm256_storeu_si256(out.as_mut_ptr().add(c) as *mut __m256i, i);
            let mut wrong = _mm256_movemask_ps(_mm256_castsi256_ps(wrong));
            while wrong != 0 {
                // A cell with several midpoints, or rounding at a cell's edge: as `index`.
                let k = wrong.trailing_zeros() as usize;
                out[c + k] = self.index(xs[c + k]) as u32;
                wrong &= wrong - 1;
            }
            debug_assert!(out[c..c + 8].iter().all(|&i| i as usize <= len));
        }
        n
    }

    pub fn index(&self, x: f32) -> usize {
        let len = self.mids.len() - 1;
        // `as usize` saturates: below the grid (and NaN) gives cell 0.
        let cell = (((x - self.lo) * self.per_unit) as usize).min(self.cells - 1);
        let mut i = self.first[cell] as usize;
        i += (self.mids[i] < x) as usize;
        // Not `>=`: NaN must walk down to 0, as partition_point gives it.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let wrong = |i: usize| (i < len && self.mids[i] < x) || (i > 0 && !(self.mids[i - 1] < x));
        if wrong(i) {
            // A cell with several midpoints (repeated entries), or rounding at a cell's edge.
            i = self.mids[..len].partition_point(|&m| m < x);
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clusters_are_found() {
        let mut h = Histogram::new(1000);
        for i in 0..100 {
            h.add(-0.5 + i as f32 * 1e-4, 1.0);
            h.add(0.5 - i as f32 * 1e-4, 1.0);
        }
        let c = fit(&h, 2, 50);
        assert!((c[0] + 0.495).abs() < 0.01, "{c:?}");
        assert!((c[1] - 0.495).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn nearest_matches_brute_force() {
        let cb = [-1.0, -0.3, 0.0, 0.2, 0.9];
        let n = Nearest::new(&cb);
        for i in 0..=200 {
            let x = -1.2 + i as f32 * 0.012;
            let brute = (0..cb.len())
                .min_by(|&a, &b| (cb[a] - x).abs().total_cmp(&(cb[b] - x).abs()))
                .unwrap();
            assert!((cb[n.index(x)] - x).abs() <= (cb[brute] - x).abs() + 1e-7);
        }
    }

    /// The grid gives the binary search's answer for every value, on a crowded codebook, at
    /// its midpoints exactly, outside its range, for infinities and NaN, and for codebooks
    /// with repeated or too few entries.
    #[test]
    fn nearest_is_the_binary_search() {
        let crowded: Vec<f32> = (0..256)
            .map(|j| {
                let t = -1.0 + 2.0 * j as f32 / 255.0;
                t * t * t
            })
            .collect();
        let books = [
            crowded,
            vec![0.5; 16],
            vec![-1.0, -1.0, 0.0, 0.0, 2.0],
            vec![0.25],
            vec![-0.0, 0.0],
        ];
        for cb in &books {
            let n = Nearest::new(cb);
            let mids: Vec<f32> = cb.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
            let mut xs: Vec<f32> = (0..=40_000).map(|i| -1.5 + i as f32 * 7.5e-5).collect();
            xs.extend(&mids);
            xs.extend(mids.iter().map(|m| m.next_up()));
            xs.extend(mids.iter().map(|m| m.next_down()));
            xs.extend([
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MAX,
                f32::MIN,
            ]);
            for &x in &xs {
                assert_eq!(
                    n.index(x),
                    mids.partition_point(|&m| m < x),
                    "{x} in {cb:?}"
                );
            }
            // The vector path (where the CPU has it) and its scalar tail agree with `index`.
            let mut got = vec![0u32; xs.len()];
            n.indices(&xs, &mut got);
            for (&x, &i) in xs.iter().zip(&got) {
                assert_eq!(i as usize, n.index(x), "{x} in {cb:?}");
            }
        }
    }
}
