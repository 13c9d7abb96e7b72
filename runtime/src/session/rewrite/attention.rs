//! Fused self-attention: the ONNX spelling of multi-head attention that BERT-family exports use
//!
//! ```text
//! q, k, v [b, s, heads·d] ─ Reshape [0, 0, heads, d] ─ Transpose (q, v: 0 2 1 3; k: 0 2 3 1)
//! MatMul(q, k) ─ Add(mask) ─ Softmax(axis −1) ─ MatMul(·, v) ─ Transpose 0 2 1 3 ─ Reshape [0, 0, heads·d]
//! ```
//!
//! becomes one [`ATTENTION`]`(q, k, v, mask)` node ([`crate::session::ops::attention`]). A
//! subgraph that does not match exactly (other readers of an intermediate, other permutations
//! or shapes, Softmax on another axis or before opset 13) is left to tract. The mask is any
//! tensor that broadcasts to the scores `[b, heads, s, s]` without enlarging them
//! (`[b, 1, 1, s]` for a padding mask).
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

use crate::session::ops::{ATTENTION, DOMAIN};

/// The graph's nodes indexed by what they produce and how often each value is read.
struct Index<'a> {
    nodes: &'a [NodeProto],
    producer: HashMap<&'a str, usize>,
    readers: HashMap<&'a str, usize>,
    outputs: HashSet<&'a str>,
    inits: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Index<'a> {
    /// The node producing `value` when it is `op_type` (standard domain) and `value` has no
    /// other reader and is no graph output.
    fn sole(&self, value: &str, op_type: &str) -> Option<(usize, &'a NodeProto)> {
        let &i = self.producer.get(value)?;
        let n = &self.nodes[i];
        let standard = n.domain.is_empty() || n.domain == "ai.onnx";
        (standard
            && n.op_type == op_type
            && n.output.len() == 1
            && self.readers.get(value) == Some(&1)
            && !self.outputs.contains(value))
        .then_some((i, n))
    }

    /// The int64 values of the initializer `name`.
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        let t = self.inits.get(name)?;
        if t.data_type != DataType::Int64 as i32 || t.dims.len() != 1 {
            return None;
        }
        if !t.int64_data.is_empty() {
            return Some(t.int64_data.clone());
        }
        (t.raw_data.len() == 8 * usize::try_from(t.dims[0]).ok()?).then(|| {
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect()
        })
    }

    /// `Transpose(Reshape(x, [0, 0, heads, d]), perm)`: the nodes and (`x`, heads, d).
    fn split_heads(&self, value: &str, perm: &[i64]) -> Option<([usize; 2], String, i64, i64)> {
        let (t, transpose) = self.sole(value, "Transpose")?;
        let p = transpose.attribute.iter().find(|a| a.name == "perm")?;
        if p.ints != perm || transpose.input.len() != 1 {
            return None;
        }
        let (r, reshape) = self.sole(&transpose.input[0], "Reshape")?;
        if reshape.input.len() != 2 || allows_zero(reshape) {
            return None;
        }
        match self.ints(&reshape.input[1])?[..] {
            [0, 0, heads, d] if heads > 0 && d > 0 => {
                Some(([t, r], reshape.input[0].clone(), heads, d))
            }
            _ => None,
        }
    }
}

/// Whether a `Reshape` has `allowzero = 1` (then a 0 in the shape is a real 0).
fn allows_zero(reshape: &NodeProto) -> bool {
    reshape
        .attribute
        .iter()
        .any(|a| a.name == "allowzero" && a.i != 0)
}

/// The default-domain opset the model imports (0 when none).
fn opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or(0)
}

/// One matched attention block.
struct Match {
    /// The final `Reshape`, replaced by the fused node.
    merge: usize,
    /// Every other node of the block, removed.
    removed: Vec<usize>,
    inputs: [String; 4],
    heads: i64,
    head_dim: i64,
}

