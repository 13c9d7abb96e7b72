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
//! Arithmetic: fp32 products and sums (fused multiply-adds in the vector kernels, each sum in
//! order of the contraction index, so AVX2, AVX-512 and NEON give the same products), the
//! softmax as ONNX defines it (row max subtracted, `exp`, sum, times the reciprocal of the sum,
//! as tract and onnxruntime do). Results agree with the op sequence to f32 rounding, not bit
//! for bit. The vector kernels are written once in `simd`, the scalar ones are in
//! `portable`.

use crate::dispatch;
use crate::portable;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use crate::simd::Operands;

/// Which implementation [`attention`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// AVX-512 F (x86-64): the FMA kernel's arithmetic on 16 lanes, 32 output columns per tile.
    Avx512,
    /// AVX2 + FMA (x86-64).
    Fma,
    /// NEON (aarch64): the FMA kernel's arithmetic on 4 lanes.
    Neon,
    /// Plain Rust (any CPU).
    Portable,
}

impl AttentionKernel {
    /// The fastest kernel this CPU runs ([`dispatch::attention_kernel`]).
    pub fn best() -> AttentionKernel {
        dispatch::attention_kernel()
    }

    /// Whether this CPU runs `self`.
    pub fn available(self) -> bool {
        match self {
            AttentionKernel::Avx512 => avx512_available(),
            AttentionKernel::Fma => fma_available(),
            AttentionKernel::Neon => dispatch::features().neon,
            AttentionKernel::Portable => true,
        }
    }

    /// A short description for logs (`"AVX-512"`, `"AVX2+FMA"`, `"NEON"`, `"portable"`).
    pub fn describe(self) -> &'static str {
        match self {
            AttentionKernel::Avx512 => "AVX-512",
            AttentionKernel::Fma => "AVX2+FMA",
            AttentionKernel::Neon => "NEON",
            AttentionKernel::Portable => "portable",
        }
    }
}

/// Whether this CPU runs [`AttentionKernel::Fma`].
pub fn fma_available() -> bool {
    let f = dispatch::features();
    f.avx2 && f.fma
}

/// Whether this CPU runs [`AttentionKernel::Avx512`].
pub fn avx512_available() -> bool {
    dispatch::features().avx512f
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
/// when this CPU cannot run `kernel` ([`AttentionKernel::available`]).
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
    // An overflowing shape is refused by `attention_rows` (`AttentionShape::values`).
    let rows = shape.batch.saturating_mul(shape.seq);
    attention_rows(q, k, v, mask, strides, shape, 0..rows, out, kernel, scratch)
}

