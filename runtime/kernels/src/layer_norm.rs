//! LayerNorm over the last axis, of one input or of a residual sum, in one pass per row.
//!
//! ONNX `LayerNormalization` (axis -1): `y = (s - mean(s)) / sqrt(var(s) + eps) × gamma + beta`
//! with `s = x`, or `s = x + r` when a residual `Add` was folded in (the sum rounded to f32 as
//! `Add` would). tract runs it as about ten separate ops (two reductions, broadcast subtract,
//! square, reciprocal square root, three broadcast multiplies/adds), each a pass over the
//! activations with its own output tensor; this is one pass to sum, one for the variance and
//! one to write. Mean and variance are accumulated in f64, so the statistics are at least as
//! exact as the f32 graph's.

/// Lanes of the partial sums (a multiple of the vector width, so the loops vectorise).
const LANES: usize = 8;

/// Normalises each row of `x` (`x.len()` a multiple of `gamma.len()`) into `y`; `residual`,
/// when given, is added to `x` first. Returns `false`, with `y` untouched, when the sizes
/// disagree (`x`, `y` and `residual` of different lengths, `beta.len() != gamma.len()`, an
/// empty `gamma`, or `x.len()` not a multiple of it).
pub fn layer_norm(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
) -> bool {
    let h = gamma.len();
    if h == 0
        || beta.len() != h
        || y.len() != x.len()
        || !x.len().is_multiple_of(h)
        || residual.is_some_and(|r| r.len() != x.len())
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F (checked on the line above).
            unsafe { x86::rows_avx512(x, residual, gamma, beta, epsilon, y) };
            return true;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked on the line above).
            unsafe { x86::rows_avx2(x, residual, gamma, beta, epsilon, y) };
            return true;
        }
    }
    rows(x, residual, gamma, beta, epsilon, y);
    true
}

