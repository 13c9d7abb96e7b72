//! NEON (every aarch64 CPU): the 4-lane `f32` register ([`F32Lanes`] for `float32x4_t`), the
//! activation quantizer every aarch64 int8 kernel uses, the epilogue of the kernels that take
//! shifted activations (an activation code `q`, `0..=255`, as the `i8` value `q − 128`, the
//! shift given back exactly: `Σ (q − zp)·w = Σ (q − 128)·w − (zp − 128)·Σ w`), and the entry
//! points the op modules call. The int8 GEMMs are in [`super::neon_int8`], [`super::dotprod`]
//! and [`super::i8mm`].

use crate::int8_gemm::{Epilogue, PackedInt8Weights};
use crate::portable::{self, quantize_one, LANE_SUMS};
use crate::simd::F32Lanes;
use std::arch::aarch64::*;

impl F32Lanes for float32x4_t {
    const LANES: usize = 4;
    type Mask = uint32x4_t;
    type Sums = [float64x2_t; 4];

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        vdupq_n_f32(v)
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, live: usize) -> Self {
        let mut lanes = [0f32; 4];
        std::ptr::copy_nonoverlapping(p, lanes.as_mut_ptr(), live);
        vld1q_f32(lanes.as_ptr())
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        vst1q_f32(p, self)
    }
    crate::simd::lanes_binary_ops!(
        add => vaddq_f32,
        sub => vsubq_f32,
        mul => vmulq_f32,
        div => vdivq_f32,
        min => vminq_f32,
        max => vmaxq_f32,
    );
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        vabsq_f32(self)
    }
    #[inline(always)]
    unsafe fn sign_one(self) -> Self {
        vbslq_f32(vdupq_n_u32(0x8000_0000), self, vdupq_n_f32(1.0))
    }
    #[inline(always)]
    unsafe fn ge(self, o: Self) -> Self::Mask {
        vcgeq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn first(live: usize) -> Self::Mask {
        const INDEX: [u32; 4] = [0, 1, 2, 3];
        vcltq_u32(vld1q_u32(INDEX.as_ptr()), vdupq_n_u32(live as u32))
    }
    #[inline(always)]
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self {
        vbslq_f32(m, a, b)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        vfmaq_f32(c, self, b)
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self {
        vfmsq_f32(c, self, b)
    }
    #[inline(always)]
    unsafe fn round_and_pow2(self) -> (Self, Self) {
        let k = vcvtnq_s32_f32(self);
        let biased = vmaxq_s32(
            vminq_s32(vaddq_s32(k, vdupq_n_s32(127)), vdupq_n_s32(254)),
            vdupq_n_s32(1),
        );
        (
            vcvtq_f32_s32(k),
            vreinterpretq_f32_s32(vshlq_n_s32::<23>(biased)),
        )
    }
    #[inline(always)]
    unsafe fn zero_below(x: Self, limit: f32, v: Self) -> Self {
        vbslq_f32(vcltq_f32(x, vdupq_n_f32(limit)), vdupq_n_f32(0.0), v)
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        vmaxvq_f32(self)
    }
    #[inline(always)]
    unsafe fn reduce_sum(self) -> f32 {
        let mut lanes = [0f32; 4];
        vst1q_f32(lanes.as_mut_ptr(), self);
        lanes.iter().sum()
    }
    #[inline(always)]
    unsafe fn sums_zero() -> Self::Sums {
        [vdupq_n_f64(0.0); 4]
    }
    #[inline(always)]
    unsafe fn sums_add(s: Self::Sums, p: *const f32) -> Self::Sums {
        let (a, b) = (vld1q_f32(p), vld1q_f32(p.add(4)));
        [
            vaddq_f64(s[0], vcvt_f64_f32(vget_low_f32(a))),
            vaddq_f64(s[1], vcvt_high_f64_f32(a)),
            vaddq_f64(s[2], vcvt_f64_f32(vget_low_f32(b))),
            vaddq_f64(s[3], vcvt_high_f64_f32(b)),
        ]
    }
    #[inline(always)]
    unsafe fn sums_add_squares(s: Self::Sums, p: *const f32, mean: f64) -> Self::Sums {
        let (a, b) = (vld1q_f32(p), vld1q_f32(p.add(4)));
        let mean = vdupq_n_f64(mean);
        let d = [
            vsubq_f64(vcvt_f64_f32(vget_low_f32(a)), mean),
            vsubq_f64(vcvt_high_f64_f32(a), mean),
            vsubq_f64(vcvt_f64_f32(vget_low_f32(b)), mean),
            vsubq_f64(vcvt_high_f64_f32(b), mean),
        ];
        [
            vaddq_f64(s[0], vmulq_f64(d[0], d[0])),
            vaddq_f64(s[1], vmulq_f64(d[1], d[1])),
            vaddq_f64(s[2], vmulq_f64(d[2], d[2])),
            vaddq_f64(s[3], vmulq_f64(d[3], d[3])),
        ]
    }
    #[inline(always)]
    unsafe fn sums_lanes(s: Self::Sums) -> [f64; LANE_SUMS] {
        let mut lanes = [0f64; LANE_SUMS];
        for (i, v) in s.iter().enumerate() {
            vst1q_f64(lanes.as_mut_ptr().add(2 * i), *v);
        }
        lanes
    }
}

crate::simd::f32_entry_points!(float32x4_t, base = "neon", fma = "neon");
pub(crate) use super::neon_attention::products;

/// `(min(0, min x), max(0, max x))` of `rows` (NaN ignored: `fminnm`/`fmaxnm` keep the number),
/// the same values as [`portable::min_max`] (the final fold from 0 keeps its +0).
#[target_feature(enable = "neon")]
unsafe fn min_max<'a>(rows: impl Iterator<Item = &'a [f32]>) -> (f32, f32) {
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let (mut lo_s, mut hi_s) = (0f32, 0f32);
    for row in rows {
        let mut chunks = row.chunks_exact(4);
        for c in &mut chunks {
            let v = vld1q_f32(c.as_ptr());
            lo = vminnmq_f32(lo, v);
            hi = vmaxnmq_f32(hi, v);
        }
        let (l, h) = portable::min_max(chunks.remainder());
        lo_s = lo_s.min(l);
        hi_s = hi_s.max(h);
    }
    let (mut l, mut h) = ([0f32; 4], [0f32; 4]);
    vst1q_f32(l.as_mut_ptr(), lo);
    vst1q_f32(h.as_mut_ptr(), hi);
    for &v in &l {
        if v < lo_s {
            lo_s = v;
        }
    }
    for &v in &h {
        if v > hi_s {
            hi_s = v;
        }
    }
    (lo_s, hi_s)
}

