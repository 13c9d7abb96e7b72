//! Tokenizer tests on the committed tiny vocab (no `EDGEBERT_SHARED` needed): hand-checked
//! encodings, truncation, special tokens, loaders, errors, and parity with a Hugging Face
//! pipeline built from the same vocab under every normalizer setting.

mod tokenizer_common;

#[cfg(feature = "std")]
use std::path::PathBuf;

use edgebert_runtime::tokenizer::{
    Encoding, SeqEncoding, Tokenizer, TokenizerConfig, TokenizerError, MAX_SEQ_LEN,
};
use tokenizer_common::{compare, fixture_vocab, hf_from_vocab, hf_set_max_len, Rng};

fn fixture() -> Tokenizer {
    let vocab = std::fs::read_to_string(fixture_vocab()).expect("fixture vocab");
    Tokenizer::new(&vocab, TokenizerConfig::default()).expect("fixture")
}

fn ids(t: &Tokenizer, text: &str, max_len: usize) -> (Vec<i64>, bool) {
    let mut e = SeqEncoding::new();
    t.encode_into(text, max_len, &mut e).expect("encode");
    assert_eq!(e.attention_mask.len(), e.input_ids.len());
    assert!(e.attention_mask.iter().all(|&m| m == 1));
    (e.input_ids.to_vec(), e.truncated)
}

fn named(t: &Tokenizer, toks: &[&str]) -> Vec<i64> {
    toks.iter()
        .map(|s| {
            i64::from(
                t.token_to_id(s)
                    .unwrap_or_else(|| panic!("{s} not in fixture")),
            )
        })
        .collect()
}

#[cfg(feature = "std")]
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgebert-tok-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn fixture_hand_checked_encodings() {
    let t = fixture();
    assert_eq!(t.vocab_size(), 72);
    assert_eq!(
        ids(&t, "I feel like a faithful servant!", 512).0,
        named(
            &t,
            &["[CLS]", "i", "feel", "like", "a", "faith", "##ful", "serv", "##ant", "!", "[SEP]"]
        )
    );
    assert_eq!(
        ids(&t, "unaffable", 512).0,
        named(&t, &["[CLS]", "un", "##aff", "##able", "[SEP]"])
    );
    // Accent stripping + lowercasing; the later duplicate `cafe` line wins.
    assert_eq!(ids(&t, "CAFÉ", 512).0, vec![2, 49, 3]);
    // A word that cannot be fully matched is one [UNK]; so is an over-long word.
    assert_eq!(
        ids(&t, "feelq", 512).0,
        named(&t, &["[CLS]", "[UNK]", "[SEP]"])
    );
    let long = "ab".repeat(51); // 102 chars > 100
    assert_eq!(
        ids(&t, &long, 512).0,
        named(&t, &["[CLS]", "[UNK]", "[SEP]"])
    );
    let ok = "ab".repeat(50); // exactly 100 chars: ab ##ab x49
    assert_eq!(ids(&t, &ok, 512).0.len(), 52);
    // CJK chars become single-char words; Greek final sigma lowercases to σ.
    assert_eq!(
        ids(&t, "中文字ΟΔΟΣ", 512).0,
        named(&t, &["[CLS]", "中", "文", "字", "οδοσ", "[SEP]"])
    );
    // Hangul syllable decomposes to jamo under NFD.
    assert_eq!(
        ids(&t, "한", 512).0,
        named(&t, &["[CLS]", "ᄒ", "##ᅡ", "##ᆫ", "[SEP]"])
    );
    assert_eq!(ids(&t, "", 512).0, named(&t, &["[CLS]", "[SEP]"]));
    assert_eq!(
        ids(&t, " \u{0}\u{200B} ", 512).0,
        named(&t, &["[CLS]", "[SEP]"])
    );
}

#[test]
fn fixture_special_tokens_in_text_are_kept() {
    let t = fixture();
    assert_eq!(
        ids(&t, "a [MASK] b[SEP]c", 512).0,
        named(&t, &["[CLS]", "a", "[MASK]", "b", "[SEP]", "c", "[SEP]"])
    );
    // Lowercase lookalikes are ordinary text: "[", "mask", "]".
    assert_eq!(
        ids(&t, "[mask]", 512).0,
        named(&t, &["[CLS]", "[", "mask", "]", "[SEP]"])
    );
}

