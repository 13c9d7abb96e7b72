//! The dotprod int8 GEMM (Armv8.2 FEAT_DotProd, e.g. Cortex-A76/A78, Neoverse N1): one `sdot`
//! takes four `i8 × i8` products per `i32` lane, over the same 4-deep packing as AVX-512 VNNI.
//! `sdot` has no `u8 × i8` form, so the activations are shifted to `i8` (`q − 128`) once,
//! before the GEMM ([`super::neon_int8::shift_codes`]), and the shift is given back exactly
//! with the column sums ([`super::neon`]). Tiles of 8 rows ×
//! 8 columns (16 accumulators); four depth groups at a time, so that one 16-byte load of a row
//! feeds eight `sdot`s by lane (the 8×8×4 tile of IREE's dotprod micro-kernel). The instruction is
//! written in `asm!` (its intrinsic is not stable Rust).

use super::neon::shifted_int8_lanes;
use crate::int8_gemm::{Epilogue, PackedInt8Weights, PANEL};
use crate::int8_tile::{self, Int8Lanes, Tile};
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

/// `acc[j] + Σ_q Σ₄ a[4q..4q+4] × w[q][j]` per 32-bit lane, for two registers of columns `j`
/// over four depth groups `q` (eight `sdot`s by element, one block so that the compiler keeps
/// a tile's rows unrolled).
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot_quad(acc: &mut [int32x4_t; 2], w: &[[int8x16_t; 2]; 4], a: int8x16_t) {
    asm!(
        "sdot {c0:v}.4s, {w00:v}.16b, {a:v}.4b[0]",
        "sdot {c1:v}.4s, {w01:v}.16b, {a:v}.4b[0]",
        "sdot {c0:v}.4s, {w10:v}.16b, {a:v}.4b[1]",
        "sdot {c1:v}.4s, {w11:v}.16b, {a:v}.4b[1]",
        "sdot {c0:v}.4s, {w20:v}.16b, {a:v}.4b[2]",
        "sdot {c1:v}.4s, {w21:v}.16b, {a:v}.4b[2]",
        "sdot {c0:v}.4s, {w30:v}.16b, {a:v}.4b[3]",
        "sdot {c1:v}.4s, {w31:v}.16b, {a:v}.4b[3]",
        c0 = inout(vreg) acc[0],
        c1 = inout(vreg) acc[1],
        w00 = in(vreg) w[0][0],
        w01 = in(vreg) w[0][1],
        w10 = in(vreg) w[1][0],
        w11 = in(vreg) w[1][1],
        w20 = in(vreg) w[2][0],
        w21 = in(vreg) w[2][1],
        w30 = in(vreg) w[3][0],
        w31 = in(vreg) w[3][1],
        a = in(vreg) a,
        options(pure, nomem, nostack, preserves_flags)
    );
}

/// `acc + Σ_q Σ₄ a[4q..4q+4] × w[q]` per 32-bit lane, one register of columns over four depth
/// groups (four `sdot`s by element).
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot_quad1(acc: &mut int32x4_t, w: &[[int8x16_t; 2]; 4], a: int8x16_t) {
    asm!(
        "sdot {c:v}.4s, {w0:v}.16b, {a:v}.4b[0]",
        "sdot {c:v}.4s, {w1:v}.16b, {a:v}.4b[1]",
        "sdot {c:v}.4s, {w2:v}.16b, {a:v}.4b[2]",
        "sdot {c:v}.4s, {w3:v}.16b, {a:v}.4b[3]",
        c = inout(vreg) *acc,
        w0 = in(vreg) w[0][0],
        w1 = in(vreg) w[1][0],
        w2 = in(vreg) w[2][0],
        w3 = in(vreg) w[3][0],
        a = in(vreg) a,
        options(pure, nomem, nostack, preserves_flags)
    );
}

