//! Weights read from the model file when tract needs them, not held in a protobuf copy.
//!
//! Decoding an ONNX file with prost copies every initializer into the decoded message, and
//! tract then copies each one again into its own tensor: for a moment the file's bytes, the
//! protobuf copy and tract's tensors all hold the weights (MiniLM fp32: 3 × 91 MB). Instead,
//! [`skeleton`] walks the protobuf wire format of the file's bytes and writes a copy of the
//! model whose large initializers are ONNX *external data* (location, offset, length) pointing
//! back into the file itself, without their bytes (a few hundred kB for MiniLM). tract reads
//! each external tensor through [`FileWeights`], one at a time, straight from the file; the
//! checksum of every tensor taken when the skeleton was made is checked on each read, so a file
//! changed after it was opened is an error, not silently different weights.
//!
//! Because the weights can be read again at any time, a session can hand its only copy of the
//! parsed graph to the first plan it builds (tract then frees each weight as soon as it has
//! packed it) and parse the skeleton again for later plans.
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::pb::StringStringEntryProto;
use tract_onnx::prelude::*;

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
    /// CRC-32 of the bytes when the skeleton was made.
    pub crc: u32,
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
                            crc: crc32fast::hash(body),
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

/// tract's reader for the external initializers of a [`Skeleton`]: reads each byte range from
/// the model file and checks it against the checksum taken when the skeleton was made.
#[derive(Debug, Clone)]
pub struct FileWeights {
    file: PathBuf,
    crcs: HashMap<(u64, u64), u32>,
}

impl FileWeights {
    /// A reader of `skeleton`'s external tensors from `file`.
    pub fn new(file: impl Into<PathBuf>, skeleton: &Skeleton) -> FileWeights {
        FileWeights {
            file: file.into(),
            crcs: skeleton
                .tensors
                .iter()
                .map(|t| ((t.offset, t.len), t.crc))
                .collect(),
        }
    }

    /// The model file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl ModelDataResolver for FileWeights {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        _resolved: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        let (offset, len) = (offset as u64, length.unwrap_or(0) as u64);
        let Some(&crc) = self.crcs.get(&(offset, len)) else {
            anyhow::bail!(
                "{}: no external tensor of {len} bytes at offset {offset}",
                self.file.display()
            );
        };
        let mut f =
            File::open(&self.file).map_err(|e| anyhow::anyhow!("{}: {e}", self.file.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        buf.clear();
        buf.try_reserve_exact(len as usize)?;
        f.take(len).read_to_end(buf)?;
        anyhow::ensure!(
            buf.len() as u64 == len && crc32fast::hash(buf) == crc,
            "{}: the {len} bytes of weights at offset {offset} changed since the model was opened",
            self.file.display()
        );
        Ok(())
    }
}

/// Parses `skeleton` with tract, its external initializers read through `weights`.
pub fn parse(skeleton: &Skeleton, weights: &FileWeights) -> TractResult<InferenceModel> {
    let dir = match weights.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: directory name is not UTF-8", dir.display()))?;
    let mut onnx = super::int8_linear::onnx();
    onnx.provider = std::sync::Arc::new(weights.clone());
    let parsed = onnx.parse(&skeleton.model, Some(dir))?;
    anyhow::ensure!(
        parsed.unresolved_inputs.is_empty(),
        "could not resolve inputs at top level: {:?}",
        parsed.unresolved_inputs
    );
    Ok(parsed.model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};

    fn tensor(name: &str, n: usize) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![n as i64],
            data_type: DataType::Int8 as i32,
            raw_data: (0..n).map(|i| (i * 7 % 251) as u8).collect(),
            ..Default::default()
        }
    }

    fn model() -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                initializer: vec![tensor("small", 100), tensor("big", MIN_EXTERNAL_BYTES + 3)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn initializers(m: &ModelProto) -> TractResult<&[TensorProto]> {
        Ok(&m.graph.as_ref().context("no graph")?.initializer)
    }

    #[test]
    fn large_initializers_become_external_ranges_of_the_file() -> TractResult<()> {
        let original = model();
        let bytes = original.encode_to_vec();
        let s = skeleton(&bytes, 100, "m.onnx", MIN_EXTERNAL_BYTES).map_err(anyhow::Error::msg)?;
        let (kept, before) = (initializers(&s.model)?, initializers(&original)?);
        assert_eq!(s.model.producer_name, "test");
        assert_eq!(kept[0], before[0], "small initializers stay inline");
        let big = &kept[1];
        assert!(big.raw_data.is_empty());
        assert_eq!(big.data_location, Some(DataLocation::External as i32));
        assert_eq!(s.tensors.len(), 1);
        let t = s.tensors[0];
        // the range points at the raw bytes inside the file (the model bytes start at 100)
        let at = (t.offset - 100) as usize;
        assert_eq!(&bytes[at..at + t.len as usize], &before[1].raw_data[..]);
        assert_eq!(t.crc, crc32fast::hash(&before[1].raw_data));
        let entry = |k: &str| {
            big.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        assert_eq!(entry("location").as_deref(), Some("m.onnx"));
        assert_eq!(entry("offset"), Some(t.offset.to_string()));
        assert_eq!(entry("length"), Some(t.len.to_string()));
        Ok(())
    }

    #[test]
    fn reads_check_the_checksum_and_malformed_bytes_are_errors() -> TractResult<()> {
        let bytes = model().encode_to_vec();
        let path =
            std::env::temp_dir().join(format!("edgebert-weights-{}.onnx", std::process::id()));
        std::fs::write(&path, &bytes)?;
        let s = skeleton(&bytes, 0, "m.onnx", MIN_EXTERNAL_BYTES).map_err(anyhow::Error::msg)?;
        let w = FileWeights::new(&path, &s);
        let t = s.tensors[0];
        let (at, len) = (t.offset as usize, t.len as usize);
        let mut buf = Vec::new();
        w.read_bytes_from_path(&mut buf, &path, at, Some(len))?;
        assert_eq!(&buf[..], &bytes[at..at + len]);
        // a range the skeleton did not make is refused
        assert!(w
            .read_bytes_from_path(&mut buf, &path, 0, Some(10))
            .is_err());
        // the file changed after the skeleton was made
        let mut changed = bytes.clone();
        changed[at + 5] ^= 1;
        std::fs::write(&path, &changed)?;
        let e = w.read_bytes_from_path(&mut buf, &path, at, Some(len));
        std::fs::remove_file(&path)?;
        let e = e.err().context("a changed file was read")?;
        assert!(
            e.to_string().contains("changed since the model was opened"),
            "{e}"
        );
        // truncated or garbled protobuf: an error, never a panic
        for cut in [1, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                skeleton(&bytes[..cut], 0, "m.onnx", MIN_EXTERNAL_BYTES).is_err(),
                "cut at {cut}"
            );
        }
        assert!(skeleton(&[0x0b, 0x01], 0, "m.onnx", MIN_EXTERNAL_BYTES).is_err());
        Ok(())
    }
}
