//! The int8 path choice. An int8 bundle's Linear layers are `DynamicQuantizeLinear →
//! MatMulInteger → Cast → Mul` blocks (the form `edgebert-models` emits); a session runs them in
//! one of three ways:
//!
//! - **native**: tract's integer kernels, as written (`--int8 native`). On x86-64 they are
//!   far slower than the kernel path (AVX2: ≈ 30× at 16 tokens; AVX-512 VNNI: ≈ 2×).
//! - **kernel**: each block (and the bias `Add` after it) becomes one `EdgebertInt8Linear` node
//!   ([`crate::session::ops::int8_linear`]) over edgebert's own `u8 × i8` kernels
//!   ([`edgebert_kernels::int8_gemm`]), with results bit-identical to the native path. `auto`
//!   takes it wherever the CPU has one of them: x86-64 with AVX-512 VNNI (any code), x86-64 with
//!   AVX2 when the model records 7-bit codes (the only ones the AVX2 kernel runs exactly), and
//!   every aarch64 CPU (i8mm, dotprod, or plain NEON).
//! - **dequantize**: each block becomes one fp32 `MatMul` whose weight is `Cast(codes) × scale`;
//!   right after tract has parsed the graph [`crate::session::weights::dequantize`] replaces each
//!   `Cast × scale` by its fp32 constant, computed in one pass. `auto` falls back to it on
//!   other CPUs; the bundle stays 4× smaller on disk.
//!
//! Both rewrites work on the ONNX protobuf before tract parses it and move no weight data (the
//! int8 codes stay the initializer). A block that does not match exactly is left as it is.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

use crate::session::int8_mode::{auto_takes_kernel, Int8Mode, Int8Path};
use crate::session::ops::{
    CAST_SUFFIX, DEQUANTIZED_SUFFIX, DOMAIN, MASKED_OP_TYPE, MASKED_QUANTIZE, OP_TYPE,
};

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
        Int8Mode::Auto if auto_takes_kernel(seven_bit) => Some(Rewrite::Kernel),
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
/// `EdgebertDynamicQuantize(x, attention_mask)` ([`crate::session::ops::masked_quantize`]); returns how many.
pub fn mask_dynamic_quantization(g: &mut GraphProto) -> usize {
    if !has_token_mask(g) {
        return 0;
    }
    let mut count = 0;
    for n in &mut g.node {
        let standard = n.domain.is_empty() || n.domain == "ai.onnx";
        if standard && n.op_type == "DynamicQuantizeLinear" && n.input.len() == 1 {
            n.op_type = MASKED_QUANTIZE.into();
            n.domain = DOMAIN.into();
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

/// The graph input whose 1s flag real tokens.
const MASK_INPUT: &str = "attention_mask";

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
                MASKED_OP_TYPE
            } else {
                OP_TYPE
            };
            g.node[b.rescale] = NodeProto {
                input,
                output: vec![out],
                name: format!("{name}/int8_linear"),
                op_type: op_type.into(),
                domain: DOMAIN.into(),
                ..Default::default()
            };
            continue;
        }
        let (float, weight) = (
            format!("{}/float", b.codes),
            format!("{}{DEQUANTIZED_SUFFIX}", b.codes),
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
