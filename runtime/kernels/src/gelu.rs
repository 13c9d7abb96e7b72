//! Exact (erf) GELU, `y = (x × 0.5) × (erf(x / √2) + 1)`, in place over a slice.
//!
//! tract runs the ONNX erf-GELU pattern as its `GeluExact` op: two scalar passes around its erf
//! kernel, with a scratch buffer per call (≈ 8% of an int8 MiniLM classification on a Zen 5).
//! This is one pass with a branch-free rational erf, in AVX-512 and AVX2 intrinsics and in
//! plain Rust, each step the same IEEE operation in the same order, so the vector widths only
//! change how many elements go at once, never the result: every variant is bit-identical to
//! [`gelu`] (no fused multiply-adds; Rust does not contract `a * b + c` either).

/// Numerator coefficients of [`erf`] (in `x²`), highest degree first.
const P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_1e-3,
    -1.609_603_3e-2,
];
/// Denominator coefficients of [`erf`] (in `x²`), highest degree first.
const Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// erf as a branch-free rational function (Eigen's `generic_fast_erf_float`: odd degree-13
/// numerator over even degree-8 denominator), exactly ±1 from |x| ≥ 3.9, where erf rounds to ±1
/// in f32 (the rational alone gives 1 − 6e-8 there, so GELU of a large negative value would
/// not be 0). Max |error| 4.3e-7 against f64 erf.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let saturated = x.abs() >= 3.9;
    let sign = 1f32.copysign(x);
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * P[0] + P[1];
    for &c in &P[2..] {
        p = x2 * p + c;
    }
    let mut q = x2 * Q[0] + Q[1];
    for &c in &Q[2..] {
        q = x2 * q + c;
    }
    if saturated {
        sign
    } else {
        x * p / q
    }
}

/// GELU of one value: `(x × 0.5) × (erf(x × 1/√2) + 1)` (the operation order of the ONNX
/// pattern and of tract's `GeluExact`).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    (x * 0.5) * (erf(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0)
}

/// Which compilation of [`gelu_in_place`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluKernel {
    /// 16 lanes (x86-64 with AVX-512 F).
    Avx512,
    /// 8 lanes (x86-64 with AVX2).
    Avx2,
    /// Plain Rust, one value at a time.
    Portable,
}

impl GeluKernel {
    /// The widest variant this CPU runs.
    pub fn best() -> GeluKernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return GeluKernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return GeluKernel::Avx2;
            }
        }
        GeluKernel::Portable
    }
}

/// `x ← gelu(x)` for every value, with `kernel` (falling back to the portable variant when the
/// CPU cannot run it).
pub fn gelu_in_place(xs: &mut [f32], kernel: GeluKernel) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        GeluKernel::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the CPU has AVX-512 F (checked on this line).
            unsafe { x86::gelu_avx512(xs) }
        }
        #[cfg(target_arch = "x86_64")]
        GeluKernel::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU has AVX2 (checked on this line).
            unsafe { x86::gelu_avx2(xs) }
        }
        _ => gelu_slice(xs),
    }
}

