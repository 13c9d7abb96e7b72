//! Each ONNX `LayerNormalization` over the last axis (and the residual `Add` feeding it, when
//! nothing else reads that sum) becomes one [`LAYER_NORM`] node ([`crate::session::ops::layer_norm`]),
//! instead of the ten or so ops tract expands it into.
//!
//! Like every rewrite here it works on the ONNX protobuf before tract parses it and moves no
//! weight data; a node that does not match exactly is left as it is.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

use crate::session::ops::{DOMAIN, LAYER_NORM};

/// Rewrites every matching `LayerNormalization` of the main graph; returns how many.
pub fn fuse_layer_norms(model: &mut ModelProto) -> usize {
    let Some(g) = model.graph.as_mut() else {
        return 0;
    };
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.as_str(), i);
        }
        for x in &n.input {
            *readers.entry(x.as_str()).or_default() += 1;
        }
    }
    let graph_outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let vector_of = |name: &str| {
        inits.get(name).and_then(|t| {
            (t.data_type == DataType::Float as i32 && t.dims.len() == 1).then_some(t.dims[0])
        })
    };

    let mut fused = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        let standard = n.domain.is_empty() || n.domain == "ai.onnx";
        if n.op_type != "LayerNormalization" || !standard || n.input.len() != 3 {
            continue;
        }
        if n.output.len() != 1 {
            continue;
        }
        let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
        let axis = attr("axis").map_or(-1, |a| a.i);
        let stash = attr("stash_type").map_or(1, |a| a.i);
        let epsilon = attr("epsilon").map_or(1e-5, |a| a.f);
        if axis != -1 || stash != 1 || !epsilon.is_finite() || epsilon < 0.0 {
            continue;
        }
        let (Some(h), Some(hb)) = (vector_of(&n.input[1]), vector_of(&n.input[2])) else {
            continue;
        };
        if h != hb || h <= 0 {
            continue;
        }
        // A residual `Add` of two activations whose sum only this node reads.
        let x = &n.input[0];
        let residual = producer.get(x.as_str()).copied().filter(|&a| {
            let add = &g.node[a];
            add.op_type == "Add"
                && add.input.len() == 2
                && add.input.iter().all(|v| !inits.contains_key(v.as_str()))
                && readers.get(x.as_str()) == Some(&1)
                && !graph_outputs.contains(x.as_str())
        });
        fused.push((i, residual, epsilon));
    }
    let count = fused.len();
    let mut remove = HashSet::new();
    for (i, residual, epsilon) in fused {
        let n = g.node[i].clone();
        let mut input = match residual {
            Some(a) => {
                remove.insert(a);
                g.node[a].input.clone()
            }
            None => vec![n.input[0].clone()],
        };
        input.extend(n.input[1..].iter().cloned());
        g.node[i] = NodeProto {
            input,
            output: n.output,
            name: format!("{}/fused", n.name),
            op_type: LAYER_NORM.into(),
            domain: DOMAIN.into(),
            attribute: vec![
                AttributeProto {
                    name: "epsilon".into(),
                    r#type: AttributeType::Float as i32,
                    f: epsilon,
                    ..Default::default()
                },
                AttributeProto {
                    name: "residual".into(),
                    r#type: AttributeType::Int as i32,
                    i: i64::from(residual.is_some()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
    }
    let mut k = 0;
    g.node.retain(|_| {
        k += 1;
        !remove.contains(&(k - 1))
    });
    count
}
