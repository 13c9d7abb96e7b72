//! The names of the runtime's own graph nodes: their ONNX domain and `op_type`s, shared by the
//! rewrites that write the nodes and the ops that run them.

/// Domain of the runtime's fused nodes (never written to a file: the rewrites happen at load).
pub const DOMAIN: &str = "ai.edgebert";
/// The int8 Linear `EdgebertInt8Linear(x, codes, scales[, bias])`.
pub const OP_TYPE: &str = "EdgebertInt8Linear";
/// The int8 Linear whose activation statistics skip padding rows:
/// `EdgebertInt8LinearMasked(x, attention_mask, codes, scales[, bias])`.
pub const MASKED_OP_TYPE: &str = "EdgebertInt8LinearMasked";
/// `DynamicQuantizeLinear` with statistics over the real tokens' rows only.
pub const MASKED_QUANTIZE: &str = "EdgebertDynamicQuantize";
/// LayerNorm over the last axis, with an optional residual sum.
pub const LAYER_NORM: &str = "EdgebertLayerNorm";
/// Multi-head self-attention `(q, k, v, mask)`.
pub const ATTENTION: &str = "EdgebertAttention";
/// The word-embedding lookup over the mapped model file.
pub const MAPPED_GATHER: &str = "EdgebertMappedGather";
/// Suffix of the `Mul` node (and its output) that dequantizes a Linear weight, `Cast(codes) ×
/// scale`, in the `dequantize` int8 path; folded into one fp32 constant after parsing.
pub const DEQUANTIZED_SUFFIX: &str = "/dequantized";
/// Suffix of the `Cast` node that widens a Linear weight's int8 codes to fp32.
pub const CAST_SUFFIX: &str = "/cast";
