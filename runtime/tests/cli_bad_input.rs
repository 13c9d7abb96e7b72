//! Drives the real `edgebert` binary with bad inputs and bad models: each must end with exit
//! code 2 and exactly one line on stderr (or succeed where the input is valid), never a panic
//! (exit 101) or a signal.
//!
//! The binary is this build's, or the command in `EDGEBERT_BIN` (split at spaces, e.g.
//! `qemu-aarch64 -L /usr/aarch64-linux-gnu target/aarch64-unknown-linux-gnu/edge/edgebert`):
//! `scripts/cross-check` runs this suite against the device (`edge` profile) binaries.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edgebert_runtime::bundle::FORMAT_VERSION;
use edgebert_runtime::ModelSource;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The command that runs `edgebert`: `EDGEBERT_BIN` when set, else this build's binary.
fn edgebert_command() -> Command {
    match std::env::var("EDGEBERT_BIN") {
        Ok(line) if !line.trim().is_empty() => {
            let mut words = line.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or_default());
            cmd.args(words);
            cmd
        }
        _ => Command::new(env!("CARGO_BIN_EXE_edgebert")),
    }
}

fn edgebert(args: &[&str], stdin: &[u8]) -> Out {
    let mut child = edgebert_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgebert");
    let mut sin = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit 2, one stderr line containing `needle` (case-insensitive).
fn assert_fails(o: &Out, needle: &str) {
    assert_ne!(o.code, Some(101), "panicked: {}", o.stderr);
    assert!(o.code.is_some(), "killed by a signal: {}", o.stderr);
    assert_eq!(o.code, Some(2), "exit code; stderr: {}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be one line, got: {:?}",
        o.stderr
    );
    assert!(lines[0].starts_with("edgebert: error: "), "{}", lines[0]);
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "stderr {:?} should mention {needle:?}",
        lines[0]
    );
}

fn assert_ok(o: &Out) {
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert!(o.stderr.is_empty(), "stderr: {}", o.stderr);
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("stdout line is JSON"))
        .collect()
}

fn model() -> String {
    common::tiny_bert().display().to_string()
}

fn bundle_bytes() -> Vec<u8> {
    ModelSource::open(common::tiny_bert())
        .expect("fixture")
        .bundle
        .to_bytes()
        .expect("encode")
}

fn write_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let p = common::scratch(tag).join("model.edgebert");
    std::fs::write(&p, bytes).expect("write");
    p
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn invalid_utf8_line_names_line_number() {
    for cmd in ["classify", "tokenize"] {
        let o = edgebert(
            &[cmd, "--model", &model()],
            b"fine\nbad \xff\xfe bytes\nnever reached\n",
        );
        assert_fails(&o, "stdin line 2");
        assert!(o.stderr.contains("--lossy"), "{}", o.stderr);
        assert_eq!(
            o.stdout.lines().count(),
            1,
            "{cmd}: line 1 was processed before the error"
        );
    }
}

#[test]
fn lossy_replaces_invalid_utf8() {
    let o = edgebert(
        &["tokenize", "--lossy", "--model", &model()],
        b"ok \xff here\n",
    );
    assert_ok(&o);
    let v = json_lines(&o.stdout);
    assert_eq!(v.len(), 1);
    // [CLS] ok [UNK]? here [SEP]: U+FFFD is dropped by clean_text, so "ok here".
    let plain = edgebert(&["tokenize", "--model", &model(), "ok here"], b"");
    assert_eq!(v[0]["input_ids"], json_lines(&plain.stdout)[0]["input_ids"]);
}

#[test]
fn nul_bytes_are_valid_text() {
    let o = edgebert(
        &["classify", "--model", &model()],
        b"i feel \0 happy\0\n\0\n",
    );
    assert_ok(&o);
    let v = json_lines(&o.stdout);
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[1]["tokens"], 2,
        "a line of only NUL is empty after cleaning"
    );
}

