//! Parity with the `tokenizers` crate on all-MiniLM-L6-v2 (needs `EDGEBERT_SHARED`): every
//! line of the emotion train and validation sets, the stress set, ~1 MB inputs, seeded random
//! strings, every normalizer setting, several truncation lengths, and loader agreement.

mod tokenizer_common;

use std::path::Path;

use edgebert_runtime::tokenizer::{SeqEncoding, Tokenizer, TokenizerConfig};
use tokenizer_common::{compare, emotion_texts, hf_from_vocab, hf_set_max_len, shared_dir, Rng};

fn minilm(shared: &Path) -> std::path::PathBuf {
    shared.join("models/all-MiniLM-L6-v2")
}

/// Ours from tokenizer.json (std), or from vocab.txt with MiniLM's uncased settings (no_std
/// builds; `vocab_txt_and_tokenizer_json_agree` shows both are the same tokenizer).
fn minilm_ours(shared: &Path) -> Tokenizer {
    #[cfg(feature = "std")]
    {
        Tokenizer::from_tokenizer_json(&minilm(shared).join("tokenizer.json"))
            .expect("ours from tokenizer.json")
    }
    #[cfg(not(feature = "std"))]
    {
        let vocab = std::fs::read_to_string(minilm(shared).join("vocab.txt")).expect("vocab.txt");
        Tokenizer::new(&vocab, TokenizerConfig::default()).expect("ours from vocab.txt")
    }
}

fn load_pair(shared: &Path, max_len: usize) -> (Tokenizer, tokenizers::Tokenizer) {
    let json = minilm(shared).join("tokenizer.json");
    let ours = minilm_ours(shared);
    let mut hf = tokenizers::Tokenizer::from_file(&json).expect("hf from tokenizer.json");
    hf_set_max_len(&mut hf, max_len);
    (ours, hf)
}

/// Compares all inputs, returning how many; panics listing the first mismatches.
fn compare_all<'a>(
    ours: &Tokenizer,
    hf: &tokenizers::Tokenizer,
    inputs: impl IntoIterator<Item = &'a str>,
    max_len: usize,
    what: &str,
) -> usize {
    let mut enc = SeqEncoding::new();
    let mut n = 0;
    let mut bad = Vec::new();
    for text in inputs {
        n += 1;
        if let Err(e) = compare(ours, hf, text, max_len, &mut enc) {
            bad.push(e);
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {n} differ; first:\n{}",
        bad.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("{what}: {n} inputs identical");
    n
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn parity_emotion_train_and_validation() {
    let shared = shared_dir("parity_emotion_train_and_validation");
    let (ours, hf) = load_pair(&shared, 512);
    let mut total = 0;
    for split in ["train", "validation"] {
        let texts = emotion_texts(&shared, split);
        assert!(texts.len() >= 2000, "{split}: only {} lines", texts.len());
        total += compare_all(&ours, &hf, texts.iter().map(String::as_str), 512, split);
    }
    assert_eq!(total, 18000);
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn parity_stress_huge_and_random() {
    let shared = shared_dir("parity_stress_huge_and_random");
    let (ours, hf) = load_pair(&shared, 512);
    let stress = tokenizer_common::stress_inputs();
    compare_all(&ours, &hf, stress.iter().map(String::as_str), 512, "stress");
    let huge = tokenizer_common::huge_inputs();
    compare_all(
        &ours,
        &hf,
        huge.iter().map(String::as_str),
        512,
        "1 MB inputs",
    );
    let mut rng = Rng::new(0xED6E_BE27);
    let random: Vec<String> = (0..5000).map(|_| rng.string(60)).collect();
    compare_all(&ours, &hf, random.iter().map(String::as_str), 512, "random");
    // Long random texts exercise truncation mid-word and mid-normalization.
    let long: Vec<String> = (0..200).map(|_| rng.string(3000)).collect();
    compare_all(
        &ours,
        &hf,
        long.iter().map(String::as_str),
        512,
        "long random",
    );
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn parity_truncation_lengths() {
    let shared = shared_dir("parity_truncation_lengths");
    let texts = emotion_texts(&shared, "validation");
    let mut rng = Rng::new(3);
    let mut inputs: Vec<String> = texts.into_iter().take(300).collect();
    inputs.extend((0..300).map(|_| rng.string(80)));
    inputs.extend(tokenizer_common::stress_inputs());
    for max_len in [2, 3, 8, 16, 32, 128] {
        let (ours, hf) = load_pair(&shared, max_len);
        compare_all(
            &ours,
            &hf,
            inputs.iter().map(String::as_str),
            max_len,
            &format!("max_len {max_len}"),
        );
    }
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn parity_every_normalizer_setting() {
    let shared = shared_dir("parity_every_normalizer_setting");
    let vocab_path = minilm(&shared).join("vocab.txt");
    let vocab = std::fs::read_to_string(&vocab_path).expect("vocab.txt");
    let mut rng = Rng::new(11);
    let mut inputs = tokenizer_common::stress_inputs();
    inputs.extend((0..500).map(|_| rng.string(60)));
    for lowercase in [true, false] {
        for strip_accents in [None, Some(true), Some(false)] {
            for clean_text in [true, false] {
                for handle_chinese_chars in [true, false] {
                    let cfg = TokenizerConfig {
                        lowercase,
                        strip_accents,
                        clean_text,
                        handle_chinese_chars,
                        ..TokenizerConfig::default()
                    };
                    let ours = Tokenizer::new(&vocab, cfg.clone()).expect("ours");
                    let mut hf = hf_from_vocab(&vocab_path, &cfg);
                    hf_set_max_len(&mut hf, 512);
                    compare_all(
                        &ours,
                        &hf,
                        inputs.iter().map(String::as_str),
                        512,
                        &format!("{cfg:?}"),
                    );
                }
            }
        }
    }
}

#[cfg(feature = "std")]
#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn vocab_txt_and_tokenizer_json_agree() {
    let shared = shared_dir("vocab_txt_and_tokenizer_json_agree");
    let dir = minilm(&shared);
    let from_json = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).expect("json");
    let from_txt = Tokenizer::from_vocab_file(&dir.join("vocab.txt"), TokenizerConfig::default())
        .expect("vocab.txt");
    let from_dir = Tokenizer::from_hf_dir(&dir).expect("dir");
    assert_eq!(from_json.config(), from_txt.config());
    assert_eq!(from_json.config(), from_dir.config());
    assert_eq!(from_json.vocab_size(), 30522);
    assert_eq!(from_json.vocab_txt(), from_txt.vocab_txt());
    // The bundle path: vocab_txt() + config() rebuild the same tokenizer.
    let rebuilt =
        Tokenizer::new(&from_json.vocab_txt(), from_json.config().clone()).expect("rebuild");
    let mut a = SeqEncoding::new();
    let mut b = SeqEncoding::new();
    let mut c = SeqEncoding::new();
    let mut rng = Rng::new(5);
    let mut inputs = emotion_texts(&shared, "validation");
    inputs.extend(tokenizer_common::stress_inputs());
    inputs.extend((0..500).map(|_| rng.string(60)));
    for s in &inputs {
        from_json.encode_into(s, 512, &mut a).expect("a");
        from_txt.encode_into(s, 512, &mut b).expect("b");
        rebuilt.encode_into(s, 512, &mut c).expect("c");
        assert_eq!(a, b, "{s:?}");
        assert_eq!(a, c, "{s:?}");
    }
}
