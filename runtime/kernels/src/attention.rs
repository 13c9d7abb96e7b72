//! Scaled dot-product self-attention in one pass: `softmax(Q·Kᵀ + mask) · V` per head, on the
//! `[batch, sequence, heads × head_dim]` activations the Q/K/V Linears produce, written back in
//! that same layout.
//!
//! It replaces the eight ONNX ops a BERT-family graph spells attention with (head split
//! `Reshape`/`Transpose` of Q, K and V, `MatMul`, `Add` of the mask, `Softmax`, `MatMul`,
//! head merge `Transpose`/`Reshape`). tract runs those as separate ops: the transposes copy, both
//! matmuls pack their operands, the scores make a round trip through memory between the mask,
//! the softmax and the second product. Here each head's Kᵀ and V are packed once, and four query
//! rows at a time go through scores, mask, softmax and context while they sit in L1. The
//! `1/√head_dim` scale is not applied: exporters fold it into the query weights.
//!
//! Arithmetic: fp32 products and sums (fused multiply-adds on AVX2+FMA, each sum in order of
//! the contraction index), the softmax as ONNX defines it (row max subtracted, `exp`, sum,
//! times the reciprocal of the sum, as tract and onnxruntime do). Results agree with the op
//! sequence to f32 rounding, not bit for bit.

/// Which implementation [`attention`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// AVX-512 F (x86-64): the FMA kernel's arithmetic on 16 lanes, 32 output columns per tile.
    Avx512,
    /// AVX2 + FMA (x86-64).
    Fma,
    /// Plain Rust (any CPU).
    Portable,
}

impl AttentionKernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> AttentionKernel {
        if avx512_available() {
            AttentionKernel::Avx512
        } else if fma_available() {
            AttentionKernel::Fma
        } else {
            AttentionKernel::Portable
        }
    }
}

/// Whether this CPU runs [`AttentionKernel::Fma`].
pub fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs [`AttentionKernel::Avx512`].
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequences in the batch.
    pub batch: usize,
    /// Tokens per sequence (queries and keys alike).
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Features per head.
    pub head_dim: usize,
}

impl AttentionShape {
    /// Values in each of Q, K, V and the output: `batch × seq × heads × head_dim` (`None` on
    /// overflow).
    pub fn values(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.seq)?
            .checked_mul(self.heads)?
            .checked_mul(self.head_dim)
    }
}

/// Where the additive mask value for (batch `b`, head `h`, query `i`, key `j`) is:
/// `mask[b × batch + h × head + i × query + j × key]`. A stride of 0 broadcasts that axis
/// (an ONNX mask of shape `[batch, 1, 1, seq]` has strides `(seq, 0, 0, 1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskStrides {
    /// Stride between sequences.
    pub batch: usize,
    /// Stride between heads.
    pub head: usize,
    /// Stride between query positions.
    pub query: usize,
    /// Stride between key positions (0 or 1 run fastest).
    pub key: usize,
}

/// Reusable buffers for [`attention`].
#[derive(Debug, Default)]
pub struct AttentionScratch {
    /// One head's Kᵀ: `head_dim × keys` (keys padded to 16, zeros past the sequence).
    keys_t: Vec<f32>,
    /// One head's V: `seq × dims` (dims padded to 16, zeros past `head_dim`).
    values: Vec<f32>,
    /// Scores, then probabilities, of up to [`ROWS`] query rows: `ROWS × keys`.
    scores: Vec<f32>,
    /// Context of up to [`ROWS`] query rows: `ROWS × dims`.
    context: Vec<f32>,
}

/// Query rows per pass.
const ROWS: usize = 4;
/// Output columns per tile (two 8-lane registers).
const TILE: usize = 16;

