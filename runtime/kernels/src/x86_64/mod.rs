//! The x86-64 kernels: AVX2 (+FMA) in [`avx2`], AVX-512 in [`avx512`]. Each implements the
//! register traits ([`crate::simd::F32Lanes`], [`crate::int8_tile::Int8Lanes`]) and compiles
//! the shared kernel bodies with its target features.

pub(crate) mod avx2;
pub(crate) mod avx512;
