//! Shared helpers for the trainer's integration tests: tiny model directories built from the
//! models crate's transformers-written fixtures, synthetic data, and the EDGEBERT_SHARED skip rule.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

/// The repository root: the nearest folder above this crate holding `models/tests/fixtures`
/// (these helpers serve the trainer's tests and the top-level `tests/`).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("models/tests/fixtures").is_dir() && dir.pop() {}
    dir
}

/// The models crate's fixture directory `name` (tiny-bert, tiny-distilbert).
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("models/tests/fixtures").join(name)
}

/// `EDGEBERT_SHARED`; panics with how to set it when unset (the tests that call this are
/// `#[ignore]`d, so they run only with `--include-ignored`).
pub fn shared(test: &str) -> PathBuf {
    match std::env::var_os("EDGEBERT_SHARED") {
        Some(d) => {
            // A relative path is read from the workspace root, where the README's command runs
            // (cargo runs each test in its own package's folder).
            let d = PathBuf::from(d);
            if d.is_relative() {
                repo_root().join(d)
            } else {
                d
            }
        },
        None => panic!(
            "{test} needs EDGEBERT_SHARED: the folder holding data/emotion and models/all-MiniLM-L6-v2 (this test is ignored by default; run it with `EDGEBERT_SHARED=../shared cargo test --workspace -- --include-ignored`)"
        ),
    }
}

/// Real words for the tiny vocabulary (ids 1000 - 104 = 896 slots after the specials).
pub fn word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ba", "de", "fu", "go", "hi", "ju", "pe",
        "zo",
    ];
    format!(
        "{}{}{}",
        SYL[i % 16],
        SYL[(i / 16) % 16],
        SYL[(i / 256) % 16]
    )
}

/// A copy of fixture `name` with a usable vocabulary and a BERT-style `tokenizer.json`
/// (same special-token ids as the fixture: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103).
pub fn tiny_model_dir(name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), out.join(f)).expect("copy fixture");
    }
    let mut vocab: Vec<String> = Vec::with_capacity(1000);
    let mut w = 0;
    for i in 0..1000 {
        vocab.push(match i {
            0 => "[PAD]".into(),
            100 => "[UNK]".into(),
            101 => "[CLS]".into(),
            102 => "[SEP]".into(),
            103 => "[MASK]".into(),
            _ if i < 100 => format!("[unused{i}]"),
            _ => {
                w += 1;
                word(w - 1)
            }
        });
    }
    std::fs::write(out.join("vocab.txt"), vocab.join("\n") + "\n").expect("vocab");
    let map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let special = |id: usize, t: &str| serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let tok = serde_json::json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0, "[PAD]"), special(100, "[UNK]"), special(101, "[CLS]"), special(102, "[SEP]"), special(103, "[MASK]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": map}
    });
    std::fs::write(
        out.join("tokenizer.json"),
        serde_json::to_string(&tok).expect("json"),
    )
    .expect("tokenizer.json");
    out
}

/// The emotion label order of the hub (and of the fixtures' id2label).
pub const EMOTIONS: [&str; 6] = ["sadness", "joy", "love", "anger", "fear", "surprise"];

/// Writes `train.txt` / `validation.txt` of a learnable synthetic task: the label is set by a
/// cue word (one of the first 6 words) placed among random filler words.
pub fn synthetic_data(dir: &Path, n_train: usize, n_val: usize, seed: u64) -> PathBuf {
    let out = dir.join("data");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for (name, n) in [("train", n_train), ("validation", n_val)] {
        let mut s = String::new();
        for _ in 0..n {
            let label = next() % 6;
            let len = 3 + next() % 10;
            let cue = next() % len;
            let words: Vec<String> = (0..len)
                .map(|j| {
                    if j == cue {
                        word(label)
                    } else {
                        word(6 + next() % 600)
                    }
                })
                .collect();
            s += &format!("{};{}\n", words.join(" "), EMOTIONS[label]);
        }
        std::fs::write(out.join(format!("{name}.txt")), s).expect("write data");
    }
    out
}

/// Reads a safetensors file into name -> (shape, f32 values).
pub fn read_weights(path: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

/// Fine-tunes the tiny DistilBERT fixture for one short epoch; returns (model dir, data dir).
pub fn tiny_finetuned(tmp: &Path) -> (PathBuf, PathBuf) {
    let model = tiny_model_dir("tiny-distilbert", tmp);
    let data = synthetic_data(tmp, 96, 48, 5);
    let out = tmp.join("finetuned");
    edgebert_trainer::finetune::finetune(&edgebert_trainer::finetune::FinetuneOptions {
        model: model.display().to_string(),
        data: data.clone(),
        out: out.clone(),
        labels: Some(EMOTIONS.iter().map(|s| s.to_string()).collect()),
        epochs: 1,
        lr: 1e-3,
        batch_size: 16,
        max_len: 16,
        device: "cpu".into(),
        progress: false,
        error_samples: 0,
        ..Default::default()
    })
    .expect("finetune");
    (out, data)
}
