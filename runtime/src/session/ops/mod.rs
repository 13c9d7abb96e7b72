//! The runtime's own tract ops, one file each, and the ONNX parser that knows their nodes.
//!
//! The rewrites ([`super::rewrite`]) write nodes of domain [`DOMAIN`] into the ONNX graph before
//! tract parses it; [`onnx`] is tract's ONNX parser with those node types registered, each
//! parsed into an `Expansion` that wires the op of its file. The ops call the runtime's kernels
//! (`edgebert-kernels`), chosen once per CPU.
pub mod attention;
pub mod gelu;
pub mod int8_linear;
pub mod layer_norm;
pub mod mapped_gather;
pub mod masked_quantize;
mod names;
mod shared;
pub(crate) mod split;

pub use names::{
    ATTENTION, CAST_SUFFIX, DEQUANTIZED_SUFFIX, DOMAIN, LAYER_NORM, MAPPED_GATHER, MASKED_OP_TYPE,
    MASKED_QUANTIZE, OP_TYPE,
};

/// tract's ONNX parser, knowing the runtime's fused nodes.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    let register = &mut onnx.op_register;
    register.insert(OP_TYPE, int8_linear::parse_node);
    register.insert(MASKED_OP_TYPE, int8_linear::parse_masked_node);
    register.insert(MASKED_QUANTIZE, masked_quantize::parse_masked_quantize);
    register.insert(LAYER_NORM, layer_norm::parse_layer_norm);
    register.insert(ATTENTION, attention::parse_attention);
    onnx
}