/// Sixteen `sdot`s by element `$lane`: `acc[i][j] += Σ₄ a[i][4·lane..] × w[j]` for the 8 rows
/// × 2 registers of a full tile, in one block (26 vector registers: the compiler keeps the
/// accumulators in registers across the loop).
macro_rules! sdot_8x2 {
    ($lane:literal, $acc:ident, $a:ident, $w0:expr, $w1:expr) => {
        asm!(
            concat!("sdot {c00:v}.4s, {w0:v}.16b, {a0:v}.4b[", $lane, "]"),
            concat!("sdot {c01:v}.4s, {w1:v}.16b, {a0:v}.4b[", $lane, "]"),
            concat!("sdot {c10:v}.4s, {w0:v}.16b, {a1:v}.4b[", $lane, "]"),
            concat!("sdot {c11:v}.4s, {w1:v}.16b, {a1:v}.4b[", $lane, "]"),
            concat!("sdot {c20:v}.4s, {w0:v}.16b, {a2:v}.4b[", $lane, "]"),
            concat!("sdot {c21:v}.4s, {w1:v}.16b, {a2:v}.4b[", $lane, "]"),
            concat!("sdot {c30:v}.4s, {w0:v}.16b, {a3:v}.4b[", $lane, "]"),
            concat!("sdot {c31:v}.4s, {w1:v}.16b, {a3:v}.4b[", $lane, "]"),
            concat!("sdot {c40:v}.4s, {w0:v}.16b, {a4:v}.4b[", $lane, "]"),
            concat!("sdot {c41:v}.4s, {w1:v}.16b, {a4:v}.4b[", $lane, "]"),
            concat!("sdot {c50:v}.4s, {w0:v}.16b, {a5:v}.4b[", $lane, "]"),
            concat!("sdot {c51:v}.4s, {w1:v}.16b, {a5:v}.4b[", $lane, "]"),
            concat!("sdot {c60:v}.4s, {w0:v}.16b, {a6:v}.4b[", $lane, "]"),
            concat!("sdot {c61:v}.4s, {w1:v}.16b, {a6:v}.4b[", $lane, "]"),
            concat!("sdot {c70:v}.4s, {w0:v}.16b, {a7:v}.4b[", $lane, "]"),
            concat!("sdot {c71:v}.4s, {w1:v}.16b, {a7:v}.4b[", $lane, "]"),
            c00 = inout(vreg) $acc[0][0],
            c01 = inout(vreg) $acc[0][1],
            c10 = inout(vreg) $acc[1][0],
            c11 = inout(vreg) $acc[1][1],
            c20 = inout(vreg) $acc[2][0],
            c21 = inout(vreg) $acc[2][1],
            c30 = inout(vreg) $acc[3][0],
            c31 = inout(vreg) $acc[3][1],
            c40 = inout(vreg) $acc[4][0],
            c41 = inout(vreg) $acc[4][1],
            c50 = inout(vreg) $acc[5][0],
            c51 = inout(vreg) $acc[5][1],
            c60 = inout(vreg) $acc[6][0],
            c61 = inout(vreg) $acc[6][1],
            c70 = inout(vreg) $acc[7][0],
            c71 = inout(vreg) $acc[7][1],
            a0 = in(vreg) $a[0],
            a1 = in(vreg) $a[1],
            a2 = in(vreg) $a[2],
            a3 = in(vreg) $a[3],
            a4 = in(vreg) $a[4],
            a5 = in(vreg) $a[5],
            a6 = in(vreg) $a[6],
            a7 = in(vreg) $a[7],
            w0 = in(vreg) $w0,
            w1 = in(vreg) $w1,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
}

/// The quads of depth groups `g..g_end` (a multiple of 4 apart) of a full 8-row × 8-column
/// tile: the 8 rows' 16 activation bytes are loaded once per quad, then for each
/// of its 4 groups the 2 registers of codes feed 16 `sdot`s. Each row has its own pointer
/// that steps 16 bytes per quad, and a quad's 8 registers of codes are 4 adjacent pairs
/// (the tile's two registers of a group are 16 bytes apart, its groups one panel group
/// apart), so that a quad is 12 loads and 64 `sdot`s.
///
/// # Safety
/// dotprod; as [`crate::int8_tile::gemm`] requires, with `t` a tile of 8 rows and 2 registers.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn quads_8x2(t: Tile, acc: &mut [[int32x4_t; 2]; 8], g: usize, g_end: usize) {
    let w = t.w;
    debug_assert_eq!(w.depth, DEPTH);
    let stride = w.stride();
    let first_row = t.a.as_ptr().add(t.r * stride + g * DEPTH) as *const i8;
    let mut rows = [first_row; 8];
    for (i, row) in rows.iter_mut().enumerate() {
        *row = first_row.add(i * stride);
    }
    let step = PANEL * DEPTH;
    let mut codes = w
        .data
        .as_ptr()
        .add(int8_tile::group_offset::<Dotprod>(w, t.span.col0, 0, g));
    for _ in 0..(g_end - g) / 4 {
        let a = load_rows(&mut rows);
        // group q's two registers: `codes + q × step` and 16 bytes on
        let at = |q: usize, j: usize| vld1q_s8(codes.add(q * step + j * 4 * DEPTH));
        sdot_8x2!("0", acc, a, at(0, 0), at(0, 1));
        sdot_8x2!("1", acc, a, at(1, 0), at(1, 1));
        sdot_8x2!("2", acc, a, at(2, 0), at(2, 1));
        sdot_8x2!("3", acc, a, at(3, 0), at(3, 1));
        codes = codes.add(4 * step);
    }
}

/// The next 16 bytes of each of 8 rows, each pointer stepped past them (post-indexed loads:
/// left to itself the compiler recomputes 7 of the 8 addresses from the first every time).
///
/// # Safety
/// Each pointer has 16 readable bytes.
#[inline(always)]
unsafe fn load_rows(rows: &mut [*const i8; 8]) -> [int8x16_t; 8] {
    let (a0, a1, a2, a3, a4, a5, a6, a7);
    asm!(
        "ldr {a0:q}, [{p0}], #16",
        "ldr {a1:q}, [{p1}], #16",
        "ldr {a2:q}, [{p2}], #16",
        "ldr {a3:q}, [{p3}], #16",
        "ldr {a4:q}, [{p4}], #16",
        "ldr {a5:q}, [{p5}], #16",
        "ldr {a6:q}, [{p6}], #16",
        "ldr {a7:q}, [{p7}], #16",
        p0 = inout(reg) rows[0],
        p1 = inout(reg) rows[1],
        p2 = inout(reg) rows[2],
        p3 = inout(reg) rows[3],
        p4 = inout(reg) rows[4],
        p5 = inout(reg) rows[5],
        p6 = inout(reg) rows[6],
        p7 = inout(reg) rows[7],
        a0 = out(vreg) a0,
        a1 = out(vreg) a1,
        a2 = out(vreg) a2,
        a3 = out(vreg) a3,
        a4 = out(vreg) a4,
        a5 = out(vreg) a5,
        a6 = out(vreg) a6,
        a7 = out(vreg) a7,
        options(readonly, nostack, preserves_flags)
    );
    [a0, a1, a2, a3, a4, a5, a6, a7]
}

/// Codes per column in one packed group (the VNNI packing).
const DEPTH: usize = 4;

/// The dotprod int8 register: 4 columns of `i32` sums ([`sdot`]), 8 rows per tile.
pub(crate) struct Dotprod;

shifted_int8_lanes!(Dotprod, rows = 8, dot = sdot, tiles = [1 2 3 4 5 6 7 8]);

/// One int8 tile, compiled with dotprod: whole quads of depth groups by lane, then the
/// remaining groups one at a time ([`int8_tile::accumulate`]).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile<const R: usize, const B: usize>(t: Tile) {
    let mut acc = int8_tile::resume::<Dotprod, R, B>(t);
    let (g0, g1) = (t.span.g0, t.span.g1);
    let w = t.w;
    let stride = w.stride();
    let a_ptr = t.a.as_ptr().add(t.r * stride);
    let w_ptr = w.data.as_ptr();
    let mut g = g0;
    if R == 8 && B == 2 {
        let g_end = g0 + (g1 - g0) / 4 * 4;
        // SAFETY: `acc` is `[[int32x4_t; 2]; 8]` (R = 8, B = 2, checked on the line above).
        let full = &mut *(&mut acc as *mut [[int32x4_t; B]; R] as *mut [[int32x4_t; 2]; 8]);
        quads_8x2(t, full, g0, g_end);
        g = g_end;
    }
    while g + 4 <= g1 {
        // the codes of four groups × (up to) two registers of columns
        let mut wv = [[vdupq_n_s8(0); 2]; 4];
        for (q, wq) in wv.iter_mut().enumerate() {
            for (j, v) in wq.iter_mut().enumerate().take(B) {
                let at = int8_tile::group_offset::<Dotprod>(w, t.span.col0, j, g + q);
                *v = vld1q_s8(w_ptr.add(at));
            }
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            // four groups of this row (codes shifted to `i8`)
            let a = vld1q_s8(a_ptr.add(i * stride + g * w.depth) as *const i8);
            if B == 2 {
                let mut pair = [acc_row[0], acc_row[1 % B]];
                sdot_quad(&mut pair, &wv, a);
                acc_row[0] = pair[0];
                acc_row[1 % B] = pair[1];
            } else {
                sdot_quad1(&mut acc_row[0], &wv, a);
            }
        }
        g += 4;
    }
    int8_tile::accumulate::<Dotprod, R, B>(t, &mut acc, g, g1);
    int8_tile::finish::<Dotprod, R, B>(t, &acc);
}

crate::int8_tile::int8_entry_point!(Dotprod, "neon,dotprod");
