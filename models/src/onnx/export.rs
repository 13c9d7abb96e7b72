//! The classifier graph: embeddings, encoder layers and head, emitted node by node from the
//! weights by their Hugging Face names.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};
use prost::Message;
use tract_onnx::pb::{
    tensor_proto::DataType, ModelProto, OperatorSetIdProto, StringStringEntryProto,
};

use super::graph::{attr_f, attr_i, attr_ints, value_info, Dim, GraphBuilder};
use super::quant::{quantize_columns, quantize_rows, QMAX_FULL, QMAX_REDUCED};
use crate::config::{Activation, Architecture, ModelConfig};
use crate::error::{Error, Result};

/// The only opset this module emits (LayerNormalization needs ≥ 17).
const OPSET: i64 = 17;
/// ONNX IR version that goes with opset 17.
const IR_VERSION: i64 = 8;

/// How the Linear weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// fp32 everywhere.
    #[default]
    None,
    /// int8 weights (MatMulInteger path) and int8 embeddings; activations quantized at run time.
    Int8,
}

/// Granularity of int8 Linear weight scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightScales {
    /// One scale per output channel (column of the `[in, out]` matrix).
    #[default]
    PerChannel,
    /// One scale per weight matrix.
    PerTensor,
}

/// Range of the int8 codes of Linear weights.
///
/// On x86 CPUs with AVX2 but without VNNI, onnxruntime (and other engines built on
/// `vpmaddubsw`) multiply u8 activations by s8 weights in int16 pair sums that saturate when
/// both weights of a pair are large: `2 × 255 × 127` does not fit int16. The model then computes
/// something else than it says. Reduced range (7-bit codes in [-63, 63], onnxruntime's
/// `reduce_range`, OpenVINO's saturation workaround) cannot saturate, at the cost of twice the
/// weight rounding step. Measured with `scripts/int8-agreement` on emotion validation (2,000
/// texts) with the fine-tuned MiniLM on such a CPU (AVX2, no VNNI), full → reduced range:
/// onnxruntime vs edgebert runtime label agreement 99.4% → 99.7%, onnxruntime vs fp32 99.3% →
/// 99.45%, edgebert runtime vs fp32 99.9% → 99.75%; accuracy of both engines on the int8 file
/// 0.9385/0.939 → 0.9395/0.9395 (fp32 0.939). On the tiny random test models onnxruntime's logits
/// were off tract's (exact integer) ones by up to 1.0 with full range and 7e-7 with reduced range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightRange {
    /// Codes in [-63, 63]: no int16 saturation in any u8 × s8 kernel (the default).
    #[default]
    Reduced,
    /// Codes in [-127, 127]: half the rounding error, but u8 × s8 GEMMs on AVX2 without VNNI
    /// saturate.
    Full,
}

impl WeightRange {
    /// Largest code magnitude.
    fn qmax(self) -> i8 {
        match self {
            WeightRange::Reduced => QMAX_REDUCED,
            WeightRange::Full => QMAX_FULL,
        }
    }
}

/// What to emit.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// ONNX opset; only 17 is supported.
    pub opset: i64,
    /// fp32 or int8.
    pub quantize: Quantization,
    /// Scale granularity of int8 Linear weights (ignored for fp32).
    pub weight_scales: WeightScales,
    /// Code range of int8 Linear weights (ignored for fp32).
    pub weight_range: WeightRange,
    /// Label names by id; empty means the config's `id2label`, else `LABEL_i`.
    pub labels: Vec<String>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: OPSET,
            quantize: Quantization::None,
            weight_scales: WeightScales::PerChannel,
            weight_range: WeightRange::Reduced,
            labels: Vec::new(),
        }
    }
}

/// Weights looked up by HF name, with or without the architecture prefix, shape-checked.
struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    prefix: String,
}

