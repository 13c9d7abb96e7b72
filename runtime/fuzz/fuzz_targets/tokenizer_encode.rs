//! Fuzz target: arbitrary bytes, read as (possibly lossy) UTF-8 text, into the WordPiece
//! tokenizer with the committed test vocabulary. `encode_into` must return Ok or Err, never panic,
//! and a successful encoding must be well formed: `[CLS] … [SEP]`, ids inside the vocabulary,
//! a mask of ones as long as the ids, at most `max_len` tokens.
//! Run: `cd runtime/fuzz && cargo +nightly fuzz run tokenizer_encode corpus/tokenizer_encode`.
#![no_main]
use std::sync::OnceLock;

use edgebert_runtime::tokenizer::{SeqEncoding, Tokenizer, TokenizerConfig};
use libfuzzer_sys::fuzz_target;

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let vocab = include_str!("../../tests/fixtures/tokenizer/vocab.txt");
        Tokenizer::new(vocab, TokenizerConfig::default()).expect("fixture vocab loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // The first byte picks max_len (0..=255: too small values must be errors, not panics).
    let max_len = first as usize;
    let text = String::from_utf8_lossy(rest);
    let tok = tokenizer();
    let mut enc = Box::<SeqEncoding>::default();
    if tok.encode_into(&text, max_len, &mut enc).is_ok() {
        let n = enc.input_ids.len();
        assert!(n >= 2 && n <= max_len.max(2), "{n} tokens for max_len {max_len}");
        assert_eq!(enc.attention_mask.len(), n);
        assert!(enc.attention_mask.iter().all(|&m| m == 1));
        assert_eq!(enc.input_ids[0], tok.cls_id() as i64);
        assert_eq!(enc.input_ids[n - 1], tok.sep_id() as i64);
        let vocab = tok.vocab_size() as i64;
        assert!(enc.input_ids.iter().all(|&id| (0..vocab).contains(&id)));
    }
});
