//! The i8mm int8 GEMM (Armv8.6 FEAT_I8MM, e.g. Cortex-A710/X2, Neoverse V1/N2): one `usmmla`
//! multiplies a 2×8 block of `u8` activations (two rows) by an 8×2 block of `i8` codes (two
//! columns) into a 2×2 block of `i32` sums, so the activations need no shift. The weights are
//! packed 8 deep ([`crate::int8_gemm::PackedInt8Weights::pack_for`]): in each group of a
//! panel, the 8 codes of column `c` then those of `c + 1` are one operand; the activations are
//! interleaved in row pairs once, before the GEMM, so that a pair's 8 codes of a group are one
//! load. Tiles of up to 4 row pairs × 4 column pairs (8 × 8 values, 16 accumulators: the
//! 8×8×8 tile of IREE's i8mm micro-kernel), the whole depth in one pass, two groups per step (an
//! 8-column strip of even a 3072-deep weight is 24 KiB, within L1). The instruction is written
//! in `asm!` (its intrinsic is not stable Rust).

use crate::int8_gemm::{Epilogue, PackedInt8Weights, PANEL};
use std::arch::aarch64::*;
use std::arch::asm;

/// Codes per column in one packed group.
const DEPTH: usize = 8;
/// Columns per tile (4 column pairs: half a panel).
const COLS: usize = 8;

/// `acc + A·Bᵀ` for the 2×8 `u8` block `a` and the 2×8 `i8` block `b` (`usmmla`): lanes
/// `[r0·c0, r0·c1, r1·c0, r1·c1]`.
#[inline]
#[target_feature(enable = "i8mm")]
unsafe fn usmmla(mut acc: int32x4_t, a: uint8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "usmmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// The 32 bytes at `*p` as two registers, `*p` stepped past them (a post-indexed load pair:
/// left to itself the compiler adds to each pair's pointer separately).
///
/// # Safety
/// `*p` has 32 readable bytes.
#[inline(always)]
unsafe fn load_pair(p: &mut *const u8) -> (uint8x16_t, uint8x16_t) {
    let (a, b);
    asm!(
        "ldp {a:q}, {b:q}, [{p}], #32",
        p = inout(reg) *p,
        a = out(vreg) a,
        b = out(vreg) b,
        options(readonly, nostack, preserves_flags)
    );
    (a, b)
}

/// Columns `cols` of rows `rows` of `y[m, n]` (`y` holds exactly those rows) from the quantized activations
/// `pairs` (`u8` codes with zero point `zp`, rows interleaved in pairs as
/// `crate::int8_gemm::interleave_pairs` writes them): exact `i32` sums minus `zp × Σ w`, then
/// the epilogue. A block starting or ending inside a pair computes the whole pair and stores
/// only its own row.
///
/// # Safety
/// The CPU has i8mm; the weights are packed 8 deep; `pairs` holds the pairs of rows
/// `0..rows.end`, the epilogue's slices hold whole panels, `y` is valid for writes of
/// `rows.len() × n` values, `cols` is within `0..n` and starts on a multiple of 8.
#[target_feature(enable = "neon,i8mm")]
pub(crate) unsafe fn gemm(
    pairs: &[u8],
    rows: std::ops::Range<usize>,
    w: &PackedInt8Weights,
    zp: u8,
    e: Epilogue,
    y: *mut f32,
    cols: std::ops::Range<usize>,
) {
    let (first, end) = (rows.start / 2, rows.end.div_ceil(2));
    let mut col = cols.start;
    while col < cols.end {
        let mut p = first;
        while p < end {
            let count = (end - p).min(4);
            let t = TileArgs {
                pairs,
                rows: rows.clone(),
                p,
                col,
                w,
                zp,
                e,
                y,
            };
            match count {
                4 => tile::<4>(t),
                3 => tile::<3>(t),
                2 => tile::<2>(t),
                _ => tile::<1>(t),
            }
            p += count;
        }
        col += COLS;
    }
}

/// What one tile reads and writes.
#[derive(Clone)]
struct TileArgs<'a> {
    pairs: &'a [u8],
    /// The rows stored (`y` holds exactly these).
    rows: std::ops::Range<usize>,
    /// First pair.
    p: usize,
    /// First column (a multiple of 8).
    col: usize,
    w: &'a PackedInt8Weights,
    zp: u8,
    e: Epilogue<'a>,
    y: *mut f32,
}

