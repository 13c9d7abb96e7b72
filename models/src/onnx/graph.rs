//! A small builder over `tract_onnx::pb` (the ONNX protobuf structs): nodes with unique names,
//! initializers stored as little-endian `raw_data`, attributes, and the final `ModelProto`.

use std::collections::HashSet;

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// One dimension of a graph input/output type: fixed or symbolic.
#[derive(Debug, Clone)]
pub(crate) enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size (`dim_param`).
    Sym(&'static str),
}

/// Accumulates nodes and initializers in topological (emission) order.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
}

impl GraphBuilder {
    /// A name not used so far, derived from `hint`.
    fn unique(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{hint}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Emits one node with a single output; returns the output's name.
    pub fn op(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.op_n(op_type, name, inputs, 1, attrs).remove(0)
    }

    /// Emits one node with `n` outputs; returns their names.
    pub fn op_n(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let name = self.unique(name);
        let output: Vec<String> = if n == 1 {
            vec![name.clone()]
        } else {
            (0..n).map(|i| format!("{name}:{i}")).collect()
        };
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name,
            op_type: op_type.to_string(),
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    /// Renames the output `old` of the node that produced it to `new` (for graph outputs).
    pub fn rename_output(&mut self, old: &str, new: &str) {
        for node in &mut self.nodes {
            for o in node.output.iter_mut().chain(node.input.iter_mut()) {
                if o == old {
                    *o = new.to_string();
                }
            }
        }
        self.names.insert(new.to_string());
    }

    /// Adds an initializer from little-endian bytes; returns its name.
    fn initializer(&mut self, name: &str, dims: &[usize], dt: DataType, raw: Vec<u8>) -> String {
        let name = self.unique(name);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// An f32 initializer.
    pub fn f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, DataType::Float, raw)
    }

    /// An i64 initializer.
    pub fn i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, DataType::Int64, raw)
    }

    /// An i8 initializer.
    pub fn i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        let raw = data.iter().map(|&v| v as u8).collect();
        self.initializer(name, dims, DataType::Int8, raw)
    }

    /// Finishes the graph with its inputs and outputs (no `value_info` for intermediates:
    /// symbolic dims there stop tract from fixing input shapes).
    pub fn finish(
        self,
        name: &str,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
    ) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }
}

/// A graph input/output declaration.
pub(crate) fn value_info(name: &str, dt: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub(crate) fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}
