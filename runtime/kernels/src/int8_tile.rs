//! The int8 GEMM's micro-tile, written once over [`Int8Lanes`]: the register of `i32` column
//! sums that each SIMD family implements (AVX2: 8 columns, `vpmaddubsw` + `vpmaddwd`; AVX-512
//! VNNI: 16, `vpdpbusd`; dotprod: 4, `sdot`). The plain-NEON and i8mm GEMMs have tiles of
//! their own (`crate::aarch64`).
//!
//! The weights are packed in 16-column panels of 4-deep groups ([`crate::int8_gemm`]); a tile
//! covers `R` rows × `B` registers of columns over one chunk of depth groups, carrying its
//! integer sums between chunks in the scratch `partial`, and on the last chunk takes the zero
//! point out with the column sums, rescales and stores.

use crate::int8_gemm::{Epilogue, PackedInt8Weights, PANEL};

/// Depth groups per chunk: a chunk of a panel's weights (`CHUNK_GROUPS × 64` bytes) stays in
/// L1 while every row block uses it.
const CHUNK_GROUPS: usize = 128;

/// The panel and depth groups one tile covers.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    /// First column (a multiple of the tile's width).
    pub col0: usize,
    /// First depth group.
    pub g0: usize,
    /// Past the last depth group.
    pub g1: usize,
    /// Whether `g0` is the first group (no partial sums to resume).
    pub first: bool,
    /// Whether `g1` is past the last group (finish and store).
    pub last: bool,
}

/// What one tile reads and writes.
#[derive(Clone, Copy)]
pub(crate) struct Tile<'a> {
    /// The quantized rows (`m × w.stride()` bytes).
    pub a: &'a [u8],
    /// First row.
    pub r: usize,
    /// Panel and depth.
    pub span: Span,
    /// First column and depth group of the chunk after this one, if any (the first row tile
    /// prefetches it into L2 while the other tiles compute).
    pub next: Option<(usize, usize)>,
    /// The packed weights.
    pub w: &'a PackedInt8Weights,
    /// The activations' zero point.
    pub zp: u8,
    /// Rescale and bias.
    pub e: Epilogue<'a>,
    /// The output, `m × n`.
    pub y: *mut f32,
    /// This row block's partial sums: two registers per row.
    pub partial: *mut i32,
}

/// One register of `i32` column sums and the int8 operations on it.
///
/// # Safety
/// Every method needs the CPU features of its implementation.
pub(crate) trait Int8Lanes {
    /// Columns per register.
    const LANES: usize;
    /// Rows per tile.
    const ROWS: usize;
    /// The register.
    type V: Copy;
    /// The zero-point correction, scale and bias of one register of columns.
    type Cols: Copy;

    /// All sums 0.
    unsafe fn zero() -> Self::V;
    /// `LANES` sums from `p`.
    unsafe fn load(p: *const i32) -> Self::V;
    /// `LANES` sums to `p`.
    unsafe fn store(v: Self::V, p: *mut i32);
    /// `LANES` columns' codes of one depth group at `at` (prefetching ahead when `stream`: the
    /// first row block streams the weights).
    unsafe fn weights(at: *const i8, stream: bool) -> Self::V;
    /// Prefetches the line at `at` (which may lie past the weights) into L2 for a later chunk;
    /// nothing by default.
    #[inline(always)]
    unsafe fn prefetch_next(_at: *const i8) {}
    /// Four activation codes in every 32-bit lane.
    unsafe fn broadcast(four: i32) -> Self::V;
    /// `acc + Σ₄ a × w` per lane (`u8 × i8` products).
    unsafe fn dot(acc: Self::V, a: Self::V, w: Self::V) -> Self::V;
    /// The epilogue's operands for columns `col..col + live`.
    unsafe fn columns(
        w: &PackedInt8Weights,
        e: Epilogue,
        zp: u8,
        col: usize,
        live: usize,
    ) -> Self::Cols;
    /// `(acc − correction) as f32 × scale (+ bias)` to `live` values at `out`.
    unsafe fn store_row(cols: Self::Cols, acc: Self::V, out: *mut f32, live: usize);
    /// Runs `tile::<Self, rows, width>` (compiled with the implementation's features).
    unsafe fn tile(rows: usize, width: usize, t: Tile);
}

