//! The int8 path choice. An int8 bundle's Linear layers are `DynamicQuantizeLinear →
//! MatMulInteger → Cast → Mul` blocks (the form `edgebert-models` emits); a session runs them in
//! one of three ways:
//!
//! - **native**: tract's integer kernels, as written. They beat tract's fp32 GEMM only with
//!   int8 dot-product instructions; `auto` takes them on ARM CPUs with `dotprod`. On a plain
//!   AVX2 x86 they are far slower (MiniLM at 16 tokens: ≈ 30×, nearly all of it in
//!   `avx2_mmm_i32_8x8`), and even with AVX-512 VNNI (AMD Zen 5) they were ≈ 2× slower than
//!   the kernel path below.
//! - **kernel**: each block (and the bias `Add` after it) becomes one `EdgebertInt8Linear` node
//!   ([`super::int8_linear`]) over edgebert's own `u8 × i8` kernels ([`super::int8_gemm`]:
//!   AVX-512 VNNI, or AVX2), with results bit-identical to the native path. `auto` takes it on
//!   every x86-64 CPU with AVX-512 VNNI (exact for any code), and on AVX2 CPUs when the model
//!   records 7-bit codes, the only ones the AVX2 kernel runs exactly.
//! - **dequantize**: each block becomes one fp32 `MatMul` whose weight is `Cast(codes) × scale`;
//!   right after tract has parsed the graph [`fold_dequantized_weights`] replaces each
//!   `Cast × scale` by its fp32 constant, computed in one pass. `auto` falls back to it on
//!   other CPUs; the bundle stays 4× smaller on disk.
//!
//! Both rewrites work on the ONNX protobuf before tract parses it and move no weight data (the
//! int8 codes stay the initializer). A block that does not match exactly is left as it is.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceModelPatch};

/// How a session runs an int8 model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Int8Mode {
    /// The fastest exact path for this CPU: the runtime's kernel on x86-64 (AVX-512 VNNI, or
    /// AVX2 with 7-bit codes), tract's integer kernels on ARM with `dotprod`, dequantized fp32
    /// elsewhere.
    #[default]
    Auto,
    /// Always tract's integer kernels (MatMulInteger).
    Native,
    /// Always dequantize the Linear weights to fp32 at load.
    Dequantize,
    /// Always the runtime's own int8 Linear kernel ([`super::int8_gemm`]): AVX-512 VNNI where
    /// the CPU has it, AVX2 where it has that and the codes fit 7 bits, a portable (slow) loop
    /// elsewhere.
    Kernel,
}

/// The path a session took for its int8 Linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Path {
    /// The model has no int8 Linear layers.
    NotInt8,
    /// Integer kernels (MatMulInteger).
    Native,
    /// Weights dequantized to fp32 at load; the number of Linear layers rewritten.
    Dequantized(usize),
    /// The runtime's own int8 Linear kernel; the number of Linear layers rewritten.
    Kernel(usize),
}

impl Int8Path {
    /// One-line description for logs and `edgebert inspect`.
    pub fn describe(&self) -> String {
        match self {
            Int8Path::NotInt8 => "fp32 model".into(),
            Int8Path::Native => "int8 kernels (MatMulInteger)".into(),
            Int8Path::Dequantized(n) => format!(
                "int8 weights dequantized to fp32 at load ({n} Linear layers; no exact int8 kernel for this CPU and these codes)"
            ),
            Int8Path::Kernel(n) => format!(
                "edgebert int8 kernel ({n} Linear layers, {})",
                if super::int8_gemm::avx512_vnni_available() {
                    "AVX-512 VNNI u8×i8 dot products"
                } else if super::int8_gemm::avx2_available() {
                    "AVX2 u8×i8 products"
                } else {
                    "portable loop"
                }
            ),
        }
    }
}

/// Whether this CPU has the int8 dot-product instructions tract's integer kernels need to be
/// faster than fp32 (x86-64: AVX-512 VNNI; aarch64: `dotprod`).
pub fn cpu_has_int8_dot() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Number of `MatMulInteger` nodes in the model's main graph.
pub fn count_matmul_integer(model: &ModelProto) -> usize {
    model.graph.as_ref().map_or(0, |g| {
        g.node
            .iter()
            .filter(|n| n.op_type == "MatMulInteger")
            .count()
    })
}

