//! Fuzz target: arbitrary bytes into the bundle reader. It must return Ok or Err, never panic.
//! Run: `cd runtime/fuzz && cargo +nightly fuzz run bundle_reader corpus/bundle_reader`.
//! The committed corpus is replayed by `runtime/tests/fuzz_corpus_replay.rs` in `cargo test`.
#![no_main]
use edgebert_runtime::bundle::Bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::from_bytes(data) {
        // A bundle that loads must re-encode to an equal bundle and build its tokenizer without panicking.
        let again = bundle.to_bytes().expect("a bundle that loaded re-encodes");
        let back = Bundle::from_bytes(&again).expect("a re-encoded bundle loads");
        assert_eq!(back, bundle, "re-encoding changed the bundle");
        let _ = bundle.tokenizer();
    }
});