/// [`portable::scale_and_zero_point`] of the (flagged) rows and [`portable::quantize_rows`] in
/// NEON, with the same results for every finite `x`: the same range, the same IEEE division,
/// `fcvtns` rounds half to even and saturates as Rust's `as i32` does, and the two saturating
/// narrowings clamp to `0..=255`.
///
/// # Safety
/// The CPU has NEON; `x.len()` is a multiple of `k`, `out.len() == x.len() / k × stride`
/// and `stride ≥ k`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn quantize(
    x: &[f32],
    k: usize,
    stats_rows: Option<&[bool]>,
    stride: usize,
    out: &mut [u8],
) -> (f32, u8) {
    let (lo, hi) = match stats_rows {
        Some(flags) => min_max(
            x.chunks_exact(k)
                .zip(flags)
                .filter(|(_, &f)| f)
                .map(|(r, _)| r),
        ),
        None => min_max(x.chunks_exact(k)),
    };
    let (scale, zp) = portable::scale_and_zero_point(lo, hi);
    let scale_v = vdupq_n_f32(scale);
    let zp_v = vdupq_n_s32(i32::from(zp));
    for (row, q) in x.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
        let mut i = 0;
        while i + 8 <= k {
            let p = row.as_ptr().add(i);
            let a = vaddq_s32(vcvtnq_s32_f32(vdivq_f32(vld1q_f32(p), scale_v)), zp_v);
            let b = vaddq_s32(
                vcvtnq_s32_f32(vdivq_f32(vld1q_f32(p.add(4)), scale_v)),
                zp_v,
            );
            // i32 → u16 → u8, each step saturating: clamp(0, 255)
            let codes = vqmovn_u16(vcombine_u16(vqmovun_s32(a), vqmovun_s32(b)));
            vst1_u8(q.as_mut_ptr().add(i), codes);
            i += 8;
        }
        for (v, o) in row[i..].iter().zip(&mut q[i..k]) {
            *o = quantize_one(*v, scale, zp);
        }
        q[k..].fill(zp);
    }
    (scale, zp)
}

