//! The int8 Linear kernel: `DynamicQuantizeLinear(x) → MatMulInteger → Cast → Mul(scale)` in
//! one pass, with exact `u8 × i8` products in the SIMD instructions of the CPU it runs on.
//!
//! This module is the public API: the packed weights, the kernel choice and [`linear`]. The
//! kernels are in the CPU family folders (`x86_64`, `crate::aarch64`), the scalar
//! reference in `portable`, the choice per CPU in [`crate::dispatch`].
//!
//! On an x86-64 CPU with AVX2 but no int8 dot-product instructions tract's integer GEMM is far
//! slower than its fp32 one, so without this kernel the runtime dequantizes the weights to fp32
//! (4× the memory, and 4× the weight bytes to stream for each short text). The AVX2 kernel
//! keeps the weights as int8 codes and computes each product pair with `vpmaddubsw` (`u8 × i8
//! → i16`, two pairs summed) and `vpmaddwd` (`→ i32`), the same instructions onnxruntime's MLAS
//! uses on such CPUs. `vpmaddubsw` saturates its `i16` sum, so it is exact only while
//! `2 × 255 × max|code| ≤ 32767`: codes within ±[`MAX_EXACT_CODE`]. `edgebert-models` writes
//! 7-bit codes (±63) by default for that reason; [`PackedInt8Weights::exact_on_avx2`] tells
//! whether a weight qualifies, and the portable loop (exact for any code) runs otherwise.
//!
//! On CPUs with AVX-512 VNNI (Intel Ice Lake and later servers, AMD Zen 4 and later) a second
//! kernel takes four `u8 × i8` products per `i32` lane in one `vpdpbusd` over 512-bit registers:
//! its sums never saturate, so it is exact for every code (no 7-bit restriction), and it beats
//! both the AVX2 kernel and tract's own integer kernels there.
//!
//! On aarch64 three kernels are exact for every code: NEON (`smull`/`smlal2` of activations
//! shifted to `i8` by −128, pairwise widening adds, on weights packed 16 deep), dotprod (`sdot`
//! on the same shifted activations; the shift is given back exactly with the column sums) and
//! i8mm (`usmmla`, `u8 × i8` 2×8·8×2 tiles, on weights packed 8 deep).
//!
//! The result is bit-identical to the ONNX graph it replaces: activations are quantized per
//! tensor exactly as `DynamicQuantizeLinear` specifies (`round_half_to_even(x / scale) + zp`,
//! saturated to `u8`), the integer sums are exact, and the rescale is `f32(sum) × (x_scale ×
//! w_scale)` like `Cast` then `Mul`.

use crate::dispatch;
use crate::portable;
use crate::weight_arena::{WeightArena, WeightBytes};

/// Largest |code| for which the AVX2 kernel's `i16` pair sums cannot saturate
/// (`2 × 255 × 64 = 32640 ≤ 32767`).
pub const MAX_EXACT_CODE: i8 = 64;

/// Columns per packed panel: one 512-bit register of `i32` sums, two AVX2 blocks, four NEON
/// registers.
pub(crate) const PANEL: usize = 16;
/// Depth per packed group for every kernel but i8mm and NEON (four `u8 × i8` products per
/// `i32` lane).
const DEPTH: usize = 4;
/// Depth per packed group for the NEON kernel (one register of 16 codes per column).
const DEPTH_NEON: usize = 16;
/// Depth per packed group for the i8mm kernel (`usmmla` takes 8 codes of each of 2 columns).
const DEPTH_I8MM: usize = 8;

/// A `[k, n]` int8 weight repacked for a kernel family, with its per-column code sums.
///
/// Layout: panels of 16 columns, one after the other; in each panel, groups of `depth` rows
/// (4, 8 for [`Kernel::I8mm`], 16 for [`Kernel::Neon`]); in each group, for each column, its
/// `depth` codes. One 4-deep group of one panel is one 64-byte AVX-512 register (two AVX2
/// registers of 8 columns, four dotprod registers of 4); one 8-deep group is eight `usmmla`
/// operands of 2 columns; one 16-deep group is sixteen NEON registers of one column. Rows and
/// columns past the weight's edge are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedInt8Weights {
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// Rows per group: [`DEPTH`], [`DEPTH_I8MM`] or [`DEPTH_NEON`].
    pub(crate) depth: usize,
    pub(crate) groups: usize,
    pub(crate) data: WeightBytes,
    pub(crate) col_sums: Vec<i32>,
    exact_on_avx2: bool,
    pairs_fit_i16: bool,
}

impl PackedInt8Weights {
    /// Packs the row-major `[k, n]` codes for this CPU's kernel ([`dispatch::int8_kernel`]);
    /// `None` when `codes.len() != k × n`.
    pub fn pack(codes: &[i8], k: usize, n: usize) -> Option<PackedInt8Weights> {
        Self::pack_for(codes, k, n, dispatch::int8_kernel(false))
    }

    /// Packs the row-major `[k, n]` codes in the layout `kernel` reads (8-deep groups for
    /// [`Kernel::I8mm`], 16-deep for [`Kernel::Neon`], 4-deep for the others;
    /// [`Kernel::Portable`] reads any); `None` when `codes.len() != k × n`.
    pub fn pack_for(codes: &[i8], k: usize, n: usize, kernel: Kernel) -> Option<PackedInt8Weights> {
        let layout = Layout::of(k, n, kernel)?;
        if k.checked_mul(n)? != codes.len() {
            return None;
        }
        let mut data = vec![0i8; layout.len];
        layout.write(codes, &mut data);
        Some(Self::from_packed(codes, layout, WeightBytes::owned(data)))
    }

