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
/// (`w` is [out_features, in_features], as stored). matrixmultiply does the blocking and, on
/// native targets, the threading.
pub fn matmul_t(x: &[f32], w: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    assert_eq!(x.len(), n * k, "activation shape");
    assert_eq!(w.len(), m * k, "weight shape");
    let mut out = vec![0f32; n * m];
    // One token (decode): a plain dot product per row, rows spread over cores. sgemm's packing
    // buys nothing for a single column and its threading does not split this shape.
    #[cfg(feature = "parallel")]
    if n == 1 {
        use rayon::prelude::*;
        out.par_chunks_mut(256).enumerate().for_each(|(b, chunk)| {
            for (i, o) in chunk.iter_mut().enumerate() {
                let row = &w[(b * 256 + i) * k..(b * 256 + i + 1) * k];
                *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
            }
        });
        return out;
    }
    // SAFETY: the asserts above bound every index sgemm derives from these strides.
    unsafe {
        matrixmultiply::sgemm(
            n,
            k,
            m,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            0.0,
            out.as_mut_ptr(),
            m as isize,
            1,
        );
    }
    out
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
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
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
                    let want: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
                    assert!(
                        (got[i * m + j] - want).abs() < 1e-4,
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
