//! Dense f32 building blocks of the reference forward pass.

/// `task(i, chunk)` for each chunk of `size` values of `out`, on the thread pool on native
/// targets (the `parallel` feature), in order on one thread otherwise.
pub(crate) fn for_each_chunk(
    out: &mut [f32],
    size: usize,
    task: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, chunk)| task(i, chunk));
    }
    #[cfg(not(feature = "parallel"))]
    out.chunks_mut(size)
        .enumerate()
        .for_each(|(i, chunk)| task(i, chunk));
}

/// The threads `for_each_chunk` spreads its tasks over.
pub(crate) fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "parallel"))]
    1
}

/// `out[n][m] = Σ_k x[n][k] · w[m][k]`: activations times a row-major weight matrix transposed
/// (`w` is [out_features, in_features], as stored).
pub fn matmul_t(x: &[f32], w: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    assert_eq!(x.len(), n * k, "activation shape");
    assert_eq!(w.len(), m * k, "weight shape");
    // One token (decode): a plain dot product per row, rows spread over cores. sgemm's packing
    // buys nothing for a single column.
    #[cfg(feature = "parallel")]
    if n == 1 {
        use rayon::prelude::*;
        let mut out = vec![0f32; m];
        out.par_chunks_mut(256).enumerate().for_each(|(b, chunk)| {
            for (i, o) in chunk.iter_mut().enumerate() {
                let row = &w[(b * 256 + i) * k..(b * 256 + i + 1) * k];
                *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
            }
        });
        return out;
    }
    matmul_t_by_runs(x, n, k, m, Rows::F32(w))
}

/// f32 values of a run of weight rows that [`matmul_t_by_runs`] multiplies at a time, at most
/// (4 MiB): each run repacks the tokens, and on one thread (the browser) SmolLM2 lut8g prefill
/// of 256 tokens ran at 376-383 tok/s with 1 MiB runs, 403-415 with 4 MiB ones and 401-410
/// with 16 MiB (the whole-matrix tiles before, 417-440; RESULTS.md, session 43).
const RUN_VALUES: usize = 1 << 20;

/// Where [`matmul_t_by_runs`] gets a run of weight rows.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// Row-major f32 rows, read where they are.
    F32(&'a [f32]),
    /// `decode(r0, tile)` writes rows r0 .. r0 + tile.len() / k into `tile`.
    Decode(&'a (dyn Fn(usize, &mut [f32]) + Sync)),
}

/// `*mut f32` that tasks share: each writes only its own columns of the output.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: matmul_t_by_runs's tasks write disjoint elements through it and the caller holds
// the buffer until all of them have finished.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `task(i)` for i in 0..count, on the thread pool on native targets (the `parallel` feature),
/// in order on one thread otherwise.
fn for_each_task(count: usize, task: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().for_each(task);
    }
    #[cfg(not(feature = "parallel"))]
    (0..count).for_each(task);
}

/// `out[n][m] = Σ_k x[n][k] · w[r][k]` over w's rows from `rows`. Runs of rows are tasks on
/// the thread pool, each (decoding its tile, then) multiplying every token by it with
/// single-threaded sgemm straight into its columns of `out`: matrixmultiply's own threading
/// stops at 4 threads and splits short prompts badly, and a decoded tile stays in its core's
/// cache between being written and being read.
pub(crate) fn matmul_t_by_runs(x: &[f32], n: usize, k: usize, m: usize, rows: Rows) -> Vec<f32> {
    assert_eq!(x.len(), n * k, "activation shape");
    if let Rows::F32(w) = rows {
        assert_eq!(w.len(), m * k, "weight shape");
    }
    let mut out = vec![0f32; n * m];
    if n == 0 || m == 0 {
        return out;
    }
    // With several threads, at least four runs a thread where the matrix allows, so that the
    // cores finish together; at least 16 rows a run, so that sgemm's packing of the tokens is
    // shared by enough rows.
    let threads = threads();
    let balanced = if threads > 1 {
        m.div_ceil(4 * threads)
    } else {
        m
    };
    let run = (RUN_VALUES / k.max(1)).min(balanced).max(16).min(m);
    let shared = SharedOut(out.as_mut_ptr());
    for_each_task(m.div_ceil(run), |i| {
        let out = shared;
        let r0 = i * run;
        let rb = run.min(m - r0);
        let multiply = |w: &[f32]| {
            // SAFETY: A is x ([n, k]), B the run's rows transposed ([k, rb]), C the columns
            // r0 .. r0 + rb of out ([n, m], row stride m): inside each buffer, and no other
            // task writes these columns.
            unsafe {
                matrixmultiply::sgemm(
                    n,
                    k,
                    rb,
                    1.0,
                    x.as_ptr(),
                    k as isize,
                    1,
                    w.as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    out.0.add(r0),
                    m as isize,
                    1,
                );
            }
        };
        match rows {
            Rows::F32(w) => multiply(&w[r0 * k..][..rb * k]),
            // Each thread keeps its tile between runs: a fresh one was zeroed (and, above the
            // allocator's threshold, faulted in) for every run.
            Rows::Decode(decode) => TILE.with_borrow_mut(|tile| {
                if tile.len() < rb * k {
                    tile.resize(rb * k, 0f32);
                }
                let tile = &mut tile[..rb * k];
                decode(r0, tile);
                multiply(tile)
            }),
        }
    });
    out
}

thread_local! {
    /// The tile that [`matmul_t_by_runs`] decodes runs into, one per thread, as long as the
    /// longest run it has decoded.
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// RMSNorm of each row of `x` ([rows, dim]) in place, as transformers computes it in f32.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    for row in x.chunks_exact_mut(dim) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * inv * w;
        }
    }
}

/// Adds `bias` to each row of `x` ([rows, bias.len()]).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
    }
}

/// `silu(gate) · up` for each row of `gu` ([rows, 2·ff], gate half first).
pub fn silu_mul(gu: &[f32], ff: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(gu.len() / 2);
    for row in gu.chunks_exact(2 * ff) {
        let (gate, up) = row.split_at(ff);
        out.extend(gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u));
    }
    out
}

pub fn softmax_in_place(x: &mut [f32]) {
    let (_, sum) = exp_from_max(x);
    x.iter_mut().for_each(|v| *v /= sum);
}

/// `x` replaced by exp(x − max x), unnormalised: returns the maximum and the exponentials' sum
/// (a softmax before its division, which attention's partials defer).
pub(crate) fn exp_from_max(x: &mut [f32]) -> (f32, f32) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    (max, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_on_odd_shapes() {
        for &(n, k, m) in &[
            (1, 1, 1),
            (1, 130, 300),
            (3, 5, 7),
            (17, 33, 9),
            (2, 130, 65),
            // Several runs of rows, the last one short; no tokens.
            (9, 64, 203),
            (0, 3, 4),
            // Rows so long that a run is held to its 16-row minimum.
            (3, 70_000, 37),
        ] {
            let x: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                .collect();
            let w: Vec<f32> = (0..m * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
                .collect();
            let got = matmul_t(&x, &w, n, k, m);
            for i in 0..n {
                for j in 0..m {
                    let products = (0..k).map(|t| (x[i * k + t] * w[j * k + t]) as f64);
                    let want: f64 = products.clone().sum();
                    let scale: f64 = products.map(f64::abs).sum();
                    assert!(
                        (got[i * m + j] as f64 - want).abs() <= 1e-6 * scale + 1e-6,
                        "{n}x{k}x{m} [{i},{j}]"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_values() {
        let mut x = vec![1000.0, 1001.0, 999.0];
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }
}
