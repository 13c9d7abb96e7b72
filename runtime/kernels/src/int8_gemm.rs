//! The int8 Linear kernel: `DynamicQuantizeLinear(x) → MatMulInteger → Cast → Mul(scale)` in
//! one pass, with AVX2 `u8 × i8` products where the CPU has them.
//!
//! On an x86-64 CPU with AVX2 but no int8 dot-product instructions tract's integer GEMM is far
//! slower than its fp32 one, so without this kernel the runtime dequantizes the weights to fp32
//! (4× the memory, and 4× the weight bytes to stream for each short text). This kernel keeps the
//! weights as int8 codes and computes each product pair with `vpmaddubsw` (`u8 × i8 → i16`,
//! two pairs summed) and `vpmaddwd` (`→ i32`), the same instructions onnxruntime's MLAS uses on
//! such CPUs. `vpmaddubsw` saturates its `i16` sum, so it is exact only while
//! `2 × 255 × max|code| ≤ 32767`: codes within ±[`MAX_EXACT_CODE`]. `edgebert-models` writes
//! 7-bit codes (±63) by default for that reason; [`PackedInt8Weights::exact_on_avx2`] tells
//! whether a weight qualifies, and the portable loop (exact for any code) runs otherwise.
//!
//! On CPUs with AVX-512 VNNI (Intel Ice Lake and later servers, AMD Zen 4 and later) a second
//! kernel takes four `u8 × i8` products per `i32` lane in one `vpdpbusd` over 512-bit registers:
//! its sums never saturate, so it is exact for every code (no 7-bit restriction), and it beats
//! both the AVX2 kernel and tract's own integer kernels there.
//!
//! The result is bit-identical to the ONNX graph it replaces: activations are quantized per
//! tensor exactly as `DynamicQuantizeLinear` specifies (`round_half_to_even(x / scale) + zp`,
//! saturated to `u8`), the integer sums are exact, and the rescale is `f32(sum) × (x_scale ×
//! w_scale)` like `Cast` then `Mul`.

/// Largest |code| for which the AVX2 kernel's `i16` pair sums cannot saturate
/// (`2 × 255 × 64 = 32640 ≤ 32767`).
pub const MAX_EXACT_CODE: i8 = 64;

/// Columns per AVX2 block (one 256-bit register of `i32` sums).
#[cfg(target_arch = "x86_64")]
const COLS: usize = 8;
/// Columns per packed panel: one 512-bit register of `i32` sums, or two AVX2 blocks.
const PANEL: usize = 16;
/// Depth per packed group (four `u8 × i8` products per `i32` lane).
const DEPTH: usize = 4;

/// A `[k, n]` int8 weight repacked for the kernel, with its per-column code sums.
///
/// Layout: panels of 16 columns, one after the other; in each panel, groups of 4 rows; in each
/// group, for each column, its 4 codes. One group of one panel is one 64-byte AVX-512 register
/// (or two 32-byte AVX2 registers of 8 columns each). Rows and columns past the weight's edge
/// are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedInt8Weights {
    k: usize,
    n: usize,
    groups: usize,
    data: Vec<i8>,
    col_sums: Vec<i32>,
    exact_on_avx2: bool,
}

impl PackedInt8Weights {
    /// Packs the row-major `[k, n]` codes; `None` when `codes.len() != k × n`.
    pub fn pack(codes: &[i8], k: usize, n: usize) -> Option<PackedInt8Weights> {
        if k.checked_mul(n)? != codes.len() {
            return None;
        }
        let groups = k.div_ceil(DEPTH);
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0i8; panels * groups * PANEL * DEPTH];
        for (row, codes_row) in codes.chunks_exact(n.max(1)).enumerate().take(k) {
            let (g, t) = (row / DEPTH, row % DEPTH);
            for (col, &code) in codes_row.iter().enumerate() {
                let (p, c) = (col / PANEL, col % PANEL);
                data[((p * groups + g) * PANEL + c) * DEPTH + t] = code;
            }
        }
        let mut col_sums = vec![0i32; n];
        for codes_row in codes.chunks_exact(n.max(1)).take(k) {
            for (sum, &code) in col_sums.iter_mut().zip(codes_row) {
                *sum += i32::from(code);
            }
        }
        let exact_on_avx2 = codes
            .iter()
            .all(|&c| (-MAX_EXACT_CODE..=MAX_EXACT_CODE).contains(&c));
        Some(PackedInt8Weights {
            k,
            n,
            groups,
            data,
            col_sums,
            exact_on_avx2,
        })
    }

    /// Input features (rows of the weight).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output features (columns of the weight).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether every code is within ±[`MAX_EXACT_CODE`], so the AVX2 kernel is exact.
    pub fn exact_on_avx2(&self) -> bool {
        self.exact_on_avx2
    }

    /// Bytes held (packed codes and column sums).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.col_sums.len()
    }

    /// The packed code of row `row`, column `col` (zero past the edges).
    fn code(&self, row: usize, col: usize) -> i8 {
        let (g, t, p, c) = (row / DEPTH, row % DEPTH, col / PANEL, col % PANEL);
        self.data[((p * self.groups + g) * PANEL + c) * DEPTH + t]
    }
}

/// Which implementation [`linear`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The AVX-512 VNNI `vpdpbusd` kernel (x86-64 with AVX-512 VNNI; any code).
    Avx512Vnni,
    /// The AVX2 `vpmaddubsw` kernel (x86-64 with AVX2 and codes within ±[`MAX_EXACT_CODE`]).
    Avx2,
    /// The portable loop (any CPU, any code).
    Portable,
}

impl Kernel {
    /// The fastest exact kernel for `weights` on this CPU.
    pub fn best_for(weights: &PackedInt8Weights) -> Kernel {
        if avx512_vnni_available() {
            Kernel::Avx512Vnni
        } else if weights.exact_on_avx2 && avx2_available() {
            Kernel::Avx2
        } else {
            Kernel::Portable
        }
    }

