//! AVX2 (and FMA where it says so): the 8-lane `f32` register ([`F32Lanes`] for `__m256`), the
//! `vpmaddubsw` int8 register ([`Int8Lanes`] for [`Avx2`]), the activation quantizer, and the
//! entry points, each compiled with its target features, that the op modules call.
//!
//! `vpmaddubsw` saturates its `i16` pair sums, so the int8 GEMM is exact only for codes within
//! ±[`crate::int8_gemm::MAX_EXACT_CODE`] (the dispatch checks).

use crate::int8_gemm::{Epilogue, PackedInt8Weights};
use crate::int8_tile::{int8_tiles, Int8Lanes, Tile};
use crate::portable::{self, quantize_one, LANE_SUMS};
use crate::simd::F32Lanes;
use std::arch::x86_64::*;

/// Lane indices `0..8`.
#[inline(always)]
unsafe fn lane_indices() -> __m256i {
    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
}

impl F32Lanes for __m256 {
    const LANES: usize = 8;
    type Mask = __m256;
    type Sums = (__m256d, __m256d);

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, live: usize) -> Self {
        _mm256_maskload_ps(p, _mm256_castps_si256(Self::first(live)))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    crate::simd::lanes_binary_ops!(
        add => _mm256_add_ps,
        sub => _mm256_sub_ps,
        mul => _mm256_mul_ps,
        div => _mm256_div_ps,
        min => _mm256_min_ps,
        max => _mm256_max_ps,
    );
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), self)
    }
    #[inline(always)]
    unsafe fn sign_one(self) -> Self {
        _mm256_or_ps(
            _mm256_and_ps(_mm256_set1_ps(-0.0), self),
            _mm256_set1_ps(1.0),
        )
    }
    #[inline(always)]
    unsafe fn ge(self, o: Self) -> Self::Mask {
        _mm256_cmp_ps::<_CMP_GE_OQ>(self, o)
    }
    #[inline(always)]
    unsafe fn first(live: usize) -> Self::Mask {
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(live as i32),
            lane_indices(),
        ))
    }
    #[inline(always)]
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self {
        _mm256_blendv_ps(b, a, m)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self {
        _mm256_fnmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn round_and_pow2(self) -> (Self, Self) {
        let k = _mm256_cvtps_epi32(self);
        let biased = _mm256_max_epi32(
            _mm256_min_epi32(
                _mm256_add_epi32(k, _mm256_set1_epi32(127)),
                _mm256_set1_epi32(254),
            ),
            _mm256_set1_epi32(1),
        );
        (
            _mm256_cvtepi32_ps(k),
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)),
        )
    }
    #[inline(always)]
    unsafe fn zero_below(x: Self, limit: f32, v: Self) -> Self {
        let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(limit));
        _mm256_blendv_ps(v, _mm256_setzero_ps(), underflow)
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), self);
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
    #[inline(always)]
    unsafe fn reduce_sum(self) -> f32 {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), self);
        lanes.iter().sum()
    }
    #[inline(always)]
    unsafe fn sums_zero() -> Self::Sums {
        (_mm256_setzero_pd(), _mm256_setzero_pd())
    }
    #[inline(always)]
    unsafe fn sums_add((lo, hi): Self::Sums, p: *const f32) -> Self::Sums {
        let v = _mm256_loadu_ps(p);
        (
            _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v))),
            _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))),
        )
    }
    #[inline(always)]
    unsafe fn sums_add_squares((lo, hi): Self::Sums, p: *const f32, mean: f64) -> Self::Sums {
        let v = _mm256_loadu_ps(p);
        let mean = _mm256_set1_pd(mean);
        let dl = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), mean);
        let dh = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), mean);
        (
            _mm256_add_pd(lo, _mm256_mul_pd(dl, dl)),
            _mm256_add_pd(hi, _mm256_mul_pd(dh, dh)),
        )
    }
    #[inline(always)]
    unsafe fn sums_lanes((lo, hi): Self::Sums) -> [f64; LANE_SUMS] {
        let mut lanes = [0f64; LANE_SUMS];
        _mm256_storeu_pd(lanes.as_mut_ptr(), lo);
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4), hi);
        lanes
    }
}

crate::simd::f32_entry_points!(
    __m256,
    base = "avx2",
    fma = "avx2,fma",
    wide = 2,
    narrow = 2
);