    /// Packs as [`PackedInt8Weights::pack`] does, into the next bytes of `arena`; `None` when
    /// `codes.len() != k × n` or the arena has too little room left (then nothing of it is
    /// used).
    pub fn pack_in(
        codes: &[i8],
        k: usize,
        n: usize,
        arena: &mut WeightArena,
    ) -> Option<PackedInt8Weights> {
        let layout = Layout::of(k, n, dispatch::int8_kernel(false))?;
        if k.checked_mul(n)? != codes.len() {
            return None;
        }
        let data = arena.reserve(layout.len, |data| layout.write(codes, data))?;
        Some(Self::from_packed(codes, layout, data))
    }

    /// Bytes of packed codes that [`PackedInt8Weights::pack`] makes of a `[k, n]` weight (what
    /// [`PackedInt8Weights::pack_in`] takes from an arena); `None` when it overflows.
    pub fn packed_len(k: usize, n: usize) -> Option<usize> {
        Layout::of(k, n, dispatch::int8_kernel(false)).map(|layout| layout.len)
    }

    /// The weight around `data`, packed from `codes` in `layout`.
    fn from_packed(codes: &[i8], layout: Layout, data: WeightBytes) -> PackedInt8Weights {
        let (k, n) = (layout.k, layout.n);
        let mut col_sums = vec![0i32; n];
        for codes_row in codes.chunks_exact(n.max(1)).take(k) {
            for (sum, &code) in col_sums.iter_mut().zip(codes_row) {
                *sum += i32::from(code);
            }
        }
        let exact_on_avx2 = codes
            .iter()
            .all(|&c| (-MAX_EXACT_CODE..=MAX_EXACT_CODE).contains(&c));
        let pairs_fit_i16 = !codes.contains(&i8::MIN);
        PackedInt8Weights {
            k,
            n,
            depth: layout.depth,
            groups: layout.groups,
            data,
            col_sums,
            exact_on_avx2,
            pairs_fit_i16,
        }
    }

    /// Whether the packed codes lie in a [`WeightArena`] (not in memory of their own).
    pub fn in_arena(&self) -> bool {
        self.data.in_arena()
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

    /// Whether no code is −128: then two products of a shifted activation (`q − 128`) and a
    /// code sum exactly in `i16` (at most 2 × 128 × 127 = 32512 in magnitude).
    #[cfg_attr(
        not(any(target_arch = "aarch64", target_arch = "arm")),
        allow(dead_code)
    )]
    pub(crate) fn pairs_fit_i16(&self) -> bool {
        self.pairs_fit_i16
    }

    /// Bytes held (packed codes and column sums).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.col_sums.len()
    }

    /// Bytes per quantized activation row: `k` padded to whole groups.
    pub(crate) fn stride(&self) -> usize {
        self.groups * self.depth
    }

    /// The packed code of row `row`, column `col` (zero past the edges).
    #[cfg(test)]
    fn code(&self, row: usize, col: usize) -> i8 {
        let d = self.depth;
        let (g, t, p, c) = (row / d, row % d, col / PANEL, col % PANEL);
        self.data[((p * self.groups + g) * PANEL + c) * d + t]
    }
}

/// Where each code of a `[k, n]` weight goes in a kernel family's packing.
#[derive(Debug, Clone, Copy)]
struct Layout {
    k: usize,
    n: usize,
    depth: usize,
    groups: usize,
    /// Packed bytes: whole panels of whole groups.
    len: usize,
}

impl Layout {
    fn of(k: usize, n: usize, kernel: Kernel) -> Option<Layout> {
        let depth = match kernel {
            Kernel::I8mm => DEPTH_I8MM,
            Kernel::Neon => DEPTH_NEON,
            _ => DEPTH,
        };
        let groups = k.div_ceil(depth);
        let len = n
            .div_ceil(PANEL)
            .checked_mul(groups)?
            .checked_mul(PANEL * depth)?;
        Some(Layout {
            k,
            n,
            depth,
            groups,
            len,
        })
    }

    /// Writes the `k × n` row-major `codes` into the zeroed `data` (`len` bytes).
    fn write(&self, codes: &[i8], data: &mut [i8]) {
        let (n, depth, groups) = (self.n, self.depth, self.groups);
        for (row, codes_row) in codes.chunks_exact(n.max(1)).enumerate().take(self.k) {
            let (g, t) = (row / depth, row % depth);
            for (col, &code) in codes_row.iter().enumerate() {
                let (p, c) = (col / PANEL, col % PANEL);
                data[((p * groups + g) * PANEL + c) * depth + t] = code;
            }
        }
    }
}

/// Which implementation [`linear`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The AVX-512 VNNI `vpdpbusd` kernel (x86-64 with AVX-512 VNNI; any code).
    Avx512Vnni,
    /// The AVX2 `vpmaddubsw` kernel (x86-64 with AVX2 and codes within ±[`MAX_EXACT_CODE`]).
    Avx2,
    /// The i8mm `usmmla` kernel (aarch64 with FEAT_I8MM; any code; weights packed 8 deep).
    I8mm,
    /// The dotprod `sdot` kernel (aarch64 with FEAT_DotProd; any code).
    Dotprod,
    /// The NEON `smull` kernel (every aarch64 CPU; any code; weights packed 16 deep).
    Neon,
    /// The portable loop (any CPU, any code).
    Portable,
}