/// `out = softmax(Q·Kᵀ + mask) · V` for every sequence and head. `q`, `k`, `v` and `out` are
/// `[batch, seq, heads × head_dim]` row-major (every value of `out` is written).
///
/// Returns `false`, with `out` untouched, when the sizes disagree (`q`, `k`, `v` or `out` not
/// of [`AttentionShape::values`] values, `mask` too short for `strides`, a key stride above 1) or
/// when `kernel` is [`AttentionKernel::Fma`] or [`AttentionKernel::Avx512`] on a CPU without it.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    strides: MaskStrides,
    shape: AttentionShape,
    out: &mut [f32],
    kernel: AttentionKernel,
    scratch: &mut AttentionScratch,
) -> bool {
    let Some(len) = shape.values() else {
        return false;
    };
    if [q.len(), k.len(), v.len(), out.len()] != [len; 4] || strides.key > 1 {
        return false;
    }
    if (kernel == AttentionKernel::Fma && !fma_available())
        || (kernel == AttentionKernel::Avx512 && !avx512_available())
    {
        return false;
    }
    if len == 0 {
        return true;
    }
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
    } = shape;
    let last = [
        (batch - 1, strides.batch),
        (heads - 1, strides.head),
        (seq - 1, strides.query),
        (seq - 1, strides.key),
    ]
    .iter()
    .try_fold(0usize, |acc, &(i, s)| acc.checked_add(i.checked_mul(s)?));
    if last.is_none_or(|last| last >= mask.len()) {
        return false;
    }
    let keys = seq.div_ceil(TILE) * TILE;
    let dims = head_dim.div_ceil(TILE) * TILE;
    let width = heads * head_dim;
    let AttentionScratch {
        keys_t,
        values,
        scores,
        context,
    } = scratch;
    keys_t.resize(head_dim * keys, 0.0);
    values.resize(seq * dims, 0.0);
    scores.resize(ROWS * keys, 0.0);
    context.resize(ROWS * dims, 0.0);
    for b in 0..batch {
        let rows = b * seq..(b + 1) * seq;
        let (q, k, v) = (
            &q[rows.start * width..],
            &k[rows.start * width..],
            &v[rows.start * width..],
        );
        for h in 0..heads {
            let col = h * head_dim;
            // Pack Kᵀ and V of this head; the padding stays zero.
            for j in 0..seq {
                let src = &k[j * width + col..j * width + col + head_dim];
                for (t, &x) in src.iter().enumerate() {
                    keys_t[t * keys + j] = x;
                }
                values[j * dims..j * dims + head_dim]
                    .copy_from_slice(&v[j * width + col..j * width + col + head_dim]);
            }
            for t in 0..head_dim {
                keys_t[t * keys + seq..(t + 1) * keys].fill(0.0);
            }
            for j in 0..seq {
                values[j * dims + head_dim..(j + 1) * dims].fill(0.0);
            }
            let mut i0 = 0;
            while i0 < seq {
                let r = (seq - i0).min(ROWS);
                let q_rows = &q[i0 * width + col..];
                let rows_mask = |i: usize| {
                    let start = b * strides.batch + h * strides.head + (i0 + i) * strides.query;
                    &mask[start..]
                };
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX-512 F is available (checked above); every buffer holds the
                    // rows and padded columns the products read and write.
                    AttentionKernel::Avx512 => unsafe {
                        avx512::products(q_rows, width, keys_t, keys, head_dim, scores, keys, r);
                        for i in 0..r {
                            let row = &mut scores[i * keys..(i + 1) * keys];
                            avx512::softmax(row, seq, rows_mask(i), strides.key);
                        }
                        avx512::products(scores, keys, values, dims, seq, context, dims, r);
                    },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 and FMA are available (checked above); every buffer holds the
                    // rows and padded columns the products read and write.
                    AttentionKernel::Fma => unsafe {
                        fma::products(q_rows, width, keys_t, keys, head_dim, scores, keys, r);
                        for i in 0..r {
                            let row = &mut scores[i * keys..(i + 1) * keys];
                            fma::softmax(row, seq, rows_mask(i), strides.key);
                        }
                        fma::products(scores, keys, values, dims, seq, context, dims, r);
                    },
                    _ => {
                        portable::products(q_rows, width, keys_t, keys, head_dim, scores, keys, r);
                        for i in 0..r {
                            let row = &mut scores[i * keys..(i + 1) * keys];
                            portable::softmax(row, seq, rows_mask(i), strides.key);
                        }
                        portable::products(scores, keys, values, dims, seq, context, dims, r);
                    }
                }
                for i in 0..r {
                    let dst = (i0 + i) * width + col;
                    out[rows.start * width + dst..rows.start * width + dst + head_dim]
                        .copy_from_slice(&context[i * dims..i * dims + head_dim]);
                }
                i0 += r;
            }
        }
    }
    true
}

