//! Fuzz target: arbitrary bytes into the bundle reader. It must return Ok or Err, never panic.
//! Run: `cd runtime/fuzz && cargo +nightly fuzz run bundle_reader corpus/bundle_reader`.
//! The committed corpus is replayed by `runtime/tests/fuzz_corpus_replay.rs` in `cargo test`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = edgebert_runtime::bundle::Bundle::from_bytes(data) {
        // A bundle that loads must re-encode to the same bytes and build its tokenizer without panicking.
        let again = bundle.to_bytes().expect("a bundle that loaded re-encodes");
        assert_eq!(again, data, "re-encoding changed the bytes");
        let _ = bundle.tokenizer();
    }
});
