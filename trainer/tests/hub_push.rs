//! `push` against a local stand-in for the Hub: one commit with every file, LFS objects with the
//! right sha256 and size, nothing uploaded twice, clear errors for a rejected token, dropped
//! connections (retried with backoff) and failed uploads, nothing committed after a failure, and
//! the token in no error message.
mod hub_server;

use edgebert_trainer::hub::card::{write_model_card, CardOptions};
use edgebert_trainer::hub::{push_folder, HubClient, PushOptions, RetryPolicy, Token};
use hub_server::{commit_files, sha256_hex, Server};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKEN: &str = "hf_test_secret_token_123";

/// A fine-tuned directory and an export directory with small but real-looking files.
fn model_dirs(root: &Path) -> (PathBuf, PathBuf) {
    let m = root.join("finetuned");
    let x = root.join("export");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::create_dir_all(&x).expect("mkdir");
    let w = |p: PathBuf, b: &[u8]| std::fs::write(p, b).expect("write");
    w(
        m.join("config.json"),
        br#"{"model_type": "bert", "id2label": {"0": "sadness", "1": "joy"}}"#,
    );
    let weights: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w(m.join("model.safetensors"), &weights);
    w(
        m.join("tokenizer.json"),
        br#"{"model": {"type": "WordPiece"}}"#,
    );
    w(m.join("vocab.txt"), b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nhi\n");
    w(
        m.join("training_args.json"),
        br#"{"model": "sentence-transformers/all-MiniLM-L6-v2", "data": "dair-ai/emotion", "lr": 0.0001,
             "epochs": 1, "batch_size": 32, "warmup_ratio": 0.1, "seed": 42}"#,
    );
    w(
        m.join("trainer_state.json"),
        br#"{"best_epoch": 1, "log_history": [{"epoch": 1.0, "step": 5, "loss": 0.9},
             {"epoch": 1.0, "step": 5, "eval_loss": 0.7, "eval_accuracy": 0.75, "eval_f1": 0.74}]}"#,
    );
    w(
        m.join("metrics.json"),
        br#"{"validation": {"accuracy": 0.75, "weighted_f1": 0.74, "n": 8}}"#,
    );
    w(m.join("confusion_matrix.png"), b"\x89PNG\r\n\x1a\nfake");
    w(m.join("error_analysis.jsonl"), b"{}\n"); // not pushed
    std::fs::create_dir_all(m.join("checkpoints")).expect("mkdir");
    w(m.join("checkpoints/latest"), b"checkpoint-5"); // not pushed
    w(x.join("model.int8.onnx"), &weights[..120_000]);
    w(x.join("model.fp32.onnx"), &weights[1000..200_000]);
    w(x.join("model.edgebert"), &weights[7..150_000]);
    w(
        x.join("export_report.json"),
        br#"{"files": [], "fp32": null, "int8": {"runtime_accuracy": 0.75, "candle_accuracy": 0.75, "agreement": 1.0, "n": 8}}"#,
    );
    (m, x)
}

fn client(url: &str, token: &str) -> HubClient {
    let mut c = HubClient::new(Some(url), Token::new(token));
    c.progress = false;
    c.retry = RetryPolicy {
        tries: 4,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    };
    c
}

fn options(m: &Path, x: &Path) -> PushOptions {
    PushOptions {
        model_dir: m.to_path_buf(),
        export_dir: Some(x.to_path_buf()),
        repo: "me/emotion-minilm".into(),
        revision: "main".into(),
        private: false,
        commit_message: "Upload edgebert model".into(),
    }
}