#[test]
fn one_megabyte_line_is_truncated() {
    let mut line = b"happy ".repeat((1 << 20) / 6);
    line.push(b'\n');
    let o = edgebert(&["classify", "--model", &model()], &line);
    assert_ok(&o);
    let v = json_lines(&o.stdout);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["truncated"], true);
    assert_eq!(v[0]["tokens"], 64);
}

#[test]
fn empty_input_prints_nothing() {
    let o = edgebert(&["classify", "--model", &model()], b"");
    assert_ok(&o);
    assert!(o.stdout.is_empty());
}

#[test]
fn empty_and_whitespace_lines_are_classified_as_empty_text() {
    let o = edgebert(&["classify", "--model", &model()], b"\n \t \r\n   \n");
    assert_ok(&o);
    let v = json_lines(&o.stdout);
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x["tokens"], 2);
        assert_eq!(
            x, &v[0],
            "all empty-after-cleaning inputs classify the same"
        );
    }
}

#[test]
fn directory_without_model_fails() {
    let dir = common::scratch("cli-empty");
    let o = edgebert(&["classify", "--model", p(&dir), "hi"], b"");
    assert_fails(&o, "holds no model");
}

#[test]
fn dev_null_as_model_fails() {
    for cmd in ["classify", "inspect", "tokenize"] {
        let mut args = vec![cmd, "--model", "/dev/null"];
        if cmd != "inspect" {
            args.push("hi");
        }
        let o = edgebert(&args, b"");
        assert_fails(&o, "not a regular file");
    }
    let o = edgebert(&["bench", "--model", "/dev/null", "--seq-len", "16"], b"");
    assert_fails(&o, "not a regular file");
}

#[test]
fn missing_model_fails() {
    let o = edgebert(
        &["classify", "--model", "/nonexistent/model.edgebert", "hi"],
        b"",
    );
    assert_fails(&o, "no such file");
}

#[test]
fn empty_file_as_model_fails() {
    let f = write_file("cli-emptyfile", b"");
    let o = edgebert(&["classify", "--model", p(&f), "hi"], b"");
    assert_fails(&o, "empty");
}

#[test]
fn truncated_bundle_fails() {
    let b = bundle_bytes();
    for len in [4, 20, 30, b.len() / 2, b.len() - 1] {
        let f = write_file("cli-trunc", &b[..len]);
        let o = edgebert(&["classify", "--model", p(&f), "hi"], b"");
        let needle = if len < 8 { "magic" } else { "truncated" };
        assert_fails(&o, needle);
    }
}

#[test]
fn bit_flipped_bundle_fails() {
    let mut b = bundle_bytes();
    let at = b.len() - 1000;
    b[at] ^= 0x10;
    let f = write_file("cli-flip", &b);
    let o = edgebert(&["classify", "--model", p(&f), "hi"], b"");
    assert_fails(&o, "checksum");
    let o = edgebert(&["inspect", "--model", p(&f)], b"");
    assert_fails(&o, "checksum");
}

#[test]
fn future_version_bundle_fails() {
    let mut b = bundle_bytes();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let f = write_file("cli-version", &b);
    let o = edgebert(&["classify", "--model", p(&f), "hi"], b"");
    assert_fails(&o, "version");
}

#[test]
fn vocab_onnx_size_mismatch_fails() {
    let dir = common::scratch("cli-mismatch");
    common::copy_dir(&common::tiny_bert(), &dir);
    std::fs::copy(
        common::fixture("tiny-bert-small-vocab").join("model.onnx"),
        dir.join("model.onnx"),
    )
    .expect("copy");
    let o = edgebert(&["classify", "--model", p(&dir), "hi"], b"");
    assert_fails(&o, "mismatch");
}