#[inline(always)]
fn gelu_slice(xs: &mut [f32]) {
    for x in xs {
        *x = gelu(*x);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! [`super::gelu`] written out in intrinsics (auto-vectorisation is not enough: the size-
    //! optimised `edge` profile's LTO leaves such loops scalar). Each step is the scalar
    //! function's IEEE operation, in its order, so every lane gives the scalar result's bits.
    use super::{gelu, P, Q};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_avx512(xs: &mut [f32]) {
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn lanes(x: __m512) -> __m512 {
            let s = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
            let sign_bit = _mm512_set1_epi32(i32::MIN);
            let bits = _mm512_castps_si512(s);
            let abs = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, bits));
            let saturated = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(abs, _mm512_set1_ps(3.9));
            let sign = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_and_si512(sign_bit, bits),
                _mm512_castps_si512(_mm512_set1_ps(1.0)),
            ));
            let t = _mm512_max_ps(_mm512_min_ps(s, _mm512_set1_ps(4.0)), _mm512_set1_ps(-4.0));
            let t2 = _mm512_mul_ps(t, t);
            let mut p = _mm512_add_ps(
                _mm512_mul_ps(t2, _mm512_set1_ps(P[0])),
                _mm512_set1_ps(P[1]),
            );
            for &c in &P[2..] {
                p = _mm512_add_ps(_mm512_mul_ps(t2, p), _mm512_set1_ps(c));
            }
            let mut q = _mm512_add_ps(
                _mm512_mul_ps(t2, _mm512_set1_ps(Q[0])),
                _mm512_set1_ps(Q[1]),
            );
            for &c in &Q[2..] {
                q = _mm512_add_ps(_mm512_mul_ps(t2, q), _mm512_set1_ps(c));
            }
            let e = _mm512_mask_blend_ps(saturated, _mm512_div_ps(_mm512_mul_ps(t, p), q), sign);
            _mm512_mul_ps(
                _mm512_mul_ps(x, _mm512_set1_ps(0.5)),
                _mm512_add_ps(e, _mm512_set1_ps(1.0)),
            )
        }
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            let v = lanes(_mm512_loadu_ps(c.as_ptr()));
            _mm512_storeu_ps(c.as_mut_ptr(), v);
        }
        for x in chunks.into_remainder() {
            *x = gelu(*x);
        }
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn gelu_avx2(xs: &mut [f32]) {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn lanes(x: __m256) -> __m256 {
            let s = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
            let sign_bit = _mm256_set1_ps(-0.0);
            let abs = _mm256_andnot_ps(sign_bit, s);
            let saturated = _mm256_cmp_ps::<_CMP_GE_OQ>(abs, _mm256_set1_ps(3.9));
            let sign = _mm256_or_ps(_mm256_and_ps(sign_bit, s), _mm256_set1_ps(1.0));
            let t = _mm256_max_ps(_mm256_min_ps(s, _mm256_set1_ps(4.0)), _mm256_set1_ps(-4.0));
            let t2 = _mm256_mul_ps(t, t);
            let mut p = _mm256_add_ps(
                _mm256_mul_ps(t2, _mm256_set1_ps(P[0])),
                _mm256_set1_ps(P[1]),
            );
            for &c in &P[2..] {
                p = _mm256_add_ps(_mm256_mul_ps(t2, p), _mm256_set1_ps(c));
            }
            let mut q = _mm256_add_ps(
                _mm256_mul_ps(t2, _mm256_set1_ps(Q[0])),
                _mm256_set1_ps(Q[1]),
            );
            for &c in &Q[2..] {
                q = _mm256_add_ps(_mm256_mul_ps(t2, q), _mm256_set1_ps(c));
            }
            let e = _mm256_blendv_ps(_mm256_div_ps(_mm256_mul_ps(t, p), q), sign, saturated);
            _mm256_mul_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(0.5)),
                _mm256_add_ps(e, _mm256_set1_ps(1.0)),
            )
        }
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            let v = lanes(_mm256_loadu_ps(c.as_ptr()));
            _mm256_storeu_ps(c.as_mut_ptr(), v);
        }
        for x in chunks.into_remainder() {
            *x = gelu(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64: its Taylor series for |x| ≤ 3 (terms stay below 1e3, so f64 keeps ≈ 1e-13),
    /// the asymptotic series of erfc beyond (summed while its terms shrink).
    fn erf64(x: f64) -> f64 {
        let z = x.abs();
        if z > 3.0 {
            let mut sum = 1.0;
            let mut term = 1.0;
            let mut n = 1.0;
            loop {
                let next = -term * (2.0 * n - 1.0) / (2.0 * z * z);
                if next.abs() >= term.abs() || next.abs() < 1e-17 {
                    break;
                }
                sum += next;
                term = next;
                n += 1.0;
            }
            let erfc = (-z * z).exp() / (z * std::f64::consts::PI.sqrt()) * sum;
            return x.signum() * (1.0 - erfc);
        }
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        loop {
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
            n += 1.0;
            term *= -x * x / n;
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    }

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 * 1e-3).collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e6, -1e6]);
        v
    }

    #[test]
    fn every_variant_equals_the_scalar_function_bit_for_bit() {
        let x = inputs();
        let want: Vec<u32> = x.iter().map(|&v| gelu(v).to_bits()).collect();
        for kernel in [GeluKernel::Portable, GeluKernel::Avx2, GeluKernel::Avx512] {
            // odd lengths: the vector loops' remainders run too
            for len in [x.len(), x.len() - 7, 13, 1] {
                let mut y = x[..len].to_vec();
                gelu_in_place(&mut y, kernel);
                let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want[..len], "{kernel:?}, {len} values");
            }
        }
    }

    #[test]
    fn matches_the_exact_gelu_closely() {
        for x in inputs() {
            let xd = f64::from(x);
            let exact = 0.5 * xd * (1.0 + erf64(xd * std::f64::consts::FRAC_1_SQRT_2));
            let got = f64::from(gelu(x));
            // erf's 4.3e-7 error, scaled by |x| / 2, plus f32 rounding of the result
            let tol = 3e-7 * xd.abs().max(1e-30) + 1.2e-7 * exact.abs();
            assert!(
                (got - exact).abs() <= tol,
                "gelu({x}) = {got}, exact {exact}"
            );
        }
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(gelu(-30.0), 0.0);
        assert_eq!(gelu(-1e6), 0.0);
        assert_eq!((erf(3.9), erf(-3.9), erf(1e30)), (1.0, -1.0, 1.0));
        assert_eq!(gelu(30.0), 30.0);
        assert!(gelu(f32::NAN).is_nan());
    }
}