impl Kernel {
    /// Every kernel, fastest first (each CPU runs a subset: [`Kernel::available`]).
    pub fn variants() -> &'static [Kernel] {
        &[
            Kernel::Avx512Vnni,
            Kernel::Avx2,
            Kernel::I8mm,
            Kernel::Dotprod,
            Kernel::Neon,
            Kernel::Portable,
        ]
    }

    /// The fastest exact kernel for `weights` on this CPU (the dispatch's pick for weights
    /// packed by [`PackedInt8Weights::pack`]).
    pub fn best_for(weights: &PackedInt8Weights) -> Kernel {
        Kernel::variants()
            .iter()
            .copied()
            .find(|k| k.runs(weights))
            .unwrap_or(Kernel::Portable)
    }

    /// Whether this CPU has the instructions of `self` (whatever the codes).
    pub fn available(self) -> bool {
        let f = dispatch::features();
        match self {
            Kernel::Avx512Vnni => f.avx512_vnni(),
            Kernel::Avx2 => f.avx2,
            Kernel::I8mm => f.i8mm,
            Kernel::Dotprod => f.dotprod,
            Kernel::Neon => f.neon || f.armv7_neon,
            Kernel::Portable => true,
        }
    }

    /// Whether this CPU runs `self` exactly on `weights` (instructions, code range and
    /// packing).
    pub fn runs(self, weights: &PackedInt8Weights) -> bool {
        let layout = match self {
            Kernel::I8mm => weights.depth == DEPTH_I8MM,
            Kernel::Neon => weights.depth == DEPTH_NEON,
            Kernel::Portable => true,
            _ => weights.depth == DEPTH,
        };
        let codes = self != Kernel::Avx2 || weights.exact_on_avx2;
        layout && codes && self.available()
    }

    /// A short description for logs (`"AVX-512 VNNI u8×i8 dot products"`, …).
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "AVX-512 VNNI u8×i8 dot products",
            Kernel::Avx2 => "AVX2 u8×i8 products",
            Kernel::I8mm => "NEON i8mm u8×i8 matrix products",
            Kernel::Dotprod => "NEON dotprod i8 dot products",
            Kernel::Neon => "NEON i8 widening products",
            Kernel::Portable => "portable loop",
        }
    }

    /// The kernel's short name: `avx512vnni`, `avx2`, `i8mm`, `dotprod`, `neon`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512vnni",
            Kernel::Avx2 => "avx2",
            Kernel::I8mm => "i8mm",
            Kernel::Dotprod => "dotprod",
            Kernel::Neon => "neon",
            Kernel::Portable => "portable",
        }
    }
}

/// Whether this CPU runs the AVX-512 VNNI kernel (it also needs AVX2, for the quantizer).
pub fn avx512_vnni_available() -> bool {
    Kernel::Avx512Vnni.available()
}

/// Whether this CPU runs the AVX2 kernel.
pub fn avx2_available() -> bool {
    Kernel::Avx2.available()
}

/// The scale and zero point `DynamicQuantizeLinear` picks for `x` (its range widened to
/// include 0, mapped onto `0..=255`).
pub fn dynamic_scale_and_zero_point(x: &[f32]) -> (f32, u8) {
    let (min, max) = portable::min_max(x);
    portable::scale_and_zero_point(min, max)
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
            let (lo, hi) = portable::min_max_of_rows(x, k, flags);
            portable::scale_and_zero_point(lo, hi)
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
        *q = portable::quantize_one(*v, scale, zero_point);
    }
    true
}

/// Reusable buffers for [`linear`].
#[derive(Debug, Default)]
pub struct Scratch {
    quantized: Vec<u8>,
    /// The i8mm kernel's activations, rows interleaved in pairs.
    pairs: Vec<u8>,
    scales: Vec<f32>,
    bias: Vec<f32>,
    /// The SIMD kernels' partial sums between depth chunks: 32 per row (two panels).
    partial: Vec<i32>,
}

/// What follows the integer sums: `sum × scales[c]`, then `+ bias[c]` when there is a bias
/// (two roundings, as the graph's `Mul` then `Add`). Both slices are padded to whole panels.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub scales: &'a [f32],
    pub bias: Option<&'a [f32]>,
}

/// `y = DynamicQuantizeLinear(x) · W` rescaled to fp32, plus `bias` when it is not empty:
/// `x` is `[m, k]` row-major, `y` is `[m, n]` (every value written), `w_scales` holds one
/// scale or one per column, `bias` none or one per column.
///
/// Returns `false`, with `y` untouched, when the sizes disagree (`x.len()` not a multiple of
/// `k`, `y.len() != m × n`, `w_scales.len() ∉ {1, n}`, `bias.len() ∉ {0, n}`) or when `kernel`
/// cannot run on this CPU, these codes or this packing ([`Kernel::runs`]).
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
    match prepare_linear(x, stats_rows, weights, w_scales, bias, kernel, scratch) {
        Some((prepared, partial)) => prepared.multiply(0..prepared.rows(), y, partial),
        None => false,
    }
}

/// `i32`s of partial sums [`PreparedLinear::multiply`] needs per row it multiplies.
pub const PARTIAL_PER_ROW: usize = 2 * PANEL;

/// An int8 Linear whose activations are quantized and whose epilogue is ready
/// ([`prepare_linear`]): its rows can then be multiplied all at once or in any split into row
/// blocks, on as many threads, with the same values either way (each row's integer sums are
/// exact and its epilogue is the same).
#[derive(Clone, Copy)]
pub struct PreparedLinear<'a> {
    /// The activation codes as the kernel reads them (for [`Kernel::Neon`] and
    /// [`Kernel::Dotprod`] shifted to `i8`, for [`Kernel::I8mm`] rows interleaved in pairs).
    a: &'a [u8],
    m: usize,
    weights: &'a PackedInt8Weights,
    zero_point: u8,
    epilogue: Epilogue<'a>,
    kernel: Kernel,
}

