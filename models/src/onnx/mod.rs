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
//! Weights are symmetric int8 (zero point 0, codes in [-127, 127]). Embedding tables (word and
//! position) are int8 with one scale per row: `Gather`/`Slice` the codes and the row scales, `Cast`,
//! `Mul`. LayerNorm, GELU, softmax and the attention matmuls stay fp32.
//!
//! Per-channel vs per-tensor weight scales ([`WeightScales`]): per-channel is the default.
//! Issue 5 measured per-tensor scales on MiniLM at a logit error of about 1.6 on logits of
//! about 4, and per-channel at about half that; the 0.3-point accuracy target needs the
//! latter. Its cost in tract is a vector instead of a scalar output rescale (33-40% in
//! issue 5's measurement, to be won back by the runtime pass). The tests
//! `onnx_int8::minilm_int8_size_ratio_and_error` and
//! `onnx_int8::int8_pytorch_fixtures_close_to_reference_in_tract` print both errors for our own
//! export (MiniLM with a random head; tiny fixtures vs PyTorch) so the choice can be re-checked.
//!
//! Symmetric int8 weights against u8 activations (u8 x s8) are what VNNI/SDOT kernels want; on
//! AVX2 without VNNI, u8 x s8 products can saturate in `vpmaddubsw` (onnxruntime's
//! `reduce_range` case): the runtime should take its fp32 fallback there.

mod export;
mod graph;
mod quant;

pub use export::{export_classifier, write_onnx, ExportOptions, Quantization, WeightScales};
