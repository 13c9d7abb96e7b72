//! ONNX → ONNX rewrites made on the decoded protobuf before tract parses the graph: each
//! matching subgraph becomes one node of the runtime's own ([`super::ops`]). None moves weight
//! data, and a subgraph that does not match exactly is left as it is.
pub mod attention;
pub mod int8;
pub mod layer_norm;