impl std::fmt::Debug for PreparedLinear<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedLinear")
            .field("m", &self.m)
            .field("k", &self.weights.k)
            .field("n", &self.weights.n)
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// Quantizes the activations `x` (`[m, k]`, statistics over the rows flagged in `stats_rows`
/// as in [`linear_rows`]) and prepares the rescale: the returned [`PreparedLinear`] multiplies
/// them, and the returned buffer holds the partial sums of all `m` rows
/// (`m × PARTIAL_PER_ROW`, to be split with the rows). `None` when [`linear_rows`] would
/// return `false`.
#[allow(clippy::too_many_arguments)]
pub fn prepare_linear<'s>(
    x: &[f32],
    stats_rows: Option<&[bool]>,
    weights: &'s PackedInt8Weights,
    w_scales: &[f32],
    bias: &[f32],
    kernel: Kernel,
    scratch: &'s mut Scratch,
) -> Option<(PreparedLinear<'s>, &'s mut [i32])> {
    let (k, n) = (weights.k, weights.n);
    if k == 0 || n == 0 || !x.len().is_multiple_of(k) {
        return None;
    }
    let m = x.len() / k;
    if (w_scales.len() != 1 && w_scales.len() != n)
        || (!bias.is_empty() && bias.len() != n)
        || stats_rows.is_some_and(|r| r.len() != m)
    {
        return None;
    }
    if !kernel.runs(weights) {
        return None;
    }
    let stats_rows = stats_rows.filter(|r| r.iter().any(|&f| f));
    let stride = weights.stride();
    let Scratch {
        quantized,
        pairs,
        scales,
        bias: padded_bias,
        partial,
    } = scratch;
    quantized.resize(m * stride, 0);
    let (x_scale, zero_point) = quantize_for(kernel, x, k, stats_rows, stride, quantized);
    #[cfg(target_arch = "aarch64")]
    if matches!(kernel, Kernel::Neon | Kernel::Dotprod) {
        // SAFETY: NEON is available (`runs`, checked above).
        unsafe { crate::aarch64::neon_int8::shift_codes(quantized) };
    }
    #[cfg(target_arch = "arm")]
    if kernel == Kernel::Neon {
        crate::arm::neon_int8::shift_codes(quantized);
    }
    let codes: &[u8] = if kernel == Kernel::I8mm {
        interleave_pairs(quantized, m, stride, pairs);
        pairs
    } else {
        pairs.clear();
        quantized
    };
    // Column scales as the graph computes them: `x_scale × w_scale`, padded to whole panels.
    let padded = n.div_ceil(PANEL) * PANEL;
    scales.clear();
    scales.extend(
        (0..padded).map(|c| x_scale * w_scales[if w_scales.len() == 1 { 0 } else { c.min(n - 1) }]),
    );
    padded_bias.clear();
    if !bias.is_empty() {
        padded_bias.extend_from_slice(bias);
        padded_bias.resize(padded, 0.0);
    }
    if partial.len() < m * PARTIAL_PER_ROW {
        partial.resize(m * PARTIAL_PER_ROW, 0);
    }
    let prepared = PreparedLinear {
        a: codes,
        m,
        weights,
        zero_point,
        epilogue: Epilogue {
            scales,
            bias: (!bias.is_empty()).then_some(&padded_bias[..]),
        },
        kernel,
    };
    Some((prepared, &mut partial[..m * PARTIAL_PER_ROW]))
}

impl PreparedLinear<'_> {
    /// Rows of activations (`m`).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Output columns (`n`).
    pub fn columns(&self) -> usize {
        self.weights.n
    }

    /// The packed weights it multiplies by.
    pub fn weights(&self) -> &PackedInt8Weights {
        self.weights
    }

    /// Rows `rows` of the output into `y`, which holds exactly those rows
    /// (`rows.len() × n` values, every one written), with `partial` (at least
    /// `rows.len() × PARTIAL_PER_ROW`) for the partial sums. Returns `false`, with `y`
    /// untouched, when `rows` is not within `0..m` or a buffer has the wrong size.
    pub fn multiply(
        &self,
        rows: std::ops::Range<usize>,
        y: &mut [f32],
        partial: &mut [i32],
    ) -> bool {
        if !self.fits(&rows, y.len(), partial.len()) {
            return false;
        }
        // SAFETY: the sizes are checked above and `y` is borrowed whole.
        unsafe { self.multiply_unchecked(rows, 0..self.weights.n, y.as_mut_ptr(), partial) };
        true
    }

    /// Rows `rows` of the output split into at most `blocks` blocks of whole
    /// [`COLUMN_BLOCK`]-column groups, each to be computed by [`ColumnBlocks::run`], on any
    /// thread: every block writes its own columns of `y` (which holds exactly those rows,
    /// `rows.len() × n` values), and together they write every value. Each thread reads only
    /// its columns' weights. `None` when `rows` is not within `0..m` or `y` has the wrong size.
    pub fn column_blocks<'y>(
        &'y self,
        rows: std::ops::Range<usize>,
        y: &'y mut [f32],
        blocks: usize,
    ) -> Option<ColumnBlocks<'y>> {
        if !self.fits(&rows, y.len(), rows.len() * PARTIAL_PER_ROW) {
            return None;
        }
        let groups = self.weights.n.div_ceil(COLUMN_BLOCK);
        let per_block = groups.div_ceil(blocks.clamp(1, ColumnBlocks::MAX));
        Some(ColumnBlocks {
            prepared: self,
            rows,
            y: y.as_mut_ptr(),
            per_block: per_block * COLUMN_BLOCK,
            blocks: groups.div_ceil(per_block),
            claimed: std::sync::atomic::AtomicU64::new(0),
            _y: std::marker::PhantomData,
        })
    }

    /// Whether `rows` is within `0..m`, `y_len` is their `rows.len() × n` values and
    /// `partial_len` holds their partial sums.
    fn fits(&self, rows: &std::ops::Range<usize>, y_len: usize, partial_len: usize) -> bool {
        rows.start <= rows.end
            && rows.end <= self.m
            && y_len == rows.len() * self.weights.n
            && partial_len >= rows.len() * PARTIAL_PER_ROW
    }

    /// Columns `cols` of rows `rows` of the output into `y` (row stride `n`).
    ///
    /// # Safety
    /// `rows` is within `0..m`; `y` is valid for writes of `rows.len() × n` values and no
    /// other thread reads or writes columns `cols` of them during the call; `partial` holds
    /// `rows.len() × PARTIAL_PER_ROW` values; `cols` is within `0..n` and starts on a multiple
    /// of [`COLUMN_BLOCK`].
    #[cfg_attr(target_arch = "arm", allow(unused_variables))]
    unsafe fn multiply_unchecked(
        &self,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        y: *mut f32,
        partial: &mut [i32],
    ) {
        let m = rows.len();
        if m == 0 || cols.is_empty() {
            return;
        }
        let stride = self.weights.stride();
        let (weights, zero_point, epilogue) = (self.weights, self.zero_point, self.epilogue);
        #[cfg(target_arch = "aarch64")]
        if self.kernel == Kernel::I8mm {
            // SAFETY: i8mm is available and the packing 8 deep (`runs`, checked by
            // `prepare_linear`), `a` holds the rows interleaved in pairs, the sizes and
            // columns as the caller guarantees.
            crate::aarch64::i8mm::gemm(self.a, rows, weights, zero_point, epilogue, y, cols);
            return;
        }
        let a = &self.a[rows.start * stride..rows.end * stride];
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 VNNI is available and the packing is 4 deep (`runs`, checked by
            // `prepare_linear`); the sizes and columns as the caller guarantees.
            Kernel::Avx512Vnni => {
                crate::x86_64::avx512::gemm(a, m, weights, zero_point, epilogue, y, partial, cols)
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 is available, the codes 7-bit and the packing 4 deep (as above).
            Kernel::Avx2 => {
                crate::x86_64::avx2::gemm(a, m, weights, zero_point, epilogue, y, partial, cols)
            }
            #[cfg(target_arch = "aarch64")]
            // SAFETY: dotprod is available and the packing 4 deep (as above).
            Kernel::Dotprod => {
                crate::aarch64::dotprod::gemm(a, m, weights, zero_point, epilogue, y, partial, cols)
            }
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is available, the packing 16 deep (as above) and the activations
            // shifted (`prepare_linear`).
            Kernel::Neon => {
                crate::aarch64::neon_int8::gemm(a, m, weights, zero_point, epilogue, y, cols)
            }
            #[cfg(target_arch = "arm")]
            // SAFETY: NEON is available, the packing 16 deep (as above) and the activations
            // shifted (`prepare_linear`).
            Kernel::Neon => {
                crate::arm::neon_int8::gemm(a, m, weights, zero_point, epilogue, y, cols)
            }
            // SAFETY: sizes and columns as the caller guarantees.
            _ => portable::gemm(a, m, weights, zero_point, epilogue, y, cols),
        }
    }
}