/// Adds the mask to `row[..seq]` (key stride 1: consecutive values; 0: one value for all).
fn add_mask(row: &mut [f32], mask: &[f32], key_stride: usize) {
    if key_stride == 1 {
        for (x, &m) in row.iter_mut().zip(mask) {
            *x += m;
        }
    } else {
        let m = mask[0];
        row.iter_mut().for_each(|x| *x += m);
    }
}

/// Plain-Rust versions of the tile product and the row softmax.
mod portable {
    use super::add_mask;

    /// `c[i][..n] = Σ_p a[i][p] · b[p][..n]` for the first `r` rows (`n` = `b_stride`).
    #[allow(clippy::too_many_arguments)]
    pub fn products(
        a: &[f32],
        a_stride: usize,
        b: &[f32],
        b_stride: usize,
        depth: usize,
        c: &mut [f32],
        c_stride: usize,
        r: usize,
    ) {
        for i in 0..r {
            let c_row = &mut c[i * c_stride..i * c_stride + b_stride];
            c_row.fill(0.0);
            for p in 0..depth {
                let x = a[i * a_stride + p];
                for (y, &w) in c_row.iter_mut().zip(&b[p * b_stride..(p + 1) * b_stride]) {
                    *y += x * w;
                }
            }
        }
    }

    /// Softmax of `row[..seq]` after adding the mask; `row[seq..]` set to zero.
    pub fn softmax(row: &mut [f32], seq: usize, mask: &[f32], key_stride: usize) {
        let (live, pad) = row.split_at_mut(seq);
        add_mask(live, mask, key_stride);
        let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in live.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        live.iter_mut().for_each(|x| *x *= inv);
        pad.fill(0.0);
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{add_mask, TILE};
    use std::arch::x86_64::*;

    /// `c[i][..n] = Σ_p a[i][p] · b[p][..n]` for the first `r ≤ 4` rows, `n` = `b_stride`, a
    /// multiple of 16 (`c` must hold `r` rows of `c_stride ≥ n`).
    ///
    /// # Safety
    /// AVX2 and FMA are available; `a` holds `(r − 1) × a_stride + depth` values, `b`
    /// `depth × b_stride`, `c` `(r − 1) × c_stride + b_stride`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn products(
        a: &[f32],
        a_stride: usize,
        b: &[f32],
        b_stride: usize,
        depth: usize,
        c: &mut [f32],
        c_stride: usize,
        r: usize,
    ) {
        let mut j = 0;
        while j < b_stride {
            let args = (a, a_stride, &b[j..], b_stride, depth, &mut c[j..], c_stride);
            match r {
                4 => tile::<4>(args),
                3 => tile::<3>(args),
                2 => tile::<2>(args),
                _ => tile::<1>(args),
            }
            j += TILE;
        }
    }

