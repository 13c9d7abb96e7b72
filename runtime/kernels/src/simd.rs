//! The fp32 kernels written once over a vector of `f32` lanes: GELU, LayerNorm's rows, the
//! attention tile products, `exp` and the row softmax.
//!
//! Each CPU family implements [`F32Lanes`] for its register type (AVX2's 8 lanes and AVX-512's
//! 16 in [`crate::x86_64`], NEON's 4 in `crate::aarch64`) and calls these bodies from a
//! function compiled with its target features. The bodies and the trait methods are
//! `#[inline(always)]`, so each body is compiled once per register type, inside that function,
//! with that family's instructions. Every step is the same IEEE operation in the same order
//! whatever the width, so the width changes how many values go at once, not the result, except
//! where a method says otherwise (the cross-lane reductions).

use crate::portable::{ERF_P, ERF_Q, LANE_SUMS};

/// One vector register of `f32` lanes and the operations the generic kernels use.
///
/// # Safety
/// Every method needs the CPU features of its implementation; pointers must be valid for
/// [`F32Lanes::LANES`] values (or as each method says).
pub(crate) trait F32Lanes: Copy {
    /// Lanes per register.
    const LANES: usize;
    /// A per-lane condition.
    type Mask: Copy;
    /// Eight `f64` partial sums (LayerNorm's statistics; lane `i` takes elements `i mod 8`).
    type Sums: Copy;

    /// Every lane `v`.
    unsafe fn splat(v: f32) -> Self;
    /// Every lane `0.0`.
    unsafe fn zero() -> Self;
    /// `LANES` values from `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// The first `live` values from `p` (fewer than `LANES`), zero in the other lanes; reads
    /// only those `live` values.
    unsafe fn load_first(p: *const f32, live: usize) -> Self;
    /// `LANES` values to `p`.
    unsafe fn store(self, p: *mut f32);
    /// `self + o`.
    unsafe fn add(self, o: Self) -> Self;
    /// `self − o`.
    unsafe fn sub(self, o: Self) -> Self;
    /// `self × o`.
    unsafe fn mul(self, o: Self) -> Self;
    /// `self / o`.
    unsafe fn div(self, o: Self) -> Self;
    /// The smaller of each pair (either for equal values; `o` or NaN when one is NaN).
    unsafe fn min(self, o: Self) -> Self;
    /// The larger of each pair (either for equal values; `o` or NaN when one is NaN).
    unsafe fn max(self, o: Self) -> Self;
    /// `|self|` (the sign bit cleared).
    unsafe fn abs(self) -> Self;
    /// `±1.0` with the sign bit of `self`.
    unsafe fn sign_one(self) -> Self;
    /// `self ≥ o` (false where either is NaN).
    unsafe fn ge(self, o: Self) -> Self::Mask;
    /// The lanes below `live` (`live < LANES`).
    unsafe fn first(live: usize) -> Self::Mask;
    /// `a` where `m` holds, `b` elsewhere.
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self;
    /// `self × b + c`, rounded once (the fused multiply-add; x86-64 needs FMA for it).
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// `c − self × b`, rounded once.
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self;
    /// `(k, 2^k)` with `k = round_half_even(self)` as `f32`, the power's biased exponent
    /// clamped to `1..=254` (the first step of [`exp`]).
    unsafe fn round_and_pow2(self) -> (Self, Self);
    /// `v`, or `0.0` in the lanes where `x < limit` ([`exp`]'s underflow).
    unsafe fn zero_below(x: Self, limit: f32, v: Self) -> Self;
    /// The largest lane.
    unsafe fn reduce_max(self) -> f32;
    /// The sum of the lanes (each implementation's own order).
    unsafe fn reduce_sum(self) -> f32;

    /// All partial sums `0.0`.
    unsafe fn sums_zero() -> Self::Sums;
    /// `s + f64(p[0..8])`.
    unsafe fn sums_add(s: Self::Sums, p: *const f32) -> Self::Sums;
    /// `s + (f64(p[0..8]) − mean)²` (a subtraction, a product and a sum, each rounded).
    unsafe fn sums_add_squares(s: Self::Sums, p: *const f32, mean: f64) -> Self::Sums;
    /// The eight partial sums, lane 0 first.
    unsafe fn sums_lanes(s: Self::Sums) -> [f64; LANE_SUMS];
}

/// The [`F32Lanes`] methods that are one instruction of `(self, o)`: `add => _mm256_add_ps`, …
macro_rules! lanes_binary_ops {
    ($($name:ident => $op:path),* $(,)?) => {
        $(
            #[inline(always)]
            unsafe fn $name(self, o: Self) -> Self {
                $op(self, o)
            }
        )*
    };
}
pub(crate) use lanes_binary_ops;