/// [`attention`] for the query rows `rows` only (rows of `[batch × seq, heads × head_dim]`):
/// `out` holds exactly those rows, each computed as [`attention`] computes it when the split
/// falls on a multiple of 4 rows within a sequence (the query rows of one pass), so that
/// row blocks on several threads give [`attention`]'s values bit for bit.
///
/// Returns `false`, with `out` untouched, as [`attention`] does, and when `rows` is not within
/// the queries or `out` does not hold `rows.len()` rows.
#[allow(clippy::too_many_arguments)]
pub fn attention_rows(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    strides: MaskStrides,
    shape: AttentionShape,
    rows: core::ops::Range<usize>,
    out: &mut [f32],
    kernel: AttentionKernel,
    scratch: &mut AttentionScratch,
) -> bool {
    let Some(len) = shape.values() else {
        return false;
    };
    let width = shape.heads * shape.head_dim;
    if [q.len(), k.len(), v.len()] != [len; 3]
        || strides.key > 1
        || rows.start > rows.end
        || rows.end > shape.batch * shape.seq
        || Some(out.len()) != rows.len().checked_mul(width)
    {
        return false;
    }
    if !kernel.available() {
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
    let first_row = rows.start;
    for b in 0..batch {
        // This sequence's queries among `rows`.
        let seq_start = b * seq;
        let queries = rows.start.clamp(seq_start, seq_start + seq) - seq_start
            ..rows.end.clamp(seq_start, seq_start + seq) - seq_start;
        if queries.is_empty() {
            continue;
        }
        let (q, k, v) = (
            &q[seq_start * width..],
            &k[seq_start * width..],
            &v[seq_start * width..],
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
            let mut i0 = queries.start;
            while i0 < queries.end {
                let r = (queries.end - i0).min(ROWS);
                let q_rows = &q[i0 * width + col..];
                let rows_mask = |i: usize| {
                    let start = b * strides.batch + h * strides.head + (i0 + i) * strides.query;
                    &mask[start..]
                };
                #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
                let q_tile = Operands {
                    a: q_rows,
                    a_stride: width,
                    b: keys_t,
                    b_stride: keys,
                    depth: head_dim,
                    c_stride: keys,
                };
                // probabilities × V
                #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
                fn v_tile<'a>(
                    p: &'a [f32],
                    keys: usize,
                    v: &'a [f32],
                    dims: usize,
                    seq: usize,
                ) -> Operands<'a> {
                    Operands {
                        a: p,
                        a_stride: keys,
                        b: v,
                        b_stride: dims,
                        depth: seq,
                        c_stride: dims,
                    }
                }
                // one pass of the products and softmax of a vector family's entry points
                #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
                macro_rules! simd_pass {
                    ($family:path) => {{
                        use $family::{products, softmax};
                        products(q_tile, scores, r);
                        for i in 0..r {
                            let row = &mut scores[i * keys..(i + 1) * keys];
                            softmax(row, seq, rows_mask(i), strides.key);
                        }
                        products(v_tile(scores, keys, values, dims, seq), context, r);
                    }};
                }
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX-512 F is available (checked above); every buffer holds the
                    // rows and padded columns the products read and write.
                    AttentionKernel::Avx512 => unsafe { simd_pass!(crate::x86_64::avx512) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 and FMA are available (checked above); as above.
                    AttentionKernel::Fma => unsafe { simd_pass!(crate::x86_64::avx2) },
                    #[cfg(target_arch = "aarch64")]
                    // SAFETY: NEON is available (checked above); as above.
                    AttentionKernel::Neon => unsafe { simd_pass!(crate::aarch64::neon) },
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
                    let dst = (seq_start + i0 + i - first_row) * width + col;
                    out[dst..dst + head_dim]
                        .copy_from_slice(&context[i * dims..i * dims + head_dim]);
                }
                i0 += r;
            }
        }
    }
    true
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
        if AttentionKernel::Neon.available() {
            k.push(AttentionKernel::Neon);
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

    /// Query rows in blocks of multiples of 4 (as the runtime's threads split them, across
    /// sequences too) give [`attention`]'s values bit for bit; a bad range is refused.
    #[test]
    fn row_blocks_equal_one_call_bit_for_bit() {
        for &(batch, seq, heads, head_dim) in &[(1, 128, 12, 32), (1, 17, 3, 24), (2, 16, 2, 8)] {
            let shape = AttentionShape {
                batch,
                seq,
                heads,
                head_dim,
            };
            let n = shape.values().unwrap_or(0);
            let width = heads * head_dim;
            let (q, k, v) = (values(n, 4, 2.0), values(n, 5, 2.0), values(n, 6, 1.0));
            let (mask, strides) = padding_mask(batch, seq);
            for kernel in kernels() {
                let mut scratch = AttentionScratch::default();
                let mut whole = vec![f32::NAN; n];
                assert!(attention(
                    &q,
                    &k,
                    &v,
                    &mask,
                    strides,
                    shape,
                    &mut whole,
                    kernel,
                    &mut scratch
                ));
                for block in [4, 8, 12, 20] {
                    let mut split = vec![f32::NAN; n];
                    for (i, out) in split.chunks_mut(block * width).enumerate() {
                        let first = i * block;
                        let rows = first..first + out.len() / width;
                        assert!(attention_rows(
                            &q,
                            &k,
                            &v,
                            &mask,
                            strides,
                            shape,
                            rows,
                            out,
                            kernel,
                            &mut scratch
                        ));
                    }
                    assert_eq!(split, whole, "{shape:?} {kernel:?} in blocks of {block}");
                }
                let mut out = vec![1.5; width];
                let past = batch * seq..batch * seq + 1;
                assert!(!attention_rows(
                    &q,
                    &k,
                    &v,
                    &mask,
                    strides,
                    shape,
                    past,
                    &mut out,
                    kernel,
                    &mut scratch
                ));
                assert!(!attention_rows(
                    &q,
                    &k,
                    &v,
                    &mask,
                    strides,
                    shape,
                    0..2,
                    &mut out,
                    kernel,
                    &mut scratch
                ));
                assert!(out.iter().all(|&y| y == 1.5));
            }
        }
    }
}
