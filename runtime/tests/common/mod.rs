//! Shared helpers for the runtime integration tests: fixture paths and scratch directories.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `runtime/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The tiny BERT export directory made by scripts/make_test_onnx.py.
pub fn tiny_bert() -> PathBuf {
    fixture("tiny-bert")
}

/// A fresh, empty scratch directory unique to this process and call.
pub fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("edgebert-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Copies the files of `src` into `dst` (flat).
pub fn copy_dir(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).expect("read fixture dir") {
        let e = e.expect("dir entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy fixture file");
        }
    }
}

/// One reference case from reference.json.
#[derive(Debug, Clone)]
pub struct RefCase {
    pub text: String,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub truncated: bool,
    pub logits: Vec<f32>,
}

/// The reference cases (texts, HF ids, onnxruntime logits) and max_len.
pub fn reference() -> (usize, Vec<String>, Vec<RefCase>) {
    let text = std::fs::read_to_string(tiny_bert().join("reference.json")).expect("reference.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("reference.json is JSON");
    let ints = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_i64().expect("int"))
            .collect()
    };
    let cases = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| RefCase {
            text: c["text"].as_str().expect("text").to_string(),
            input_ids: ints(&c["input_ids"]),
            attention_mask: ints(&c["attention_mask"]),
            truncated: c["truncated"].as_bool().expect("truncated"),
            logits: c["logits"]
                .as_array()
                .expect("logits")
                .iter()
                .map(|x| x.as_f64().expect("float") as f32)
                .collect(),
        })
        .collect();
    let labels = v["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_str().expect("label").to_string())
        .collect();
    (
        v["max_len"].as_u64().expect("max_len") as usize,
        labels,
        cases,
    )
}
