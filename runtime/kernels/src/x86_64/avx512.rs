//! AVX-512 (F, BW; VNNI for the int8 GEMM): the 16-lane `f32` register ([`F32Lanes`] for
//! `__m512`), the `vpdpbusd` int8 register ([`Int8Lanes`] for [`Avx512Vnni`]; its sums never
//! saturate, so it is exact for every code), the activation quantizer, and the entry points,
//! each compiled with its target features, that the op modules call.

use crate::int8_gemm::{Epilogue, PackedInt8Weights};
use crate::int8_tile::{int8_tiles, Int8Lanes, Tile};
use crate::portable::{self, LANE_SUMS};
use crate::simd::F32Lanes;
use std::arch::x86_64::*;

/// The mask of the lanes below `live` (≤ 16).
#[inline(always)]
fn first_lanes(live: usize) -> __mmask16 {
    if live >= 16 {
        !0
    } else {
        (1u16 << live) - 1
    }
}

impl F32Lanes for __m512 {
    const LANES: usize = 16;
    type Mask = __mmask16;
    type Sums = __m512d;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, live: usize) -> Self {
        _mm512_maskz_loadu_ps(first_lanes(live), p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self)
    }
    crate::simd::lanes_binary_ops!(
        add => _mm512_add_ps,
        sub => _mm512_sub_ps,
        mul => _mm512_mul_ps,
        div => _mm512_div_ps,
        min => _mm512_min_ps,
        max => _mm512_max_ps,
    );
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        let sign_bit = _mm512_set1_epi32(i32::MIN);
        _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, _mm512_castps_si512(self)))
    }
    #[inline(always)]
    unsafe fn sign_one(self) -> Self {
        let sign_bit = _mm512_set1_epi32(i32::MIN);
        _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_and_si512(sign_bit, _mm512_castps_si512(self)),
            _mm512_castps_si512(_mm512_set1_ps(1.0)),
        ))
    }
    #[inline(always)]
    unsafe fn ge(self, o: Self) -> Self::Mask {
        _mm512_cmp_ps_mask::<_CMP_GE_OQ>(self, o)
    }
    #[inline(always)]
    unsafe fn first(live: usize) -> Self::Mask {
        first_lanes(live)
    }
    #[inline(always)]
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self {
        _mm512_mask_blend_ps(m, b, a)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self {
        _mm512_fnmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn round_and_pow2(self) -> (Self, Self) {
        let k = _mm512_cvtps_epi32(self);
        let biased = _mm512_max_epi32(
            _mm512_min_epi32(
                _mm512_add_epi32(k, _mm512_set1_epi32(127)),
                _mm512_set1_epi32(254),
            ),
            _mm512_set1_epi32(1),
        );
        (
            _mm512_cvtepi32_ps(k),
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased)),
        )
    }
    #[inline(always)]
    unsafe fn zero_below(x: Self, limit: f32, v: Self) -> Self {
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(limit));
        _mm512_maskz_mov_ps(keep, v)
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        _mm512_reduce_max_ps(self)
    }
    #[inline(always)]
    unsafe fn reduce_sum(self) -> f32 {
        _mm512_reduce_add_ps(self)
    }
    #[inline(always)]
    unsafe fn sums_zero() -> Self::Sums {
        _mm512_setzero_pd()
    }
    #[inline(always)]
    unsafe fn sums_add(s: Self::Sums, p: *const f32) -> Self::Sums {
        _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_loadu_ps(p)))
    }
    #[inline(always)]
    unsafe fn sums_add_squares(s: Self::Sums, p: *const f32, mean: f64) -> Self::Sums {
        let d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(p)), _mm512_set1_pd(mean));
        _mm512_add_pd(s, _mm512_mul_pd(d, d))
    }
    #[inline(always)]
    unsafe fn sums_lanes(s: Self::Sums) -> [f64; LANE_SUMS] {
        let mut lanes = [0f64; LANE_SUMS];
        _mm512_storeu_pd(lanes.as_mut_ptr(), s);
        lanes
    }
}

crate::simd::f32_entry_points!(
    __m512,
    base = "avx512f",
    fma = "avx512f",
    wide = 2,
    narrow = 1
);

