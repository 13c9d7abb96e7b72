//! Fuzz target: arbitrary bytes as an ONNX model into the weight-skeleton walker
//! (`session::weights::skeleton`), which reads a bundle's protobuf before its checksum has been
//! verified (the checksum is computed as the weights are read). It must return Ok or Err, never
//! panic, and every weight range it reports must lie inside the bytes, in order, without
//! overlapping (what `PayloadChecksum::of_gaps` needs).
//! Run: `cd runtime/fuzz && cargo +nightly fuzz run model_skeleton corpus/model_skeleton`.
//! The committed corpus is replayed by `runtime/tests/fuzz_corpus_replay.rs` in `cargo test`.
#![no_main]
use edgebert_runtime::internals::{skeleton, PayloadChecksum};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for min_bytes in [1, 16, 1024] {
        if let Ok(s) = skeleton(data, 0, "model.onnx", min_bytes) {
            assert!(
                PayloadChecksum::of_gaps(data, 0, &s.tensors, 0).is_some(),
                "weight ranges outside the bytes or out of order: {:?}",
                s.tensors
            );
        }
    }
});