#[test]
fn one_commit_with_every_file_and_no_second_upload() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let server = Server::start(TOKEN);
    let c = client(&server.url, TOKEN);
    let o = options(&m, &x);
    let card = CardOptions {
        repo: Some(o.repo.clone()),
        export_dir: Some(x.clone()),
        ..Default::default()
    };
    write_model_card(&m, &card).expect("card").expect("written");
    let s = push_folder(&c, &o).expect("push");
    println!(
        "pushed {} files, {} LFS uploads: {}",
        s.files.len(),
        s.lfs_uploaded(),
        s.commit_url
    );

    let expected: Vec<(&str, PathBuf)> = [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "trainer_state.json",
        "training_args.json",
        "metrics.json",
        "confusion_matrix.png",
    ]
    .iter()
    .map(|f| (*f, m.join(f)))
    .chain(
        [
            "model.edgebert",
            "model.int8.onnx",
            "model.fp32.onnx",
            "export_report.json",
        ]
        .iter()
        .map(|f| (*f, x.join(f))),
    )
    .collect();
    {
        let st = server.state();
        assert_eq!(st.repos, vec!["me/emotion-minilm".to_string()]);
        assert_eq!(st.commits.len(), 1, "exactly one commit");
        let lines = &st.commits[0];
        assert_eq!(lines[0]["key"], "header");
        assert_eq!(lines[0]["value"]["summary"], "Upload edgebert model");
        let files = commit_files(lines);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
        want.sort();
        assert_eq!(
            names, want,
            "the commit holds exactly the model and export files"
        );
        for (name, local) in &expected {
            let bytes = std::fs::read(local).expect("read");
            let (kind, digest, size) = &files[*name];
            assert_eq!(*digest, sha256_hex(&bytes), "{name}: sha256");
            assert_eq!(*size, bytes.len() as u64, "{name}: size");
            if kind == "lfsFile" {
                assert_eq!(st.lfs[digest], bytes, "{name}: the uploaded LFS object");
            }
        }
        for big in [
            "model.safetensors",
            "model.edgebert",
            "model.int8.onnx",
            "model.fp32.onnx",
            "confusion_matrix.png",
        ] {
            assert_eq!(files[big].0, "lfsFile", "{big} goes through LFS");
        }
        // The token goes to the endpoint's API, never to the (presigned) upload URLs.
        for r in &st.requests {
            let auth = r.headers.get("authorization");
            if r.path.starts_with("/lfs-upload/") {
                assert!(auth.is_none(), "token sent to an upload URL");
                assert_eq!(
                    r.headers.get("x-upload-test").map(String::as_str),
                    Some("1")
                );
            } else {
                assert_eq!(auth, Some(&format!("Bearer {TOKEN}")), "{}", r.path);
            }
        }
    }
    assert_eq!(s.lfs_uploaded(), 5);
    assert_eq!(server.count("PUT", "/lfs-upload/"), 5);
    assert_eq!(server.count("POST", "/lfs-verify"), 5);
    let card_text = std::fs::read_to_string(m.join("README.md")).expect("card");
    assert!(card_text.contains("base_model: \"sentence-transformers/all-MiniLM-L6-v2\""));
    assert!(card_text.contains("label agreement with the fp32 model 100.00%"));

    // Unchanged files: the server has every LFS object, none is uploaded again.
    let s2 = push_folder(&c, &o).expect("second push");
    assert_eq!(s2.lfs_uploaded(), 0);
    assert_eq!(
        server.count("PUT", "/lfs-upload/"),
        5,
        "no LFS object sent twice"
    );
    assert_eq!(
        server.count("POST", "/api/repos/create"),
        2,
        "409 on the second create is fine"
    );
    assert_eq!(server.state().commits.len(), 2);
    println!("second push: {} LFS uploads", s2.lfs_uploaded());
}

#[test]
fn rejected_token_is_named_and_not_shown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let server = Server::start(TOKEN);
    let wrong = "hf_wrong_secret_value_987";
    let e = push_folder(&client(&server.url, wrong), &options(&m, &x)).expect_err("401");
    let msg = e.to_string();
    println!("{msg}");
    assert!(
        msg.contains(&format!("token rejected by {} (HTTP 401)", server.url)),
        "{msg}"
    );
    assert!(msg.contains("check HF_TOKEN"), "{msg}");
    assert!(!msg.contains(wrong) && !format!("{e:?}").contains(wrong));
    assert!(server.state().commits.is_empty());
}

#[test]
fn dropped_connections_are_retried_then_fail_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let server = Server::start(TOKEN);
    // Two drops, then the server answers: the push goes through.
    server
        .state()
        .drop
        .push(("/api/models/me/emotion-minilm/preupload".into(), 2));
    push_folder(&client(&server.url, TOKEN), &options(&m, &x)).expect("retried push");
    assert_eq!(
        server.count("POST", "/api/models/me/emotion-minilm/preupload"),
        3
    );
    assert_eq!(server.state().commits.len(), 1);

    // Always dropped: 4 tries with backoff (5, 10, 20 ms), then a clear error.
    let server = Server::start(TOKEN);
    server
        .state()
        .drop
        .push(("/me/emotion-minilm.git/info/lfs".into(), usize::MAX));
    let t0 = std::time::Instant::now();
    let e = push_folder(&client(&server.url, TOKEN), &options(&m, &x)).expect_err("dropped");
    let msg = e.to_string();
    println!("{msg} ({} ms)", t0.elapsed().as_millis());
    assert!(msg.contains("LFS batch: cannot reach"), "{msg}");
    assert!(msg.contains("after 4 tries"), "{msg}");
    assert!(t0.elapsed() >= Duration::from_millis(35), "backoff waits");
    assert_eq!(server.count("POST", "/me/emotion-minilm.git/info/lfs"), 4);
    assert!(server.state().commits.is_empty(), "nothing committed");
    assert!(!msg.contains(TOKEN) && !format!("{e:?}").contains(TOKEN));
}