/// Applies `mode` to the model: returns the path taken (rewriting the graph for `Dequantize`
/// and `Kernel`, and for `Auto` except on ARM CPUs with int8 dot products).
///
/// `Auto` takes the kernel path on an x86-64 CPU with AVX-512 VNNI, and on an AVX2 one when
/// the model says its codes are 7-bit (`edgebert.weight_range` = `reduced`, what
/// `edgebert-models` writes by default), since only those run exactly on AVX2; it keeps tract's
/// integer kernels on ARM with `dotprod` and dequantizes otherwise.
pub fn apply(model: &mut ModelProto, mode: Int8Mode) -> Int8Path {
    if count_matmul_integer(model) == 0 {
        return Int8Path::NotInt8;
    }
    let seven_bit = model
        .metadata_props
        .iter()
        .any(|p| p.key == "edgebert.weight_range" && p.value == "reduced");
    let rewrite = match mode {
        Int8Mode::Native => None,
        Int8Mode::Dequantize => Some(Rewrite::Dequantize),
        Int8Mode::Kernel => Some(Rewrite::Kernel),
        Int8Mode::Auto if super::int8_gemm::avx512_vnni_available() => Some(Rewrite::Kernel),
        Int8Mode::Auto if cpu_has_int8_dot() => None,
        Int8Mode::Auto if seven_bit && super::int8_gemm::avx2_available() => Some(Rewrite::Kernel),
        Int8Mode::Auto => Some(Rewrite::Dequantize),
    };
    let Some(g) = model.graph.as_mut() else {
        return Int8Path::NotInt8;
    };
    let path = match rewrite.map(|r| (rewrite_linears(g, r), r)) {
        None | Some((0, _)) => Int8Path::Native,
        Some((n, Rewrite::Dequantize)) => Int8Path::Dequantized(n),
        Some((n, Rewrite::Kernel)) => Int8Path::Kernel(n),
    };
    mask_dynamic_quantization(g);
    path
}

/// Whether the graph has an int64 `attention_mask` input (1 = real token).
fn has_token_mask(g: &GraphProto) -> bool {
    g.input.iter().any(|i| {
        i.name == MASK_INPUT
            && i.r#type
                .as_ref()
                .and_then(|t| t.value.as_ref())
                .is_some_and(|v| {
                    matches!(v, tract_onnx::pb::type_proto::Value::TensorType(t)
                    if t.elem_type == DataType::Int64 as i32)
                })
    })
}

/// Rewrites every `DynamicQuantizeLinear(x)` left in a graph with a token mask into
/// `EdgebertDynamicQuantize(x, attention_mask)` ([`super::masked_quantize`]); returns how many.
pub fn mask_dynamic_quantization(g: &mut GraphProto) -> usize {
    if !has_token_mask(g) {
        return 0;
    }
    let mut count = 0;
    for n in &mut g.node {
        let standard = n.domain.is_empty() || n.domain == "ai.onnx";
        if standard && n.op_type == "DynamicQuantizeLinear" && n.input.len() == 1 {
            n.op_type = super::masked_quantize::MASKED_QUANTIZE.into();
            n.domain = super::int8_linear::DOMAIN.into();
            n.input.push(MASK_INPUT.into());
            count += 1;
        }
    }
    count
}

/// What a matched Linear block becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// `MatMul(x, Cast(codes) × scales)`, folded to an fp32 weight after parsing.
    Dequantize,
    /// One `EdgebertInt8Linear(x, codes, scales[, bias])` node (a following bias `Add` folded in).
    Kernel,
}

/// Whether an initializer's bytes are ONNX external data (read from a file by tract).
fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

/// Little-endian f32 values of an initializer (raw or typed storage).
fn f32_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 || is_external(t) {
        return None;
    }
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return None;
        }
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

/// i8 values of an initializer (raw bytes or widened into `int32_data`).
fn i8_values(t: &TensorProto) -> Option<Vec<i8>> {
    if t.data_type != DataType::Int8 as i32 || is_external(t) {
        return None;
    }
    if !t.raw_data.is_empty() {
        return Some(t.raw_data.iter().map(|&b| b as i8).collect());
    }
    t.int32_data.iter().map(|&v| i8::try_from(v).ok()).collect()
}