    /// Whether this CPU runs `self` exactly on `weights`.
    pub fn runs(self, weights: &PackedInt8Weights) -> bool {
        match self {
            Kernel::Avx512Vnni => avx512_vnni_available(),
            Kernel::Avx2 => weights.exact_on_avx2 && avx2_available(),
            Kernel::Portable => true,
        }
    }

    /// A short description for logs (`"AVX-512 VNNI"`, `"AVX2"`, `"portable"`).
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "AVX-512 VNNI u8×i8 dot products",
            Kernel::Avx2 => "AVX2 u8×i8 products",
            Kernel::Portable => "portable loop",
        }
    }
}

/// Whether this CPU runs the AVX-512 VNNI kernel (it also needs AVX2, for the quantizer).
pub fn avx512_vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs the AVX2 kernel.
pub fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The scale and zero point `DynamicQuantizeLinear` picks for `x` (its range widened to
/// include 0, mapped onto `0..=255`).
pub fn dynamic_scale_and_zero_point(x: &[f32]) -> (f32, u8) {
    let (min, max) = min_max(x);
    scale_and_zero_point(min, max)
}

/// [`dynamic_scale_and_zero_point`] of the rows of `x` (rows of `k` values) flagged in
/// `stats_rows` (every row when `None`, when none is flagged, or when the flags do not number
/// the rows).
pub fn dynamic_scale_and_zero_point_of_rows(
    x: &[f32],
    k: usize,
    stats_rows: Option<&[bool]>,
) -> (f32, u8) {
    let rows = x.len().checked_div(k).unwrap_or(0);
    match stats_rows.filter(|f| f.len() == rows && f.iter().any(|&b| b)) {
        Some(flags) => {
            let (lo, hi) = x.chunks_exact(k).zip(flags).filter(|(_, &f)| f).fold(
                (0f32, 0f32),
                |(lo, hi), (row, _)| {
                    let (l, h) = min_max(row);
                    (lo.min(l), hi.max(h))
                },
            );
            scale_and_zero_point(lo, hi)
        }
        None => dynamic_scale_and_zero_point(x),
    }
}

/// `DynamicQuantizeLinear`'s codes: `saturate(round_half_to_even(x / scale) + zero_point)`.
/// `false`, with `out` untouched, when the lengths differ.
pub fn quantize(x: &[f32], scale: f32, zero_point: u8, out: &mut [u8]) -> bool {
    if x.len() != out.len() {
        return false;
    }
    for (v, q) in x.iter().zip(out.iter_mut()) {
        *q = (((v / scale).round_ties_even() as i32) + i32::from(zero_point)).clamp(0, 255) as u8;
    }
    true
}

/// `(min(0, min x), max(0, max x))`, NaN values ignored.
fn min_max(x: &[f32]) -> (f32, f32) {
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
fn scale_and_zero_point(min: f32, max: f32) -> (f32, u8) {
    let scale = (max - min) / 255.0;
    let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

/// `saturate(round_half_to_even(x / scale) + zero_point)` for each value, into `out` (rows of
/// `k` values, each row padded with `zero_point` to `stride`).
fn quantize_rows(x: &[f32], k: usize, scale: f32, zero_point: u8, stride: usize, out: &mut [u8]) {
    for (row, q) in x.chunks_exact(k.max(1)).zip(out.chunks_exact_mut(stride)) {
        for (v, q) in row.iter().zip(q.iter_mut()) {
            *q = (((v / scale).round_ties_even() as i32) + i32::from(zero_point)).clamp(0, 255)
                as u8;
        }
        q[k.min(stride)..].fill(zero_point);
    }
}

/// Reusable buffers for [`linear`].
#[derive(Debug, Default)]
pub struct Scratch {
    quantized: Vec<u8>,
    scales: Vec<f32>,
    bias: Vec<f32>,
    /// The SIMD kernels' partial sums between depth chunks: 32 per row (two panels).
    #[cfg(target_arch = "x86_64")]
    partial: Vec<i32>,
}

/// What follows the integer sums: `sum × scales[c]`, then `+ bias[c]` when there is a bias
/// (two roundings, as the graph's `Mul` then `Add`). Both slices are padded to whole panels.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    scales: &'a [f32],
    bias: Option<&'a [f32]>,
}

/// `y = DynamicQuantizeLinear(x) · W` rescaled to fp32, plus `bias` when it is not empty:
/// `x` is `[m, k]` row-major, `y` is `[m, n]` (every value written), `w_scales` holds one
/// scale or one per column, `bias` none or one per column.
///
/// Returns `false`, with `y` untouched, when the sizes disagree (`x.len()` not a multiple of
/// `k`, `y.len() != m × n`, `w_scales.len() ∉ {1, n}`, `bias.len() ∉ {0, n}`) or when `kernel`
/// cannot run on this CPU or these codes ([`Kernel::runs`]).
pub fn linear(
    x: &[f32],
    weights: &PackedInt8Weights,
    w_scales: &[f32],
    bias: &[f32],
    y: &mut [f32],
    kernel: Kernel,
    scratch: &mut Scratch,
) -> bool {
    linear_rows(x, None, weights, w_scales, bias, y, kernel, scratch)
}

/// [`linear`] whose activation scale and zero point are those of the rows flagged in
/// `stats_rows` only (one flag per row of `x`; every row when `None` or when none is flagged):
/// the rows of padding tokens, which no real token reads, then cannot change how the real
/// ones are quantized. Every row is still quantized and multiplied. Also `false` when
/// `stats_rows` has not one flag per row.
#[allow(clippy::too_many_arguments)]
pub fn linear_rows(
    x: &[f32],
    stats_rows: Option<&[bool]>,
    weights: &PackedInt8Weights,
    w_scales: &[f32],
    bias: &[f32],
    y: &mut [f32],
    kernel: Kernel,
    scratch: &mut Scratch,
) -> bool {
    let (k, n) = (weights.k, weights.n);
    if k == 0 || n == 0 || !x.len().is_multiple_of(k) {
        return false;
    }
    let m = x.len() / k;
    if y.len() != m * n
        || (w_scales.len() != 1 && w_scales.len() != n)
        || (!bias.is_empty() && bias.len() != n)
        || stats_rows.is_some_and(|r| r.len() != m)
    {
        return false;
    }
    if !kernel.runs(weights) {
        return false;
    }
    let stats_rows = stats_rows.filter(|r| r.iter().any(|&f| f));
    let stride = weights.groups * DEPTH;
    scratch.quantized.resize(m * stride, 0);
    let (x_scale, zero_point) = match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F and BW are available (checked above); `quantized` holds
        // `m × stride` bytes.
        Kernel::Avx512Vnni => unsafe {
            avx512::quantize(x, k, stats_rows, stride, &mut scratch.quantized)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is available (checked above); `quantized` holds `m × stride` bytes.
        Kernel::Avx2 => unsafe { avx2::quantize(x, k, stats_rows, stride, &mut scratch.quantized) },
        _ => {
            let (scale, zp) = dynamic_scale_and_zero_point_of_rows(x, k, stats_rows);
            quantize_rows(x, k, scale, zp, stride, &mut scratch.quantized);
            (scale, zp)
        }
    };
    // Column scales as the graph computes them: `x_scale × w_scale`, padded to whole panels.
    let padded = n.div_ceil(PANEL) * PANEL;
    scratch.scales.clear();
    scratch.scales.extend(
        (0..padded).map(|c| x_scale * w_scales[if w_scales.len() == 1 { 0 } else { c.min(n - 1) }]),
    );
    scratch.bias.clear();
    if !bias.is_empty() {
        scratch.bias.extend_from_slice(bias);
        scratch.bias.resize(padded, 0.0);
    }
    let epilogue = Epilogue {
        scales: &scratch.scales,
        bias: (!bias.is_empty()).then_some(&scratch.bias[..]),
    };
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => {
            // SAFETY: AVX-512 VNNI is available (checked above) and the sizes are consistent.
            unsafe {
                scratch.partial.resize(m * 2 * PANEL, 0);
                avx512::gemm(
                    &scratch.quantized,
                    m,
                    weights,
                    zero_point,
                    epilogue,
                    y,
                    &mut scratch.partial,
                )
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            // SAFETY: AVX2 is available (checked above) and the sizes are consistent.
            unsafe {
                scratch.partial.resize(m * 2 * PANEL, 0);
                avx2::gemm(
                    &scratch.quantized,
                    m,
                    weights,
                    zero_point,
                    epilogue,
                    y,
                    &mut scratch.partial,
                )
            }
        }
        _ => portable(&scratch.quantized, m, weights, zero_point, epilogue, y),
    }
    true
}

/// Exact integer sums in plain Rust; any code range.
fn portable(a: &[u8], m: usize, w: &PackedInt8Weights, zp: u8, e: Epilogue, y: &mut [f32]) {
    let (k, n, stride) = (w.k, w.n, w.groups * DEPTH);
    for r in 0..m {
        let row = &a[r * stride..r * stride + k];
        for c in 0..n {
            let dot: i32 = row
                .iter()
                .enumerate()
                .map(|(i, &q)| i32::from(q) * i32::from(w.code(i, c)))
                .sum();
            let sum = dot - i32::from(zp) * w.col_sums[c];
            let v = sum as f32 * e.scales[c];
            y[r * n + c] = match e.bias {
                Some(b) => v + b[c],
                None => v,
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Epilogue, PackedInt8Weights, COLS, DEPTH, PANEL};
    use std::arch::x86_64::*;

    /// [`super::dynamic_scale_and_zero_point`] and [`super::quantize_rows`] in AVX2, with
    /// the same results for every finite `x` (the division and the round-half-to-even
    /// conversion are the same IEEE operations; NaN and infinite activations, meaningless
    /// either way, may quantize differently).
    ///
    /// # Safety
    /// The CPU has AVX2; `x.len()` is a multiple of `k`, `out.len() == x.len() / k × stride`
    /// and `stride ≥ k`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize(
        x: &[f32],
        k: usize,
        stats_rows: Option<&[bool]>,
        stride: usize,
        out: &mut [u8],
    ) -> (f32, u8) {
        let (lo_s, hi_s) = match stats_rows {
            Some(flags) => x.chunks_exact(k).zip(flags).filter(|(_, &f)| f).fold(
                (0f32, 0f32),
                |(lo, hi), (row, _)| {
                    let (l, h) = min_max(row);
                    (lo.min(l), hi.max(h))
                },
            ),
            None => min_max(x),
        };
        let (scale, zp) = super::scale_and_zero_point(lo_s, hi_s);
        let scale_v = _mm256_set1_ps(scale);
        let zp_v = _mm256_set1_epi32(i32::from(zp));
        for (row, q) in x.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
            let mut i = 0;
            while i + 8 <= k {
                let v = _mm256_div_ps(_mm256_loadu_ps(row.as_ptr().add(i)), scale_v);
                let n = _mm256_add_epi32(_mm256_cvtps_epi32(v), zp_v);
                // i32 → i16 → u8, each step saturating: clamp(0, 255)
                let w16 =
                    _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
                let b8 = _mm_packus_epi16(w16, w16);
                _mm_storel_epi64(q.as_mut_ptr().add(i) as *mut __m128i, b8);
                i += 8;
            }
            for (v, o) in row[i..].iter().zip(&mut q[i..k]) {
                *o = (((v / scale).round_ties_even() as i32) + i32::from(zp)).clamp(0, 255) as u8;
            }
            q[k..].fill(zp);
        }
        (scale, zp)
    }

    /// [`super::min_max`] in AVX2 (same result: a NaN lane keeps the running value).
    #[target_feature(enable = "avx2")]
    unsafe fn min_max(x: &[f32]) -> (f32, f32) {
        let mut lo = _mm256_setzero_ps();
        let mut hi = _mm256_setzero_ps();
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            let v = _mm256_loadu_ps(c.as_ptr());
            // a NaN lane keeps the running value (the scalar fold ignores NaN too)
            lo = _mm256_min_ps(v, lo);
            hi = _mm256_max_ps(v, hi);
        }
        let (mut lo_s, mut hi_s) = (0f32, 0f32);
        let (mut l, mut h) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
        for &v in l.iter().chain(chunks.remainder()) {
            if v < lo_s {
                lo_s = v;
            }
        }
        for &v in h.iter().chain(chunks.remainder()) {
            if v > hi_s {
                hi_s = v;
            }
        }
        (lo_s, hi_s)
    }

    /// Rows per micro-tile.
    const ROWS: usize = 4;

    /// `y[m, n]` from the quantized rows `a` (`m × groups·DEPTH` bytes), one panel (two
    /// 8-column blocks) at a time.
    ///
    /// # Safety
    /// The CPU has AVX2; `a.len() ≥ m × groups·DEPTH`, the epilogue's slices hold
    /// `panels·PANEL` values, `y.len() == m × n`, `partial.len() ≥ m × 2·COLS` (the partial
    /// sums of one panel when the depth is split into chunks; reused, so a call allocates
    /// nothing).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm(
        a: &[u8],
        m: usize,
        w: &PackedInt8Weights,
        zp: u8,
        e: Epilogue,
        y: &mut [f32],
        partial: &mut [i32],
    ) {
        for p in 0..w.n.div_ceil(PANEL) {
            // the panel's second block only when it holds a real column
            let width = if p * PANEL + COLS < w.n { 2 } else { 1 };
            let mut g0 = 0;
            while g0 < w.groups {
                let g1 = (g0 + CHUNK_GROUPS).min(w.groups);
                let span = Span {
                    p,
                    g0,
                    g1,
                    first: g0 == 0,
                    last: g1 == w.groups,
                };
                let mut r = 0;
                while r < m {
                    let rows = (m - r).min(ROWS);
                    let part = &mut partial[r * 2 * COLS..];
                    match (rows, width) {
                        (4, 2) => tile::<4, 2>(a, r, span, w, zp, e, y, part),
                        (4, _) => tile::<4, 1>(a, r, span, w, zp, e, y, part),
                        (3, 2) => tile::<3, 2>(a, r, span, w, zp, e, y, part),
                        (3, _) => tile::<3, 1>(a, r, span, w, zp, e, y, part),
                        (2, 2) => tile::<2, 2>(a, r, span, w, zp, e, y, part),
                        (2, _) => tile::<2, 1>(a, r, span, w, zp, e, y, part),
                        (_, 2) => tile::<1, 2>(a, r, span, w, zp, e, y, part),
                        _ => tile::<1, 1>(a, r, span, w, zp, e, y, part),
                    }
                    r += rows;
                }
                g0 = g1;
            }
        }
    }

    /// Depth groups per chunk: a chunk of a panel's weights (`CHUNK_GROUPS × 64` bytes)
    /// stays in L1 while every row block uses it.
    pub(super) const CHUNK_GROUPS: usize = 128;

    /// The panel and depth groups one tile covers.
    #[derive(Clone, Copy)]
    pub(super) struct Span {
        pub p: usize,
        pub g0: usize,
        pub g1: usize,
        pub first: bool,
        pub last: bool,
    }

    /// Rows `r..r+R` × blocks `0..B` of panel `p` over depth groups `g0..g1`: integer sums (carried in
    /// `partial`, two registers per row, between chunks), then on the last chunk the
    /// zero-point correction, rescale and store.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    unsafe fn tile<const R: usize, const B: usize>(
        a: &[u8],
        r: usize,
        span: Span,
        w: &PackedInt8Weights,
        zp: u8,
        e: Epilogue,
        y: &mut [f32],
        partial: &mut [i32],
    ) {
        let Span {
            p,
            g0,
            g1,
            first,
            last,
        } = span;
        let groups = w.groups;
        let stride = groups * DEPTH;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); B]; R];
        if !first {
            for (i, acc_row) in acc.iter_mut().enumerate() {
                for (j, v) in acc_row.iter_mut().enumerate() {
                    *v = _mm256_loadu_si256(
                        partial.as_ptr().add((i * 2 + j) * COLS) as *const __m256i
                    );
                }
            }
        }
        let a_ptr = a.as_ptr().add(r * stride);
        let w_ptr = w.data.as_ptr().add(p * groups * PANEL * DEPTH);
        for g in g0..g1 {
            let mut wv = [_mm256_setzero_si256(); B];
            for (j, v) in wv.iter_mut().enumerate() {
                *v =
                    _mm256_loadu_si256(w_ptr.add((g * PANEL + j * COLS) * DEPTH) as *const __m256i);
            }
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let four = (a_ptr.add(i * stride + g * DEPTH) as *const i32).read_unaligned();
                let xa = _mm256_set1_epi32(four);
                for (j, acc_v) in acc_row.iter_mut().enumerate() {
                    let pairs = _mm256_maddubs_epi16(xa, wv[j]);
                    *acc_v = _mm256_add_epi32(*acc_v, _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        if !last {
            for (i, acc_row) in acc.iter().enumerate() {
                for (j, v) in acc_row.iter().enumerate() {
                    _mm256_storeu_si256(
                        partial.as_mut_ptr().add((i * 2 + j) * COLS) as *mut __m256i,
                        *v,
                    );
                }
            }
            return;
        }
        let n = w.n;
        let zp = _mm256_set1_epi32(i32::from(zp));
        for j in 0..B {
            let col = p * PANEL + j * COLS;
            let live = (n - col).min(COLS);
            let mut sums = [0i32; COLS];
            sums[..live].copy_from_slice(&w.col_sums[col..col + live]);
            let correction =
                _mm256_mullo_epi32(zp, _mm256_loadu_si256(sums.as_ptr() as *const __m256i));
            let scale = _mm256_loadu_ps(e.scales.as_ptr().add(col));
            let bias = e.bias.map(|b| _mm256_loadu_ps(b.as_ptr().add(col)));
            for (i, acc_row) in acc.iter().enumerate() {
                let exact = _mm256_sub_epi32(acc_row[j], correction);
                let mut v = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), scale);
                if let Some(bias) = bias {
                    v = _mm256_add_ps(v, bias);
                }
                let out = y.as_mut_ptr().add((r + i) * n + col);
                if live == COLS {
                    _mm256_storeu_ps(out, v);
                } else {
                    let mut tmp = [0f32; COLS];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), v);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, live);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::avx2::{Span, CHUNK_GROUPS};
    use super::{Epilogue, PackedInt8Weights, DEPTH, PANEL};
    use std::arch::x86_64::*;

    /// [`super::avx2::quantize`] on 16 lanes, with the same results for every finite `x`: the
    /// same IEEE division and conversion, and the same saturation to `0..=255` (here a clamp at
    /// 0 and an unsigned narrowing); the minimum and maximum are kept per lane across all the
    /// rows and reduced once (padding lanes of a short row load as 0, which every range holds).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `x.len()` is a multiple of `k`,
    /// `out.len() == x.len() / k × stride` and `stride ≥ k`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize(
        x: &[f32],
        k: usize,
        stats_rows: Option<&[bool]>,
        stride: usize,
        out: &mut [u8],
    ) -> (f32, u8) {
        let tail = k % 16;
        let tail_mask: __mmask16 = if tail == 0 { 0 } else { (1u16 << tail) - 1 };
        let mut lo = _mm512_setzero_ps();
        let mut hi = _mm512_setzero_ps();
        for (r, row) in x.chunks_exact(k).enumerate() {
            if stats_rows.is_some_and(|f| !f[r]) {
                continue;
            }
            let p = row.as_ptr();
            let mut i = 0;
            while i + 16 <= k {
                let v = _mm512_loadu_ps(p.add(i));
                // a NaN lane keeps the running value (as the scalar fold ignores NaN)
                lo = _mm512_min_ps(v, lo);
                hi = _mm512_max_ps(v, hi);
                i += 16;
            }
            if tail != 0 {
                let v = _mm512_maskz_loadu_ps(tail_mask, p.add(i));
                lo = _mm512_min_ps(v, lo);
                hi = _mm512_max_ps(v, hi);
            }
        }
        let (scale, zp) =
            super::scale_and_zero_point(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
        let scale_v = _mm512_set1_ps(scale);
        let zp_v = _mm512_set1_epi32(i32::from(zp));
        let zero = _mm512_setzero_si512();
        for (row, q) in x.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
            let (p, o) = (row.as_ptr(), q.as_mut_ptr());
            let mut i = 0;
            while i + 16 <= k {
                let v = _mm512_div_ps(_mm512_loadu_ps(p.add(i)), scale_v);
                let n = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(v), zp_v), zero);
                _mm_storeu_si128(o.add(i).cast(), _mm512_cvtusepi32_epi8(n));
                i += 16;
            }
            if tail != 0 {
                let v = _mm512_div_ps(_mm512_maskz_loadu_ps(tail_mask, p.add(i)), scale_v);
                let n = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(v), zp_v), zero);
                _mm512_mask_cvtusepi32_storeu_epi8(o.add(i).cast(), tail_mask, n);
            }
            q[k..].fill(zp);
        }
        (scale, zp)
    }

    /// Rows per micro-tile: 8 rows × 2 panels = 16 accumulators of the 32 registers.
    const ROWS: usize = 8;
    /// How far ahead (bytes, in each panel's stream) the first row tile prefetches weights:
    /// the later row tiles find a chunk in L1, the first one streams it from L3 or memory
    /// (DistilBERT-base's 42 MB of int8 weights pass once per call). 2 KiB measured best of
    /// 1, 2 and 4 KiB (DistilBERT-base at 16 tokens: −20% against no prefetch).
    const PREFETCH_AHEAD: usize = 2048;

    /// `y[m, n]` from the quantized rows `a` (`m × groups·DEPTH` bytes), two panels at a time.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; `a.len() ≥ m × groups·DEPTH`, the epilogue's slices
    /// hold `panels·PANEL` values, `y.len() == m × n`, `partial.len() ≥ m × 2·PANEL` (the
    /// partial sums of a panel pair when the depth is split into chunks).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn gemm(
        a: &[u8],
        m: usize,
        w: &PackedInt8Weights,
        zp: u8,
        e: Epilogue,
        y: &mut [f32],
        partial: &mut [i32],
    ) {
        let panels = w.n.div_ceil(PANEL);
        let mut p = 0;
        while p < panels {
            let width = if p + 1 < panels { 2 } else { 1 };
            let mut g0 = 0;
            while g0 < w.groups {
                let g1 = (g0 + CHUNK_GROUPS).min(w.groups);
                let span = Span {
                    p,
                    g0,
                    g1,
                    first: g0 == 0,
                    last: g1 == w.groups,
                };
                let mut r = 0;
                while r < m {
                    let rows = (m - r).min(ROWS);
                    let part = &mut partial[r * 2 * PANEL..];
                    macro_rules! dispatch {
                        ($($n:literal)*) => {
                            match (rows, width) {
                                $(($n, 2) => tile::<$n, 2>(a, r, span, w, zp, e, y, part),
                                  ($n, _) => tile::<$n, 1>(a, r, span, w, zp, e, y, part),)*
                                _ => {}
                            }
                        };
                    }
                    dispatch!(1 2 3 4 5 6 7 8);
                    r += rows;
                }
                g0 = g1;
            }
            p += width;
        }
    }

    /// Rows `r..r+R` × panels `p..p+B` over depth groups `g0..g1`: integer sums with
    /// `vpdpbusd` (carried in `partial`, two registers per row, between chunks), then on the
    /// last chunk the zero-point correction, rescale and store — the same operations, in the
    /// same order, as the AVX2 kernel's epilogue.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const R: usize, const B: usize>(
        a: &[u8],
        r: usize,
        span: Span,
        w: &PackedInt8Weights,
        zp: u8,
        e: Epilogue,
        y: &mut [f32],
        partial: &mut [i32],
    ) {
        let Span {
            p,
            g0,
            g1,
            first,
            last,
        } = span;
        let groups = w.groups;
        let stride = groups * DEPTH;
        let mut acc = [[_mm512_setzero_si512(); B]; R];
        if !first {
            for (i, acc_row) in acc.iter_mut().enumerate() {
                for (j, v) in acc_row.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(partial.as_ptr().add((i * 2 + j) * PANEL).cast());
                }
            }
        }
        let a_ptr = a.as_ptr().add(r * stride);
        let w_ptr = w.data.as_ptr().add(p * groups * PANEL * DEPTH);
        for g in g0..g1 {
            let mut wv = [_mm512_setzero_si512(); B];
            for (j, v) in wv.iter_mut().enumerate() {
                let at = w_ptr.add(((j * groups) + g) * PANEL * DEPTH);
                if r == 0 {
                    // `wrapping_add`: the address may lie past the weights (a prefetch never faults).
                    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH_AHEAD).cast());
                }
                *v = _mm512_loadu_si512(at.cast());
            }
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let four = (a_ptr.add(i * stride + g * DEPTH) as *const i32).read_unaligned();
                let xa = _mm512_set1_epi32(four);
                for (j, acc_v) in acc_row.iter_mut().enumerate() {
                    *acc_v = _mm512_dpbusd_epi32(*acc_v, xa, wv[j]);
                }
            }
        }
        if !last {
            for (i, acc_row) in acc.iter().enumerate() {
                for (j, v) in acc_row.iter().enumerate() {
                    _mm512_storeu_si512(partial.as_mut_ptr().add((i * 2 + j) * PANEL).cast(), *v);
                }
            }
            return;
        }
        let n = w.n;
        let zp = _mm512_set1_epi32(i32::from(zp));
        for j in 0..B {
            let col = (p + j) * PANEL;
            let live = (n - col).min(PANEL);
            let mask: __mmask16 = if live == PANEL {
                !0
            } else {
                (1u16 << live) - 1
            };
            let sums = _mm512_maskz_loadu_epi32(mask, w.col_sums.as_ptr().add(col));
            let correction = _mm512_mullo_epi32(zp, sums);
            let scale = _mm512_loadu_ps(e.scales.as_ptr().add(col));
            let bias = e.bias.map(|b| _mm512_loadu_ps(b.as_ptr().add(col)));
            for (i, acc_row) in acc.iter().enumerate() {
                let exact = _mm512_sub_epi32(acc_row[j], correction);
                let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), scale);
                if let Some(bias) = bias {
                    v = _mm512_add_ps(v, bias);
                }
                _mm512_mask_storeu_ps(y.as_mut_ptr().add((r + i) * n + col), mask, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values.
    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    fn case(
        m: usize,
        k: usize,
        n: usize,
        max_code: i32,
        seed: u64,
    ) -> (Vec<f32>, Vec<i8>, Vec<f32>) {
        let mut s = seed;
        let x = (0..m * k)
            .map(|_| (lcg(&mut s) % 2001) as f32 / 250.0 - 3.0)
            .collect();
        let codes = (0..k * n)
            .map(|_| ((lcg(&mut s) % (2 * max_code as u32 + 1)) as i32 - max_code) as i8)
            .collect();
        let scales = (0..n).map(|c| 1e-3 * (1 + c % 7) as f32).collect();
        (x, codes, scales)
    }

    /// The ONNX graph's arithmetic, written out: exact i32 sums of `(q - zp) × code`, cast,
    /// times `x_scale × w_scale`.
    fn reference(x: &[f32], codes: &[i8], scales: &[f32], k: usize, n: usize) -> Vec<f32> {
        reference_with(x, codes, scales, &[], k, n)
    }

    /// [`reference`], then `+ bias` (the graph's `Add`) when `bias` is not empty.
    fn reference_with(
        x: &[f32],
        codes: &[i8],
        scales: &[f32],
        bias: &[f32],
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let (xs, zp) = dynamic_scale_and_zero_point(x);
        let q: Vec<i32> = x
            .iter()
            .map(|v| ((v / xs).round_ties_even() as i32 + i32::from(zp)).clamp(0, 255))
            .collect();
        let m = x.len() / k;
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let s: i32 = (0..k)
                    .map(|i| (q[r * k + i] - i32::from(zp)) * i32::from(codes[i * n + c]))
                    .sum();
                let ws = if scales.len() == 1 {
                    scales[0]
                } else {
                    scales[c]
                };
                y[r * n + c] = s as f32 * (xs * ws);
                if !bias.is_empty() {
                    y[r * n + c] += bias[c];
                }
            }
        }
        y
    }

    fn run(
        x: &[f32],
        codes: &[i8],
        scales: &[f32],
        k: usize,
        n: usize,
        kernel: Kernel,
    ) -> Vec<f32> {
        run_with(x, codes, scales, &[], k, n, kernel)
    }

    fn run_with(
        x: &[f32],
        codes: &[i8],
        scales: &[f32],
        bias: &[f32],
        k: usize,
        n: usize,
        kernel: Kernel,
    ) -> Vec<f32> {
        let w = PackedInt8Weights::pack(codes, k, n).expect("consistent sizes");
        let mut y = vec![f32::NAN; x.len() / k * n];
        assert!(linear(
            x,
            &w,
            scales,
            bias,
            &mut y,
            kernel,
            &mut Scratch::default()
        ));
        y
    }

    #[test]
    fn portable_kernel_equals_the_graph_arithmetic_bit_for_bit() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (5, 16, 24), (17, 33, 9)] {
            let (x, codes, scales) = case(m, k, n, 127, (m * 100 + k * 10 + n) as u64);
            let want = reference(&x, &codes, &scales, k, n);
            assert_eq!(
                run(&x, &codes, &scales, k, n, Kernel::Portable),
                want,
                "{m}×{k}×{n}"
            );
            let one = [scales[0]];
            assert_eq!(
                run(&x, &codes, &one, k, n, Kernel::Portable),
                reference(&x, &codes, &one, k, n)
            );
        }
    }

    /// `kernel` on random codes within ±`max_code` at each `(m, k, n)`, then on the extreme codes
    /// ±`max_code` (−`max_code` − 1 too when it is 127) against activations at both ends of the
    /// u8 range (`n_extreme` columns): each result equals the graph arithmetic bit for bit.
    fn assert_bit_exact(
        kernel: Kernel,
        shapes: &[(usize, usize, usize)],
        max_code: i32,
        n_extreme: usize,
    ) {
        for &(m, k, n) in shapes {
            let (x, codes, scales) = case(m, k, n, max_code, (m * 1000 + k * 10 + n) as u64);
            let want = reference(&x, &codes, &scales, k, n);
            assert_eq!(
                run(&x, &codes, &scales, k, n, kernel),
                want,
                "{kernel:?} {m}×{k}×{n}"
            );
        }
        let (k, n) = (96, n_extreme);
        let x: Vec<f32> = (0..3 * k)
            .map(|i| if i % 2 == 0 { 10.0 } else { -0.5 })
            .collect();
        let low = if max_code == 127 { -128 } else { -max_code };
        let codes: Vec<i8> = (0..k * n)
            .map(|i| {
                if i % 3 == 0 {
                    low as i8
                } else {
                    max_code as i8
                }
            })
            .collect();
        let scales = vec![1.0; n];
        assert_eq!(
            run(&x, &codes, &scales, k, n, kernel),
            reference(&x, &codes, &scales, k, n),
            "{kernel:?}, extreme codes"
        );
    }

    #[test]
    fn avx2_kernel_equals_the_graph_arithmetic_bit_for_bit() {
        if !avx2_available() {
            eprintln!("SKIPPED: this CPU has no AVX2");
            return;
        }
        // every tile shape (1..4 rows, 1 or 2 blocks), ragged depth and width, depth past one
        // chunk (CHUNK_GROUPS × 4 = 512: partial sums carried between chunks), a last panel with
        // only its first block live, and the extreme codes ±64
        let shapes = [
            (1, 4, 8),
            (2, 7, 9),
            (3, 384, 16),
            (4, 13, 24),
            (9, 64, 41),
            (16, 384, 96),
            (5, 1100, 24),
            (6, 40, 37),
        ];
        assert_bit_exact(Kernel::Avx2, &shapes, 64, 8);
    }

    #[test]
    fn avx512_vnni_kernel_equals_the_graph_arithmetic_bit_for_bit() {
        if !avx512_vnni_available() {
            eprintln!("not run: this CPU has no AVX-512 VNNI (the kernel is never chosen here)");
            return;
        }
        // every tile height (1..8 rows, then a remainder), one or two panels, ragged depth and
        // width, depth past one chunk, and the full code range (no 7-bit limit: −128 and 127)
        let shapes = [
            (1, 4, 16),
            (2, 7, 9),
            (3, 384, 17),
            (5, 13, 33),
            (7, 64, 48),
            (8, 384, 96),
            (9, 64, 41),
            (16, 1536, 40),
            (13, 1100, 24),
        ];
        assert_bit_exact(Kernel::Avx512Vnni, &shapes, 127, 20);
        let codes: Vec<i8> = (0..96 * 20)
            .map(|i| if i % 3 == 0 { -128 } else { 127 })
            .collect();
        let w = PackedInt8Weights::pack(&codes, 96, 20).expect("consistent sizes");
        assert!(!w.exact_on_avx2());
        assert_eq!(Kernel::best_for(&w), Kernel::Avx512Vnni);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_simd_quantizers_give_the_same_codes() {
        if !avx512_vnni_available() {
            eprintln!("not run: this CPU has no AVX-512 (the AVX-512 quantizer is never chosen)");
            return;
        }
        for (m, k) in [(1, 1), (3, 13), (5, 37), (4, 384), (2, 1100)] {
            let (mut x, _, _) = case(m, k, 1, 1, (m * 31 + k) as u64);
            // the last row: padding far outside the others' range, and unflagged
            for (i, v) in x[(m - 1) * k..].iter_mut().enumerate() {
                *v = if i % 2 == 0 { 1e4 } else { -3e3 };
            }
            let flags: Vec<bool> = (0..m).map(|r| m == 1 || r + 1 < m).collect();
            let stride = k.div_ceil(DEPTH) * DEPTH;
            for stats in [None, Some(&flags[..])] {
                let (mut a, mut b) = (vec![7u8; m * stride], vec![9u8; m * stride]);
                // SAFETY: the CPU has AVX-512 F/BW and AVX2 (checked above); sizes as required.
                let (sa, sb) = unsafe {
                    (
                        avx2::quantize(&x, k, stats, stride, &mut a),
                        avx512::quantize(&x, k, stats, stride, &mut b),
                    )
                };
                assert_eq!(sa, sb, "{m}×{k} {stats:?}");
                assert_eq!(a, b, "{m}×{k} {stats:?}");
            }
        }
    }

    /// The exact kernels this CPU runs on 7-bit codes.
    fn kernels() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        if avx2_available() {
            kernels.push(Kernel::Avx2);
        }
        if avx512_vnni_available() {
            kernels.push(Kernel::Avx512Vnni);
        }
        kernels
    }

    #[test]
    fn a_bias_is_added_after_the_rescale_bit_for_bit() {
        for kernel in kernels() {
            for (m, k, n) in [(1, 4, 8), (5, 33, 41), (16, 64, 96)] {
                let (x, codes, scales) = case(m, k, n, 64, (m * 7 + k * 3 + n) as u64);
                let bias: Vec<f32> = (0..n).map(|c| 0.37 * c as f32 - 2.0).collect();
                let want = reference_with(&x, &codes, &scales, &bias, k, n);
                assert_eq!(
                    run_with(&x, &codes, &scales, &bias, k, n, kernel),
                    want,
                    "{kernel:?} {m}×{k}×{n}"
                );
                assert_ne!(want, reference(&x, &codes, &scales, k, n));
            }
        }
    }

    #[test]
    fn codes_past_seven_bits_are_not_given_to_the_avx2_kernel() {
        let (x, codes, scales) = case(2, 8, 8, 127, 7);
        let w = PackedInt8Weights::pack(&codes, 8, 8).expect("consistent sizes");
        assert!(!w.exact_on_avx2());
        assert_ne!(Kernel::best_for(&w), Kernel::Avx2);
        if !avx512_vnni_available() {
            assert_eq!(Kernel::best_for(&w), Kernel::Portable);
        }
        let mut y = vec![0f32; 16];
        assert!(!linear(
            &x,
            &w,
            &scales,
            &[],
            &mut y,
            Kernel::Avx2,
            &mut Scratch::default()
        ));
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        assert!(PackedInt8Weights::pack(&[1, 2, 3], 2, 2).is_none());
        let w = PackedInt8Weights::pack(&[1, 2, 3, 4], 2, 2).expect("consistent sizes");
        let mut s = Scratch::default();
        assert!(!linear(
            &[1.0; 3],
            &w,
            &[1.0],
            &[],
            &mut [0.0; 2],
            Kernel::Portable,
            &mut s
        ));
        assert!(!linear(
            &[1.0; 2],
            &w,
            &[1.0],
            &[],
            &mut [0.0; 3],
            Kernel::Portable,
            &mut s
        ));
        assert!(!linear(
            &[1.0; 2],
            &w,
            &[1.0; 3],
            &[],
            &mut [0.0; 2],
            Kernel::Portable,
            &mut s
        ));
        assert!(!linear(
            &[1.0; 2],
            &w,
            &[1.0],
            &[0.5; 3],
            &mut [0.0; 2],
            Kernel::Portable,
            &mut s
        ));
    }

    #[test]
    fn all_zero_activations_give_zeros() {
        let w = PackedInt8Weights::pack(&[5, -3, 7, 1], 2, 2).expect("consistent sizes");
        let mut y = [f32::NAN; 2];
        assert!(linear(
            &[0.0, 0.0],
            &w,
            &[0.5],
            &[],
            &mut y,
            Kernel::Portable,
            &mut Scratch::default()
        ));
        assert_eq!(y, [0.0, 0.0]);
    }

    /// With row flags, the flagged rows come out exactly as if the other rows were absent,
    /// whatever those hold; the other rows are still computed (with the flagged rows' scale).
    #[test]
    fn statistics_from_flagged_rows_ignore_the_others() {
        let (k, n) = (48, 16);
        let (real, codes, scales) = case(3, k, n, 64, 7);
        let want = reference(&real, &codes, &scales, k, n);
        // Two padding rows with a much wider range than the real ones.
        let mut x = real.clone();
        x.extend((0..2 * k).map(|i| if i % 2 == 0 { 40.0 } else { -25.0 }));
        let flags = [true, true, true, false, false];
        let packed = PackedInt8Weights::pack(&codes, k, n).expect("pack");
        for kernel in kernels() {
            let mut y = vec![f32::NAN; 5 * n];
            let mut s = Scratch::default();
            assert!(linear_rows(
                &x,
                Some(&flags),
                &packed,
                &scales,
                &[],
                &mut y,
                kernel,
                &mut s
            ));
            assert_eq!(y[..3 * n], want[..], "{kernel:?}");
            assert!(y[3 * n..].iter().all(|v| v.is_finite()));
            // Unflagged statistics differ (the check above is not vacuous) …
            let mut all = vec![0f32; 5 * n];
            assert!(linear_rows(
                &x,
                None,
                &packed,
                &scales,
                &[],
                &mut all,
                kernel,
                &mut s
            ));
            assert_ne!(all[..3 * n], want[..]);
            // … none flagged means every row, and a wrong flag count is refused.
            let mut none = vec![0f32; 5 * n];
            assert!(linear_rows(
                &x,
                Some(&[false; 5]),
                &packed,
                &scales,
                &[],
                &mut none,
                kernel,
                &mut s
            ));
            assert_eq!(none, all);
            assert!(!linear_rows(
                &x,
                Some(&flags[..4]),
                &packed,
                &scales,
                &[],
                &mut none,
                kernel,
                &mut s
            ));
        }
        // The standalone quantizer agrees with the kernel's statistics.
        let (scale, zp) = dynamic_scale_and_zero_point_of_rows(&x, k, Some(&flags));
        assert_eq!((scale, zp), dynamic_scale_and_zero_point(&real));
        let mut q = vec![0u8; x.len()];
        assert!(quantize(&x, scale, zp, &mut q));
        assert!(
            q[3 * k..].iter().all(|&c| c == 0 || c == 255),
            "padding saturates"
        );
        assert!(!quantize(&x, scale, zp, &mut q[1..]));
    }
}
