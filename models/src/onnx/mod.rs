//! ONNX emission of the sequence classifiers (DistilBERT, BERT), fp32 or int8, from the weights
//! by their Hugging Face names; built with `tract_onnx::pb` prost types.
//!
//! The graph uses standard ONNX ops only (opset 17, no `com.microsoft` domain, no fused or
//! contrib attention), so it loads in onnxruntime and tract alike:
//! - inputs `input_ids`, `attention_mask`: int64 `[batch, sequence]` (both `dim_param`);
//!   output `logits`: float `[batch, num_labels]`; no `value_info` for intermediate tensors
//!   (symbolic dims there stop tract from fixing the inputs to concrete shapes);
//! - labels in `metadata_props` (`labels`: JSON array), plus `edgebert.architecture` and
//!   `edgebert.quantization`;
//! - positions are `Slice(position_table, 0, sequence)`; BERT token types are all zero, so
//!   row 0 of the token-type table is added as a constant;
//! - the attention mask becomes `(1 - mask) * f32::MIN` added to the scores, as transformers does;
//!   the `1/sqrt(head_dim)` scaling is folded into the query weights and bias;
//! - LayerNormalization (opset 17), exact GELU through `Erf`, Softmax, Tanh (BERT pooler).
//!
//! # int8 ([`Quantization::Int8`])
//! Every Linear (attention q/k/v/out, both FFN matrices, pre-classifier or pooler, classifier)
//! becomes `DynamicQuantizeLinear(x)` → `MatMulInteger(x_u8, W_i8, x_zp)` → `Cast` →
//! `Mul(x_scale * w_scale)` → `Add(bias)`: the only form that reaches tract's integer GEMM
//! kernels (QDQ pairs run as fake-quant fp32). One `DynamicQuantizeLinear` is shared by q/k/v.
//! Weights are symmetric int8 (zero point 0, codes in [-63, 63] by default, [-127, 127] with
//! [`WeightRange::Full`]). Embedding tables (word and
//! position) are int8 with one scale per row: `Gather`/`Slice` the codes and the row scales, `Cast`,
//! `Mul`. LayerNorm, GELU, softmax and the attention matmuls stay fp32.
//!
//! Per-channel vs per-tensor weight scales ([`WeightScales`]): per-channel is the default.
//! Measured here with full-range codes (tract, max |Δlogit| int8 vs fp32): all-MiniLM-L6-v2
//! with a random 6-label head, per-channel 0.026 vs per-tensor 0.050 (logits ≈ 0.27); tiny
//! PyTorch fixtures vs transformers' logits: DistilBERT 0.176 vs 0.237 (logits ≈ 4.2), BERT
//! 0.099 vs 0.150 (logits ≈ 2.4). With the default reduced range, per-channel: MiniLM 0.032,
//! DistilBERT 0.300, BERT 0.151 (per-tensor with reduced range doubles again: 0.68 on
//! DistilBERT, so it is only tested with full range). MiniLM file size: int8 23.1 MB = 25.4%
//! of fp32 90.9 MB.
//! Issue 5 measured per-tensor scales on MiniLM at a logit error of about 1.6 on logits of
//! about 4, and per-channel at about half that; the 0.3-point accuracy target needs the
//! latter. Its cost in tract is a vector instead of a scalar output rescale (33-40% in
//! issue 5's measurement, to be won back by the runtime pass). The tests
//! `onnx_int8::minilm_int8_size_ratio_and_error` and
//! `onnx_int8::int8_pytorch_fixtures_close_to_reference_in_tract` print both errors for our own
//! export (MiniLM with a random head; tiny fixtures vs PyTorch) so the choice can be re-checked.
//!
//! Symmetric int8 weights against u8 activations (u8 x s8) are what VNNI/SDOT kernels want. On
//! x86 with AVX2 but no VNNI, onnxruntime's u8 x s8 GEMM sums pairs of products in int16
//! (`vpmaddubsw`), which saturates for full-range weights: measured on this AVX2-only host,
//! onnxruntime's full-range int8 logits were off by up to 1.0 while tract's (exact integer)
//! stayed within 0.08 of fp32. Hence [`WeightRange::Reduced`] by default (7-bit codes, which
//! cannot saturate); see its documentation for the accuracy and agreement it buys.

mod export;
mod graph;
mod quant;

pub use export::{
    export_classifier, write_onnx, ExportOptions, Quantization, WeightRange, WeightScales,
};
