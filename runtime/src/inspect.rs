//! What `edgebert inspect` shows about a model: the ONNX graph as tract parses it, and what a
//! session on this CPU would do with it (int8 path, fused attention blocks).
use prost::Message;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::{Error, Result};
use crate::session::{guarded, rewrite, word_embedding_rows, Int8Mode, SessionOptions};

/// What `edgebert inspect` shows about an ONNX graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnnxSummary {
    /// Operator name → node count.
    pub op_histogram: std::collections::BTreeMap<String, usize>,
    /// Graph inputs with their declared facts.
    pub inputs: Vec<(String, String)>,
    /// Graph outputs with their declared facts.
    pub outputs: Vec<(String, String)>,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of scalar weights held in constants.
    pub parameters: u64,
    /// Word-embedding weight name and rows, when found.
    pub embedding: Option<(String, u64)>,
}

/// Parses ONNX bytes with tract (no optimization) and summarizes the graph.
pub fn inspect_onnx(bytes: &[u8]) -> Result<OnnxSummary> {
    let model = guarded("parsing ONNX", || {
        tract_onnx::onnx().model_for_read(&mut &bytes[..])
    })?;
    let mut s = OnnxSummary {
        nodes: model.nodes().len(),
        ..Default::default()
    };
    for node in model.nodes() {
        let op = node.op().name().to_string();
        if op == "Source" {
            continue;
        }
        if op == "Const" {
            if let Ok(f) = model.outlet_fact(OutletId::new(node.id, 0)) {
                if let Some(t) = f.value.concretize() {
                    s.parameters += t.len() as u64;
                }
            }
        }
        *s.op_histogram.entry(op).or_default() += 1;
    }
    let fact = |o: OutletId| {
        model
            .outlet_fact(o)
            .map(|f| format!("{f:?}"))
            .unwrap_or_default()
    };
    for o in model
        .input_outlets()
        .map_err(|e| Error::model("inputs", e))?
    {
        s.inputs.push((model.node(o.node).name.clone(), fact(*o)));
    }
    for o in model
        .output_outlets()
        .map_err(|e| Error::model("outputs", e))?
    {
        let name = model
            .outlet_label(*o)
            .unwrap_or(&model.node(o.node).name)
            .to_string();
        s.outputs.push((name, fact(*o)));
    }
    s.embedding = word_embedding_rows(&model);
    Ok(s)
}

/// How a session on this CPU would run the int8 Linear layers of the ONNX model `onnx` with
/// `--int8 auto`, in words (see [`crate::Int8Path::describe`]).
pub fn int8_path_on_this_cpu(onnx: &[u8]) -> String {
    match tract_onnx::pb::ModelProto::decode(onnx) {
        Ok(mut proto) => rewrite::int8::apply(&mut proto, Int8Mode::Auto).describe(),
        Err(e) => format!("unknown (the ONNX does not decode: {e})"),
    }
}

/// How many attention blocks of the ONNX model `onnx` a session with default options on this
/// CPU fuses into one op each (0 where the fused kernel is off by default, or when the bytes do
/// not decode).
pub fn fused_attention_blocks(onnx: &[u8]) -> usize {
    if SessionOptions::default().fuse_attention {
        rewrite::attention::attention_blocks(onnx)
    } else {
        0
    }
}
