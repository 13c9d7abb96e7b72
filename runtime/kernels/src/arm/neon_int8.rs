//! The NEON int8 GEMM of 32-bit Arm (armv7 CPUs with NEON, found at run time): the
//! instructions of the aarch64 NEON kernel
//! ([`crate::int8_gemm::Kernel::Neon`], the same 16-deep packing and shifted activations),
//! `vmull.s8` of 8 activation and 8 weight bytes into `i16` products, `vmlal.s8` adding the
//! products of the next 8 depths, `vpadal.s16` widening the pairs into `i32` sums. The
//! pair is summed in `i16` only when no code is −128 (see the aarch64 kernel); otherwise each
//! product is widened on its own, so the kernel is exact for every code.
//!
//! Tiles of 2 rows × 4 columns: 8 accumulators, 4 registers of codes, 2 of activations and
//! 2 of products, 16 `q` registers in all. The loop is one `asm!` block (Arm's NEON
//! intrinsics, vector types and `neon` target feature are not stable Rust; inline assembly
//! is): it enables NEON for itself (`.fpu neon`), declares `d0`–`d15` clobbered and saves and
//! restores `d16`–`d31` (registers the armv7 target's compiler does not know of), so it is
//! correct whatever the rest of the build targets. The epilogue is plain Rust.

use crate::int8_gemm::{Epilogue, PackedInt8Weights, PANEL};
use std::arch::asm;

/// Codes per column in one packed group.
const DEPTH: usize = 16;
/// Columns per tile.
const COLS: usize = 4;

/// Flips the top bit of every code: the `u8` activation code `q` becomes the `i8` value
/// `q − 128` the kernel multiplies.
pub(crate) fn shift_codes(codes: &mut [u8]) {
    for b in codes {
        *b ^= 0x80;
    }
}

/// Columns `cols` of `y[m, n]` from the shifted activation rows `a` ([`shift_codes`] of `u8`
/// codes with zero point `zp`): exact `i32` sums minus `(zp − 128) × Σ w`, then the epilogue.
///
/// # Safety
/// The CPU has NEON ([`super::has_neon`]); the weights are packed 16 deep;
/// `a.len() ≥ m × w.stride()`, the epilogue's slices hold whole panels, `y` is valid for
/// writes of `m × n` values, `cols` is within `0..n` and starts on a multiple of 4.
pub(crate) unsafe fn gemm(
    a: &[u8],
    m: usize,
    w: &PackedInt8Weights,
    zp: u8,
    e: Epilogue,
    y: *mut f32,
    cols: std::ops::Range<usize>,
) {
    debug_assert_eq!(w.depth, DEPTH);
    let (n, groups, stride) = (w.n, w.groups, w.stride());
    let paired = w.pairs_fit_i16();
    let correction = i32::from(zp) - 128;
    // the 4 partial sums of each of the tile's 2 × 4 outputs
    let mut sums = [0i32; 2 * COLS * 4];
    let mut col = cols.start;
    while col < cols.end {
        let codes = w
            .data
            .as_ptr()
            .add(((col / PANEL) * groups * PANEL + col % PANEL) * DEPTH);
        let live = (n - col).min(COLS);
        let mut r = 0;
        while r < m {
            let first = a.as_ptr().add(r * stride);
            // a last odd row is computed twice and stored once
            let second = if r + 1 < m { first.add(stride) } else { first };
            tile(first, second, codes, groups, paired, &mut sums);
            for (i, row_sums) in sums.chunks_exact(COLS * 4).enumerate().take(m - r) {
                let out = std::slice::from_raw_parts_mut(y.add((r + i) * n + col), live);
                for (j, (o, lanes)) in out.iter_mut().zip(row_sums.chunks_exact(4)).enumerate() {
                    let c = col + j;
                    let exact = lanes.iter().sum::<i32>() - correction * w.col_sums[c];
                    let v = exact as f32 * e.scales[c];
                    *o = match e.bias {
                        Some(b) => v + b[c],
                        None => v,
                    };
                }
            }
            r += 2;
        }
        col += COLS;
    }
}