/// Columns per group of [`PreparedLinear::column_blocks`]: a whole number of every kernel's
/// column step (two panels).
pub const COLUMN_BLOCK: usize = 2 * PANEL;

/// The rows of one [`PreparedLinear`] product split into column blocks
/// ([`PreparedLinear::column_blocks`]), which threads compute in any order, each block once.
pub struct ColumnBlocks<'y> {
    prepared: &'y PreparedLinear<'y>,
    rows: std::ops::Range<usize>,
    /// The output rows, borrowed mutably for `'y`.
    y: *mut f32,
    /// Columns per block (a multiple of [`COLUMN_BLOCK`]).
    per_block: usize,
    blocks: usize,
    /// Bit `b` is set once block `b` has been run.
    claimed: std::sync::atomic::AtomicU64,
    _y: std::marker::PhantomData<&'y mut [f32]>,
}

// SAFETY: a block writes only its own columns of `y`, and `claimed` lets each block run once,
// so threads sharing a `ColumnBlocks` never touch the same value.
unsafe impl Sync for ColumnBlocks<'_> {}

impl ColumnBlocks<'_> {
    /// The most blocks one split has.
    pub const MAX: usize = 64;

    /// How many blocks there are (`run` takes `0..len()`).
    pub fn len(&self) -> usize {
        self.blocks
    }

    /// Whether there is no block (never: a product has at least one column).
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Computes block `block` with `partial` (at least `rows × PARTIAL_PER_ROW` values) for
    /// its partial sums. Returns `false`, computing nothing, when `block` is out of range, has
    /// already been run, or `partial` is too short.
    pub fn run(&self, block: usize, partial: &mut [i32]) -> bool {
        if block >= self.blocks || partial.len() < self.rows.len() * PARTIAL_PER_ROW {
            return false;
        }
        let bit = 1u64 << block;
        let before = self
            .claimed
            .fetch_or(bit, std::sync::atomic::Ordering::Relaxed);
        if before & bit != 0 {
            return false;
        }
        let n = self.prepared.weights.n;
        let start = block * self.per_block;
        let cols = start..(start + self.per_block).min(n);
        // SAFETY: the rows and `y`'s size were checked by `column_blocks`; `y` stays borrowed
        // for `'y`; this block's columns are written by this call only (claimed above); the
        // columns start on a multiple of `COLUMN_BLOCK`.
        unsafe {
            self.prepared
                .multiply_unchecked(self.rows.clone(), cols, self.y, partial)
        };
        true
    }
}

/// The `m` rows of `stride` codes of `a` as the i8mm kernel reads them: rows `2p` and `2p + 1`
/// interleaved 8 codes at a time (the last row of an odd `m` paired with itself).
fn interleave_pairs(a: &[u8], m: usize, stride: usize, out: &mut Vec<u8>) {
    out.resize(m.div_ceil(2) * 2 * stride, 0);
    for (p, pair) in out.chunks_exact_mut(2 * stride).enumerate() {
        let first = &a[2 * p * stride..(2 * p + 1) * stride];
        let second = if 2 * p + 1 < m {
            &a[(2 * p + 1) * stride..(2 * p + 2) * stride]
        } else {
            first
        };
        for ((to, x), y) in pair
            .chunks_exact_mut(16)
            .zip(first.chunks_exact(8))
            .zip(second.chunks_exact(8))
        {
            to[..8].copy_from_slice(x);
            to[8..].copy_from_slice(y);
        }
    }
}