/// The epilogue's operands for columns `col..col + live` of a kernel on shifted activations:
/// the correction `(zp − 128) × Σ w`, the scales, the bias.
#[inline(always)]
pub(crate) unsafe fn shifted_columns(
    w: &PackedInt8Weights,
    e: Epilogue,
    zp: u8,
    col: usize,
    live: usize,
) -> (int32x4_t, float32x4_t, Option<float32x4_t>) {
    let mut sums = [0i32; 4];
    sums[..live].copy_from_slice(&w.col_sums[col..col + live]);
    let correction = vmulq_s32(vdupq_n_s32(i32::from(zp) - 128), vld1q_s32(sums.as_ptr()));
    let scale = vld1q_f32(e.scales.as_ptr().add(col));
    let bias = e.bias.map(|b| vld1q_f32(b.as_ptr().add(col)));
    (correction, scale, bias)
}

/// `(acc − correction) as f32 × scale (+ bias)` to `live` values at `out`.
#[inline(always)]
pub(crate) unsafe fn store_columns(
    (correction, scale, bias): (int32x4_t, float32x4_t, Option<float32x4_t>),
    acc: int32x4_t,
    out: *mut f32,
    live: usize,
) {
    let mut v = vmulq_f32(vcvtq_f32_s32(vsubq_s32(acc, correction)), scale);
    if let Some(bias) = bias {
        v = vaddq_f32(v, bias);
    }
    if live == 4 {
        vst1q_f32(out, v);
    } else {
        let mut tmp = [0f32; 4];
        vst1q_f32(tmp.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, live);
    }
}

/// [`crate::int8_tile::Int8Lanes`] for a register of 4 columns of `i32` sums over shifted activations
/// ([`super::neon_int8::shift_codes`], [`shifted_columns`]): everything but the product, `$dot(acc, a, w)`, and the
/// rows per tile.
macro_rules! shifted_int8_lanes {
    ($k:ty, rows = $rows:literal, dot = $dot:path, tiles = [$($n:literal)*]) => {
        impl Int8Lanes for $k {
            const LANES: usize = 4;
            const ROWS: usize = $rows;
            type V = int32x4_t;
            type Cols = (int32x4_t, float32x4_t, Option<float32x4_t>);

            #[inline(always)]
            unsafe fn zero() -> int32x4_t {
                vdupq_n_s32(0)
            }
            #[inline(always)]
            unsafe fn load(p: *const i32) -> int32x4_t {
                vld1q_s32(p)
            }
            #[inline(always)]
            unsafe fn store(v: int32x4_t, p: *mut i32) {
                vst1q_s32(p, v)
            }
            #[inline(always)]
            unsafe fn weights(at: *const i8, _stream: bool) -> int32x4_t {
                vreinterpretq_s32_s8(vld1q_s8(at))
            }
            #[inline(always)]
            unsafe fn broadcast(four: i32) -> int32x4_t {
                vdupq_n_s32(four)
            }
            #[inline(always)]
            unsafe fn dot(acc: int32x4_t, a: int32x4_t, w: int32x4_t) -> int32x4_t {
                $dot(acc, vreinterpretq_s8_s32(a), vreinterpretq_s8_s32(w))
            }
            #[inline(always)]
            unsafe fn columns(
                w: &PackedInt8Weights,
                e: Epilogue,
                zp: u8,
                col: usize,
                live: usize,
            ) -> Self::Cols {
                $crate::aarch64::neon::shifted_columns(w, e, zp, col, live)
            }
            #[inline(always)]
            unsafe fn store_row(cols: Self::Cols, acc: int32x4_t, out: *mut f32, live: usize) {
                $crate::aarch64::neon::store_columns(cols, acc, out, live)
            }
            #[inline(always)]
            unsafe fn tile(rows: usize, width: usize, t: Tile) {
                $crate::int8_tile::int8_tiles!(tile, rows, width, t; $($n)*)
            }
        }
    };
}
pub(crate) use shifted_int8_lanes;