impl Weights<'_> {
    /// Encoder tensor `name` (tried as `prefix.name`, then `name`) as f32, checked against `shape`.
    fn encoder(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}.{name}", self.prefix);
        let key = if self.map.contains_key(&full) {
            full
        } else if self.map.contains_key(name) {
            name.to_string()
        } else {
            return Err(missing(&full, shape));
        };
        self.exact(&key, shape)
    }

    /// Head tensor `name` (no prefix) as f32, checked against `shape`.
    fn head(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if !self.map.contains_key(name) {
            return Err(missing(name, shape));
        }
        self.exact(name, shape)
    }

    fn exact(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = &self.map[key];
        if t.dims() != shape {
            return Err(Error::Onnx(format!(
                "tensor \"{key}\" has shape {:?}, the config implies {shape:?}",
                t.dims()
            )));
        }
        let data = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::Onnx(format!("tensor \"{key}\": {e}")))?;
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Onnx(format!(
                "tensor \"{key}\" holds a non-finite value at flat index {bad}"
            )));
        }
        Ok(data)
    }
}

fn missing(name: &str, shape: &[usize]) -> Error {
    Error::Onnx(format!(
        "missing tensor \"{name}\" (expected shape {shape:?})"
    ))
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Emits the graph, remembering quantized activations so that q/k/v share one quantization.
struct Emitter<'a> {
    g: GraphBuilder,
    w: Weights<'a>,
    quant: Quantization,
    per_channel: bool,
    /// Largest code magnitude of Linear weights.
    qmax: i8,
    /// activation name → (codes u8, scale, zero point) outputs of its DynamicQuantizeLinear
    quantized: HashMap<String, [String; 3]>,
}

