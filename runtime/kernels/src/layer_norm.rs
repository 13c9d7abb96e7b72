//! LayerNorm over the last axis, of one input or of a residual sum, in one pass per row.
//!
//! ONNX `LayerNormalization` (axis -1): `y = (s - mean(s)) / sqrt(var(s) + eps) × gamma + beta`
//! with `s = x`, or `s = x + r` when a residual `Add` was folded in (the sum rounded to f32 as
//! `Add` would). tract runs it as about ten separate ops (two reductions, broadcast subtract,
//! square, reciprocal square root, three broadcast multiplies/adds), each a pass over the
//! activations with its own output tensor; this is one pass to sum, one for the variance and
//! one to write. Mean and variance are accumulated in f64 (eight partial sums), so the
//! statistics are at least as exact as the f32 graph's. The scalar reference is
//! `portable`'s; the vector kernels (`simd`, compiled for AVX-512, AVX2 and
//! NEON) reproduce it bit for bit.

use crate::dispatch;

/// Which compilation of [`layer_norm`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerNormKernel {
    /// 16 lanes (x86-64 with AVX-512 F).
    Avx512,
    /// 8 lanes (x86-64 with AVX2).
    Avx2,
    /// 4 lanes (aarch64 NEON).
    Neon,
    /// Plain Rust.
    Portable,
}

impl LayerNormKernel {
    /// The widest variant this CPU runs ([`dispatch::layer_norm_kernel`]).
    pub fn best() -> LayerNormKernel {
        dispatch::layer_norm_kernel()
    }

    /// Whether this CPU runs `self`.
    pub fn available(self) -> bool {
        let f = dispatch::features();
        match self {
            LayerNormKernel::Avx512 => f.avx512f,
            LayerNormKernel::Avx2 => f.avx2,
            LayerNormKernel::Neon => f.neon,
            LayerNormKernel::Portable => true,
        }
    }

    /// A short description for logs (`"AVX-512"`, `"AVX2"`, `"NEON"`, `"portable"`).
    pub fn describe(self) -> &'static str {
        match self {
            LayerNormKernel::Avx512 => "AVX-512",
            LayerNormKernel::Avx2 => "AVX2",
            LayerNormKernel::Neon => "NEON",
            LayerNormKernel::Portable => "portable",
        }
    }
}

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
    layer_norm_with(
        LayerNormKernel::best(),
        x,
        residual,
        gamma,
        beta,
        epsilon,
        y,
    )
}

/// [`layer_norm`] with `kernel` (the portable one when the CPU cannot run it): every kernel
/// gives the same bits.
pub fn layer_norm_with(
    kernel: LayerNormKernel,
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
    let kernel = if kernel.available() {
        kernel
    } else {
        LayerNormKernel::Portable
    };
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 F (checked above); sizes checked above.
        LayerNormKernel::Avx512 => unsafe {
            crate::x86_64::avx512::layer_norm_rows(x, residual, gamma, beta, epsilon, y)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 (checked above); sizes checked above.
        LayerNormKernel::Avx2 => unsafe {
            crate::x86_64::avx2::layer_norm_rows(x, residual, gamma, beta, epsilon, y)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the CPU has NEON (checked above); sizes checked above.
        LayerNormKernel::Neon => unsafe {
            crate::aarch64::neon::layer_norm_rows(x, residual, gamma, beta, epsilon, y)
        },
        _ => crate::portable::layer_norm_rows(x, residual, gamma, beta, epsilon, y),
    }
    true
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
                crate::portable::layer_norm_rows(&x, residual, &gamma, &beta, 1e-12, &mut want);
                for kernel in [
                    LayerNormKernel::Avx512,
                    LayerNormKernel::Avx2,
                    LayerNormKernel::Neon,
                    LayerNormKernel::Portable,
                ] {
                    if !kernel.available() {
                        continue;
                    }
                    let mut got = vec![0f32; x.len()];
                    assert!(layer_norm_with(
                        kernel, &x, residual, &gamma, &beta, 1e-12, &mut got
                    ));
                    assert_eq!(got, want, "{kernel:?}, {n_rows}×{h}");
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