#[test]
fn failed_upload_commits_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let server = Server::start(TOKEN);
    server.state().fail_uploads = true;
    let e = push_folder(&client(&server.url, TOKEN), &options(&m, &x)).expect_err("500");
    let msg = e.to_string();
    println!("{msg}");
    assert!(msg.contains("LFS upload of"), "{msg}");
    assert!(msg.contains("HTTP 500 after 4 tries"), "{msg}");
    assert!(
        !msg.contains("X-Signature"),
        "presigned query strings stay out of errors: {msg}"
    );
    assert!(!msg.contains(TOKEN));
    assert_eq!(
        server.count("POST", "/api/models/me/emotion-minilm/commit"),
        0
    );
    assert!(server.state().commits.is_empty());
}

#[test]
fn missing_token_and_bad_repo_fail_before_any_request() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let server = Server::start(TOKEN);
    let mut c = HubClient::new(Some(&server.url), None);
    c.progress = false;
    let e = push_folder(&c, &options(&m, &x)).expect_err("no token");
    assert!(e.to_string().contains("no Hub token: set HF_TOKEN"), "{e}");
    let mut o = options(&m, &x);
    o.repo = "not-a-repo".into();
    let e = push_folder(&client(&server.url, TOKEN), &o).expect_err("bad repo");
    assert!(e.to_string().contains("expected OWNER/NAME"), "{e}");
    std::fs::remove_file(m.join("model.safetensors")).expect("rm");
    let e = push_folder(&client(&server.url, TOKEN), &options(&m, &x)).expect_err("no weights");
    assert!(
        e.to_string().contains("model.safetensors is missing"),
        "{e}"
    );
    assert!(server.state().requests.is_empty());
}

#[test]
fn cli_push_and_rejected_token() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let server = Server::start(TOKEN);
    let run = |token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edgebert-train"))
            .args(["push", "--model"])
            .arg(&m)
            .arg("--export")
            .arg(&x)
            .args(["--repo", "me/emotion-minilm", "--endpoint", &server.url])
            .env("HF_TOKEN", token)
            .env("HF_HOME", tmp.path().join("hf"))
            .env("EDGEBERT_HUB_BACKOFF_MS", "1")
            .env_remove("HF_ENDPOINT")
            .output()
            .expect("run edgebert-train")
    };
    let ok = run(TOKEN);
    let out = String::from_utf8_lossy(&ok.stdout);
    println!("{out}");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("committed 13 files (5 LFS objects uploaded) to me/emotion-minilm"),
        "{out}"
    );
    let bad = run("hf_not_the_right_one");
    let err = String::from_utf8_lossy(&bad.stderr);
    println!("{err}");
    assert_eq!(bad.status.code(), Some(2));
    assert!(err.contains("token rejected by"), "{err}");
    assert!(!err.contains("hf_not_the_right_one"));
}

#[test]
fn cli_card_adds_the_export_numbers_and_keeps_a_hand_written_readme() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, x) = model_dirs(tmp.path());
    let card = |with_export: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_edgebert-train"));
        c.args(["card", "--model"]).arg(&m);
        if with_export {
            c.arg("--export").arg(&x);
        }
        c.output().expect("run edgebert-train")
    };
    let plain = card(false);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let readme = std::fs::read_to_string(m.join("README.md")).expect("card");
    assert!(readme.contains("accuracy 0.7500"), "{readme}");
    assert!(!readme.contains("int8 bundle"), "{readme}");
    let with_export = card(true);
    assert!(
        with_export.status.success(),
        "{}",
        String::from_utf8_lossy(&with_export.stderr)
    );
    let readme = std::fs::read_to_string(m.join("README.md")).expect("card");
    assert!(readme.contains("int8 bundle"), "{readme}");

    std::fs::write(m.join("README.md"), "# my own card\n").expect("write");
    let kept = card(true);
    let err = String::from_utf8_lossy(&kept.stderr);
    assert!(!kept.status.success());
    assert!(
        err.contains("README.md was not generated by edgebert-train"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(m.join("README.md")).expect("read"),
        "# my own card\n"
    );
}