#[test]
fn fixture_truncation_keeps_sep() {
    let t = fixture();
    let (v, tr) = ids(&t, "a b c d", 4);
    assert_eq!(v, named(&t, &["[CLS]", "a", "b", "[SEP]"]));
    assert!(tr);
    let (v, tr) = ids(&t, "a b c d", 6);
    assert_eq!(v.len(), 6);
    assert!(!tr);
    let (v, tr) = ids(&t, "a b c d", 2);
    assert_eq!(v, named(&t, &["[CLS]", "[SEP]"]));
    assert!(tr);
    // A failing word at the boundary still becomes one [UNK] that fits.
    let (v, tr) = ids(&t, "a feelq", 4);
    assert_eq!(v, named(&t, &["[CLS]", "a", "[UNK]", "[SEP]"]));
    assert!(!tr);
    // A word whose pieces overflow the budget truncates.
    let (v, tr) = ids(&t, "a unaffable", 4);
    assert_eq!(v, named(&t, &["[CLS]", "a", "un", "[SEP]"]));
    assert!(tr);
    // max_len is clamped to the buffer capacity.
    let mut small = Encoding::<4>::new();
    t.encode_into("a b c d", MAX_SEQ_LEN, &mut small)
        .expect("encode");
    assert_eq!(small.input_ids.len(), 4);
    assert!(small.truncated);
    let mut e = SeqEncoding::default();
    assert_eq!(
        t.encode_into("a", 1, &mut e),
        Err(TokenizerError::MaxLenTooSmall { max_len: 1 })
    );
    assert!(e.input_ids.is_empty());
}

#[test]
fn fixture_vocab_txt_round_trips() {
    let t = fixture();
    let t2 = Tokenizer::new(&t.vocab_txt(), t.config().clone()).expect("rebuild");
    assert_eq!(t2.vocab_size(), t.vocab_size());
    for id in 0..t.vocab_size() as u32 {
        assert_eq!(t.id_to_token(id), t2.id_to_token(id));
    }
    assert_eq!(t.id_to_token(t.vocab_size() as u32), None);
    let mut rng = Rng::new(7);
    for s in tokenizer_common::stress_inputs()
        .into_iter()
        .chain((0..300).map(|_| rng.string(40)))
    {
        assert_eq!(ids(&t, &s, 512), ids(&t2, &s, 512), "{s:?}");
    }
}

#[test]
fn fixture_config_errors_are_clear() {
    let vocab = std::fs::read_to_string(fixture_vocab()).expect("vocab");
    let cfg = TokenizerConfig {
        unk_token: "<unk>".into(),
        ..TokenizerConfig::default()
    };
    let e = Tokenizer::new(&vocab, cfg).expect_err("missing unk must fail");
    assert!(matches!(
        e,
        TokenizerError::MissingToken {
            role: "unk_token",
            ..
        }
    ));
    assert!(e.to_string().contains("<unk>"), "{e}");
    let cfg = TokenizerConfig {
        max_input_chars_per_word: 1000,
        ..TokenizerConfig::default()
    };
    let e = Tokenizer::new(&vocab, cfg).expect_err("too large must fail");
    assert!(e.to_string().contains("max_input_chars_per_word"), "{e}");
    assert!(Tokenizer::new("", TokenizerConfig::default()).is_err());
}

#[cfg(feature = "std")]
#[test]
fn fixture_missing_vocab_file_names_the_path() {
    let e = Tokenizer::from_vocab_file(
        &PathBuf::from("/nonexistent/vocab.txt"),
        TokenizerConfig::default(),
    )
    .expect_err("missing file");
    assert!(e.to_string().contains("/nonexistent/vocab.txt"), "{e}");
}

/// Every BertNormalizer setting, so cased/uncased/no-clean/no-CJK paths are all covered.
fn config_variants() -> Vec<TokenizerConfig> {
    let mut v = Vec::new();
    for lowercase in [true, false] {
        for strip_accents in [None, Some(true), Some(false)] {
            for clean_text in [true, false] {
                for handle_chinese_chars in [true, false] {
                    v.push(TokenizerConfig {
                        lowercase,
                        strip_accents,
                        clean_text,
                        handle_chinese_chars,
                        ..TokenizerConfig::default()
                    });
                }
            }
        }
    }
    v
}

