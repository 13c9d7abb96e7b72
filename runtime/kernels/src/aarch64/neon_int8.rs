//! The plain-NEON int8 GEMM (every aarch64 CPU; the one a Cortex-A72/A53 runs): `smull` of 8
//! activation and 8 weight bytes into `i16` products, `smlal2` adding the products of the next
//! 8 depths onto them, `sadalp` widening the pairs into `i32` sums — 3 instructions per 16
//! multiply-adds, the instruction mix of MLAS's S8S8 NEON kernel.
//!
//! The weights are packed 16 deep ([`crate::int8_gemm::PackedInt8Weights::pack_for`]): in each
//! group of a panel, the 16 codes of a column are one register, and 4 columns are 64
//! consecutive bytes. The activations are shifted to `i8` (`q − 128`) once, before the GEMM
//! ([`shift_codes`]); the shift comes back exactly in the epilogue,
//! `Σ (q − zp)·w = Σ (q − 128)·w − (zp − 128)·Σ w`.
//!
//! Exactness: a product of a shifted activation (−128..=127) and a code is at most 16384 in
//! magnitude, and two of them fit `i16` unless both are `(−128)·(−128)`. When no code is −128
//! (every weight the exporter writes, and any symmetric int8 quantizer's) the pair is summed in
//! `i16`; otherwise each product is widened on its own (`smull`, `smull2`, two `sadalp`), so
//! the kernel is exact for every code either way.
//!
//! Tiles of 4 rows × 4 columns (16 accumulators, each the 4 partial sums of one output), the
//! whole depth in one pass (4 columns of a 3072-deep weight are 12 KiB, within L1).

use super::neon::{shifted_columns, store_columns};
use crate::int8_gemm::{Epilogue, PackedInt8Weights, PANEL};
use std::arch::aarch64::*;

/// Codes per column in one packed group.
pub(crate) const DEPTH: usize = 16;
/// Columns per tile.
const COLS: usize = 4;
/// Rows per tile.
const ROWS: usize = 4;

/// Flips the top bit of every code: the `u8` activation code `q` becomes the `i8` value
/// `q − 128` the kernel multiplies.
///
/// # Safety
/// The CPU has NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn shift_codes(codes: &mut [u8]) {
    let flip = vdupq_n_u8(0x80);
    let mut chunks = codes.chunks_exact_mut(16);
    for c in &mut chunks {
        vst1q_u8(c.as_mut_ptr(), veorq_u8(vld1q_u8(c.as_ptr()), flip));
    }
    for b in chunks.into_remainder() {
        *b ^= 0x80;
    }
}

/// Columns `cols` of `y[m, n]` from the shifted activation rows `a` ([`shift_codes`] of `u8`
/// codes with zero point `zp`): exact `i32` sums minus `(zp − 128) × Σ w`, then the epilogue.
///
/// # Safety
/// The CPU has NEON; the weights are packed 16 deep; `a.len() ≥ m × w.stride()`, the
/// epilogue's slices hold whole panels, `y` is valid for writes of `m × n` values, `cols` is
/// within `0..n` and starts on a multiple of 4.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm(
    a: &[u8],
    m: usize,
    w: &PackedInt8Weights,
    zp: u8,
    e: Epilogue,
    y: *mut f32,
    cols: std::ops::Range<usize>,
) {
    let paired = w.pairs_fit_i16();
    let mut col = cols.start;
    while col < cols.end {
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROWS);
            let t = TileArgs {
                a,
                r,
                col,
                w,
                zp,
                e,
                y,
            };
            match (rows, paired) {
                (4, true) => tile::<4, true>(t),
                (3, true) => tile::<3, true>(t),
                (2, true) => tile::<2, true>(t),
                (_, true) => tile::<1, true>(t),
                (4, false) => tile::<4, false>(t),
                (3, false) => tile::<3, false>(t),
                (2, false) => tile::<2, false>(t),
                (_, false) => tile::<1, false>(t),
            }
            r += rows;
        }
        col += COLS;
    }
}

/// What one tile reads and writes.
#[derive(Clone, Copy)]
struct TileArgs<'a> {
    a: &'a [u8],
    /// First row.
    r: usize,
    /// First column (a multiple of 4).
    col: usize,
    w: &'a PackedInt8Weights,
    zp: u8,
    e: Epilogue<'a>,
    y: *mut f32,
}

/// Rows `r..r + R` × columns `col..col + 4` over the whole depth; `PAIRED`: two products are
/// summed in `i16` before widening (only when no code is −128).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn tile<const R: usize, const PAIRED: bool>(t: TileArgs) {
    let w = t.w;
    let (n, groups, stride) = (w.n, w.groups, w.stride());
    let mut acc = [[vdupq_n_s32(0); COLS]; R];
    let rows: [*const i8; R] =
        std::array::from_fn(|i| t.a.as_ptr().add((t.r + i) * stride) as *const i8);
    let codes = w
        .data
        .as_ptr()
        .add(((t.col / PANEL) * groups * PANEL + t.col % PANEL) * DEPTH);
    for g in 0..groups {
        let at = codes.add(g * PANEL * DEPTH);
        let wv: [int8x16_t; COLS] = std::array::from_fn(|j| vld1q_s8(at.add(j * DEPTH)));
        for (acc_row, row) in acc.iter_mut().zip(&rows) {
            let x = vld1q_s8(row.add(g * DEPTH));
            for (acc_v, &wj) in acc_row.iter_mut().zip(&wv) {
                let low = vmull_s8(vget_low_s8(x), vget_low_s8(wj));
                if PAIRED {
                    *acc_v = vpadalq_s16(*acc_v, vmlal_high_s8(low, x, wj));
                } else {
                    *acc_v = vpadalq_s16(*acc_v, low);
                    *acc_v = vpadalq_s16(*acc_v, vmull_high_s8(x, wj));
                }
            }
        }
    }
    let live = (n - t.col).min(COLS);
    let cols = shifted_columns(w, t.e, t.zp, t.col, live);
    for (i, a) in acc.iter().enumerate() {
        // each accumulator's 4 partial sums into one lane per column
        let sums = vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
        store_columns(cols, sums, t.y.add((t.r + i) * n + t.col), live);
    }
}