/// [`crate::portable::gelu`] of every lane, bit for bit.
#[inline(always)]
unsafe fn gelu_lanes<V: F32Lanes>(x: V) -> V {
    let (p_coef, q_coef) = (&ERF_P, &ERF_Q);
    let s = x.mul(V::splat(std::f32::consts::FRAC_1_SQRT_2));
    let saturated = s.abs().ge(V::splat(3.9));
    let sign = s.sign_one();
    let t = s.min(V::splat(4.0)).max(V::splat(-4.0));
    let t2 = t.mul(t);
    let mut p = t2.mul(V::splat(p_coef[0])).add(V::splat(p_coef[1]));
    for &c in &p_coef[2..] {
        p = t2.mul(p).add(V::splat(c));
    }
    let mut q = t2.mul(V::splat(q_coef[0])).add(V::splat(q_coef[1]));
    for &c in &q_coef[2..] {
        q = t2.mul(q).add(V::splat(c));
    }
    let e = V::select(saturated, sign, t.mul(p).div(q));
    x.mul(V::splat(0.5)).mul(e.add(V::splat(1.0)))
}

/// `x ← gelu(x)` over the slice: whole registers, then the scalar function for the rest.
#[inline(always)]
pub(crate) unsafe fn gelu<V: F32Lanes>(xs: &mut [f32]) {
    let mut chunks = xs.chunks_exact_mut(V::LANES);
    for c in &mut chunks {
        gelu_lanes(V::load(c.as_ptr())).store(c.as_mut_ptr());
    }
    for x in chunks.into_remainder() {
        *x = crate::portable::gelu(*x);
    }
}

/// [`crate::portable::layer_norm_rows`], bit for bit: the same eight `f64` partial sums per
/// statistic, summed by the same scalar fold, then the same `f32` arithmetic per element.
///
/// # Safety
/// The features of `V`; sizes as [`crate::layer_norm::layer_norm`] checks them.
#[inline(always)]
pub(crate) unsafe fn layer_norm_rows<V: F32Lanes>(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
) {
    use crate::portable::{finish_stats, total};
    let h = gamma.len();
    let full = h / LANE_SUMS * LANE_SUMS;
    for (i, (row, out)) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).enumerate() {
        match residual {
            Some(r) => {
                let r = &r[i * h..(i + 1) * h];
                let mut j = 0;
                while j + V::LANES <= h {
                    let v = V::load(row.as_ptr().add(j)).add(V::load(r.as_ptr().add(j)));
                    v.store(out.as_mut_ptr().add(j));
                    j += V::LANES;
                }
                for ((o, &a), &b) in out[j..].iter_mut().zip(&row[j..]).zip(&r[j..]) {
                    *o = a + b;
                }
            }
            None => out.copy_from_slice(row),
        }
        let p = out.as_ptr();
        let mut acc = V::sums_zero();
        let mut j = 0;
        while j < full {
            acc = V::sums_add(acc, p.add(j));
            j += LANE_SUMS;
        }
        let mean = total(&V::sums_lanes(acc), &out[full..], f64::from) / h as f64;
        let mut acc = V::sums_zero();
        j = 0;
        while j < full {
            acc = V::sums_add_squares(acc, p.add(j), mean);
            j += LANE_SUMS;
        }
        let square = |v: f32| {
            let d = f64::from(v) - mean;
            d * d
        };
        let var = total(&V::sums_lanes(acc), &out[full..], square) / h as f64;
        let (mean, inv_std) = finish_stats(mean, var, epsilon);
        let (m, inv) = (V::splat(mean), V::splat(inv_std));
        let o = out.as_mut_ptr();
        j = 0;
        while j + V::LANES <= h {
            let v = V::load(o.add(j)).sub(m).mul(inv);
            let v = v
                .mul(V::load(gamma.as_ptr().add(j)))
                .add(V::load(beta.as_ptr().add(j)));
            v.store(o.add(j));
            j += V::LANES;
        }
        for ((v, &g), &b) in out[j..].iter_mut().zip(&gamma[j..]).zip(&beta[j..]) {
            *v = (*v - mean) * inv_std * g + b;
        }
    }
}

/// The operands of one attention tile product (see [`products`]).
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    /// Left rows (`a[i × a_stride + p]`).
    pub a: &'a [f32],
    /// Distance between left rows.
    pub a_stride: usize,
    /// Right matrix (`b[p × b_stride + j]`).
    pub b: &'a [f32],
    /// Its row length: the output columns (a multiple of 16).
    pub b_stride: usize,
    /// The contraction length.
    pub depth: usize,
    /// Distance between output rows.
    pub c_stride: usize,
}