/// Number of values an int8 initializer stores (raw bytes, `int32_data`, or the length of its
/// external data), without copying.
fn i8_len(t: &TensorProto) -> Option<usize> {
    if t.data_type != DataType::Int8 as i32 {
        return None;
    }
    if is_external(t) {
        let length = t.external_data.iter().find(|e| e.key == "length")?;
        return length.value.parse().ok();
    }
    Some(if t.raw_data.is_empty() {
        t.int32_data.len()
    } else {
        t.raw_data.len()
    })
}

/// Suffix of the `Mul` node (and its output) that dequantizes a Linear weight: `Cast(codes) ×
/// scale`, which [`fold_dequantized_weights`] turns into one fp32 constant.
/// The graph input whose 1s flag real tokens.
const MASK_INPUT: &str = "attention_mask";

const DEQUANTIZED_SUFFIX: &str = "/dequantized";

/// Suffix of the `Cast` node that widens a Linear weight's int8 codes to fp32.
const CAST_SUFFIX: &str = "/cast";

/// Folds every weight dequantization that [`apply`] emitted (`Mul(Cast(codes), scale)` on
/// constants) into one fp32 constant, computed row by row in one pass over the int8 codes;
/// tract's generic `Cast` and broadcasting `Mul` would take several times longer. Returns how
/// many weights were folded; a node whose inputs are not the expected constants is left as is.
pub fn fold_dequantized_weights(model: &mut InferenceModel) -> TractResult<usize> {
    let targets: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.name.ends_with(DEQUANTIZED_SUFFIX) && n.inputs.len() == 2)
        .map(|n| n.id)
        .collect();
    let mut folded = 0;
    for id in targets {
        let node = model.node(id);
        let cast = model.node(node.inputs[0].node);
        // Only the nodes `apply` wrote: `{codes}/dequantized = Mul({codes}/cast, scale)`.
        if node.op().name() != "Mul" || !cast.name.ends_with(CAST_SUFFIX) {
            continue;
        }
        let (Some(&codes), Ok(scales)) = (cast.inputs.first(), model.outlet_fact(node.inputs[1]))
        else {
            continue;
        };
        let (Some(codes), Some(scales)) = (
            model.outlet_fact(codes)?.value.concretize(),
            scales.value.concretize(),
        ) else {
            continue;
        };
        let Some(weight) = dequantized(&codes, &scales)? else {
            continue;
        };
        let name = node.name.clone();
        let mut patch = InferenceModelPatch::default();
        let konst = patch.add_const(name, weight)?;
        patch.shunt_outside(model, OutletId::new(id, 0), konst)?;
        patch.apply(model)?;
        folded += 1;
    }
    if folded > 0 {
        // Drops the replaced Mul, Cast and int8 codes (now unread) and renumbers the nodes.
        model.compact()?;
    }
    Ok(folded)
}

/// `codes × scales` for a 2-D int8 `codes` and one scale, or one per column; `None` for other
/// shapes and types.
fn dequantized(codes: &Tensor, scales: &Tensor) -> TractResult<Option<Tensor>> {
    let &[rows, cols] = codes.shape() else {
        return Ok(None);
    };
    if codes.datum_type() != i8::datum_type() || scales.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let (codes, scales) = (codes.try_as_plain_ram()?, scales.try_as_plain_ram()?);
    let (codes, scales) = (codes.as_slice::<i8>()?, scales.as_slice::<f32>()?);
    let per_column = scales.len() == cols;
    if cols == 0 || !(per_column || scales.len() == 1) {
        return Ok(None);
    }
    let mut out = Tensor::zero::<f32>(&[rows, cols])?;
    let mut dst = out.try_as_plain_ram_mut()?;
    let dst = dst.as_slice_mut::<f32>()?;
    for (row_out, row) in dst.chunks_exact_mut(cols).zip(codes.chunks_exact(cols)) {
        if per_column {
            for ((d, &q), &s) in row_out.iter_mut().zip(row).zip(scales) {
                *d = f32::from(q) * s;
            }
        } else {
            let s = scales[0];
            for (d, &q) in row_out.iter_mut().zip(row) {
                *d = f32::from(q) * s;
            }
        }
    }
    Ok(Some(out))
}

