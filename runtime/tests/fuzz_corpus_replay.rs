//! Replays the committed fuzz corpora in normal `cargo test`: runtime/fuzz/corpus/bundle_reader
//! through the bundle reader (every input returns without panicking, the seeds named `valid-*`
//! load), runtime/fuzz/corpus/tokenizer_encode through the tokenizer and
//! runtime/fuzz/corpus/model_skeleton through the weight-skeleton walker, with the same checks as
//! the fuzz targets.
mod common;

use std::path::PathBuf;

use edgebert_runtime::bundle::{Bundle, BundleWriter, FORMAT_VERSION};
use edgebert_runtime::tokenizer::{SeqEncoding, Tokenizer, TokenizerConfig};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join("bundle_reader")
}

/// The same checks as the fuzz target.
fn exercise(data: &[u8]) -> bool {
    match Bundle::from_bytes(data) {
        Ok(bundle) => {
            let again = bundle.to_bytes().expect("a bundle that loaded re-encodes");
            let back = Bundle::from_bytes(&again).expect("a re-encoded bundle loads");
            assert_eq!(back, bundle, "re-encoding changed the bundle");
            let _ = bundle.tokenizer();
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn corpus_replays_without_panic() {
    let mut n = 0;
    let mut valid = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus dir exists") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        let loaded = exercise(&data);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with("valid-") {
            assert!(loaded, "{name} must load");
            valid += 1;
        }
        // Every prefix of a small input as well (cheap extra coverage of the truncation paths).
        if data.len() <= 4096 {
            for len in 0..data.len() {
                exercise(&data[..len]);
            }
        }
        n += 1;
    }
    assert!(n >= 5, "corpus has only {n} files");
    assert!(valid >= 1, "corpus has no valid-* seed");
}

/// Writes the seed inputs. Run with
/// `EDGEBERT_REGENERATE_SEEDS=1 cargo test -p edgebert-runtime --test fuzz_corpus_replay -- --ignored regenerate_bundle_seeds`;
/// without the variable (as under `--include-ignored`) it leaves the committed corpus alone.
#[test]
#[ignore = "writes the fuzz seeds (EDGEBERT_REGENERATE_SEEDS=1)"]
fn regenerate_bundle_seeds() {
    if std::env::var_os("EDGEBERT_REGENERATE_SEEDS").is_none() {
        eprintln!("regenerate_bundle_seeds: EDGEBERT_REGENERATE_SEEDS unset, corpus left as it is");
        return;
    }
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\n";
    let tok = Tokenizer::new(vocab, TokenizerConfig::default()).expect("tiny vocab");
    let b = BundleWriter::new(&tok, vec!["a".into(), "b".into()], b"\x08\x07onnx".to_vec())
        .max_len(16)
        .build()
        .expect("bundle");
    let bytes = b.to_bytes().expect("encode");
    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("valid-tiny", bytes.clone()),
        ("truncated-preamble", bytes[..20].to_vec()),
        ("truncated-payload", bytes[..bytes.len() / 2].to_vec()),
        ("future-version", future),
        ("bit-flipped", flipped),
        ("wrong-magic", b"EDGEBERX\x01\0\0\0".to_vec()),
        ("empty", Vec::new()),
    ];
    for (name, data) in seeds {
        std::fs::write(dir.join(name), data).expect("write seed");
    }
}

/// The checks of `fuzz_targets/tokenizer_encode.rs`: first byte = max_len, the rest = text
/// (lossy UTF-8); a successful encoding is `[CLS] … [SEP]` within max_len and the vocabulary.
fn exercise_tokenizer(tok: &Tokenizer, data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else {
        return false;
    };
    let max_len = first as usize;
    let text = String::from_utf8_lossy(rest);
    let mut enc = Box::<SeqEncoding>::default();
    match tok.encode_into(&text, max_len, &mut enc) {
        Ok(()) => {
            let n = enc.input_ids.len();
            assert!(
                n >= 2 && n <= max_len.max(2),
                "{n} tokens for max_len {max_len}"
            );
            assert_eq!(enc.attention_mask.len(), n);
            assert_eq!(enc.input_ids[0], tok.cls_id() as i64);
            assert_eq!(enc.input_ids[n - 1], tok.sep_id() as i64);
            let vocab = tok.vocab_size() as i64;
            assert!(enc.input_ids.iter().all(|&id| (0..vocab).contains(&id)));
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn tokenizer_corpus_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/tokenizer_encode");
    let vocab_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/vocab.txt");
    let vocab = std::fs::read_to_string(vocab_path).expect("fixture vocab");
    let tok = Tokenizer::new(&vocab, TokenizerConfig::default()).expect("tokenizer");
    let (mut n, mut encoded, mut rejected) = (0, 0, 0);
    for entry in std::fs::read_dir(dir).expect("tokenizer corpus dir exists") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read corpus file");
        if exercise_tokenizer(&tok, &data) {
            encoded += 1;
        } else {
            rejected += 1;
        }
        n += 1;
    }
    assert!(n >= 5, "corpus has only {n} files");
    // The seeds include texts that encode and max_len values (0, 1) that must be refused.
    assert!(
        encoded >= 1 && rejected >= 1,
        "{encoded} encoded, {rejected} rejected"
    );
}

/// The checks of `fuzz_targets/model_skeleton.rs`; true when a skeleton was made.
fn exercise_skeleton(data: &[u8]) -> bool {
    use edgebert_runtime::internals::{skeleton, PayloadChecksum};
    let mut made = false;
    for min_bytes in [1, 16, 1024] {
        if let Ok(s) = skeleton(data, 0, "model.onnx", min_bytes) {
            assert!(
                PayloadChecksum::of_gaps(data, 0, &s.tensors, 0).is_some(),
                "weight ranges outside the bytes or out of order: {:?}",
                s.tensors
            );
            made = true;
        }
    }
    made
}

#[test]
fn model_skeleton_corpus_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/model_skeleton");
    let (mut n, mut valid) = (0, 0);
    for entry in std::fs::read_dir(dir).expect("model_skeleton corpus dir exists") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        let made = exercise_skeleton(&data);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with("valid-") {
            assert!(made, "{name} must give a skeleton");
            valid += 1;
        }
        // Every prefix of a small input, and a few hundred of a large one.
        let step = (data.len() / 300).max(1);
        for len in (0..data.len()).step_by(step) {
            exercise_skeleton(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= 5, "corpus has only {n} files");
    assert!(valid >= 1, "corpus has no valid-* seed");
}