/// The partial sums of rows `first` and `second` × the 4 columns at `codes` over `groups`
/// groups, into `sums` (row, column, 4 lanes).
///
/// # Safety
/// NEON; each row has `16 × groups` bytes; `codes` is a tile's first group in a 16-deep panel.
#[inline]
unsafe fn tile(
    first: *const u8,
    second: *const u8,
    codes: *const i8,
    groups: usize,
    paired: bool,
    sums: &mut [i32; 2 * COLS * 4],
) {
    if groups == 0 {
        sums.fill(0);
        return;
    }
    // after the first 32 bytes of a group's 64, the next group is one panel group on
    let step = PANEL * DEPTH - 32;
    macro_rules! tile_asm {
        ($($product:literal),* $(,)?) => {
            asm!(
                ".fpu neon",
                "vpush {{d16-d31}}",
                "vmov.i32 q0, #0",
                "vmov.i32 q1, #0",
                "vmov.i32 q2, #0",
                "vmov.i32 q3, #0",
                "vmov.i32 q4, #0",
                "vmov.i32 q5, #0",
                "vmov.i32 q6, #0",
                "vmov.i32 q7, #0",
                "2:",
                "vld1.8 {{d16-d19}}, [{w}]!",
                "vld1.8 {{d20-d23}}, [{w}], {step}",
                "vld1.8 {{d24-d25}}, [{x0}]!",
                "vld1.8 {{d26-d27}}, [{x1}]!",
                $($product,)*
                "subs {g}, {g}, #1",
                "bne 2b",
                "vst1.32 {{d0-d3}}, [{out}]!",
                "vst1.32 {{d4-d7}}, [{out}]!",
                "vst1.32 {{d8-d11}}, [{out}]!",
                "vst1.32 {{d12-d15}}, [{out}]",
                "vpop {{d16-d31}}",
                w = inout(reg) codes => _,
                x0 = inout(reg) first => _,
                x1 = inout(reg) second => _,
                g = inout(reg) groups => _,
                out = inout(reg) sums.as_mut_ptr() => _,
                step = in(reg) step,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _,
                out("d4") _, out("d5") _, out("d6") _, out("d7") _,
                out("d8") _, out("d9") _, out("d10") _, out("d11") _,
                out("d12") _, out("d13") _, out("d14") _, out("d15") _,
            )
        };
    }
    // rows: q12 (d24, d25) and q13 (d26, d27); columns: q8..q11; sums: row 0 in q0..q3, row 1
    // in q4..q7; products alternate between q14 and q15
    if paired {
        tile_asm!(
            "vmull.s8 q14, d24, d16",
            "vmlal.s8 q14, d25, d17",
            "vpadal.s16 q0, q14",
            "vmull.s8 q15, d24, d18",
            "vmlal.s8 q15, d25, d19",
            "vpadal.s16 q1, q15",
            "vmull.s8 q14, d24, d20",
            "vmlal.s8 q14, d25, d21",
            "vpadal.s16 q2, q14",
            "vmull.s8 q15, d24, d22",
            "vmlal.s8 q15, d25, d23",
            "vpadal.s16 q3, q15",
            "vmull.s8 q14, d26, d16",
            "vmlal.s8 q14, d27, d17",
            "vpadal.s16 q4, q14",
            "vmull.s8 q15, d26, d18",
            "vmlal.s8 q15, d27, d19",
            "vpadal.s16 q5, q15",
            "vmull.s8 q14, d26, d20",
            "vmlal.s8 q14, d27, d21",
            "vpadal.s16 q6, q14",
            "vmull.s8 q15, d26, d22",
            "vmlal.s8 q15, d27, d23",
            "vpadal.s16 q7, q15",
        );
    } else {
        tile_asm!(
            "vmull.s8 q14, d24, d16",
            "vmull.s8 q15, d25, d17",
            "vpadal.s16 q0, q14",
            "vpadal.s16 q0, q15",
            "vmull.s8 q14, d24, d18",
            "vmull.s8 q15, d25, d19",
            "vpadal.s16 q1, q14",
            "vpadal.s16 q1, q15",
            "vmull.s8 q14, d24, d20",
            "vmull.s8 q15, d25, d21",
            "vpadal.s16 q2, q14",
            "vpadal.s16 q2, q15",
            "vmull.s8 q14, d24, d22",
            "vmull.s8 q15, d25, d23",
            "vpadal.s16 q3, q14",
            "vpadal.s16 q3, q15",
            "vmull.s8 q14, d26, d16",
            "vmull.s8 q15, d27, d17",
            "vpadal.s16 q4, q14",
            "vpadal.s16 q4, q15",
            "vmull.s8 q14, d26, d18",
            "vmull.s8 q15, d27, d19",
            "vpadal.s16 q5, q14",
            "vpadal.s16 q5, q15",
            "vmull.s8 q14, d26, d20",
            "vmull.s8 q15, d27, d21",
            "vpadal.s16 q6, q14",
            "vpadal.s16 q6, q15",
            "vmull.s8 q14, d26, d22",
            "vmull.s8 q15, d27, d23",
            "vpadal.s16 q7, q14",
            "vpadal.s16 q7, q15",
        );
    }
}