/// `c[i][..n] = Σ_p a[i][p] · b[p][..n]` for the first `r ≤ 4` rows, `n` = `b_stride`: tiles of
/// `r` rows × `W` registers, each output one chain of fused multiply-adds in order of `p`
/// (so every width gives the same bits). `wide` registers per tile while `wide × LANES`
/// columns remain, then `narrow`.
///
/// # Safety
/// The features of `V` (with FMA); `a` holds `(r − 1) × a_stride + depth` values, `b`
/// `depth × b_stride`, `c` `(r − 1) × c_stride + b_stride`; `b_stride` is a multiple of
/// `narrow × LANES`.
// the x86-64 kernels' tile products (NEON has its own, tested against this one)
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
pub(crate) unsafe fn products<V: F32Lanes, const WIDE: usize, const NARROW: usize>(
    o: Operands,
    c: &mut [f32],
    r: usize,
) {
    let mut j = 0;
    while j < o.b_stride {
        let c = c.as_mut_ptr().add(j);
        let b = o.b.as_ptr().add(j);
        if j + WIDE * V::LANES <= o.b_stride {
            tile_rows::<V, WIDE>(o, b, c, r);
            j += WIDE * V::LANES;
        } else {
            tile_rows::<V, NARROW>(o, b, c, r);
            j += NARROW * V::LANES;
        }
    }
}

#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
unsafe fn tile_rows<V: F32Lanes, const W: usize>(
    o: Operands,
    b: *const f32,
    c: *mut f32,
    r: usize,
) {
    match r {
        4 => tile::<V, 4, W>(o, b, c),
        3 => tile::<V, 3, W>(o, b, c),
        2 => tile::<V, 2, W>(o, b, c),
        _ => tile::<V, 1, W>(o, b, c),
    }
}