    type TileArgs<'a> = (
        &'a [f32],
        usize,
        &'a [f32],
        usize,
        usize,
        &'a mut [f32],
        usize,
    );

    /// One `R × 16` output tile.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>((a, a_stride, b, b_stride, depth, c, c_stride): TileArgs) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (a, b) = (a.as_ptr(), b.as_ptr());
        for p in 0..depth {
            let b0 = _mm256_loadu_ps(b.add(p * b_stride));
            let b1 = _mm256_loadu_ps(b.add(p * b_stride + 8));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(i * a_stride + p));
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
        }
        let c = c.as_mut_ptr();
        for (i, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(i * c_stride), acc[0]);
            _mm256_storeu_ps(c.add(i * c_stride + 8), acc[1]);
        }
    }

    /// `exp(x)` for `x ≤ 0` (Cody–Waite reduction, degree-5 polynomial: ≈ 1 ulp; 0 below
    /// −103 and for −∞).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let k = _mm256_cvtps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
        let kf = _mm256_cvtepi32_ps(k);
        let mut r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(0.693_145_75), x);
        r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(8.297_654e-3);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.191_538e-2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_757_5e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.999_889_4e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(9.999_997e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.000_000_1));
        let biased = _mm256_max_epi32(
            _mm256_min_epi32(
                _mm256_add_epi32(k, _mm256_set1_epi32(127)),
                _mm256_set1_epi32(254),
            ),
            _mm256_set1_epi32(1),
        );
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
        let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-103.0));
        _mm256_blendv_ps(_mm256_mul_ps(p, scale), _mm256_setzero_ps(), underflow)
    }

    /// Softmax of `row[..seq]` after adding the mask; `row[seq..]` set to zero. `row.len()`
    /// is a multiple of 8.
    ///
    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax(row: &mut [f32], seq: usize, mask: &[f32], key_stride: usize) {
        add_mask(&mut row[..seq], mask, key_stride);
        // Padding lanes: −∞, so that they add nothing to the max and exp to 0.
        row[seq..].fill(f32::NEG_INFINITY);
        let n = row.len();
        let p = row.as_mut_ptr();
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < n {
            m = _mm256_max_ps(m, _mm256_loadu_ps(p.add(i)));
            i += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let vm = _mm256_set1_ps(max);
        let mut sum = _mm256_setzero_ps();
        i = 0;
        while i < n {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm));
            _mm256_storeu_ps(p.add(i), e);
            sum = _mm256_add_ps(sum, e);
            i += 8;
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        let total: f32 = lanes.iter().sum();
        let inv = _mm256_set1_ps(1.0 / total);
        i = 0;
        while i < n {
            _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
            i += 8;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::TILE;
    use std::arch::x86_64::*;

    /// [`super::fma::products`] on 16-lane registers: 32 output columns per tile while at
    /// least 32 remain, then 16. Each output is the same chain of fused multiply-adds, in the
    /// same order, as in the AVX2 kernel.
    ///
    /// # Safety
    /// AVX-512 F is available; `a` holds `(r − 1) × a_stride + depth` values, `b`
    /// `depth × b_stride`, `c` `(r − 1) × c_stride + b_stride`; `b_stride` is a multiple of 16.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn products(
        a: &[f32],
        a_stride: usize,
        b: &[f32],
        b_stride: usize,
        depth: usize,
        c: &mut [f32],
        c_stride: usize,
        r: usize,
    ) {
        let mut j = 0;
        while j < b_stride {
            let args = (a, a_stride, &b[j..], b_stride, depth, &mut c[j..], c_stride);
            if j + 2 * TILE <= b_stride {
                match r {
                    4 => tile::<4, 2>(args),
                    3 => tile::<3, 2>(args),
                    2 => tile::<2, 2>(args),
                    _ => tile::<1, 2>(args),
                }
                j += 2 * TILE;
            } else {
                match r {
                    4 => tile::<4, 1>(args),
                    3 => tile::<3, 1>(args),
                    2 => tile::<2, 1>(args),
                    _ => tile::<1, 1>(args),
                }
                j += TILE;
            }
        }
    }

    type TileArgs<'a> = (
        &'a [f32],
        usize,
        &'a [f32],
        usize,
        usize,
        &'a mut [f32],
        usize,
    );

    /// One `R × 16·W` output tile.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const W: usize>(
        (a, a_stride, b, b_stride, depth, c, c_stride): TileArgs,
    ) {
        let mut acc = [[_mm512_setzero_ps(); W]; R];
        let (a, b) = (a.as_ptr(), b.as_ptr());
        for p in 0..depth {
            let mut bv = [_mm512_setzero_ps(); W];
            for (w, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(b.add(p * b_stride + w * 16));
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(i * a_stride + p));
                for (w, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(x, bv[w], *acc);
                }
            }
        }
        let c = c.as_mut_ptr();
        for (i, acc) in acc.iter().enumerate() {
            for (w, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(i * c_stride + w * 16), *acc);
            }
        }
    }

    /// [`super::fma`]'s `exp8` on 16 lanes (same reduction and polynomial).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp16(x: __m512) -> __m512 {
        let k = _mm512_cvtps_epi32(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
        let kf = _mm512_cvtepi32_ps(k);
        let mut r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.693_145_75), x);
        r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(8.297_654e-3);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.191_538e-2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666_757_5e-1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.999_889_4e-1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.999_997e-1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.000_000_1));
        let biased = _mm512_max_epi32(
            _mm512_min_epi32(
                _mm512_add_epi32(k, _mm512_set1_epi32(127)),
                _mm512_set1_epi32(254),
            ),
            _mm512_set1_epi32(1),
        );
        let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased));
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-103.0));
        _mm512_maskz_mul_ps(keep, p, scale)
    }

    /// Softmax of `row[..seq]` after adding the mask; `row[seq..]` set to zero. `row.len()`
    /// is a multiple of 16. The mask is added, the padding set to −∞ and the maximum taken in
    /// one pass (the same additions as [`super::add_mask`]).
    ///
    /// # Safety
    /// AVX-512 F is available; with `key_stride == 1`, `mask` holds at least `seq` values.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax(row: &mut [f32], seq: usize, mask: &[f32], key_stride: usize) {
        let n = row.len();
        let p = row.as_mut_ptr();
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let shared = _mm512_set1_ps(mask.first().copied().unwrap_or(0.0));
        let mut m = neg_inf;
        let mut i = 0;
        while i < n {
            let live = seq.saturating_sub(i).min(16);
            let lm: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
            let add = if key_stride == 1 {
                // `wrapping_add`: past `seq` no lane is loaded, and the address may lie past the mask
                _mm512_maskz_loadu_ps(lm, mask.as_ptr().wrapping_add(i))
            } else {
                shared
            };
            // padding lanes: −∞, so that they add nothing to the max and exp to 0
            let v =
                _mm512_mask_blend_ps(lm, neg_inf, _mm512_add_ps(_mm512_loadu_ps(p.add(i)), add));
            _mm512_storeu_ps(p.add(i), v);
            m = _mm512_max_ps(m, v);
            i += 16;
        }
        let vm = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        let mut sum = _mm512_setzero_ps();
        i = 0;
        while i < n {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), vm));
            _mm512_storeu_ps(p.add(i), e);
            sum = _mm512_add_ps(sum, e);
            i += 16;
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        i = 0;
        while i < n {
            _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), inv));
            i += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let k = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                ((k >> 8) % 20001) as f32 / 10000.0 * scale - scale
            })
            .collect()
    }

    /// The ONNX op sequence evaluated in f64.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: &[f32],
        st: MaskStrides,
        s: AttentionShape,
    ) -> Vec<f32> {
        let w = s.heads * s.head_dim;
        let mut out = vec![0f32; q.len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.seq {
                    let at = |t: &[f32], j: usize, d: usize| {
                        f64::from(t[(b * s.seq + j) * w + h * s.head_dim + d])
                    };
                    let scores: Vec<f64> = (0..s.seq)
                        .map(|j| {
                            let dot: f64 = (0..s.head_dim).map(|d| at(q, i, d) * at(k, j, d)).sum();
                            dot + f64::from(
                                mask[b * st.batch + h * st.head + i * st.query + j * st.key],
                            )
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..s.head_dim {
                        let c: f64 = (0..s.seq).map(|j| e[j] / sum * at(v, j, d)).sum();
                        out[(b * s.seq + i) * w + h * s.head_dim + d] = c as f32;
                    }
                }
            }
        }
        out
    }

    fn kernels() -> Vec<AttentionKernel> {
        let mut k = vec![AttentionKernel::Portable];
        if fma_available() {
            k.push(AttentionKernel::Fma);
        }
        if avx512_available() {
            k.push(AttentionKernel::Avx512);
        }
        k
    }

    /// A padding mask `[batch, 1, 1, seq]`: sequence `b` keeps its first `seq − b` tokens.
    fn padding_mask(batch: usize, seq: usize) -> (Vec<f32>, MaskStrides) {
        let mask = (0..batch * seq)
            .map(|x| {
                if x % seq < seq - (x / seq).min(seq - 1) {
                    0.0
                } else {
                    f32::MIN
                }
            })
            .collect();
        (
            mask,
            MaskStrides {
                batch: seq,
                head: 0,
                query: 0,
                key: 1,
            },
        )
    }

    #[test]
    fn matches_the_f64_reference_at_odd_and_bucket_sizes() {
        for &(batch, seq, heads, head_dim) in &[
            (1, 1, 1, 1),
            (2, 5, 3, 8),
            (1, 17, 2, 24),
            (3, 16, 4, 16),
            (1, 128, 12, 32),
            (2, 33, 2, 64),
        ] {
            let shape = AttentionShape {
                batch,
                seq,
                heads,
                head_dim,
            };
            let n = shape.values().unwrap_or(0);
            let (q, k, v) = (values(n, 1, 2.0), values(n, 2, 2.0), values(n, 3, 1.0));
            let (mask, strides) = padding_mask(batch, seq);
            let want = reference(&q, &k, &v, &mask, strides, shape);
            for kernel in kernels() {
                let mut out = vec![f32::NAN; n];
                let mut scratch = AttentionScratch::default();
                assert!(attention(
                    &q,
                    &k,
                    &v,
                    &mask,
                    strides,
                    shape,
                    &mut out,
                    kernel,
                    &mut scratch
                ));
                let err = out
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    err < 2e-6 * (seq as f32).sqrt() + 1e-6,
                    "{shape:?} {kernel:?}: max |Δ| {err}"
                );
            }
        }
    }

    #[test]
    fn padded_keys_get_no_weight_and_scratch_is_reused_across_shapes() {
        // A key masked out must not change the result, whatever its value.
        let mut scratch = AttentionScratch::default();
        for kernel in kernels() {
            for &(seq, head_dim) in &[(9, 16), (3, 8), (20, 40)] {
                let shape = AttentionShape {
                    batch: 2,
                    seq,
                    heads: 2,
                    head_dim,
                };
                let n = shape.values().unwrap_or(0);
                let (q, mut k, mut v) = (values(n, 4, 1.0), values(n, 5, 1.0), values(n, 6, 1.0));
                let (mask, strides) = padding_mask(2, seq);
                let mut a = vec![0f32; n];
                assert!(attention(
                    &q,
                    &k,
                    &v,
                    &mask,
                    strides,
                    shape,
                    &mut a,
                    kernel,
                    &mut scratch
                ));
                // The last token of sequence 1 is padding: scramble its keys and values.
                let last = (2 * seq - 1) * 2 * head_dim;
                k[last..].iter_mut().for_each(|x| *x = 1e3);
                v[last..].iter_mut().for_each(|x| *x = -7.0);
                let mut b = vec![0f32; n];
                assert!(attention(
                    &q,
                    &k,
                    &v,
                    &mask,
                    strides,
                    shape,
                    &mut b,
                    kernel,
                    &mut scratch
                ));
                assert_eq!(a, b, "{kernel:?} seq {seq}");
            }
        }
    }

    #[test]
    fn full_mask_broadcasts_per_head_and_query() {
        let shape = AttentionShape {
            batch: 1,
            seq: 6,
            heads: 2,
            head_dim: 8,
        };
        let n = shape.values().unwrap_or(0);
        let (q, k, v) = (values(n, 7, 1.0), values(n, 8, 1.0), values(n, 9, 1.0));
        let mask = values(2 * 6 * 6, 10, 3.0);
        let strides = MaskStrides {
            batch: 0,
            head: 36,
            query: 6,
            key: 1,
        };
        let want = reference(&q, &k, &v, &mask, strides, shape);
        for kernel in kernels() {
            let mut out = vec![0f32; n];
            assert!(attention(
                &q,
                &k,
                &v,
                &mask,
                strides,
                shape,
                &mut out,
                kernel,
                &mut AttentionScratch::default()
            ));
            let err = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "{kernel:?}: {err}");
        }
    }

    #[test]
    fn inconsistent_sizes_are_refused_and_leave_the_output_alone() {
        let shape = AttentionShape {
            batch: 1,
            seq: 4,
            heads: 2,
            head_dim: 4,
        };
        let x = vec![0.5f32; 32];
        let mask = vec![0f32; 4];
        let strides = MaskStrides {
            batch: 4,
            head: 0,
            query: 0,
            key: 1,
        };
        let mut out = vec![9f32; 32];
        let mut s = AttentionScratch::default();
        let k = AttentionKernel::Portable;
        assert!(!attention(
            &x[..31],
            &x,
            &x,
            &mask,
            strides,
            shape,
            &mut out,
            k,
            &mut s
        ));
        assert!(!attention(
            &x,
            &x,
            &x,
            &mask[..3],
            strides,
            shape,
            &mut out,
            k,
            &mut s
        ));
        let wide = MaskStrides { key: 2, ..strides };
        assert!(!attention(
            &x, &x, &x, &mask, wide, shape, &mut out, k, &mut s
        ));
        let huge = AttentionShape {
            batch: usize::MAX,
            ..shape
        };
        assert!(!attention(
            &x, &x, &x, &mask, strides, huge, &mut out, k, &mut s
        ));
        assert!(out.iter().all(|&y| y == 9.0));
        assert!(attention(
            &x, &x, &x, &mask, strides, shape, &mut out, k, &mut s
        ));
        // Equal keys: uniform weights, so the context is the (constant) value.
        assert!(out.iter().all(|&y| (y - 0.5).abs() < 1e-7));
    }
}
