//! The `edgebert-train` binary on bad input: malformed data files and corrupt checkpoints end with
//! exit code 2 and one line on stderr that names the problem; never a panic (101) or a signal.
mod common;
use common::{synthetic_data, tiny_model_dir};
use std::process::Command;

/// Runs `edgebert-train ARGS`; asserts exit code 2, one stderr line, no panic; returns the line.
fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edgebert-train"))
        .args(args)
        .output()
        .expect("run edgebert-train");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

fn finetune_args<'a>(model: &'a str, data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "finetune",
        "--model",
        model,
        "--data",
        data,
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-len",
        "16",
        "--device",
        "cpu",
        "--quiet",
        "--labels",
        "sadness,joy,love,anger,fear,surprise",
        "--error-samples",
        "0",
    ]
}

#[test]
fn malformed_data_line_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-distilbert", tmp.path());
    let data = synthetic_data(tmp.path(), 16, 8, 3);
    let train = data.join("train.txt");
    let mut text = std::fs::read_to_string(&train).expect("read");
    text.push_str("a line without any separator\n");
    std::fs::write(&train, text).expect("write");
    let (m, d, o) = (
        model.display().to_string(),
        data.display().to_string(),
        tmp.path().join("out").display().to_string(),
    );
    let line = fails(&finetune_args(&m, &d, &o));
    assert!(line.contains("train.txt") && line.contains("17"), "{line}");
    // Invalid UTF-8 in a data file, and an unknown label.
    std::fs::write(&train, b"ok text;joy\n\xff\xfe broken;joy\n").expect("write");
    let line = fails(&finetune_args(&m, &d, &o));
    assert!(line.contains("train.txt"), "{line}");
    std::fs::write(&train, "ok text;joy\nother text;bliss\n").expect("write");
    let line = fails(&finetune_args(&m, &d, &o));
    assert!(line.contains("bliss"), "{line}");
    // A missing data directory.
    let line = fails(&finetune_args(&m, "/nonexistent/data", &o));
    assert!(line.contains("/nonexistent/data"), "{line}");
}

#[test]
fn corrupt_checkpoint_is_an_error_on_resume() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-distilbert", tmp.path());
    let data = synthetic_data(tmp.path(), 16, 8, 3);
    let out = tmp.path().join("out");
    let (m, d, o) = (
        model.display().to_string(),
        data.display().to_string(),
        out.display().to_string(),
    );
    let status = Command::new(env!("CARGO_BIN_EXE_edgebert-train"))
        .args(finetune_args(&m, &d, &o))
        .output()
        .expect("run");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Truncate every file of the latest checkpoint's directory.
    let ckpts = out.join("checkpoints");
    let latest = std::fs::read_to_string(ckpts.join("latest")).expect("latest");
    let dir = ckpts.join(latest.trim());
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("checkpoint dir") {
        let p = e.expect("entry").path();
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("truncate");
        n += 1;
    }
    assert!(n > 0);
    let mut args = finetune_args(&m, &d, &o);
    args.push("--resume");
    let line = fails(&args);
    assert!(
        line.contains(&*dir.display().to_string()) || line.contains("checkpoint"),
        "{line}"
    );
}