/// One matched block, by node index, with the names its dequantized weight is built from.
struct Block {
    matmul_integer: usize,
    cast: usize,
    rescale: usize,
    input: String,
    codes: String,
    scales: String,
    /// The `Add` of a constant `[n]` f32 bias reading only this block's result, if any (node
    /// index, bias name): the kernel path folds it into the fused node.
    bias: Option<(usize, String)>,
}

/// Rewrites every matching Linear block as `rewrite` says; returns how many were rewritten.
fn rewrite_linears(g: &mut GraphProto, rewrite: Rewrite) -> usize {
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut producer: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for (k, o) in n.output.iter().enumerate() {
            producer.insert(o.as_str(), (i, k));
        }
        for x in &n.input {
            consumers.entry(x.as_str()).or_default().push(i);
        }
    }
    let only_consumer = |name: &str| match consumers.get(name).map(Vec::as_slice) {
        Some([c]) => Some(*c),
        _ => None,
    };
    let graph_outputs: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();

    let mut blocks = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type != "MatMulInteger" || n.input.len() != 4 || n.output.len() != 1 {
            continue;
        }
        let (a_q, b, a_zp, b_zp) = (&n.input[0], &n.input[1], &n.input[2], &n.input[3]);
        // Activation: outputs 0 and 2 of one DynamicQuantizeLinear.
        let Some(&(d, 0)) = producer.get(a_q.as_str()) else {
            continue;
        };
        let dql = &g.node[d];
        if dql.op_type != "DynamicQuantizeLinear"
            || dql.output.len() != 3
            || dql.output[2] != *a_zp
            || dql.input.len() != 1
        {
            continue;
        }
        // Weight: a 2-D int8 initializer with a zero zero-point.
        let (Some(w), Some(wzp)) = (inits.get(b.as_str()), inits.get(b_zp.as_str())) else {
            continue;
        };
        let (Some(codes), Some(zp)) = (i8_len(w), i8_values(wzp)) else {
            continue;
        };
        if w.dims.len() != 2 || zp.iter().any(|&z| z != 0) {
            continue;
        }
        let (Ok(rows), Ok(cols)) = (usize::try_from(w.dims[0]), usize::try_from(w.dims[1])) else {
            continue;
        };
        if rows.checked_mul(cols) != Some(codes) {
            continue;
        }
        // Cast to float, then Mul by (activation scale × weight scale).
        let Some(c) = only_consumer(&n.output[0]) else {
            continue;
        };
        let cast = &g.node[c];
        let to_float = cast
            .attribute
            .iter()
            .any(|a| a.name == "to" && a.i == DataType::Float as i64);
        if cast.op_type != "Cast" || !to_float || cast.output.len() != 1 {
            continue;
        }
        let Some(m) = only_consumer(&cast.output[0]) else {
            continue;
        };
        let rescale = &g.node[m];
        if rescale.op_type != "Mul" || rescale.input.len() != 2 || rescale.output.len() != 1 {
            continue;
        }
        let scale_name = if rescale.input[0] == cast.output[0] {
            &rescale.input[1]
        } else {
            &rescale.input[0]
        };
        let Some(&(sm, 0)) = producer.get(scale_name.as_str()) else {
            continue;
        };
        let scale_mul = &g.node[sm];
        if scale_mul.op_type != "Mul" || scale_mul.input.len() != 2 {
            continue;
        }
        let ws_name = match (
            scale_mul.input[0] == dql.output[1],
            scale_mul.input[1] == dql.output[1],
        ) {
            (true, false) => &scale_mul.input[1],
            (false, true) => &scale_mul.input[0],
            _ => continue,
        };
        let Some(scales) = inits.get(ws_name.as_str()).and_then(|t| f32_values(t)) else {
            continue;
        };
        // One scale for all, or one per output column (broadcast over the rows of `codes`).
        let scale_dims = &inits[ws_name.as_str()].dims;
        let per_column = scales.len() == cols && scale_dims.last() == Some(&w.dims[1]);
        if scales.len() != 1 && !per_column {
            continue;
        }
        let out = &rescale.output[0];
        let bias = only_consumer(out)
            .filter(|_| !graph_outputs.contains(out))
            .and_then(|a| {
                let add = &g.node[a];
                if add.op_type != "Add" || add.input.len() != 2 || add.output.len() != 1 {
                    return None;
                }
                let other = if add.input[0] == *out {
                    &add.input[1]
                } else {
                    &add.input[0]
                };
                let t = inits.get(other.as_str())?;
                let n = i64::try_from(cols).ok()?;
                let fits = t.data_type == DataType::Float as i32
                    && t.dims == [n]
                    && f32_values(t).is_some_and(|v| v.len() == cols);
                fits.then(|| (a, other.clone()))
            });
        blocks.push(Block {
            matmul_integer: i,
            cast: c,
            rescale: m,
            input: dql.input[0].clone(),
            codes: b.clone(),
            scales: ws_name.clone(),
            bias,
        });
    }
    if blocks.is_empty() {
        return 0;
    }

    let rewritten = blocks.len();
    // With an int64 `attention_mask` input, the kernel takes its activation statistics from
    // real tokens only (see `int8_linear`).
    let masked = has_token_mask(g);
    let mut remove: HashSet<usize> = HashSet::new();
    let mut added = Vec::new();
    for b in blocks {
        let out = g.node[b.rescale].output[0].clone();
        let name = g.node[b.rescale].name.clone();
        remove.insert(b.matmul_integer);
        remove.insert(b.cast);
        if rewrite == Rewrite::Kernel {
            let mut input = vec![b.input, b.codes, b.scales];
            let mut out = out;
            if let Some((add, bias)) = b.bias {
                input.push(bias);
                out = g.node[add].output[0].clone();
                remove.insert(add);
            }
            let op_type = if masked {
                input.insert(1, MASK_INPUT.into());
                super::int8_linear::MASKED_OP_TYPE
            } else {
                super::int8_linear::OP_TYPE
            };
            g.node[b.rescale] = NodeProto {
                input,
                output: vec![out],
                name: format!("{name}/int8_linear"),
                op_type: op_type.into(),
                domain: super::int8_linear::DOMAIN.into(),
                ..Default::default()
            };
            continue;
        }
        let (float, weight) = (
            format!("{}/float", b.codes),
            format!("{}/dequantized", b.codes),
        );
        // The same weight may feed several blocks: its dequantization is emitted once.
        if !added.iter().any(|n: &NodeProto| n.output[0] == weight) {
            added.push(NodeProto {
                input: vec![b.codes.clone()],
                output: vec![float.clone()],
                name: format!("{}{CAST_SUFFIX}", b.codes),
                op_type: "Cast".into(),
                attribute: vec![AttributeProto {
                    name: "to".into(),
                    r#type: AttributeType::Int as i32,
                    i: DataType::Float as i64,
                    ..Default::default()
                }],
                ..Default::default()
            });
            added.push(NodeProto {
                input: vec![float, b.scales],
                output: vec![weight.clone()],
                name: weight.clone(),
                op_type: "Mul".into(),
                ..Default::default()
            });
        }
        g.node[b.rescale] = NodeProto {
            input: vec![b.input, weight],
            output: vec![out],
            name: format!("{name}/dequantized_matmul"),
            op_type: "MatMul".into(),
            ..Default::default()
        };
    }
    g.node = std::mem::take(&mut g.node)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !remove.contains(i))
        .map(|(_, n)| n)
        .collect();
    // Initializer-fed nodes first, so the graph stays in topological order.
    added.append(&mut g.node);
    g.node = added;
    // The scale Mul and the DynamicQuantizeLinear feeding only rewritten blocks are now unread.
    prune_dead(g, &graph_outputs);
    rewritten
}

/// Drops nodes none of whose outputs are read (repeatedly), then unread initializers.
fn prune_dead(g: &mut GraphProto, outputs: &HashSet<String>) {
    loop {
        let read: HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect();
        let before = g.node.len();
        let keep: Vec<bool> = g
            .node
            .iter()
            .map(|n| {
                n.output
                    .iter()
                    .any(|o| read.contains(o.as_str()) || outputs.contains(o))
            })
            .collect();
        drop(read);
        let mut it = keep.into_iter();
        g.node.retain(|_| it.next().unwrap_or(true));
        if g.node.len() == before {
            break;
        }
    }
    let read: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(outputs.iter().cloned())
        .collect();
    g.initializer.retain(|t| read.contains(&t.name));
}