/// One `R × W·LANES` output tile at `c` from the right columns at `b`.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
unsafe fn tile<V: F32Lanes, const R: usize, const W: usize>(
    o: Operands,
    b: *const f32,
    c: *mut f32,
) {
    let mut acc = [[V::zero(); W]; R];
    let a = o.a.as_ptr();
    for p in 0..o.depth {
        let mut bv = [V::zero(); W];
        for (w, v) in bv.iter_mut().enumerate() {
            *v = V::load(b.add(p * o.b_stride + w * V::LANES));
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = V::splat(*a.add(i * o.a_stride + p));
            for (w, acc) in acc.iter_mut().enumerate() {
                *acc = x.mul_add(bv[w], *acc);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (w, acc) in acc.iter().enumerate() {
            acc.store(c.add(i * o.c_stride + w * V::LANES));
        }
    }
}

/// The constants of the SIMD kernels' `exp` (Cody–Waite reduction by `ln 2 = hi + lo`, then a
/// degree-5 polynomial, highest degree first; 0 below `underflow`).
struct ExpConstants {
    pub ln2_hi: f32,
    pub ln2_lo: f32,
    pub poly: [f32; 6],
    pub underflow: f32,
}

/// The SIMD kernels' `exp`.
const EXP: ExpConstants = ExpConstants {
    ln2_hi: 0.693_145_75,
    ln2_lo: 1.428_606_8e-6,
    poly: [
        8.297_654e-3,
        4.191_538e-2,
        1.666_757_5e-1,
        4.999_889_4e-1,
        9.999_997e-1,
        1.000_000_1,
    ],
    underflow: -103.0,
};

/// `exp(x)` for `x ≤ 0` (Cody–Waite reduction, degree-5 polynomial: ≈ 1 ulp; 0 below −103
/// and for −∞).
#[inline(always)]
unsafe fn exp<V: F32Lanes>(x: V) -> V {
    let (kf, scale) = x.mul(V::splat(std::f32::consts::LOG2_E)).round_and_pow2();
    let mut r = kf.neg_mul_add(V::splat(EXP.ln2_hi), x);
    r = kf.neg_mul_add(V::splat(EXP.ln2_lo), r);
    let mut p = V::splat(EXP.poly[0]);
    for &c in &EXP.poly[1..] {
        p = p.mul_add(r, V::splat(c));
    }
    V::zero_below(x, EXP.underflow, p.mul(scale))
}

/// Softmax of `row[..seq]` after adding the mask (key stride 1: `mask[j]`; 0: `mask[0]` for
/// all); `row[seq..]` set to zero. `row.len()` is a multiple of `LANES`. The mask is added,
/// the padding set to −∞ and the maximum taken in one pass (one `f32` addition per score, as
/// [`crate::portable::add_mask`]); then `exp` and the sum, then the product with the
/// reciprocal of the sum.
///
/// # Safety
/// The features of `V` (with FMA); with `key_stride == 1`, `mask` holds at least `seq` values.
#[inline(always)]
pub(crate) unsafe fn softmax<V: F32Lanes>(
    row: &mut [f32],
    seq: usize,
    mask: &[f32],
    key_stride: usize,
) {
    let n = row.len();
    let p = row.as_mut_ptr();
    let neg_inf = V::splat(f32::NEG_INFINITY);
    let shared = V::splat(mask.first().copied().unwrap_or(0.0));
    let mut m = neg_inf;
    // whole registers of scores, then the register the sequence ends in, then padding
    let full = seq.min(n) / V::LANES * V::LANES;
    let mut i = 0;
    if key_stride == 1 {
        while i < full {
            let v = V::load(p.add(i)).add(V::load(mask.as_ptr().add(i)));
            v.store(p.add(i));
            m = m.max(v);
            i += V::LANES;
        }
    } else {
        while i < full {
            let v = V::load(p.add(i)).add(shared);
            v.store(p.add(i));
            m = m.max(v);
            i += V::LANES;
        }
    }
    let live = seq.min(n) - full;
    if live > 0 {
        let add = if key_stride == 1 {
            V::load_first(mask.as_ptr().add(i), live)
        } else {
            shared
        };
        // padding lanes: −∞, so that they add nothing to the max and exp to 0
        let v = V::select(V::first(live), V::load(p.add(i)).add(add), neg_inf);
        v.store(p.add(i));
        m = m.max(v);
        i += V::LANES;
    }
    while i < n {
        neg_inf.store(p.add(i));
        i += V::LANES;
    }
    let vm = V::splat(m.reduce_max());
    let mut sum = V::zero();
    i = 0;
    while i < n {
        let e = exp(V::load(p.add(i)).sub(vm));
        e.store(p.add(i));
        sum = sum.add(e);
        i += V::LANES;
    }
    let inv = V::splat(1.0 / sum.reduce_sum());
    i = 0;
    while i < n {
        V::load(p.add(i)).mul(inv).store(p.add(i));
        i += V::LANES;
    }
}

/// The fp32 entry points of one CPU family, each a function compiled with that family's
/// target features around the generic body: `gelu`, `layer_norm_rows` (features `$base`),
/// attention's `softmax` and, when `$wide`/`$narrow` (registers per tile) are given, its
/// `products` (features `$fma`, which include the fused multiply-add; a family without them
/// writes its own `products`).
macro_rules! f32_entry_points {
    ($v:ty, base = $base:literal, fma = $fma:literal $(, wide = $wide:literal, narrow = $narrow:literal)?) => {
        /// [`crate::portable::gelu`] of every value, bit for bit.
        ///
        /// # Safety
        /// The CPU has this family's base features.
        #[target_feature(enable = $base)]
        pub(crate) unsafe fn gelu(xs: &mut [f32]) {
            $crate::simd::gelu::<$v>(xs)
        }

        /// [`crate::portable::layer_norm_rows`], bit for bit.
        ///
        /// # Safety
        /// The CPU has this family's base features; sizes as
        /// [`crate::layer_norm::layer_norm`] checks them.
        #[target_feature(enable = $base)]
        pub(crate) unsafe fn layer_norm_rows(
            x: &[f32],
            residual: Option<&[f32]>,
            gamma: &[f32],
            beta: &[f32],
            epsilon: f32,
            y: &mut [f32],
        ) {
            $crate::simd::layer_norm_rows::<$v>(x, residual, gamma, beta, epsilon, y)
        }

        $(
        /// Attention's tile products ([`crate::simd::products`]).
        ///
        /// # Safety
        /// The CPU has this family's FMA features; sizes as [`crate::simd::products`]
        /// requires.
        #[target_feature(enable = $fma)]
        pub(crate) unsafe fn products(o: $crate::simd::Operands, c: &mut [f32], r: usize) {
            $crate::simd::products::<$v, $wide, $narrow>(o, c, r)
        }
        )?

        /// Attention's row softmax ([`crate::simd::softmax`]).
        ///
        /// # Safety
        /// The CPU has this family's FMA features; as [`crate::simd::softmax`] requires.
        #[target_feature(enable = $fma)]
        pub(crate) unsafe fn softmax(row: &mut [f32], seq: usize, mask: &[f32], key_stride: usize) {
            $crate::simd::softmax::<$v>(row, seq, mask, key_stride)
        }
    };
}
pub(crate) use f32_entry_points;