/// [`super::avx2::quantize`] on 16 lanes, with the same results for every finite `x`: the
/// same IEEE division and conversion, and the same saturation to `0..=255` (here a clamp at
/// 0 and an unsigned narrowing); the minimum and maximum are kept per lane across all the
/// rows and reduced once (padding lanes of a short row load as 0, which every range holds).
///
/// # Safety
/// The CPU has AVX-512 F and BW; `x.len()` is a multiple of `k`,
/// `out.len() == x.len() / k × stride` and `stride ≥ k`.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantize(
    x: &[f32],
    k: usize,
    stats_rows: Option<&[bool]>,
    stride: usize,
    out: &mut [u8],
) -> (f32, u8) {
    let tail = k % 16;
    let tail_mask: __mmask16 = if tail == 0 { 0 } else { (1u16 << tail) - 1 };
    let mut lo = _mm512_setzero_ps();
    let mut hi = _mm512_setzero_ps();
    for (r, row) in x.chunks_exact(k).enumerate() {
        if stats_rows.is_some_and(|f| !f[r]) {
            continue;
        }
        let p = row.as_ptr();
        let mut i = 0;
        while i + 16 <= k {
            let v = _mm512_loadu_ps(p.add(i));
            // a NaN lane keeps the running value (as the scalar fold ignores NaN)
            lo = _mm512_min_ps(v, lo);
            hi = _mm512_max_ps(v, hi);
            i += 16;
        }
        if tail != 0 {
            let v = _mm512_maskz_loadu_ps(tail_mask, p.add(i));
            lo = _mm512_min_ps(v, lo);
            hi = _mm512_max_ps(v, hi);
        }
    }
    let (scale, zp) =
        portable::scale_and_zero_point(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let scale_v = _mm512_set1_ps(scale);
    let zp_v = _mm512_set1_epi32(i32::from(zp));
    let zero = _mm512_setzero_si512();
    for (row, q) in x.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
        let (p, o) = (row.as_ptr(), q.as_mut_ptr());
        let mut i = 0;
        while i + 16 <= k {
            let v = _mm512_div_ps(_mm512_loadu_ps(p.add(i)), scale_v);
            let n = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(v), zp_v), zero);
            _mm_storeu_si128(o.add(i).cast(), _mm512_cvtusepi32_epi8(n));
            i += 16;
        }
        if tail != 0 {
            let v = _mm512_div_ps(_mm512_maskz_loadu_ps(tail_mask, p.add(i)), scale_v);
            let n = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(v), zp_v), zero);
            _mm512_mask_cvtusepi32_storeu_epi8(o.add(i).cast(), tail_mask, n);
        }
        q[k..].fill(zp);
    }
    (scale, zp)
}

/// How far ahead (bytes, in each panel's stream) the first row tile prefetches weights: the
/// later row tiles find a chunk in L1, the first one streams it from L2 (where
/// [`Int8Lanes::prefetch_next`] put it during the previous chunk) or memory (DistilBERT-base's
/// 42 MB of int8 weights pass once per call). 2 KiB measured best of 1, 2
/// and 4 KiB (DistilBERT-base at 16 tokens: −20% against no prefetch).
const PREFETCH_AHEAD: usize = 2048;

/// The AVX-512 VNNI int8 register: 16 columns (one panel) of `i32` sums, `vpdpbusd`; 8 rows ×
/// 2 panels = 16 accumulators of the 32 registers.
pub(crate) struct Avx512Vnni;

impl Int8Lanes for Avx512Vnni {
    const LANES: usize = 16;
    const ROWS: usize = 8;
    type V = __m512i;
    type Cols = (__mmask16, __m512i, __m512, Option<__m512>);

    #[inline(always)]
    unsafe fn zero() -> __m512i {
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> __m512i {
        _mm512_loadu_si512(p.cast())
    }
    #[inline(always)]
    unsafe fn store(v: __m512i, p: *mut i32) {
        _mm512_storeu_si512(p.cast(), v)
    }
    #[inline(always)]
    unsafe fn weights(at: *const i8, stream: bool) -> __m512i {
        if stream {
            // `wrapping_add`: the address may lie past the weights (a prefetch never faults).
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH_AHEAD).cast());
        }
        _mm512_loadu_si512(at.cast())
    }
    /// Into L2, a whole chunk ahead: the next chunk's weights arrive while the later row
    /// tiles compute on this one (DistilBERT-base on one thread: −8% at 16 tokens, −10% at 32,
    /// −2% at 64 and 128).
    #[inline(always)]
    unsafe fn prefetch_next(at: *const i8) {
        _mm_prefetch::<_MM_HINT_T1>(at.cast());
    }
    #[inline(always)]
    unsafe fn broadcast(four: i32) -> __m512i {
        _mm512_set1_epi32(four)
    }
    #[inline(always)]
    unsafe fn dot(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(acc, a, w)
    }
    #[inline(always)]
    unsafe fn columns(
        w: &PackedInt8Weights,
        e: Epilogue,
        zp: u8,
        col: usize,
        live: usize,
    ) -> Self::Cols {
        let mask = first_lanes(live);
        let sums = _mm512_maskz_loadu_epi32(mask, w.col_sums.as_ptr().add(col));
        let correction = _mm512_mullo_epi32(_mm512_set1_epi32(i32::from(zp)), sums);
        let scale = _mm512_loadu_ps(e.scales.as_ptr().add(col));
        let bias = e.bias.map(|b| _mm512_loadu_ps(b.as_ptr().add(col)));
        (mask, correction, scale, bias)
    }
    #[inline(always)]
    unsafe fn store_row(
        (mask, correction, scale, bias): Self::Cols,
        acc: __m512i,
        out: *mut f32,
        _live: usize,
    ) {
        let exact = _mm512_sub_epi32(acc, correction);
        let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), scale);
        if let Some(bias) = bias {
            v = _mm512_add_ps(v, bias);
        }
        _mm512_mask_storeu_ps(out, mask, v);
    }
    #[inline(always)]
    unsafe fn tile(rows: usize, width: usize, t: Tile) {
        int8_tiles!(tile, rows, width, t; 1 2 3 4 5 6 7 8)
    }
}

crate::int8_tile::int8_entry_point!(Avx512Vnni, "avx512f,avx512bw,avx512vnni", tile);