#[test]
fn garbage_onnx_fails() {
    let dir = common::scratch("cli-garbage");
    common::copy_dir(&common::tiny_bert(), &dir);
    std::fs::write(dir.join("model.onnx"), vec![0xffu8; 4096]).expect("write");
    let o = edgebert(&["classify", "--model", p(&dir), "hi"], b"");
    assert_fails(&o, "model");
}

#[test]
fn random_bytes_as_bundle_fail() {
    let mut x = 0x2545f491u32;
    let bytes: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let f = write_file("cli-random", &bytes);
    let o = edgebert(&["classify", "--model", p(&f), "hi"], b"");
    assert_fails(&o, "magic");
}

#[test]
fn bench_rejects_impossible_seq_len() {
    let o = edgebert(&["bench", "--model", &model(), "--seq-len", "1000"], b"");
    assert_fails(&o, "seq-len");
    let o = edgebert(
        &[
            "bench",
            "--model",
            &model(),
            "--seq-len",
            "16",
            "--iters",
            "0",
        ],
        b"",
    );
    assert_fails(&o, "iters");
}

#[test]
fn bad_thread_counts_are_one_line_errors() {
    let m = model();
    for bad in ["0", "-3", "abc", "9999", "", "1.5"] {
        let classify = ["classify", "--model", &m, "--threads", bad, "x"];
        let bench = ["bench", "--model", &m, "--threads", bad, "--seq-len", "8"];
        for args in [&classify[..], &bench[..]] {
            assert_fails(&edgebert(args, b""), "threads");
        }
    }
    let o = edgebert_command()
        .args(["classify", "--model", &model(), "x"])
        .env("EDGEBERT_THREADS", "many")
        .output()
        .expect("run edgebert");
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("EDGEBERT_THREADS") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_without_panic() {
    let o = edgebert(&["classify"], b"");
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    let o = edgebert(&["frobnicate"], b"");
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    let o = edgebert(
        &["classify", "--model", &model(), "--format", "yaml", "x"],
        b"",
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    let o = edgebert(
        &["tokenize", "--model", &model(), "--max-len", "1", "x"],
        b"",
    );
    assert_fails(&o, "max-len");
}

/// Every seed of the fuzz corpora, through the binary: a bundle seed opened by `inspect` and
/// `classify`, a model-skeleton seed as the `model.onnx` of an export directory. Each ends
/// with exit 0 or with exit 2 and one stderr line, never a panic or a signal (in the `edge`
/// build too, when `EDGEBERT_BIN` names it: it aborts on panic, and its panic hook would exit
/// with 101).
#[test]
fn fuzz_corpus_seeds_through_the_binary_end_cleanly() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let clean = |o: &Out, what: &str| {
        assert!(o.code.is_some(), "{what}: killed by a signal: {}", o.stderr);
        assert_ne!(o.code, Some(101), "{what}: panicked: {}", o.stderr);
        match o.code {
            Some(0) => {}
            Some(2) => assert_eq!(o.stderr.lines().count(), 1, "{what}: {:?}", o.stderr),
            other => panic!("{what}: exit {other:?}: {}", o.stderr),
        }
    };
    let mut seeds = 0;
    for entry in std::fs::read_dir(corpus.join("bundle_reader")).expect("bundle corpus") {
        let path = entry.expect("entry").path();
        let p = path.display().to_string();
        clean(&edgebert(&["inspect", "--model", &p], b""), &p);
        clean(&edgebert(&["classify", "--model", &p, "hello"], b""), &p);
        seeds += 1;
    }
    let dir = std::env::temp_dir().join(format!("edgebert-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    common::copy_dir(&common::tiny_bert(), &dir);
    for entry in std::fs::read_dir(corpus.join("model_skeleton")).expect("skeleton corpus") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join("model.onnx")).expect("copy seed");
        let d = dir.display().to_string();
        let what = path.display().to_string();
        clean(&edgebert(&["classify", "--model", &d, "hello"], b""), &what);
        seeds += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(seeds >= 10, "only {seeds} seeds found");
}