/// Pairs `p..p + P` (rows `2p..2p + 2P`; those outside `rows` are computed, not stored) ×
/// columns `col..col + 8` over the whole depth.
#[inline]
#[target_feature(enable = "neon,i8mm")]
unsafe fn tile<const P: usize>(t: TileArgs) {
    let w = t.w;
    let (n, groups, stride) = (w.n, w.groups, w.stride());
    let mut acc = [[vdupq_n_s32(0); COLS / 2]; P];
    let x_at = t.pairs.as_ptr().add(t.p * 2 * stride);
    let panel = w
        .data
        .as_ptr()
        .add(((t.col / PANEL) * groups * PANEL + t.col % PANEL) * DEPTH);
    // the codes of group `g` for the tile's 4 column pairs
    let codes = |g: usize| {
        let at = panel.add(g * PANEL * DEPTH);
        let mut b = [vdupq_n_s8(0); COLS / 2];
        for (j, v) in b.iter_mut().enumerate() {
            *v = vld1q_s8(at.add(j * 2 * DEPTH));
        }
        b
    };
    // two groups at a time: a pair's 16 bytes of two groups are adjacent (one load pair,
    // each pair's pointer stepped past them)
    let mut x = [x_at; P];
    for (i, x) in x.iter_mut().enumerate() {
        *x = x_at.add(i * 2 * stride);
    }
    // (index loops: over iterator chains the compiler kept the accumulators in memory)
    for step in 0..groups / 2 {
        let (b0, b1) = (codes(2 * step), codes(2 * step + 1));
        for i in 0..P {
            // the pair's 8 codes of each group, first row then second
            let (x0, x1) = load_pair(&mut x[i]);
            for j in 0..COLS / 2 {
                acc[i][j] = usmmla(usmmla(acc[i][j], x0, b0[j]), x1, b1[j]);
            }
        }
    }
    if groups % 2 == 1 {
        let b = codes(groups - 1);
        for i in 0..P {
            let x = vld1q_u8(x[i]);
            for j in 0..COLS / 2 {
                acc[i][j] = usmmla(acc[i][j], x, b[j]);
            }
        }
    }
    // epilogue, 4 columns at a time: `(sum − zp × Σ w) as f32 × scale (+ bias)`
    if t.rows.start <= 2 * t.p && 2 * (t.p + P) <= t.rows.end && t.col + COLS <= n {
        store_whole(&t, &acc);
        return;
    }
    for half in 0..2 {
        let c = t.col + 4 * half;
        if c >= n {
            break;
        }
        let live = (n - c).min(4);
        let mut sums = [0i32; 4];
        sums[..live].copy_from_slice(&w.col_sums[c..c + live]);
        let correction = vmulq_s32(vdupq_n_s32(i32::from(t.zp)), vld1q_s32(sums.as_ptr()));
        let scale = vld1q_f32(t.e.scales.as_ptr().add(c));
        let bias = t.e.bias.map(|b| vld1q_f32(b.as_ptr().add(c)));
        for (i, acc) in acc.iter().enumerate() {
            let (lo, hi) = (
                vreinterpretq_s64_s32(acc[2 * half]),
                vreinterpretq_s64_s32(acc[2 * half + 1]),
            );
            // row 0 of the pair: lanes 0, 1 of each column pair; row 1: lanes 2, 3
            let by_row = [vzip1q_s64(lo, hi), vzip2q_s64(lo, hi)];
            for (k, sum) in by_row.iter().enumerate() {
                let row = 2 * (t.p + i) + k;
                if !t.rows.contains(&row) {
                    continue;
                }
                let exact = vsubq_s32(vreinterpretq_s32_s64(*sum), correction);
                let mut v = vmulq_f32(vcvtq_f32_s32(exact), scale);
                if let Some(bias) = bias {
                    v = vaddq_f32(v, bias);
                }
                let out = t.y.add((row - t.rows.start) * n + c);
                if live == 4 {
                    vst1q_f32(out, v);
                } else {
                    let mut tmp = [0f32; 4];
                    vst1q_f32(tmp.as_mut_ptr(), v);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, live);
                }
            }
        }
    }
}

/// The epilogue of a tile whose rows are all stored and whose 8 columns all exist: the same
/// arithmetic as the general one in [`tile`], without its per-row and per-column checks.
#[inline(always)]
unsafe fn store_whole<const P: usize>(t: &TileArgs, acc: &[[int32x4_t; COLS / 2]; P]) {
    let (w, n) = (t.w, t.w.n);
    let zp = vdupq_n_s32(i32::from(t.zp));
    for half in 0..2 {
        let c = t.col + 4 * half;
        let correction = vmulq_s32(zp, vld1q_s32(w.col_sums.as_ptr().add(c)));
        let scale = vld1q_f32(t.e.scales.as_ptr().add(c));
        let bias = t.e.bias.map(|b| vld1q_f32(b.as_ptr().add(c)));
        let mut out = t.y.add((2 * t.p - t.rows.start) * n + c);
        for acc in acc {
            let (lo, hi) = (
                vreinterpretq_s64_s32(acc[2 * half]),
                vreinterpretq_s64_s32(acc[2 * half + 1]),
            );
            // row 0 of the pair: lanes 0, 1 of each column pair; row 1: lanes 2, 3
            for sum in [vzip1q_s64(lo, hi), vzip2q_s64(lo, hi)] {
                let exact = vsubq_s32(vreinterpretq_s32_s64(sum), correction);
                let mut v = vmulq_f32(vcvtq_f32_s32(exact), scale);
                if let Some(bias) = bias {
                    v = vaddq_f32(v, bias);
                }
                vst1q_f32(out, v);
                out = out.add(n);
            }
        }
    }
}
