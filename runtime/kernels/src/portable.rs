//! The scalar reference of every kernel, in plain Rust: what runs on a CPU without a SIMD
//! kernel, and what each SIMD kernel is tested against (bit for bit where its module says so).
//!
//! - int8 Linear: the activation range, `DynamicQuantizeLinear`'s scale, zero point and codes,
//!   and the exact integer sums with their rescale;
//! - LayerNorm's rows;
//! - erf and GELU;
//! - attention's tile product, mask and row softmax.

use crate::int8_gemm::{Epilogue, PackedInt8Weights, PANEL};

// ---- int8 Linear ------------------------------------------------------------------------

/// `(min(0, min x), max(0, max x))`, NaN values ignored.
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((0f32, 0f32), |(lo, hi), &v| {
        if v < lo {
            (v, hi)
        } else if v > hi {
            (lo, v)
        } else {
            (lo, hi)
        }
    })
}

/// `DynamicQuantizeLinear`'s scale and zero point for the range `min ≤ 0 ≤ max`.
pub(crate) fn scale_and_zero_point(min: f32, max: f32) -> (f32, u8) {
    let scale = (max - min) / 255.0;
    let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

/// The range of the rows (of `k` values) flagged in `flags`, widened to include 0.
pub(crate) fn min_max_of_rows(x: &[f32], k: usize, flags: &[bool]) -> (f32, f32) {
    x.chunks_exact(k)
        .zip(flags)
        .filter(|(_, &f)| f)
        .fold((0f32, 0f32), |(lo, hi), (row, _)| {
            let (l, h) = min_max(row);
            (lo.min(l), hi.max(h))
        })
}

/// `saturate(round_half_to_even(v / scale) + zero_point)`.
#[inline(always)]
pub(crate) fn quantize_one(v: f32, scale: f32, zero_point: u8) -> u8 {
    (((v / scale).round_ties_even() as i32) + i32::from(zero_point)).clamp(0, 255) as u8
}

/// [`quantize_one`] for each value, into `out` (rows of `k` values, each row padded with
/// `zero_point` to `stride`).
pub(crate) fn quantize_rows(
    x: &[f32],
    k: usize,
    scale: f32,
    zero_point: u8,
    stride: usize,
    out: &mut [u8],
) {
    for (row, q) in x.chunks_exact(k.max(1)).zip(out.chunks_exact_mut(stride)) {
        for (v, q) in row.iter().zip(q.iter_mut()) {
            *q = quantize_one(*v, scale, zero_point);
        }
        q[k.min(stride)..].fill(zero_point);
    }
}

/// Exact integer sums of the quantized rows `a` (`m` rows of `w.stride()` bytes, padded with
/// the zero point) with the codes, the zero point taken out with the column sums, then the
/// epilogue; any code range and either packing. The sums run panel by panel and group by group
/// through the packed codes (the padding codes are zero, so the padded activations add
/// nothing); integer sums are exact in any order. Only the columns `cols` are computed and
/// written.
///
/// # Safety
/// `y` is valid for writes of `m × n` values; `cols` is within `0..n` and starts on a multiple
/// of [`PANEL`].
pub(crate) unsafe fn gemm(
    a: &[u8],
    m: usize,
    w: &PackedInt8Weights,
    zp: u8,
    e: Epilogue,
    y: *mut f32,
    cols: std::ops::Range<usize>,
) {
    let (n, stride, d) = (w.n, w.stride(), w.depth);
    let panel_len = w.groups * PANEL * d;
    let panels = cols.start / PANEL..cols.end.div_ceil(PANEL);
    for (r, row) in a.chunks_exact(stride).take(m).enumerate() {
        let chunks = w.data.chunks_exact(panel_len).enumerate();
        for (p, panel) in chunks.skip(panels.start).take(panels.len()) {
            let mut dots = [0i32; PANEL];
            for (group, act) in panel.chunks_exact(PANEL * d).zip(row.chunks_exact(d)) {
                for (dot, codes) in dots.iter_mut().zip(group.chunks_exact(d)) {
                    for (&q, &c) in act.iter().zip(codes) {
                        *dot += i32::from(q) * i32::from(c);
                    }
                }
            }
            let first = p * PANEL;
            for (i, dot) in dots.iter().enumerate().take(cols.end - first) {
                let c = first + i;
                let sum = dot - i32::from(zp) * w.col_sums[c];
                let v = sum as f32 * e.scales[c];
                y.add(r * n + c).write(match e.bias {
                    Some(b) => v + b[c],
                    None => v,
                });
            }
        }
    }
}

// ---- LayerNorm --------------------------------------------------------------------------

/// Partial sums of LayerNorm's statistics: element `i` goes to sum `i mod 8`.
pub(crate) const LANE_SUMS: usize = 8;

/// The rows of [`crate::layer_norm::layer_norm`], sizes checked: `s = x (+ residual)`, then
/// `(s − mean) × inv_std × gamma + beta` per row.
pub(crate) fn layer_norm_rows(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
) {
    let h = gamma.len();
    for (i, (row, out)) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).enumerate() {
        match residual {
            Some(r) => {
                for ((o, &a), &b) in out.iter_mut().zip(row).zip(&r[i * h..(i + 1) * h]) {
                    *o = a + b;
                }
            }
            None => out.copy_from_slice(row),
        }
        normalize_in_place(out, gamma, beta, epsilon);
    }
}