/// The activations' scale and zero point and their codes in `out` (rows padded to `stride`
/// with the zero point), by the quantizer that goes with `kernel`: every quantizer gives the
/// portable one's results for finite activations.
fn quantize_for(
    kernel: Kernel,
    x: &[f32],
    k: usize,
    stats_rows: Option<&[bool]>,
    stride: usize,
    out: &mut [u8],
) -> (f32, u8) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F and BW are available (`runs`, checked by the caller); `out` holds
        // `m × stride` bytes.
        Kernel::Avx512Vnni => unsafe {
            crate::x86_64::avx512::quantize(x, k, stats_rows, stride, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is available (checked by the caller); `out` holds `m × stride` bytes.
        Kernel::Avx2 => unsafe { crate::x86_64::avx2::quantize(x, k, stats_rows, stride, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is available (every aarch64 kernel's `runs`, checked by the caller);
        // `out` holds `m × stride` bytes.
        Kernel::I8mm | Kernel::Dotprod | Kernel::Neon => unsafe {
            crate::aarch64::neon::quantize(x, k, stats_rows, stride, out)
        },
        _ => {
            let (scale, zp) = dynamic_scale_and_zero_point_of_rows(x, k, stats_rows);
            portable::quantize_rows(x, k, scale, zp, stride, out);
            (scale, zp)
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
        let w = PackedInt8Weights::pack_for(codes, k, n, kernel).expect("consistent sizes");
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
        // the full code range (no 7-bit limit: −128 and 127)
        assert_bit_exact(Kernel::Avx512Vnni, &ANY_CODE_SHAPES, 127, 20);
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
                        crate::x86_64::avx2::quantize(&x, k, stats, stride, &mut a),
                        crate::x86_64::avx512::quantize(&x, k, stats, stride, &mut b),
                    )
                };
                assert_eq!(sa, sb, "{m}×{k} {stats:?}");
                assert_eq!(a, b, "{m}×{k} {stats:?}");
            }
        }
    }

    /// The exact kernels this CPU runs on 7-bit codes.
    fn kernels() -> Vec<Kernel> {
        Kernel::variants()
            .iter()
            .copied()
            .filter(|k| k.available())
            .collect()
    }

    #[test]
    fn weights_packed_in_an_arena_equal_their_own_and_outlive_it() {
        let shapes = [(33, 41), (64, 96), (768, 40), (3, 1)];
        let lengths = shapes.map(|(k, n)| PackedInt8Weights::packed_len(k, n).expect("fits"));
        let space = WeightArena::space_for(lengths).expect("fits");
        let mut arena = WeightArena::with_capacity(space).expect("memory");
        let kernel = dispatch::int8_kernel(false);
        let mut packed = Vec::new();
        for (i, &(k, n)) in shapes.iter().enumerate() {
            let (x, codes, scales) = case(5, k, n, 127, i as u64);
            let own = PackedInt8Weights::pack(&codes, k, n).expect("consistent sizes");
            let shared = PackedInt8Weights::pack_in(&codes, k, n, &mut arena).expect("room");
            assert!(shared.in_arena() && !own.in_arena());
            assert_eq!(shared, own, "{k}×{n}");
            assert!(PackedInt8Weights::pack_in(&codes[1..], k, n, &mut arena).is_none());
            packed.push((x, codes, scales, k, n, shared));
        }
        assert_eq!(arena.remaining(), 0, "the arena holds exactly the weights");
        let (_, codes, _, k, n, _) = &packed[0];
        assert!(
            PackedInt8Weights::pack_in(codes, *k, *n, &mut arena).is_none(),
            "a full arena refuses"
        );
        drop(arena);
        for (x, codes, scales, k, n, w) in &packed {
            let mut y = vec![f32::NAN; x.len() / k * n];
            let mut scratch = Scratch::default();
            assert!(linear(x, w, scales, &[], &mut y, kernel, &mut scratch));
            assert_eq!(y, run(x, codes, scales, *k, *n, kernel), "{k}×{n}");
        }
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
        assert_eq!(Kernel::best_for(&w), dispatch::int8_kernel(false));
        #[cfg(target_arch = "x86_64")]
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
        for kernel in kernels() {
            let packed = PackedInt8Weights::pack_for(&codes, k, n, kernel).expect("pack");
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

    /// Shapes for the kernels exact on any code: every tile height (1..8 rows, then a
    /// remainder), one or two registers and panels, ragged depth and width (a last tile with
    /// one live column), depth past one chunk of partial sums.
    const ANY_CODE_SHAPES: [(usize, usize, usize); 13] = [
        (1, 4, 16),
        (2, 7, 9),
        (3, 384, 17),
        (4, 5, 3),
        (5, 13, 33),
        (6, 40, 37),
        (7, 64, 48),
        (8, 384, 96),
        (9, 64, 41),
        (11, 1100, 24),
        (13, 1100, 24),
        (13, 1100, 25),
        (16, 1536, 40),
    ];

    /// Asserts that the CPU runs `kernel` and that it equals the graph arithmetic on every
    /// shape and code, −128 and 127 included.
    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    fn assert_arm_kernel(kernel: Kernel) {
        // a CPU expected to pick i8mm has dotprod and NEON too; one picking dotprod has NEON
        let order = ["neon", "dotprod", "i8mm"];
        let rank = |name: &str| order.iter().position(|&o| o == name);
        if let Ok(want) = std::env::var("EDGEBERT_EXPECT_INT8_KERNEL") {
            if rank(kernel.name()) <= rank(&want) {
                assert!(
                    kernel.available(),
                    "{want} expected: {} must run",
                    kernel.name()
                );
            }
        }
        if !kernel.available() {
            eprintln!(
                "not run: this CPU has no {} (the kernel is never chosen here)",
                kernel.name()
            );
            return;
        }
        assert_bit_exact(kernel, &ANY_CODE_SHAPES, 127, 21);
        // ±127 only: the largest products that NEON sums in pairs in `i16` (2 × 128 × 127)
        let (k, n) = (96, 21);
        let x: Vec<f32> = (0..5 * k)
            .map(|i| if i % 2 == 0 { 10.0 } else { -0.5 })
            .collect();
        let codes: Vec<i8> = (0..k * n)
            .map(|i| if i % 3 == 0 { -127 } else { 127 })
            .collect();
        let scales = vec![1.0; n];
        let w = PackedInt8Weights::pack_for(&codes, k, n, kernel).expect("consistent sizes");
        assert!(w.pairs_fit_i16());
        assert_eq!(
            run(&x, &codes, &scales, k, n, kernel),
            reference(&x, &codes, &scales, k, n),
            "{kernel:?}, codes ±127"
        );
        let codes: Vec<i8> = (0..96 * 20)
            .map(|i| if i % 3 == 0 { -128 } else { 127 })
            .collect();
        let w = PackedInt8Weights::pack_for(&codes, 96, 20, kernel).expect("consistent sizes");
        assert!(kernel.runs(&w) && !w.exact_on_avx2());
    }

    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    #[test]
    fn neon_kernel_equals_the_graph_arithmetic_bit_for_bit() {
        assert_arm_kernel(Kernel::Neon);
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn dotprod_kernel_equals_the_graph_arithmetic_bit_for_bit() {
        assert_arm_kernel(Kernel::Dotprod);
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn i8mm_kernel_equals_the_graph_arithmetic_bit_for_bit() {
        assert_arm_kernel(Kernel::I8mm);
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn the_aarch64_dispatch_keeps_every_int8_model_on_an_int8_kernel() {
        let (_, codes, _) = case(1, 8, 8, 127, 3);
        let w = PackedInt8Weights::pack(&codes, 8, 8).expect("consistent sizes");
        let best = Kernel::best_for(&w);
        assert_ne!(best, Kernel::Portable);
        assert_eq!(best, crate::dispatch::int8_kernel(false));
        // i8mm > dotprod > NEON
        let f = crate::dispatch::features();
        let want = if f.i8mm {
            Kernel::I8mm
        } else if f.dotprod {
            Kernel::Dotprod
        } else {
            Kernel::Neon
        };
        assert_eq!(best, want);
        // a packing the kernel cannot read is refused
        let other = if best == Kernel::I8mm {
            Kernel::Neon
        } else {
            Kernel::I8mm
        };
        let w_other = PackedInt8Weights::pack_for(&codes, 8, 8, other).expect("consistent sizes");
        assert!(!best.runs(&w_other));
    }

    /// Activations all ≥ 0 (zero point 0), all ≤ 0 (255) and symmetric (128), at every tile
    /// height, with the full code range: each kernel this CPU runs equals the graph arithmetic.
    #[test]
    fn zero_points_0_128_255_are_exact_in_every_kernel() {
        for (shift, want_zp) in [(3.0f32, 0u8), (-3.0, 255), (0.0, 128)] {
            for &(m, k, n) in &[(1, 9, 5), (3, 70, 19), (8, 33, 16), (10, 600, 23)] {
                let (x, codes, scales) = case(m, k, n, 127, (m * 13 + k + n) as u64);
                // `case` draws activations in [−3, 5]: a symmetric range is [−3, 3]
                let x: Vec<f32> = x
                    .iter()
                    .map(|&v| match shift {
                        s if s > 0.0 => v + s,
                        s if s < 0.0 => v - 5.0,
                        _ => v.clamp(-3.0, 3.0),
                    })
                    .collect();
                let mut x = x;
                if shift == 0.0 {
                    x[0] = -3.0;
                    x[1] = 3.0;
                }
                assert_eq!(dynamic_scale_and_zero_point(&x).1, want_zp);
                let want = reference(&x, &codes, &scales, k, n);
                for kernel in kernels().into_iter().filter(|&k| k != Kernel::Avx2) {
                    assert_eq!(
                        run(&x, &codes, &scales, k, n, kernel),
                        want,
                        "{kernel:?} {m}×{k}×{n} zp {want_zp}"
                    );
                }
            }
        }
    }

    /// Both packings hold every code where the layout says, and zeros past the edges.
    #[test]
    fn both_packings_place_every_code() {
        let (k, n) = (13, 21);
        let (_, codes, _) = case(1, k, n, 127, 5);
        for kernel in [Kernel::Neon, Kernel::I8mm] {
            let w = PackedInt8Weights::pack_for(&codes, k, n, kernel).expect("sizes");
            for row in 0..w.stride() {
                for col in 0..n.div_ceil(PANEL) * PANEL {
                    let want = if row < k && col < n {
                        codes[row * n + col]
                    } else {
                        0
                    };
                    assert_eq!(w.code(row, col), want, "{kernel:?} {row}, {col}");
                }
            }
            let sums: Vec<i32> = (0..n)
                .map(|c| (0..k).map(|r| i32::from(codes[r * n + c])).sum())
                .collect();
            assert_eq!(w.col_sums, sums);
        }
    }

    /// The portable loop reads every packing.
    #[test]
    fn the_portable_kernel_reads_the_i8mm_and_neon_packings() {
        for ((m, k, n), packing) in [(3, 13, 17), (4, 100, 33)]
            .into_iter()
            .flat_map(|shape| [(shape, Kernel::I8mm), (shape, Kernel::Neon)])
        {
            let (x, codes, scales) = case(m, k, n, 127, (m + k + n) as u64);
            let w = PackedInt8Weights::pack_for(&codes, k, n, packing).expect("sizes");
            assert!(Kernel::Portable.runs(&w));
            let mut y = vec![f32::NAN; m * n];
            assert!(linear(
                &x,
                &w,
                &scales,
                &[],
                &mut y,
                Kernel::Portable,
                &mut Scratch::default()
            ));
            assert_eq!(y, reference(&x, &codes, &scales, k, n));
        }
    }

    /// Every quantizer this CPU runs gives the portable one's scale, zero point and codes,
    /// with and without row flags (the last row far outside the others' range, unflagged).
    #[test]
    fn every_quantizer_gives_the_portable_codes() {
        for (m, k) in [(1, 1), (3, 13), (5, 37), (4, 384), (2, 1100), (3, 8)] {
            let (mut x, _, _) = case(m, k, 1, 1, (m * 31 + k) as u64);
            for (i, v) in x[(m - 1) * k..].iter_mut().enumerate() {
                *v = if i % 2 == 0 { 1e4 } else { -3e3 };
            }
            let flags: Vec<bool> = (0..m).map(|r| m == 1 || r + 1 < m).collect();
            let stride = k.div_ceil(8) * 8;
            for stats in [None, Some(&flags[..])] {
                let mut want = vec![7u8; m * stride];
                let w_sz = quantize_for(Kernel::Portable, &x, k, stats, stride, &mut want);
                for kernel in kernels() {
                    let mut got = vec![9u8; m * stride];
                    let g_sz = quantize_for(kernel, &x, k, stats, stride, &mut got);
                    assert_eq!(g_sz, w_sz, "{kernel:?} {m}×{k} {stats:?}");
                    assert_eq!(got, want, "{kernel:?} {m}×{k} {stats:?}");
                }
            }
        }
    }

    /// Rows multiplied in blocks (as the runtime's threads split them, uneven and one row
    /// long included) give the values of one call over every row, for every kernel this CPU
    /// runs; bad row ranges and buffer sizes are refused with `y` untouched.
    #[test]
    fn row_blocks_equal_one_call_bit_for_bit() {
        for (m, k, n) in [(1, 7, 5), (7, 33, 40), (13, 96, 17), (37, 128, 64)] {
            let (x, codes, scales) = case(m, k, n, 63, (m * 7 + k * 3 + n) as u64);
            for kernel in kernels() {
                let w = PackedInt8Weights::pack_for(&codes, k, n, kernel).expect("sizes");
                let whole = run(&x, &codes, &scales, k, n, kernel);
                let mut scratch = Scratch::default();
                for blocks in [2, 3, 7] {
                    let (prepared, partial) =
                        prepare_linear(&x, None, &w, &scales, &[], kernel, &mut scratch)
                            .expect("prepared");
                    let rows = m.div_ceil(blocks);
                    let mut split = vec![f32::NAN; m * n];
                    for ((b, y), p) in split
                        .chunks_mut(rows * n)
                        .enumerate()
                        .zip(partial.chunks_mut(rows * PARTIAL_PER_ROW))
                    {
                        let r0 = b * rows;
                        assert!(prepared.multiply(r0..r0 + y.len() / n, y, p));
                    }
                    assert_eq!(split, whole, "{kernel:?} {m}×{k}×{n} in {blocks} blocks");
                }
                let (prepared, partial) =
                    prepare_linear(&x, None, &w, &scales, &[], kernel, &mut scratch)
                        .expect("prepared");
                let mut y = vec![1.5; n];
                assert!(!prepared.multiply(m..m + 1, &mut y, partial));
                assert!(!prepared.multiply(0..1, &mut y[..n - 1], partial));
                assert!(!prepared.multiply(0..1, &mut y, &mut []));
                assert!(y.iter().all(|&v| v == 1.5));
            }
        }
    }

    /// Column blocks (any count, computed in any order, on several threads at once, depth past
    /// one chunk included) give the values of one call over every column, for every kernel
    /// this CPU runs, with bias; a block runs once, and bad blocks, rows or sizes are refused.
    #[test]
    fn column_blocks_equal_one_call_bit_for_bit() {
        for (m, k, n) in [(1, 7, 5), (7, 33, 70), (13, 600, 100), (37, 128, 257)] {
            let (x, codes, scales) = case(m, k, n, 63, (m * 5 + k * 3 + n) as u64);
            let bias: Vec<f32> = (0..n).map(|c| 0.25 * c as f32 - 3.0).collect();
            for kernel in kernels() {
                let w = PackedInt8Weights::pack_for(&codes, k, n, kernel).expect("sizes");
                let whole = run_with(&x, &codes, &scales, &bias, k, n, kernel);
                let mut scratch = Scratch::default();
                for blocks in [1, 2, 3, 7, 64, 1000] {
                    let (prepared, _) =
                        prepare_linear(&x, None, &w, &scales, &bias, kernel, &mut scratch)
                            .expect("prepared");
                    let mut split = vec![f32::NAN; m * n];
                    let split_blocks = prepared
                        .column_blocks(0..m, &mut split, blocks)
                        .expect("consistent sizes");
                    let count = split_blocks.len();
                    assert!((1..=blocks.min(ColumnBlocks::MAX)).contains(&count));
                    std::thread::scope(|s| {
                        for t in 0..3 {
                            let split_blocks = &split_blocks;
                            s.spawn(move || {
                                let mut partial = vec![0; m * PARTIAL_PER_ROW];
                                for b in (0..count).rev().filter(|b| b % 3 == t) {
                                    assert!(split_blocks.run(b, &mut partial));
                                }
                            });
                        }
                    });
                    let mut partial = vec![0; m * PARTIAL_PER_ROW];
                    assert!(!split_blocks.run(0, &mut partial), "a block runs once");
                    assert!(!split_blocks.run(count, &mut partial));
                    assert_eq!(split, whole, "{kernel:?} {m}×{k}×{n} in {blocks} blocks");
                }
                let (prepared, _) =
                    prepare_linear(&x, None, &w, &scales, &bias, kernel, &mut scratch)
                        .expect("prepared");
                let mut y = vec![1.5; m * n];
                assert!(prepared.column_blocks(0..m + 1, &mut y, 2).is_none());
                assert!(prepared.column_blocks(0..m, &mut y[1..], 2).is_none());
                let blocks = prepared.column_blocks(0..m, &mut y, 2).expect("sizes");
                assert!(!blocks.run(0, &mut []), "partial sums too short");
                assert!(y.iter().all(|&v| v == 1.5));
            }
        }
    }
}