impl Emitter<'_> {
    /// `y = x W^T + b` for the HF Linear `name` (`weight` `[out, in]`, `bias` `[out]`);
    /// `scale` multiplies weight and bias (used to fold the attention scaling into q).
    fn linear(
        &mut self,
        x: &str,
        name: &str,
        head: bool,
        (inp, out): (usize, usize),
        scale: f32,
    ) -> Result<String> {
        let get = |w: &Weights, n: &str, s: &[usize]| {
            if head {
                w.head(n, s)
            } else {
                w.encoder(n, s)
            }
        };
        let mut weight = get(&self.w, &format!("{name}.weight"), &[out, inp])?;
        let mut bias = get(&self.w, &format!("{name}.bias"), &[out])?;
        if scale != 1.0 {
            weight.iter_mut().for_each(|v| *v *= scale);
            bias.iter_mut().for_each(|v| *v *= scale);
        }
        let wt = transpose(&weight, out, inp); // [in, out]
        let y = match self.quant {
            Quantization::None => {
                let w = self.g.f32(&format!("{name}.weight_t"), &[inp, out], &wt);
                self.g
                    .op("MatMul", &format!("{name}/MatMul"), &[x, &w], vec![])
            }
            Quantization::Int8 => {
                let [xq, xs, xzp] = self.quantize_activation(x);
                let (codes, scales) = quantize_columns(&wt, inp, out, self.per_channel, self.qmax);
                let wq = self
                    .g
                    .i8(&format!("{name}.weight_t_i8"), &[inp, out], &codes);
                let ws = if self.per_channel {
                    self.g.f32(&format!("{name}.weight_scale"), &[out], &scales)
                } else {
                    self.g.f32(&format!("{name}.weight_scale"), &[], &scales)
                };
                let wzp = self.g.i8(&format!("{name}.weight_zero_point"), &[], &[0]);
                let acc = self.g.op(
                    "MatMulInteger",
                    &format!("{name}/MatMulInteger"),
                    &[&xq, &wq, &xzp, &wzp],
                    vec![],
                );
                let accf = self.g.op(
                    "Cast",
                    &format!("{name}/Cast"),
                    &[&acc],
                    vec![attr_i("to", DataType::Float as i64)],
                );
                let s = self
                    .g
                    .op("Mul", &format!("{name}/scale"), &[&xs, &ws], vec![]);
                self.g
                    .op("Mul", &format!("{name}/rescale"), &[&accf, &s], vec![])
            }
        };
        let b = self.g.f32(&format!("{name}.bias"), &[out], &bias);
        Ok(self.g.op("Add", &format!("{name}/Add"), &[&y, &b], vec![]))
    }

    fn quantize_activation(&mut self, x: &str) -> [String; 3] {
        if let Some(q) = self.quantized.get(x) {
            return q.clone();
        }
        let outs = self.g.op_n(
            "DynamicQuantizeLinear",
            &format!("{x}/DynamicQuantizeLinear"),
            &[x],
            3,
            vec![],
        );
        let q = [outs[0].clone(), outs[1].clone(), outs[2].clone()];
        self.quantized.insert(x.to_string(), q.clone());
        q
    }

    fn layer_norm(&mut self, x: &str, name: &str, hidden: usize, eps: f64) -> Result<String> {
        let gamma = self.w.encoder(&format!("{name}.weight"), &[hidden])?;
        let beta = self.w.encoder(&format!("{name}.bias"), &[hidden])?;
        let g = self.g.f32(&format!("{name}.weight"), &[hidden], &gamma);
        let b = self.g.f32(&format!("{name}.bias"), &[hidden], &beta);
        Ok(self.g.op(
            "LayerNormalization",
            &format!("{name}/LayerNormalization"),
            &[x, &g, &b],
            vec![attr_i("axis", -1), attr_f("epsilon", eps as f32)],
        ))
    }

    /// An embedding table `[rows, hidden]`: fp32, or int8 codes plus per-row scales `[rows, 1]`.
    fn table(&mut self, name: &str, rows: usize, hidden: usize) -> Result<Table> {
        let data = self.w.encoder(&format!("{name}.weight"), &[rows, hidden])?;
        Ok(match self.quant {
            Quantization::None => Table::F32(self.g.f32(
                &format!("{name}.weight"),
                &[rows, hidden],
                &data,
            )),
            Quantization::Int8 => {
                let (codes, scales) = quantize_rows(&data, rows, hidden);
                Table::I8 {
                    codes: self
                        .g
                        .i8(&format!("{name}.weight_i8"), &[rows, hidden], &codes),
                    scales: self
                        .g
                        .f32(&format!("{name}.row_scale"), &[rows, 1], &scales),
                }
            }
        })
    }

    /// Applies `select` (Gather or Slice, given its non-data inputs) to a table and dequantizes.
    fn lookup(
        &mut self,
        table: &Table,
        name: &str,
        op: &str,
        args: &[&str],
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) -> String {
        match table {
            Table::F32(t) => {
                let mut inputs = vec![t.as_str()];
                inputs.extend_from_slice(args);
                self.g.op(op, &format!("{name}/{op}"), &inputs, attrs)
            }
            Table::I8 { codes, scales } => {
                let mut inputs = vec![codes.as_str()];
                inputs.extend_from_slice(args);
                let c = self
                    .g
                    .op(op, &format!("{name}/{op}"), &inputs, attrs.clone());
                let mut inputs = vec![scales.as_str()];
                inputs.extend_from_slice(args);
                let s = self.g.op(op, &format!("{name}/{op}_scale"), &inputs, attrs);
                let cf = self.g.op(
                    "Cast",
                    &format!("{name}/Cast"),
                    &[&c],
                    vec![attr_i("to", DataType::Float as i64)],
                );
                self.g
                    .op("Mul", &format!("{name}/dequantize"), &[&cf, &s], vec![])
            }
        }
    }
}

enum Table {
    F32(String),
    I8 { codes: String, scales: String },
}

/// Per-architecture tensor names inside one encoder layer (without prefix and layer index).
struct LayerNames {
    layer: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    ln1: &'static str,
    ff1: &'static str,
    ff2: &'static str,
    ln2: &'static str,
}

const DISTILBERT_LAYER: LayerNames = LayerNames {
    layer: "transformer.layer",
    q: "attention.q_lin",
    k: "attention.k_lin",
    v: "attention.v_lin",
    o: "attention.out_lin",
    ln1: "sa_layer_norm",
    ff1: "ffn.lin1",
    ff2: "ffn.lin2",
    ln2: "output_layer_norm",
};

const BERT_LAYER: LayerNames = LayerNames {
    layer: "encoder.layer",
    q: "attention.self.query",
    k: "attention.self.key",
    v: "attention.self.value",
    o: "attention.output.dense",
    ln1: "attention.output.LayerNorm",
    ff1: "intermediate.dense",
    ff2: "output.dense",
    ln2: "output.LayerNorm",
};