/// Columns `cols` of `y[m, n]` from the quantized rows `a`, `2 × LANES` columns at a time (the
/// second register only where it holds a real column), depth in chunks, rows in tiles of
/// `ROWS`.
///
/// # Safety
/// The features of `K`; `a.len() ≥ m × w.stride()`, the epilogue's slices hold whole panels,
/// `y` is valid for writes of `m × n` values, `partial.len() ≥ m × 2·LANES`, `cols` is within
/// `0..n` and starts on a multiple of `2 × LANES`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn gemm<K: Int8Lanes>(
    a: &[u8],
    m: usize,
    w: &PackedInt8Weights,
    zp: u8,
    e: Epilogue,
    y: *mut f32,
    partial: &mut [i32],
    cols: std::ops::Range<usize>,
) {
    let mut col0 = cols.start;
    while col0 < cols.end {
        let width = if col0 + K::LANES < cols.end { 2 } else { 1 };
        let mut g0 = 0;
        while g0 < w.groups {
            let g1 = (g0 + CHUNK_GROUPS).min(w.groups);
            let span = Span {
                col0,
                g0,
                g1,
                first: g0 == 0,
                last: g1 == w.groups,
            };
            let next = if g1 < w.groups {
                Some((col0, g1))
            } else if col0 + 2 * K::LANES < cols.end {
                Some((col0 + 2 * K::LANES, 0))
            } else {
                None
            };
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(K::ROWS);
                let t = Tile {
                    a,
                    r,
                    span,
                    next,
                    w,
                    zp,
                    e,
                    y,
                    partial: partial[r * 2 * K::LANES..].as_mut_ptr(),
                };
                K::tile(rows, width, t);
                r += rows;
            }
            g0 = g1;
        }
        col0 += 2 * K::LANES;
    }
}

/// Rows `r..r+R` × registers `0..B` over depth groups `g0..g1`: integer sums (resumed from and
/// saved to `partial` between chunks), then on the last chunk the zero-point correction,
/// rescale and store.
///
/// # Safety
/// As [`gemm`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn tile<K: Int8Lanes, const R: usize, const B: usize>(t: Tile) {
    let mut acc = resume::<K, R, B>(t);
    accumulate::<K, R, B>(t, &mut acc, t.span.g0, t.span.g1);
    finish::<K, R, B>(t, &acc);
}

/// The tile's sums so far: zero on the first chunk, else those [`finish`] saved.
///
/// # Safety
/// As [`gemm`].
#[inline(always)]
pub(crate) unsafe fn resume<K: Int8Lanes, const R: usize, const B: usize>(
    t: Tile,
) -> [[K::V; B]; R] {
    let mut acc = [[K::zero(); B]; R];
    if !t.span.first {
        for (i, acc_row) in acc.iter_mut().enumerate() {
            for (j, v) in acc_row.iter_mut().enumerate() {
                *v = K::load(t.partial.add((i * 2 + j) * K::LANES));
            }
        }
    }
    acc
}

/// Where register `j`'s codes of depth group `g` start in the packed weights.
#[inline(always)]
pub(crate) fn group_offset<K: Int8Lanes>(
    w: &PackedInt8Weights,
    col0: usize,
    j: usize,
    g: usize,
) -> usize {
    let c = col0 + j * K::LANES;
    ((c / PANEL) * w.groups * PANEL + c % PANEL + g * PANEL) * w.depth
}

