//! edgebert's own CPU kernels, for the runtime's fused tract ops (`edgebert-runtime`'s
//! `session::int8_linear`, `session::fused` and `session::fused_attention`).
//!
//! A crate of its own so that the size-oriented `edge` profile can compile these hot loops, and
//! only them, at opt-level 3 (see the root `Cargo.toml`). No dependencies, no tract types: plain
//! slices in, plain slices out, each kernel tested against a scalar reference of the ONNX
//! arithmetic it replaces.
pub mod attention;
pub mod gelu;
pub mod int8_gemm;
pub mod layer_norm;