/// The rows of [`layer_norm`], sizes checked: the scalar reference the vector versions
/// ([`x86`]) reproduce bit for bit.
#[inline(always)]
fn rows(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
) {
    let h = gamma.len();
    for (i, (row, out)) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).enumerate() {
        match residual {
            Some(r) => {
                for ((o, &a), &b) in out.iter_mut().zip(row).zip(&r[row_range(h, i)]) {
                    *o = a + b;
                }
            }
            None => out.copy_from_slice(row),
        }
        normalize_in_place(out, gamma, beta, epsilon);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! [`super::rows`] in AVX-512 and AVX2 intrinsics (auto-vectorisation is not enough: the
    //! size-optimised `edge` profile's LTO leaves such loops scalar). The same operations in the
    //! same order as the scalar code: 8 f64 partial sums (element `i` in lane `i mod 8`), summed
    //! by the same scalar fold; then the same f32 arithmetic per element. Bit-identical.
    use super::{finish_stats, LANES};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512 F; sizes as [`super::layer_norm`] checks them.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_avx512(
        x: &[f32],
        residual: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        y: &mut [f32],
    ) {
        let h = gamma.len();
        let full = h / LANES * LANES;
        for (i, (row, out)) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).enumerate() {
            match residual {
                Some(r) => {
                    let r = &r[i * h..(i + 1) * h];
                    let mut j = 0;
                    while j + 16 <= h {
                        let v = _mm512_add_ps(
                            _mm512_loadu_ps(row.as_ptr().add(j)),
                            _mm512_loadu_ps(r.as_ptr().add(j)),
                        );
                        _mm512_storeu_ps(out.as_mut_ptr().add(j), v);
                        j += 16;
                    }
                    for ((o, &a), &b) in out[j..].iter_mut().zip(&row[j..]).zip(&r[j..]) {
                        *o = a + b;
                    }
                }
                None => out.copy_from_slice(row),
            }
            let p = out.as_ptr();
            let mut acc = _mm512_setzero_pd();
            let mut j = 0;
            while j < full {
                acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_loadu_ps(p.add(j))));
                j += LANES;
            }
            let mut lanes = [0f64; LANES];
            _mm512_storeu_pd(lanes.as_mut_ptr(), acc);
            let mean = super::total(&lanes, &out[full..], f64::from) / h as f64;
            let mean_v = _mm512_set1_pd(mean);
            let mut acc = _mm512_setzero_pd();
            j = 0;
            while j < full {
                let d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(p.add(j))), mean_v);
                acc = _mm512_add_pd(acc, _mm512_mul_pd(d, d));
                j += LANES;
            }
            _mm512_storeu_pd(lanes.as_mut_ptr(), acc);
            let square = |v: f32| {
                let d = f64::from(v) - mean;
                d * d
            };
            let var = super::total(&lanes, &out[full..], square) / h as f64;
            let (mean, inv_std) = finish_stats(mean, var, epsilon);
            let (m, inv) = (_mm512_set1_ps(mean), _mm512_set1_ps(inv_std));
            let o = out.as_mut_ptr();
            j = 0;
            while j + 16 <= h {
                let v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(o.add(j)), m), inv);
                let v = _mm512_add_ps(
                    _mm512_mul_ps(v, _mm512_loadu_ps(gamma.as_ptr().add(j))),
                    _mm512_loadu_ps(beta.as_ptr().add(j)),
                );
                _mm512_storeu_ps(o.add(j), v);
                j += 16;
            }
            for ((v, &g), &b) in out[j..].iter_mut().zip(&gamma[j..]).zip(&beta[j..]) {
                *v = (*v - mean) * inv_std * g + b;
            }
        }
    }

    /// # Safety
    /// The CPU has AVX2; sizes as [`super::layer_norm`] checks them.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_avx2(
        x: &[f32],
        residual: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        y: &mut [f32],
    ) {
        let h = gamma.len();
        let full = h / LANES * LANES;
        for (i, (row, out)) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).enumerate() {
            match residual {
                Some(r) => {
                    let r = &r[i * h..(i + 1) * h];
                    let mut j = 0;
                    while j + 8 <= h {
                        let v = _mm256_add_ps(
                            _mm256_loadu_ps(row.as_ptr().add(j)),
                            _mm256_loadu_ps(r.as_ptr().add(j)),
                        );
                        _mm256_storeu_ps(out.as_mut_ptr().add(j), v);
                        j += 8;
                    }
                    for ((o, &a), &b) in out[j..].iter_mut().zip(&row[j..]).zip(&r[j..]) {
                        *o = a + b;
                    }
                }
                None => out.copy_from_slice(row),
            }
            let p = out.as_ptr();
            // lanes 0..4 and 4..8 of the 8 partial sums
            let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            let mut j = 0;
            while j < full {
                let v = _mm256_loadu_ps(p.add(j));
                lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
                hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
                j += LANES;
            }
            let mut lanes = [0f64; LANES];
            _mm256_storeu_pd(lanes.as_mut_ptr(), lo);
            _mm256_storeu_pd(lanes.as_mut_ptr().add(4), hi);
            let mean = super::total(&lanes, &out[full..], f64::from) / h as f64;
            let mean_v = _mm256_set1_pd(mean);
            let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            j = 0;
            while j < full {
                let v = _mm256_loadu_ps(p.add(j));
                let dl = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), mean_v);
                let dh = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), mean_v);
                lo = _mm256_add_pd(lo, _mm256_mul_pd(dl, dl));
                hi = _mm256_add_pd(hi, _mm256_mul_pd(dh, dh));
                j += LANES;
            }
            _mm256_storeu_pd(lanes.as_mut_ptr(), lo);
            _mm256_storeu_pd(lanes.as_mut_ptr().add(4), hi);
            let square = |v: f32| {
                let d = f64::from(v) - mean;
                d * d
            };
            let var = super::total(&lanes, &out[full..], square) / h as f64;
            let (mean, inv_std) = finish_stats(mean, var, epsilon);
            let (m, inv) = (_mm256_set1_ps(mean), _mm256_set1_ps(inv_std));
            let o = out.as_mut_ptr();
            j = 0;
            while j + 8 <= h {
                let v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(o.add(j)), m), inv);
                let v = _mm256_add_ps(
                    _mm256_mul_ps(v, _mm256_loadu_ps(gamma.as_ptr().add(j))),
                    _mm256_loadu_ps(beta.as_ptr().add(j)),
                );
                _mm256_storeu_ps(o.add(j), v);
                j += 8;
            }
            for ((v, &g), &b) in out[j..].iter_mut().zip(&gamma[j..]).zip(&beta[j..]) {
                *v = (*v - mean) * inv_std * g + b;
            }
        }
    }
}

fn row_range(h: usize, row: usize) -> std::ops::Range<usize> {
    row * h..(row + 1) * h
}

/// `s ← (s - mean) × inv_std × gamma + beta` for one row.
#[inline(always)]
fn normalize_in_place(s: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    let n = s.len() as f64;
    let mean = lane_sum(s, f64::from) / n;
    let var = lane_sum(s, |v| {
        let d = f64::from(v) - mean;
        d * d
    }) / n;
    let (mean, inv_std) = finish_stats(mean, var, epsilon);
    for ((v, &g), &b) in s.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv_std * g + b;
    }
}

/// The f32 mean and `1 / sqrt(var + eps)` the normalisation applies.
#[inline(always)]
fn finish_stats(mean: f64, var: f64, epsilon: f32) -> (f32, f32) {
    (
        (mean as f32),
        (1.0 / (var + f64::from(epsilon)).sqrt()) as f32,
    )
}