/// `s ← (s - mean) × inv_std × gamma + beta` for one row.
#[inline(always)]
fn normalize_in_place(s: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    let n = s.len() as f64;
    let mean = lane_sum(s, f64::from) / n;
    let var = lane_sum(s, |v| {
        let d = f64::from(v) - mean;
        d * d
    }) / n;
    let (mean, inv_std) = finish_stats(mean, var, epsilon);
    for ((v, &g), &b) in s.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv_std * g + b;
    }
}

/// The f32 mean and `1 / sqrt(var + eps)` the normalisation applies.
#[inline(always)]
pub(crate) fn finish_stats(mean: f64, var: f64, epsilon: f32) -> (f32, f32) {
    (
        (mean as f32),
        (1.0 / (var + f64::from(epsilon)).sqrt()) as f32,
    )
}

/// `Σ f(v)` over `s` with [`LANE_SUMS`] independent partial sums (vectorisable, and more exact
/// than one running sum).
#[inline(always)]
fn lane_sum(s: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; LANE_SUMS];
    let mut chunks = s.chunks_exact(LANE_SUMS);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    total(&lanes, chunks.remainder(), f)
}

/// The partial sums added in lane order, then `f` of the values past the last whole chunk.
#[inline(always)]
pub(crate) fn total(lanes: &[f64; LANE_SUMS], remainder: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    lanes.iter().sum::<f64>() + remainder.iter().map(|&v| f(v)).sum::<f64>()
}

// ---- GELU -------------------------------------------------------------------------------

/// Numerator coefficients of [`erf`] (in `x²`), highest degree first.
pub(crate) const ERF_P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_1e-3,
    -1.609_603_3e-2,
];
/// Denominator coefficients of [`erf`] (in `x²`), highest degree first.
pub(crate) const ERF_Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// erf as a branch-free rational function (Eigen's `generic_fast_erf_float`: odd degree-13
/// numerator over even degree-8 denominator), exactly ±1 from |x| ≥ 3.9, where erf rounds to ±1
/// in f32 (the rational alone gives 1 − 6e-8 there, so GELU of a large negative value would
/// not be 0). Max |error| 4.3e-7 against f64 erf.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let saturated = x.abs() >= 3.9;
    let sign = 1f32.copysign(x);
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * ERF_P[0] + ERF_P[1];
    for &c in &ERF_P[2..] {
        p = x2 * p + c;
    }
    let mut q = x2 * ERF_Q[0] + ERF_Q[1];
    for &c in &ERF_Q[2..] {
        q = x2 * q + c;
    }
    if saturated {
        sign
    } else {
        x * p / q
    }
}

/// GELU of one value: `(x × 0.5) × (erf(x × 1/√2) + 1)` (the operation order of the ONNX
/// pattern and of tract's `GeluExact`).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    (x * 0.5) * (erf(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0)
}

/// `x ← gelu(x)` for every value.
pub(crate) fn gelu_slice(xs: &mut [f32]) {
    for x in xs {
        *x = gelu(*x);
    }
}

// ---- attention --------------------------------------------------------------------------

/// Adds the mask to `row[..seq]` (key stride 1: consecutive values; 0: one value for all).
pub(crate) fn add_mask(row: &mut [f32], mask: &[f32], key_stride: usize) {
    if key_stride == 1 {
        for (x, &m) in row.iter_mut().zip(mask) {
            *x += m;
        }
    } else {
        let m = mask[0];
        row.iter_mut().for_each(|x| *x += m);
    }
}

/// `c[i][..n] = Σ_p a[i][p] · b[p][..n]` for the first `r` rows (`n` = `b_stride`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn products(
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
pub(crate) fn softmax(row: &mut [f32], seq: usize, mask: &[f32], key_stride: usize) {
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
