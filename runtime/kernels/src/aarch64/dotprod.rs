//! The dotprod int8 GEMM (Armv8.2 FEAT_DotProd, e.g. Cortex-A76/A78, Neoverse N1): one `sdot`
//! takes four `i8 × i8` products per `i32` lane, over the same 4-deep packing as AVX-512 VNNI.
//! `sdot` has no `u8 × i8` form, so the activations are shifted to `i8` (`q − 128`) as in
//! [`super::neon`], and the shift is given back exactly with the column sums. Tiles of 8 rows ×
//! 8 columns (16 accumulators). The instruction is written in `asm!` (its intrinsic is not
//! stable Rust).

use super::neon::{shifted, shifted_columns, store_columns};
use crate::int8_gemm::{Epilogue, PackedInt8Weights};
use crate::int8_tile::{int8_tiles, Int8Lanes, Tile};
use std::arch::aarch64::*;
use std::arch::asm;

/// `acc + Σ₄ a × w` per 32-bit lane (`sdot`).
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, w: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
        acc = inout(vreg) acc,
        w = in(vreg) w,
        a = in(vreg) a,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// The dotprod int8 register: 4 columns of `i32` sums.
pub(crate) struct Dotprod;

impl Int8Lanes for Dotprod {
    const LANES: usize = 4;
    const ROWS: usize = 8;
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
        vreinterpretq_s32_s8(shifted(four))
    }
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int32x4_t, w: int32x4_t) -> int32x4_t {
        sdot(acc, vreinterpretq_s8_s32(a), vreinterpretq_s8_s32(w))
    }
    #[inline(always)]
    unsafe fn columns(
        w: &PackedInt8Weights,
        e: Epilogue,
        zp: u8,
        col: usize,
        live: usize,
    ) -> Self::Cols {
        shifted_columns(w, e, zp, col, live)
    }
    #[inline(always)]
    unsafe fn store_row(cols: Self::Cols, acc: int32x4_t, out: *mut f32, live: usize) {
        store_columns(cols, acc, out, live)
    }
    #[inline(always)]
    unsafe fn tile(rows: usize, width: usize, t: Tile) {
        int8_tiles!(tile, rows, width, t; 1 2 3 4 5 6 7 8)
    }
}

/// One int8 tile, compiled with dotprod.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile<const R: usize, const B: usize>(t: Tile) {
    crate::int8_tile::tile::<Dotprod, R, B>(t)
}

/// `y[m, n]` from the quantized rows `a` ([`crate::int8_tile::gemm`] over [`Dotprod`]).
///
/// # Safety
/// The CPU has dotprod; the weights are packed 4 deep; sizes as [`crate::int8_tile::gemm`]
/// requires.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemm(
    a: &[u8],
    m: usize,
    w: &PackedInt8Weights,
    zp: u8,
    e: Epilogue,
    y: &mut [f32],
    partial: &mut [i32],
) {
    crate::int8_tile::gemm::<Dotprod>(a, m, w, zp, e, y, partial)
}