/// `Σ f(v)` over `s` with [`LANES`] independent partial sums (vectorisable, and more exact
/// than one running sum).
#[inline(always)]
fn lane_sum(s: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    total(&lanes, chunks.remainder(), f)
}

/// The partial sums added in lane order, then `f` of the values past the last whole chunk.
#[inline(always)]
fn total(lanes: &[f64; LANES], remainder: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    lanes.iter().sum::<f64>() + remainder.iter().map(|&v| f(v)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ONNX definition evaluated in f64, rounded to f32 at the end.
    fn reference(s: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
        let h = gamma.len();
        let mut out = Vec::new();
        for row in s.chunks_exact(h) {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / h as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / h as f64;
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            for ((&v, &g), &b) in row.iter().zip(gamma).zip(beta) {
                out.push(((f64::from(v) - mean) * inv * f64::from(g) + f64::from(b)) as f32);
            }
        }
        out
    }

    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let k = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                ((k >> 8) % 20001) as f32 / 10000.0 * scale - scale
            })
            .collect()
    }

    #[test]
    fn matches_the_onnx_definition_within_f32_rounding() {
        for (rows, h) in [(1, 1), (3, 7), (5, 384), (2, 769)] {
            let x = values(rows * h, 1, 3.0);
            let r = values(rows * h, 2, 1.0);
            let gamma = values(h, 3, 1.5);
            let beta = values(h, 4, 0.5);
            for residual in [None, Some(&r[..])] {
                let s: Vec<f32> = match residual {
                    Some(r) => x.iter().zip(r).map(|(a, b)| a + b).collect(),
                    None => x.clone(),
                };
                let want = reference(&s, &gamma, &beta, 1e-12);
                let mut y = vec![f32::NAN; x.len()];
                assert!(layer_norm(&x, residual, &gamma, &beta, 1e-12, &mut y));
                let worst = y
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                    .fold(0f32, f32::max);
                assert!(worst < 2e-6, "{rows}×{h} {}: {worst}", residual.is_some());
            }
        }
    }

    #[test]
    fn every_vector_width_gives_the_same_bits() {
        for (n_rows, h) in [(3, 7), (5, 384), (2, 769)] {
            let x = values(n_rows * h, 3, 4.0);
            let r = values(n_rows * h, 5, 1.0);
            let gamma = values(h, 7, 1.5);
            let beta = values(h, 9, 0.5);
            for residual in [None, Some(&r[..])] {
                let mut want = vec![0f32; x.len()];
                rows(&x, residual, &gamma, &beta, 1e-12, &mut want);
                #[cfg(target_arch = "x86_64")]
                for (name, has) in [
                    ("avx512", std::arch::is_x86_feature_detected!("avx512f")),
                    ("avx2", std::arch::is_x86_feature_detected!("avx2")),
                ] {
                    if !has {
                        continue;
                    }
                    let mut got = vec![0f32; x.len()];
                    // SAFETY: the CPU has the feature (checked above).
                    unsafe {
                        match name {
                            "avx512" => {
                                x86::rows_avx512(&x, residual, &gamma, &beta, 1e-12, &mut got)
                            }
                            _ => x86::rows_avx2(&x, residual, &gamma, &beta, 1e-12, &mut got),
                        }
                    }
                    assert_eq!(got, want, "{name}, {n_rows}×{h}");
                }
                let mut public = vec![0f32; x.len()];
                assert!(layer_norm(&x, residual, &gamma, &beta, 1e-12, &mut public));
                assert_eq!(public, want);
            }
        }
    }

    #[test]
    fn a_constant_row_gives_beta_and_epsilon_keeps_it_finite() {
        let gamma = [2.0, 3.0];
        let beta = [0.25, -0.5];
        let mut y = [f32::NAN; 2];
        assert!(layer_norm(&[4.0, 4.0], None, &gamma, &beta, 1e-5, &mut y));
        assert_eq!(y, beta);
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        let g = [1.0; 2];
        let mut y = [0.0; 4];
        assert!(!layer_norm(&[1.0; 3], None, &g, &g, 0.0, &mut y[..3]));
        assert!(!layer_norm(&[1.0; 4], None, &g, &g, 0.0, &mut y[..2]));
        assert!(!layer_norm(&[1.0; 4], None, &g, &[1.0; 3], 0.0, &mut y));
        assert!(!layer_norm(&[1.0; 4], Some(&[1.0; 2]), &g, &g, 0.0, &mut y));
        assert!(!layer_norm(&[], None, &[], &[], 0.0, &mut []));
    }
}
