//! The whole journey across the crates: a tiny DistilBERT fine-tuned by the trainer, exported
//! to a bundle, then classified by the runtime through its library API and through the
//! `edgebert` binary, which must agree with each other and with the export's own check.
#[path = "../trainer/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::EMOTIONS;
use edgebert_runtime::{Classification, Session};
use edgebert_trainer::export::{export, ExportOpts};

/// The `edgebert` binary of this build (`cargo test --workspace` builds it beside the tests).
fn edgebert_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder");
    let bin = dir.join(format!("edgebert{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds the runtime's binary",
        bin.display()
    );
    bin
}

#[test]
fn trained_exported_and_classified_through_the_library_and_the_cli() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (finetuned, _data) = common::tiny_finetuned(tmp.path());
    let out = tmp.path().join("export");
    let report = export(&ExportOpts {
        model: finetuned.display().to_string(),
        out: out.clone(),
        max_len: 32,
        progress: false,
        ..Default::default()
    })
    .expect("export");
    let fp32 = report.fp32.expect("the export verifies the fp32 bundle");
    assert!((fp32.runtime_accuracy - fp32.candle_accuracy).abs() <= 0.001);

    let texts = [
        "kalomi neru",
        "sato vibade fugo",
        "",
        "hijupe zoka lomine rusa",
    ];
    let bundle = out.join("model.edgebert");
    let mut session = Session::open(&bundle).expect("open the int8 bundle");
    assert_eq!(session.labels(), EMOTIONS);
    let mut library = Vec::new();
    let mut c = Classification::default();
    for t in texts {
        session.classify_into(t, &mut c).expect("classify");
        assert_eq!(c.probs.len(), EMOTIONS.len());
        assert!((c.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        library.push(c.clone());
    }

    let cli = Command::new(edgebert_binary())
        .args(["classify", "--model"])
        .arg(&bundle)
        .args(["--format", "json"])
        .args(texts)
        .output()
        .expect("run edgebert classify");
    assert!(
        cli.status.success(),
        "edgebert classify: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&cli.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), texts.len());
    for (line, lib) in lines.iter().zip(&library) {
        assert_eq!(line["label"], lib.label.as_str());
        assert_eq!(line["label_id"], lib.label_id);
        let probs: Vec<f64> = line["probs"]
            .as_array()
            .expect("probs")
            .iter()
            .filter_map(|p| p.as_f64())
            .collect();
        assert_eq!(probs.len(), lib.probs.len());
        for (p, q) in probs.iter().zip(&lib.probs) {
            assert!((p - f64::from(*q)).abs() < 1e-6, "CLI {p} vs library {q}");
        }
    }
}