/// `acc += ` the products of depth groups `g0..g1`, one group at a time.
///
/// # Safety
/// As [`gemm`]; `g0 ≤ g1 ≤ w.groups`.
#[inline(always)]
pub(crate) unsafe fn accumulate<K: Int8Lanes, const R: usize, const B: usize>(
    t: Tile,
    acc: &mut [[K::V; B]; R],
    g0: usize,
    g1: usize,
) {
    let w = t.w;
    let stride = w.stride();
    let a_ptr = t.a.as_ptr().add(t.r * stride);
    let w_ptr = w.data.as_ptr();
    for g in g0..g1 {
        let mut wv = [K::zero(); B];
        for (j, v) in wv.iter_mut().enumerate() {
            *v = K::weights(w_ptr.add(group_offset::<K>(w, t.span.col0, j, g)), t.r == 0);
        }
        if let (0, Some((col, g_next))) = (t.r, t.next) {
            for j in 0..B {
                let at = group_offset::<K>(w, col, j, g_next + (g - g0));
                K::prefetch_next(w_ptr.wrapping_add(at));
            }
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let four = (a_ptr.add(i * stride + g * w.depth) as *const i32).read_unaligned();
            let xa = K::broadcast(four);
            for (j, acc_v) in acc_row.iter_mut().enumerate() {
                *acc_v = K::dot(*acc_v, xa, wv[j]);
            }
        }
    }
}

/// Saves the sums to `partial` when chunks of depth remain; after the last one, takes the zero
/// point out with the column sums, rescales and stores the live columns.
///
/// # Safety
/// As [`gemm`].
#[inline(always)]
pub(crate) unsafe fn finish<K: Int8Lanes, const R: usize, const B: usize>(
    t: Tile,
    acc: &[[K::V; B]; R],
) {
    if !t.span.last {
        for (i, acc_row) in acc.iter().enumerate() {
            for (j, v) in acc_row.iter().enumerate() {
                K::store(*v, t.partial.add((i * 2 + j) * K::LANES));
            }
        }
        return;
    }
    let n = t.w.n;
    for j in 0..B {
        let col = t.span.col0 + j * K::LANES;
        let live = (n - col).min(K::LANES);
        let cols = K::columns(t.w, t.e, t.zp, col, live);
        for (i, acc_row) in acc.iter().enumerate() {
            K::store_row(cols, acc_row[j], t.y.add((t.r + i) * n + col), live);
        }
    }
}

/// The `match` of [`Int8Lanes::tile`]: each `(rows, width)` to its tile function.
macro_rules! int8_tiles {
    ($tile:ident, $rows:expr, $width:expr, $t:expr; $($n:literal)*) => {
        match ($rows, $width) {
            $(($n, 2) => $tile::<$n, 2>($t),
              ($n, _) => $tile::<$n, 1>($t),)*
            _ => {}
        }
    };
}
pub(crate) use int8_tiles;

/// The int8 entry point of one CPU family: `gemm` ([`gemm`] over the register `$k`), compiled
/// with `$features`, and (with `tile`) the generic tile compiled with them too.
macro_rules! int8_entry_point {
    ($k:ty, $features:literal) => {
        /// Columns `cols` of `y[m, n]` from the quantized rows `a`
        /// ([`crate::int8_tile::gemm`] over this family's register).
        ///
        /// # Safety
        /// The CPU has this family's features; the weights are packed 4 deep; sizes and
        /// columns as [`crate::int8_tile::gemm`] requires.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn gemm(
            a: &[u8],
            m: usize,
            w: &$crate::int8_gemm::PackedInt8Weights,
            zp: u8,
            e: $crate::int8_gemm::Epilogue,
            y: *mut f32,
            partial: &mut [i32],
            cols: std::ops::Range<usize>,
        ) {
            $crate::int8_tile::gemm::<$k>(a, m, w, zp, e, y, partial, cols)
        }
    };
    ($k:ty, $features:literal, tile) => {
        $crate::int8_tile::int8_entry_point!($k, $features);

        /// One int8 tile ([`crate::int8_tile::tile`]), compiled with this family's features.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile<const R: usize, const B: usize>(t: $crate::int8_tile::Tile) {
            $crate::int8_tile::tile::<$k, R, B>(t)
        }
    };
}
pub(crate) use int8_entry_point;
