//! edgebert's own CPU kernels, for the runtime's own tract ops (`edgebert-runtime`'s int8
//! Linear, LayerNorm, GELU and attention).
//!
//! A crate of its own so that the size-oriented `edge` profile can compile these hot loops, and
//! only them, at opt-level 3 (see the root `Cargo.toml`). No tract types: plain slices in, plain
//! slices out, each kernel tested against a scalar reference of the ONNX arithmetic it replaces.
//! The one dependency is `libc` on Linux and Android, to advise [`weight_arena`]'s blocks onto
//! huge pages.
//!
//! Layout: the op modules ([`int8_gemm`], [`layer_norm`], [`gelu`], [`attention`]) are the
//! public API, with [`weight_arena`] holding a model's packed int8 weights in one block; [`dispatch`] detects the CPU once and picks each op's kernel; `portable` holds
//! the scalar reference of every kernel; `simd` the fp32 kernels written once over a vector
//! register and `int8_tile` the int8 GEMM micro-tile written once over an `i32` register; the
//! CPU family folders (`x86_64/`: AVX2, AVX-512; `aarch64/`: NEON, dotprod, i8mm; `arm/`: armv7
//! NEON) hold the
//! instructions and compile those bodies with their target features.
pub mod attention;
pub mod dispatch;
pub mod gelu;
pub mod int8_gemm;
pub mod layer_norm;
pub mod weight_arena;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod int8_tile;
mod portable;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod simd;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "arm")]
mod arm;
#[cfg(target_arch = "x86_64")]
mod x86_64;
