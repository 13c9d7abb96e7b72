//! Tests of the skeleton walker, the file reader and the parse.
use prost::Message;
use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::prelude::*;

use super::*;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};
use tract_onnx::tract_core::internal::TractErrorContext;

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
    let s = skeleton(&bytes, 100, "m.onnx", MIN_EXTERNAL_BYTES)
        .map_err(tract_onnx::prelude::TractError::msg)?;
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
    let path = std::env::temp_dir().join(format!("edgebert-weights-{}.onnx", std::process::id()));
    std::fs::write(&path, &bytes)?;
    let s = skeleton(&bytes, 0, "m.onnx", MIN_EXTERNAL_BYTES)
        .map_err(tract_onnx::prelude::TractError::msg)?;
    let w = FileWeights::open(&path, &s)?;
    let t = s.tensors[0];
    let (at, len) = (t.offset as usize, t.len as usize);
    let mut buf = Vec::new();
    w.read_bytes_from_path(&mut buf, &path, at, Some(len))?;
    assert_eq!(&buf[..], &bytes[at..at + len]);
    // a range the skeleton did not make is refused
    assert!(w
        .read_bytes_from_path(&mut buf, &path, 0, Some(10))
        .is_err());
    // the file changed after the first read (the checksum it recorded)
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

#[test]
fn payload_checksum_joins_the_gaps_and_the_tensors_read() -> TractResult<()> {
    let mut m = model();
    if let Some(g) = m.graph.as_mut() {
        g.initializer
            .push(tensor("bigger", 3 * MIN_EXTERNAL_BYTES + 1));
        g.initializer.push(tensor("tail", 17));
    }
    let model_bytes = m.encode_to_vec();
    // a file with 24 bytes before the payload, as a bundle has
    let payload_start = 24u64;
    let mut file_bytes = vec![0xAB; payload_start as usize];
    file_bytes.extend_from_slice(b"header");
    let model_at = file_bytes.len() as u64;
    file_bytes.extend_from_slice(&model_bytes);
    let expected = crc32fast::hash(&file_bytes[payload_start as usize..]);
    let path =
        std::env::temp_dir().join(format!("edgebert-payload-{}.edgebert", std::process::id()));
    std::fs::write(&path, &file_bytes)?;
    let s = skeleton(&model_bytes, model_at, "m", MIN_EXTERNAL_BYTES)
        .map_err(tract_onnx::prelude::TractError::msg)?;
    assert_eq!(s.tensors.len(), 2);
    let check = PayloadChecksum::of_gaps(&file_bytes, payload_start, &s.tensors, expected)
        .context("gaps")?;
    let w = FileWeights::open(&path, &s)?;
    // one tensor read as tract would, the other never: both count
    let t = s.tensors[1];
    let mut buf = Vec::new();
    w.read_bytes_from_path(&mut buf, &path, t.offset as usize, Some(t.len as usize))?;
    assert_eq!(check.check(&w)?, (expected, expected));
    // a changed byte in a gap or in a tensor shows
    let wrong = PayloadChecksum::of_gaps(&file_bytes, payload_start, &s.tensors, expected ^ 1)
        .context("gaps")?;
    assert_ne!(wrong.check(&w)?.0, wrong.check(&w)?.1);
    let mut changed = file_bytes.clone();
    changed[s.tensors[0].offset as usize + 3] ^= 4;
    std::fs::write(&path, &changed)?;
    let fresh = FileWeights::open(&path, &s)?;
    let (want, got) = check.check(&fresh)?;
    std::fs::remove_file(&path)?;
    assert_ne!(want, got);
    // tensors out of order or past the end: no gaps to hash
    let reversed: Vec<_> = s.tensors.iter().rev().copied().collect();
    assert!(PayloadChecksum::of_gaps(&file_bytes, payload_start, &reversed, 0).is_none());
    assert!(PayloadChecksum::of_gaps(&file_bytes[..100], payload_start, &s.tensors, 0).is_none());
    Ok(())
}