/// [`portable::scale_and_zero_point`] of the (flagged) rows and [`portable::quantize_rows`] in
/// AVX2, with the same results for every finite `x` (the division and the round-half-to-even
/// conversion are the same IEEE operations; NaN and infinite activations, meaningless either
/// way, may quantize differently).
///
/// # Safety
/// The CPU has AVX2; `x.len()` is a multiple of `k`, `out.len() == x.len() / k × stride`
/// and `stride ≥ k`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize(
    x: &[f32],
    k: usize,
    stats_rows: Option<&[bool]>,
    stride: usize,
    out: &mut [u8],
) -> (f32, u8) {
    let (lo_s, hi_s) = match stats_rows {
        Some(flags) => x.chunks_exact(k).zip(flags).filter(|(_, &f)| f).fold(
            (0f32, 0f32),
            |(lo, hi), (row, _)| {
                let (l, h) = min_max(row);
                (lo.min(l), hi.max(h))
            },
        ),
        None => min_max(x),
    };
    let (scale, zp) = portable::scale_and_zero_point(lo_s, hi_s);
    let scale_v = _mm256_set1_ps(scale);
    let zp_v = _mm256_set1_epi32(i32::from(zp));
    for (row, q) in x.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
        let mut i = 0;
        while i + 8 <= k {
            let v = _mm256_div_ps(_mm256_loadu_ps(row.as_ptr().add(i)), scale_v);
            let n = _mm256_add_epi32(_mm256_cvtps_epi32(v), zp_v);
            // i32 → i16 → u8, each step saturating: clamp(0, 255)
            let w16 = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
            let b8 = _mm_packus_epi16(w16, w16);
            _mm_storel_epi64(q.as_mut_ptr().add(i) as *mut __m128i, b8);
            i += 8;
        }
        for (v, o) in row[i..].iter().zip(&mut q[i..k]) {
            *o = quantize_one(*v, scale, zp);
        }
        q[k..].fill(zp);
    }
    (scale, zp)
}

/// [`portable::min_max`] in AVX2 (same result: a NaN lane keeps the running value).
#[target_feature(enable = "avx2")]
unsafe fn min_max(x: &[f32]) -> (f32, f32) {
    let mut lo = _mm256_setzero_ps();
    let mut hi = _mm256_setzero_ps();
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        let v = _mm256_loadu_ps(c.as_ptr());
        // a NaN lane keeps the running value (the scalar fold ignores NaN too)
        lo = _mm256_min_ps(v, lo);
        hi = _mm256_max_ps(v, hi);
    }
    let (mut lo_s, mut hi_s) = (0f32, 0f32);
    let (mut l, mut h) = ([0f32; 8], [0f32; 8]);
    _mm256_storeu_ps(l.as_mut_ptr(), lo);
    _mm256_storeu_ps(h.as_mut_ptr(), hi);
    for &v in l.iter().chain(chunks.remainder()) {
        if v < lo_s {
            lo_s = v;
        }
    }
    for &v in h.iter().chain(chunks.remainder()) {
        if v > hi_s {
            hi_s = v;
        }
    }
    (lo_s, hi_s)
}

/// The AVX2 int8 register: 8 columns of `i32` sums, `vpmaddubsw` then `vpmaddwd` by ones.
pub(crate) struct Avx2;

impl Int8Lanes for Avx2 {
    const LANES: usize = 8;
    const ROWS: usize = 4;
    type V = __m256i;
    type Cols = (__m256i, __m256, Option<__m256>);

    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn store(v: __m256i, p: *mut i32) {
        _mm256_storeu_si256(p as *mut __m256i, v)
    }
    #[inline(always)]
    unsafe fn weights(at: *const i8, _stream: bool) -> __m256i {
        _mm256_loadu_si256(at as *const __m256i)
    }
    #[inline(always)]
    unsafe fn broadcast(four: i32) -> __m256i {
        _mm256_set1_epi32(four)
    }
    #[inline(always)]
    unsafe fn dot(acc: __m256i, a: __m256i, w: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(a, w);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn columns(
        w: &PackedInt8Weights,
        e: Epilogue,
        zp: u8,
        col: usize,
        live: usize,
    ) -> Self::Cols {
        let mut sums = [0i32; 8];
        sums[..live].copy_from_slice(&w.col_sums[col..col + live]);
        let correction = _mm256_mullo_epi32(
            _mm256_set1_epi32(i32::from(zp)),
            _mm256_loadu_si256(sums.as_ptr() as *const __m256i),
        );
        let scale = _mm256_loadu_ps(e.scales.as_ptr().add(col));
        let bias = e.bias.map(|b| _mm256_loadu_ps(b.as_ptr().add(col)));
        (correction, scale, bias)
    }
    #[inline(always)]
    unsafe fn store_row(
        (correction, scale, bias): Self::Cols,
        acc: __m256i,
        out: *mut f32,
        live: usize,
    ) {
        let exact = _mm256_sub_epi32(acc, correction);
        let mut v = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), scale);
        if let Some(bias) = bias {
            v = _mm256_add_ps(v, bias);
        }
        if live == 8 {
            _mm256_storeu_ps(out, v);
        } else {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, live);
        }
    }
    #[inline(always)]
    unsafe fn tile(rows: usize, width: usize, t: Tile) {
        int8_tiles!(tile, rows, width, t; 1 2 3 4)
    }
}

crate::int8_tile::int8_entry_point!(Avx2, "avx2", tile);
