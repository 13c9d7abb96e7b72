//! Attention's tile products on NEON: [`crate::simd::products`]'s arithmetic (each output one
//! chain of fused multiply-adds in order of the contraction index, so the same bits), with the
//! left operand taken four contraction steps per load and multiplied by element (`fmla` by
//! lane) instead of one broadcast per value and step.

use crate::simd::Operands;
use std::arch::aarch64::*;

/// Output columns per tile (4 registers).
const COLS: usize = 16;

/// `c[i][..n] = Σ_p a[i][p] · b[p][..n]` for the first `r ≤ 4` rows, `n` = `b_stride`
/// ([`crate::simd::products`], bit for bit).
///
/// # Safety
/// NEON; `a` holds `(r − 1) × a_stride + depth` values, `b` `depth × b_stride`, `c`
/// `(r − 1) × c_stride + b_stride`; `b_stride` is a multiple of 16.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn products(o: Operands, c: &mut [f32], r: usize) {
    let mut j = 0;
    while j < o.b_stride {
        let c = c.as_mut_ptr().add(j);
        let b = o.b.as_ptr().add(j);
        match r {
            4 => tile::<4>(o, b, c),
            3 => tile::<3>(o, b, c),
            2 => tile::<2>(o, b, c),
            _ => tile::<1>(o, b, c),
        }
        j += COLS;
    }
}

/// The 16 right columns of one contraction step.
#[inline(always)]
unsafe fn columns(b: *const f32) -> [float32x4_t; 4] {
    [
        vld1q_f32(b),
        vld1q_f32(b.add(4)),
        vld1q_f32(b.add(8)),
        vld1q_f32(b.add(12)),
    ]
}

/// One step `p` of the contraction for every row: `acc[i] += a[i][p] · b[p]`, `a[i][p]` lane
/// `L` of `a[i]`.
#[inline(always)]
unsafe fn step<const L: i32, const R: usize>(
    acc: &mut [[float32x4_t; 4]; R],
    a: &[float32x4_t; R],
    b: [float32x4_t; 4],
) {
    for i in 0..R {
        for j in 0..4 {
            acc[i][j] = vfmaq_laneq_f32::<L>(acc[i][j], b[j], a[i]);
        }
    }
}

/// One `R × 16` output tile at `c` from the right columns at `b`: four steps per load of the
/// left rows, then the remaining steps one broadcast at a time.
#[inline(always)]
unsafe fn tile<const R: usize>(o: Operands, b: *const f32, c: *mut f32) {
    let mut acc = [[vdupq_n_f32(0.0); 4]; R];
    let mut rows = [o.a.as_ptr(); R];
    for (i, row) in rows.iter_mut().enumerate() {
        *row = row.add(i * o.a_stride);
    }
    let mut b = b;
    for _ in 0..o.depth / 4 {
        let mut a = [vdupq_n_f32(0.0); R];
        for i in 0..R {
            a[i] = vld1q_f32(rows[i]);
            rows[i] = rows[i].add(4);
        }
        step::<0, R>(&mut acc, &a, columns(b));
        step::<1, R>(&mut acc, &a, columns(b.add(o.b_stride)));
        step::<2, R>(&mut acc, &a, columns(b.add(2 * o.b_stride)));
        step::<3, R>(&mut acc, &a, columns(b.add(3 * o.b_stride)));
        b = b.add(4 * o.b_stride);
    }
    for _ in 0..o.depth % 4 {
        let bv = columns(b);
        for i in 0..R {
            let x = vdupq_n_f32(*rows[i]);
            rows[i] = rows[i].add(1);
            for j in 0..4 {
                acc[i][j] = vfmaq_f32(acc[i][j], x, bv[j]);
            }
        }
        b = b.add(o.b_stride);
    }
    for (i, acc) in acc.iter().enumerate() {
        for (j, &v) in acc.iter().enumerate() {
            vst1q_f32(c.add(i * o.c_stride + 4 * j), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn products_equal_the_generic_tile_bit_for_bit() {
        // depths with and without a remainder of 4; one and two tiles of columns; every row count
        for &(depth, n, a_stride) in &[
            (1, 16, 3),
            (3, 32, 5),
            (4, 16, 4),
            (32, 48, 40),
            (37, 32, 41),
        ] {
            for r in 1..=4 {
                let a = values((r - 1) * a_stride + depth, 7);
                let b = values(depth * n, 11);
                let o = Operands {
                    a: &a,
                    a_stride,
                    b: &b,
                    b_stride: n,
                    depth,
                    c_stride: n + 3,
                };
                let mut ours = vec![9.0f32; (r - 1) * (n + 3) + n];
                let mut generic = ours.clone();
                // SAFETY: NEON is part of every aarch64 CPU; sizes as documented.
                unsafe {
                    products(o, &mut ours, r);
                    crate::simd::products::<float32x4_t, 4, 4>(o, &mut generic, r);
                }
                assert_eq!(
                    ours.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    generic.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "depth {depth}, n {n}, rows {r}"
                );
            }
        }
    }
}
