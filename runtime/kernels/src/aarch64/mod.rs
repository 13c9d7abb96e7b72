//! The aarch64 kernels: NEON (every aarch64 CPU) in [`neon`] with its int8 GEMM in
//! [`neon_int8`] and attention's products in [`neon_attention`], the `sdot` int8 GEMM in [`dotprod`], the `usmmla` int8 GEMM in [`i8mm`].

pub(crate) mod dotprod;
pub(crate) mod i8mm;
pub(crate) mod neon;
pub(crate) mod neon_attention;
pub(crate) mod neon_int8;
