//! The CLI contract other tools rely on: output fields of tokenize / classify / bench / inspect
//! and `--help` text, checked against the library and the reference fixture.
mod common;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgebert"))
        .args(args)
        .output()
        .expect("run edgebert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn model() -> String {
    common::tiny_bert().display().to_string()
}

#[test]
fn tokenize_matches_reference_ids() {
    let (_, _, cases) = common::reference();
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let mut args = vec!["tokenize", "--model"];
    let m = model();
    args.push(&m);
    args.extend(&texts);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), cases.len());
    for (l, c) in lines.iter().zip(&cases) {
        assert_eq!(
            l["input_ids"],
            serde_json::json!(c.input_ids),
            "{:?}",
            c.text
        );
        assert_eq!(
            l["attention_mask"],
            serde_json::json!(c.attention_mask),
            "{:?}",
            c.text
        );
    }
}

#[test]
fn tokenize_max_len_and_vocab_file() {
    let vocab = common::tiny_bert().join("vocab.txt").display().to_string();
    let (code, out, err) = run(&[
        "tokenize",
        "--model",
        &vocab,
        "--max-len",
        "4",
        "i feel happy today",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["input_ids"].as_array().map(Vec::len), Some(4));
    assert_eq!(v["truncated"], true);
}

#[test]
fn classify_json_has_contract_fields() {
    let (_, labels, cases) = common::reference();
    let (code, out, err) = run(&[
        "classify",
        "--model",
        &model(),
        &cases[1].text,
        &cases[6].text,
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (v, c) in lines.iter().zip([&cases[1], &cases[6]]) {
        for key in [
            "label",
            "label_id",
            "score",
            "probs",
            "logits",
            "tokens",
            "truncated",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        let logits: Vec<f32> = v["logits"]
            .as_array()
            .expect("logits")
            .iter()
            .map(|x| x.as_f64().expect("f") as f32)
            .collect();
        for (g, w) in logits.iter().zip(&c.logits) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        let id = v["label_id"].as_u64().expect("id") as usize;
        assert_eq!(v["label"], labels[id].as_str());
        assert_eq!(v["probs"].as_array().map(Vec::len), Some(labels.len()));
        assert_eq!(v["truncated"], c.truncated);
    }
}

#[test]
fn classify_text_format() {
    let (code, out, err) = run(&[
        "classify",
        "--model",
        &model(),
        "--format",
        "text",
        "i feel happy today",
    ]);
    assert_eq!(code, 0, "{err}");
    let line = out.trim_end();
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(cols.len(), 3, "{line}");
    assert!(
        ["negative", "neutral", "positive"].contains(&cols[0]),
        "{line}"
    );
    assert!(cols[1].parse::<f32>().is_ok(), "{line}");
    assert_eq!(cols[2], "(6 tokens)");
}

#[test]
fn bench_json_reports_percentiles_and_allocations() {
    let (code, out, err) = run(&[
        "bench",
        "--model",
        &model(),
        "--seq-len",
        "16",
        "--iters",
        "20",
        "--warmup",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["seq_len"], 16);
    assert_eq!(v["iters"], 20);
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(f("min_ms") > 0.0);
    assert!(f("min_ms") <= f("p50_ms") && f("p50_ms") <= f("p95_ms") && f("p95_ms") <= f("p99_ms"));
    assert!(f("mean_ms") >= f("min_ms"));
    assert!(f("allocs_per_call") >= 0.0);
    assert_eq!(
        f("tokenizer_allocs_per_call"),
        0.0,
        "tokenizer must not allocate"
    );
}

#[test]
fn inspect_json_describes_model() {
    let (code, out, err) = run(&["inspect", "--model", &model(), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        v["labels"],
        serde_json::json!(["negative", "neutral", "positive"])
    );
    assert_eq!(v["max_len"], 64);
    assert!(v["checksum"]
        .as_str()
        .is_some_and(|c| c.starts_with("crc32:")));
    assert!(
        v["graph"]["op_histogram"]["Gather"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{}",
        v["graph"]
    );
    assert_eq!(v["graph"]["embedding_rows"], v["vocab_size"]);
    let (code, text, err) = run(&["inspect", "--model", &model()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("labels:") && text.contains("checksum:"),
        "{text}"
    );
}

#[test]
fn help_explains_every_flag() {
    for (cmd, flags) in [
        ("tokenize", &["--model", "--max-len", "--lossy"][..]),
        (
            "classify",
            &["--model", "--format", "--lossy", "--eager", "--max-len"][..],
        ),
        (
            "bench",
            &["--model", "--seq-len", "--iters", "--warmup", "--format"][..],
        ),
        ("inspect", &["--model", "--format"][..]),
    ] {
        let (code, out, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        for f in flags {
            assert!(out.contains(f), "{cmd} --help lacks {f}");
        }
        if cmd == "classify" || cmd == "tokenize" {
            assert!(
                out.contains("empty line"),
                "{cmd} --help documents empty lines"
            );
        }
    }
}

/// Lines piped in are shared between the threads: the output is the one-thread output, line for
/// line and bit for bit, in input order; `bench` and `inspect` name the count used.
#[test]
fn classify_output_is_the_same_at_every_thread_count() {
    use std::io::Write;
    use std::process::Stdio;
    let lines: String = (0..40)
        .map(|i| format!("text number {i} {}\n", "and more words ".repeat(i % 9)))
        .collect();
    let classify = |threads: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgebert"))
            .args(["classify", "--model", &model(), "--threads", threads])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn edgebert");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(lines.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("utf-8 output")
    };
    let one = classify("1");
    assert_eq!(one.lines().count(), 40);
    for threads in ["2", "3", "7"] {
        assert_eq!(classify(threads), one, "{threads} threads");
    }
    let (code, out, _) = run(&[
        "bench",
        "--model",
        &model(),
        "--seq-len",
        "8",
        "--iters",
        "2",
        "--threads",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("bench json");
    assert_eq!(v["threads"], 3);
    let (code, out, _) = run(&["inspect", "--model", &model(), "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    assert!(v["threads"].as_u64().is_some_and(|n| n >= 1), "{v}");

    // bench --throughput over a file; a line that is not UTF-8 is named.
    let dir = std::env::temp_dir().join(format!("edgebert-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("texts.txt");
    std::fs::write(&file, &lines).expect("write texts");
    let path = file.display().to_string();
    let (code, out, err) = run(&[
        "bench",
        "--model",
        &model(),
        "--throughput",
        &path,
        "--threads",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("throughput json");
    assert_eq!(v["sequences"], 40);
    assert!(
        v["sequences_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{v}"
    );
    std::fs::write(&file, b"fine\nbad \xff\n").expect("write texts");
    let (code, _, err) = run(&["bench", "--model", &model(), "--throughput", &path]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2") && err.lines().count() == 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