/// Emits the ONNX `ModelProto` bytes of the sequence classifier described by `config`, with the
/// weights by their HF names (`distilbert.`/`bert.` prefix optional for the encoder; the head
/// `pre_classifier`/`bert.pooler.dense` and `classifier` must be present).
pub fn export_classifier(
    config: &ModelConfig,
    weights: &HashMap<String, Tensor>,
    opts: &ExportOptions,
) -> Result<Vec<u8>> {
    if opts.opset != OPSET {
        return Err(Error::Onnx(format!(
            "opset {} requested; this exporter emits opset {OPSET} only",
            opts.opset
        )));
    }
    let h = config.hidden_size;
    let heads = config.num_heads;
    if heads == 0 || !h.is_multiple_of(heads) {
        return Err(Error::Onnx(format!(
            "hidden size {h} is not a multiple of the number of heads {heads}"
        )));
    }
    let dh = h / heads;
    let ffn = config.intermediate_size;
    let eps = config.layer_norm_eps;
    let prefix = config.architecture.prefix().to_string();

    // labels: options, else config, else from the classifier's shape
    let n_labels = match weights.get("classifier.weight") {
        Some(t) => t.dims().first().copied().unwrap_or(0),
        None => return Err(missing("classifier.weight", &[config.id2label.len(), h])),
    };
    let labels: Vec<String> = if !opts.labels.is_empty() {
        opts.labels.clone()
    } else if !config.id2label.is_empty() {
        config.id2label.clone()
    } else {
        (0..n_labels).map(|i| format!("LABEL_{i}")).collect()
    };
    if labels.len() != n_labels {
        return Err(Error::Onnx(format!(
            "{} labels given but tensor \"classifier.weight\" has {n_labels} rows",
            labels.len()
        )));
    }

    let mut e = Emitter {
        g: GraphBuilder::default(),
        w: Weights {
            map: weights,
            prefix,
        },
        quant: opts.quantize,
        per_channel: opts.weight_scales == WeightScales::PerChannel,
        qmax: opts.weight_range.qmax(),
        quantized: HashMap::new(),
    };

    // ---- embeddings ----
    let word = e.table("embeddings.word_embeddings", config.vocab_size, h)?;
    let pos = e.table(
        "embeddings.position_embeddings",
        config.max_position_embeddings,
        h,
    )?;
    let x = e.lookup(
        &word,
        "embeddings.word_embeddings",
        "Gather",
        &["input_ids"],
        vec![attr_i("axis", 0)],
    );
    let seq = e.g.op(
        "Shape",
        "sequence_length",
        &["input_ids"],
        vec![attr_i("start", 1), attr_i("end", 2)],
    );
    let zero = e.g.i64("zero_1d", &[1], &[0]);
    let p = e.lookup(
        &pos,
        "embeddings.position_embeddings",
        "Slice",
        &[&zero, &seq, &zero],
        vec![],
    );
    let mut x = e.g.op("Add", "embeddings/add_positions", &[&x, &p], vec![]);
    if config.architecture == Architecture::Bert {
        let rows = config.type_vocab_size;
        let tt =
            e.w.encoder("embeddings.token_type_embeddings.weight", &[rows, h])?;
        let row0 = e.g.f32("embeddings.token_type_row0", &[h], &tt[..h]);
        x =
            e.g.op("Add", "embeddings/add_token_type", &[&x, &row0], vec![]);
    }
    let mut x = e.layer_norm(&x, "embeddings.LayerNorm", h, eps)?;

    // ---- additive attention mask [batch, 1, 1, sequence] ----
    let maskf = e.g.op(
        "Cast",
        "mask/Cast",
        &["attention_mask"],
        vec![attr_i("to", DataType::Float as i64)],
    );
    let one = e.g.f32("one", &[], &[1.0]);
    let inv = e.g.op("Sub", "mask/invert", &[&one, &maskf], vec![]);
    let min = e.g.f32("mask_fill", &[], &[f32::MIN]);
    let add = e.g.op("Mul", "mask/fill", &[&inv, &min], vec![]);
    let axes = e.g.i64("mask_axes", &[2], &[1, 2]);
    let mask =
        e.g.op("Unsqueeze", "mask/Unsqueeze", &[&add, &axes], vec![]);

    // ---- encoder ----
    let names = match config.architecture {
        Architecture::DistilBert => &DISTILBERT_LAYER,
        Architecture::Bert => &BERT_LAYER,
    };
    let split =
        e.g.i64("heads_shape", &[4], &[0, 0, heads as i64, dh as i64]);
    let merge = e.g.i64("hidden_shape", &[3], &[0, 0, h as i64]);
    let q_scale = 1.0 / (dh as f32).sqrt();
    for i in 0..config.num_layers {
        let l = format!("{}.{i}", names.layer);
        let n = |s: &str| format!("{l}.{s}");
        let q = e.linear(&x, &n(names.q), false, (h, h), q_scale)?;
        let k = e.linear(&x, &n(names.k), false, (h, h), 1.0)?;
        let v = e.linear(&x, &n(names.v), false, (h, h), 1.0)?;
        let mut heads4 = |t: &str, what: &str, perm: &[i64]| {
            let r = e.g.op(
                "Reshape",
                &format!("{l}.attention/{what}_split"),
                &[t, &split],
                vec![],
            );
            e.g.op(
                "Transpose",
                &format!("{l}.attention/{what}_transpose"),
                &[&r],
                vec![attr_ints("perm", perm)],
            )
        };
        let q = heads4(&q, "q", &[0, 2, 1, 3]); // [b, heads, s, dh]
        let k = heads4(&k, "k", &[0, 2, 3, 1]); // [b, heads, dh, s]
        let v = heads4(&v, "v", &[0, 2, 1, 3]); // [b, heads, s, dh]
        let scores = e.g.op(
            "MatMul",
            &format!("{l}.attention/scores"),
            &[&q, &k],
            vec![],
        );
        let scores = e.g.op(
            "Add",
            &format!("{l}.attention/mask"),
            &[&scores, &mask],
            vec![],
        );
        let probs = e.g.op(
            "Softmax",
            &format!("{l}.attention/Softmax"),
            &[&scores],
            vec![attr_i("axis", -1)],
        );
        let ctx = e.g.op(
            "MatMul",
            &format!("{l}.attention/context"),
            &[&probs, &v],
            vec![],
        );
        let ctx = e.g.op(
            "Transpose",
            &format!("{l}.attention/context_transpose"),
            &[&ctx],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let ctx = e.g.op(
            "Reshape",
            &format!("{l}.attention/context_merge"),
            &[&ctx, &merge],
            vec![],
        );
        let attn = e.linear(&ctx, &n(names.o), false, (h, h), 1.0)?;
        let res = e.g.op(
            "Add",
            &format!("{l}/attention_residual"),
            &[&attn, &x],
            vec![],
        );
        let x1 = e.layer_norm(&res, &n(names.ln1), h, eps)?;
        let f = e.linear(&x1, &n(names.ff1), false, (h, ffn), 1.0)?;
        let f = activation(&mut e.g, &f, &format!("{l}/activation"), config.activation);
        let f = e.linear(&f, &n(names.ff2), false, (ffn, h), 1.0)?;
        let res =
            e.g.op("Add", &format!("{l}/ffn_residual"), &[&f, &x1], vec![]);
        x = e.layer_norm(&res, &n(names.ln2), h, eps)?;
    }

    // ---- head on the first ([CLS]) token ----
    let first = e.g.i64("first_token", &[], &[0]);
    let cls =
        e.g.op("Gather", "head/cls", &[&x, &first], vec![attr_i("axis", 1)]);
    let pooled = match config.architecture {
        Architecture::DistilBert => {
            let p = e.linear(&cls, "pre_classifier", true, (h, h), 1.0)?;
            e.g.op("Relu", "pre_classifier/Relu", &[&p], vec![])
        }
        Architecture::Bert => {
            let p = e.linear(&cls, "pooler.dense", false, (h, h), 1.0)?;
            e.g.op("Tanh", "pooler/Tanh", &[&p], vec![])
        }
    };
    let logits = e.linear(&pooled, "classifier", true, (h, n_labels), 1.0)?;
    e.g.rename_output(&logits, "logits");

    let batch_seq = [Dim::Sym("batch"), Dim::Sym("sequence")];
    let graph = e.g.finish(
        "edgebert_classifier",
        vec![
            value_info("input_ids", DataType::Int64, &batch_seq),
            value_info("attention_mask", DataType::Int64, &batch_seq),
        ],
        vec![value_info(
            "logits",
            DataType::Float,
            &[Dim::Sym("batch"), Dim::Fixed(n_labels as i64)],
        )],
    );
    let labels_json =
        serde_json::to_string(&labels).map_err(|err| Error::Onnx(format!("labels: {err}")))?;
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: k.to_string(),
        value: v,
    };
    let quant = match (opts.quantize, opts.weight_scales) {
        (Quantization::None, _) => "none",
        (Quantization::Int8, WeightScales::PerChannel) => "int8-per-channel",
        (Quantization::Int8, WeightScales::PerTensor) => "int8-per-tensor",
    };
    let mut metadata_props = vec![
        meta("labels", labels_json),
        meta(
            "edgebert.architecture",
            config.architecture.prefix().to_string(),
        ),
        meta("edgebert.quantization", quant.to_string()),
    ];
    if opts.quantize == Quantization::Int8 {
        let range = match opts.weight_range {
            WeightRange::Reduced => "reduced",
            WeightRange::Full => "full",
        };
        metadata_props.push(meta("edgebert.weight_range", range.to_string()));
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "edgebert".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        graph: Some(graph),
        metadata_props,
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// The feed-forward activation: exact GELU via Erf, tanh GELU, or ReLU.
fn activation(g: &mut GraphBuilder, x: &str, name: &str, act: Activation) -> String {
    match act {
        Activation::Relu => g.op("Relu", &format!("{name}/Relu"), &[x], vec![]),
        Activation::Gelu => {
            // 0.5 * x * (1 + erf(x / sqrt(2)))
            let sqrt2 = g.f32("sqrt2", &[], &[std::f32::consts::SQRT_2]);
            let one = g.f32("gelu_one", &[], &[1.0]);
            let half = g.f32("gelu_half", &[], &[0.5]);
            let d = g.op("Div", &format!("{name}/Div"), &[x, &sqrt2], vec![]);
            let erf = g.op("Erf", &format!("{name}/Erf"), &[&d], vec![]);
            let p = g.op("Add", &format!("{name}/Add"), &[&erf, &one], vec![]);
            let m = g.op("Mul", &format!("{name}/Mul"), &[x, &p], vec![]);
            g.op("Mul", &format!("{name}/Half"), &[&m, &half], vec![])
        }
        Activation::GeluTanh => {
            // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
            let c = g.f32(
                "gelu_tanh_c",
                &[],
                &[(2.0f32 / std::f32::consts::PI).sqrt()],
            );
            let k = g.f32("gelu_tanh_k", &[], &[0.044715]);
            let one = g.f32("gelu_one", &[], &[1.0]);
            let half = g.f32("gelu_half", &[], &[0.5]);
            let x2 = g.op("Mul", &format!("{name}/x2"), &[x, x], vec![]);
            let x3 = g.op("Mul", &format!("{name}/x3"), &[&x2, x], vec![]);
            let kx3 = g.op("Mul", &format!("{name}/kx3"), &[&x3, &k], vec![]);
            let inner = g.op("Add", &format!("{name}/inner"), &[x, &kx3], vec![]);
            let scaled = g.op("Mul", &format!("{name}/scaled"), &[&inner, &c], vec![]);
            let t = g.op("Tanh", &format!("{name}/Tanh"), &[&scaled], vec![]);
            let p = g.op("Add", &format!("{name}/Add"), &[&t, &one], vec![]);
            let m = g.op("Mul", &format!("{name}/Mul"), &[x, &p], vec![]);
            g.op("Mul", &format!("{name}/Half"), &[&m, &half], vec![])
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, renamed.
pub fn write_onnx(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("path has no file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(err));
    }
    Ok(())
}
