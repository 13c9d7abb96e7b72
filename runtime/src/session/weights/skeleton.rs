//! The skeleton of an ONNX model: a copy without its large initializers' bytes, which become
//! external data pointing back into the model file, written by walking the protobuf wire format.

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::pb::StringStringEntryProto;

/// Default size from which an initializer's raw bytes are read from the file on demand;
/// smaller ones (biases, LayerNorm vectors, int8 scales) stay in the skeleton.
pub const MIN_EXTERNAL_BYTES: usize = 64 * 1024;

/// `ModelProto.graph`.
const MODEL_GRAPH: u32 = 7;
/// `GraphProto.initializer`.
const GRAPH_INITIALIZER: u32 = 5;
/// `TensorProto.raw_data`.
const TENSOR_RAW_DATA: u32 = 9;
/// `TensorProto.external_data`.
const TENSOR_EXTERNAL_DATA: u32 = 13;
/// `TensorProto.data_location`.
const TENSOR_DATA_LOCATION: u32 = 14;

/// Which message a byte range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Model,
    Graph,
    Tensor,
}

/// A byte range of the model file holding one initializer's raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalTensor {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The model without its large initializers' bytes, and where those bytes are.
#[derive(Debug, Clone)]
pub struct Skeleton {
    /// The ONNX model, its large initializers marked external.
    pub model: tract_onnx::pb::ModelProto,
    /// The byte ranges the external initializers point at.
    pub tensors: Vec<ExternalTensor>,
}

/// Builds the skeleton of `onnx`, the model bytes found at `offset_in_file` of a file called
/// `location` (a plain file name, resolved by tract against the file's directory): the
/// initializers with at least `min_bytes` of raw data become external. Errors are protobuf
/// decoding errors; the caller can fall back to decoding the bytes whole.
pub fn skeleton(
    onnx: &[u8],
    offset_in_file: u64,
    location: &str,
    min_bytes: usize,
) -> Result<Skeleton, String> {
    let mut out = Vec::with_capacity(onnx.len().min(1 << 20));
    let mut tensors = Vec::new();
    let mut walk = Walk {
        location,
        min_bytes: min_bytes.max(1),
        base: offset_in_file,
        tensors: &mut tensors,
    };
    walk.message(onnx, 0, Level::Model, &mut out)?;
    let model = tract_onnx::pb::ModelProto::decode(&out[..]).map_err(|e| e.to_string())?;
    Ok(Skeleton { model, tensors })
}

struct Walk<'a> {
    location: &'a str,
    min_bytes: usize,
    base: u64,
    tensors: &'a mut Vec<ExternalTensor>,
}

impl Walk<'_> {
    /// Copies the message `msg` (found at `at` in the model bytes) to `out`, descending into the
    /// graph and its initializers and leaving large `raw_data` fields out.
    fn message(
        &mut self,
        msg: &[u8],
        at: usize,
        level: Level,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut rest = msg;
        let mut external = None;
        while rest.has_remaining() {
            let start = msg.len() - rest.len();
            let (field, wire) = decode_key(&mut rest).map_err(|e| e.to_string())?;
            match wire {
                WireType::Varint => {
                    decode_varint(&mut rest).map_err(|e| e.to_string())?;
                }
                WireType::SixtyFourBit => skip(&mut rest, 8)?,
                WireType::ThirtyTwoBit => skip(&mut rest, 4)?,
                WireType::StartGroup | WireType::EndGroup => {
                    return Err(format!("unexpected protobuf group (field {field})"));
                }
                WireType::LengthDelimited => {
                    let len = decode_varint(&mut rest).map_err(|e| e.to_string())?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&l| l <= rest.len())
                        .ok_or_else(|| format!("field {field}: length {len} runs past the end"))?;
                    let body_at = at + (msg.len() - rest.len());
                    let body = &rest[..len];
                    rest = &rest[len..];
                    let child = match (level, field) {
                        (Level::Model, MODEL_GRAPH) => Some(Level::Graph),
                        (Level::Graph, GRAPH_INITIALIZER) => Some(Level::Tensor),
                        _ => None,
                    };
                    if let Some(child) = child {
                        let mut inner = Vec::with_capacity(len.min(4096));
                        self.message(body, body_at, child, &mut inner)?;
                        encode_key(field, WireType::LengthDelimited, out);
                        encode_varint(inner.len() as u64, out);
                        out.extend_from_slice(&inner);
                        continue;
                    }
                    if level == Level::Tensor && field == TENSOR_RAW_DATA && len >= self.min_bytes {
                        external = Some(ExternalTensor {
                            offset: self.base + body_at as u64,
                            len: len as u64,
                        });
                        continue;
                    }
                }
            }
            out.extend_from_slice(&msg[start..msg.len() - rest.len()]);
        }
        if let Some(t) = external {
            for (key, value) in [
                ("location", self.location.to_string()),
                ("offset", t.offset.to_string()),
                ("length", t.len.to_string()),
            ] {
                let entry = StringStringEntryProto {
                    key: key.into(),
                    value,
                };
                prost::encoding::message::encode(TENSOR_EXTERNAL_DATA, &entry, out);
            }
            prost::encoding::int32::encode(
                TENSOR_DATA_LOCATION,
                &(DataLocation::External as i32),
                out,
            );
            self.tensors.push(t);
        }
        Ok(())
    }
}

fn skip(rest: &mut &[u8], n: usize) -> Result<(), String> {
    if rest.len() < n {
        return Err("truncated fixed-size field".into());
    }
    rest.advance(n);
    Ok(())
}