#[test]
fn fixture_parity_with_hf_every_config() {
    let vocab = std::fs::read_to_string(fixture_vocab()).expect("vocab");
    let mut enc = SeqEncoding::new();
    let mut compared = 0;
    for cfg in config_variants() {
        let ours = Tokenizer::new(&vocab, cfg.clone()).expect("ours");
        let mut hf = hf_from_vocab(&fixture_vocab(), &cfg);
        hf_set_max_len(&mut hf, 512);
        let mut rng = Rng::new(0x5EED);
        let inputs = tokenizer_common::stress_inputs()
            .into_iter()
            .chain((0..400).map(|_| rng.string(30)));
        for s in inputs {
            if let Err(e) = compare(&ours, &hf, &s, 512, &mut enc) {
                panic!("config {cfg:?}: {e}");
            }
            compared += 1;
        }
        for max_len in [2, 3, 5, 9] {
            hf_set_max_len(&mut hf, max_len);
            for s in [
                "a b c d e f g h",
                "unaffable unaffable",
                "a [SEP] b feelq c",
            ] {
                if let Err(e) = compare(&ours, &hf, s, max_len, &mut enc) {
                    panic!("config {cfg:?} max_len {max_len}: {e}");
                }
            }
        }
    }
    eprintln!("fixture parity: {compared} inputs compared");
}

#[cfg(feature = "std")]
#[test]
fn fixture_tokenizer_json_matches_vocab_txt() {
    let dir = temp_dir("json");
    let cfg = TokenizerConfig::default();
    let hf = hf_from_vocab(&fixture_vocab(), &cfg);
    let json = dir.join("tokenizer.json");
    hf.save(&json, false).expect("save tokenizer.json");
    let from_json = Tokenizer::from_tokenizer_json(&json).expect("load tokenizer.json");
    let from_txt = fixture();
    assert_eq!(from_json.config(), from_txt.config());
    // The duplicated `cafe` line leaves a gap in the JSON ids; every real token keeps its id.
    assert_eq!(from_json.vocab_size(), from_txt.vocab_size());
    for id in 0..from_txt.vocab_size() as u32 {
        let tok = from_txt.id_to_token(id).expect("token");
        assert_eq!(
            from_json.token_to_id(tok),
            from_txt.token_to_id(tok),
            "{tok}"
        );
    }
    let mut rng = Rng::new(99);
    for s in tokenizer_common::stress_inputs()
        .into_iter()
        .chain((0..300).map(|_| rng.string(40)))
    {
        assert_eq!(ids(&from_json, &s, 512), ids(&from_txt, &s, 512), "{s:?}");
    }
    // from_hf_dir prefers tokenizer.json.
    let from_dir = Tokenizer::from_hf_dir(&dir).expect("hf dir");
    assert_eq!(from_dir.config(), from_json.config());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "std")]
#[test]
fn fixture_hf_dir_with_vocab_txt_and_config() {
    let dir = temp_dir("dir");
    std::fs::copy(fixture_vocab(), dir.join("vocab.txt")).expect("copy");
    let t = Tokenizer::from_hf_dir(&dir).expect("vocab-only dir");
    assert!(t.config().lowercase);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"do_lower_case": false, "tokenize_chinese_chars": true, "strip_accents": null}"#,
    )
    .expect("write");
    let t = Tokenizer::from_hf_dir(&dir).expect("cased dir");
    assert!(!t.config().lowercase);
    // Cased: "CAFE" is not in the vocab.
    assert_eq!(
        ids(&t, "CAFE", 512).0,
        named(&t, &["[CLS]", "[UNK]", "[SEP]"])
    );
    let empty = temp_dir("empty");
    let e = Tokenizer::from_hf_dir(&empty).expect_err("empty dir");
    assert!(
        e.to_string().contains("no tokenizer.json or vocab.txt"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}

#[cfg(feature = "std")]
#[test]
fn fixture_non_bert_tokenizer_json_is_a_clear_error() {
    let dir = temp_dir("bpe");
    let hf = hf_from_vocab(&fixture_vocab(), &TokenizerConfig::default());
    let json = hf.to_string(false).expect("json");
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("parse");
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "model",
            serde_json::json!({"type": "BPE", "vocab": {}, "merges": []}),
            "BPE",
        ),
        (
            "normalizer",
            serde_json::json!({"type": "Sequence", "normalizers": []}),
            "Sequence",
        ),
        (
            "pre_tokenizer",
            serde_json::json!({"type": "ByteLevel"}),
            "ByteLevel",
        ),
        (
            "post_processor",
            serde_json::json!({"type": "RobertaProcessing"}),
            "RobertaProcessing",
        ),
    ];
    for (field, value, name) in cases {
        let orig = v[field].clone();
        v[field] = value;
        let path = dir.join(format!("{field}.json"));
        std::fs::write(&path, v.to_string()).expect("write");
        let e = Tokenizer::from_tokenizer_json(&path).expect_err("must fail");
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains(field), "{msg}");
        v[field] = orig;
    }
    std::fs::write(dir.join("bad.json"), "{not json").expect("write");
    let e = Tokenizer::from_tokenizer_json(&dir.join("bad.json")).expect_err("bad json");
    assert!(e.to_string().contains("invalid JSON"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