/// The attention block whose `Softmax` is node `s`, if it matches exactly.
fn match_block(ix: &Index, s: usize) -> Option<Match> {
    let softmax = &ix.nodes[s];
    let axis = softmax
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(-1, |a| a.i);
    if axis != -1 || softmax.input.len() != 1 || softmax.output.len() != 1 {
        return None;
    }
    let (a, add) = ix.sole(&softmax.input[0], "Add")?;
    if add.input.len() != 2 {
        return None;
    }
    // Scores on either side of the mask Add.
    let (m1, scores, mask) = [0, 1].iter().find_map(|&side| {
        let (i, n) = ix.sole(&add.input[side], "MatMul")?;
        Some((i, n, add.input[1 - side].clone()))
    })?;
    if scores.input.len() != 2 {
        return None;
    }
    let (qn, q, heads, d) = ix.split_heads(&scores.input[0], &[0, 2, 1, 3])?;
    let (kn, k, kh, kd) = ix.split_heads(&scores.input[1], &[0, 2, 3, 1])?;
    // The probabilities' one reader: the context MatMul.
    let probs = &softmax.output[0];
    if ix.readers.get(probs.as_str()) != Some(&1) || ix.outputs.contains(probs.as_str()) {
        return None;
    }
    let (m2, context) = ix
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.input.contains(probs))?;
    let standard = context.domain.is_empty() || context.domain == "ai.onnx";
    if !standard || context.op_type != "MatMul" || context.input.len() != 2 {
        return None;
    }
    if context.input[0] != *probs || context.output.len() != 1 {
        return None;
    }
    let (vn, v, vh, vd) = ix.split_heads(&context.input[1], &[0, 2, 1, 3])?;
    if (kh, kd) != (heads, d) || (vh, vd) != (heads, d) {
        return None;
    }
    // context → Transpose 0 2 1 3 → Reshape [0, 0, heads·d], each the other's only reader.
    let ctx_out = &context.output[0];
    let reader_of = |value: &str| {
        (ix.readers.get(value) == Some(&1) && !ix.outputs.contains(value))
            .then(|| {
                ix.nodes
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.input.iter().any(|i| i == value))
            })
            .flatten()
    };
    let (t, transpose) = reader_of(ctx_out)?;
    let perm = transpose.attribute.iter().find(|a| a.name == "perm")?;
    let standard = |n: &NodeProto| n.domain.is_empty() || n.domain == "ai.onnx";
    if !standard(transpose)
        || transpose.op_type != "Transpose"
        || perm.ints != [0, 2, 1, 3]
        || transpose.output.len() != 1
    {
        return None;
    }
    let (r, merge) = reader_of(&transpose.output[0])?;
    if !standard(merge)
        || merge.op_type != "Reshape"
        || merge.input.len() != 2
        || merge.input[0] != transpose.output[0]
        || allows_zero(merge)
    {
        return None;
    }
    if ix.ints(&merge.input[1])? != [0, 0, heads.checked_mul(d)?] {
        return None;
    }
    let mut removed = vec![a, s, m1, m2, t];
    removed.extend(qn.into_iter().chain(kn).chain(vn));
    Some(Match {
        merge: r,
        removed,
        inputs: [q, k, v, mask],
        heads,
        head_dim: d,
    })
}

/// How many attention blocks of the ONNX model `onnx` a session would fuse (0 when the bytes do
/// not decode).
pub fn attention_blocks(onnx: &[u8]) -> usize {
    use prost::Message;
    ModelProto::decode(onnx).map_or(0, |mut m| fuse_attention(&mut m))
}

/// Rewrites every matching attention block of the main graph; returns how many.
pub fn fuse_attention(model: &mut ModelProto) -> usize {
    if opset(model) < 13 {
        return 0;
    }
    let Some(g) = model.graph.as_mut() else {
        return 0;
    };
    let matches: Vec<Match> = {
        let mut producer = HashMap::new();
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                *readers.entry(x.as_str()).or_default() += 1;
            }
        }
        let ix = Index {
            nodes: &g.node,
            producer,
            readers,
            outputs: g.output.iter().map(|o| o.name.as_str()).collect(),
            inits: g.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
        };
        g.node
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.op_type == "Softmax" && (n.domain.is_empty() || n.domain == "ai.onnx")
            })
            .filter_map(|(s, _)| match_block(&ix, s))
            .collect()
    };
    let mut remove = HashSet::new();
    for m in &matches {
        let merge = &g.node[m.merge];
        let int = |name: &str, i: i64| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i,
            ..Default::default()
        };
        g.node[m.merge] = NodeProto {
            input: m.inputs.to_vec(),
            output: merge.output.clone(),
            name: format!("{}/fused_attention", merge.name),
            op_type: ATTENTION.into(),
            domain: DOMAIN.into(),
            attribute: vec![int("heads", m.heads), int("head_dim", m.head_dim)],
            ..Default::default()
        };
        remove.extend(m.removed.iter().copied());
    }
    let mut k = 0;
    g.node.retain(|_| {
        k += 1;
        !remove.contains(&(k - 1))
    });
    matches.len()
}
