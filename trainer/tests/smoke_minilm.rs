//! CI smoke: one short epoch of MiniLM on a few hundred emotion examples; the training loss falls
//! and validation accuracy beats the majority-class baseline; the export's fp32 bundle matches
//! candle and its int8 bundle agrees with it on the labels. Needs EDGEBERT_SHARED.
mod common;
use edgebert_trainer::export::{export, ExportOpts};
use edgebert_trainer::finetune::{finetune, FinetuneOptions};

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn minilm_emotion_smoke() {
    let shared = common::shared("minilm_emotion_smoke");
    let tmp = tempfile::tempdir().expect("tmp");
    let o = FinetuneOptions {
        model: shared.join("models/all-MiniLM-L6-v2").display().to_string(),
        data: shared.join("data/emotion"),
        out: tmp.path().join("out"),
        labels: Some(common::EMOTIONS.iter().map(|s| s.to_string()).collect()),
        epochs: 1,
        lr: 2e-4,
        batch_size: 16,
        eval_batch_size: 64,
        warmup_ratio: 0.1,
        max_train_samples: Some(640),
        max_eval_samples: Some(300),
        max_len: 48,
        group_by_length: true,
        device: "cpu".into(),
        logging_steps: 10,
        progress: false,
        error_samples: 10,
        ..Default::default()
    };
    let s = finetune(&o).expect("finetune");
    let (first, last) = (
        s.first_loss.expect("first loss"),
        s.last_loss.expect("last loss"),
    );
    eprintln!(
        "smoke: loss {first:.4} -> {last:.4}, accuracy {:.4} (majority {:.4}), {:.1} samples/s",
        s.validation.accuracy, s.majority_accuracy, s.train_samples_per_second
    );
    assert!(
        last < first,
        "training loss did not fall: {first} -> {last}"
    );
    assert!(
        s.validation.accuracy > s.majority_accuracy + 0.02,
        "accuracy {} does not beat the majority baseline {}",
        s.validation.accuracy,
        s.majority_accuracy
    );

    let x = export(&ExportOpts {
        model: tmp.path().join("out").display().to_string(),
        out: tmp.path().join("export"),
        max_len: 48,
        max_verify_samples: Some(300),
        progress: false,
        ..Default::default()
    })
    .expect("export");
    let (fp32, int8) = (x.fp32.expect("fp32 check"), x.int8.expect("int8 check"));
    eprintln!(
        "smoke export: fp32 runtime {:.4} = candle {:.4} (max |Δlogit| {:.1e}); int8 runtime {:.4}, label agreement with fp32 {:.4}, max |Δlogit| {:.3} (largest |logit| {:.2})",
        fp32.runtime_accuracy,
        fp32.candle_accuracy,
        fp32.max_abs_logit_diff,
        int8.runtime_accuracy,
        int8.agreement,
        int8.max_abs_logit_diff,
        int8.max_abs_candle_logit
    );
    assert!(
        fp32.max_abs_logit_diff < 1e-4,
        "{}",
        fp32.max_abs_logit_diff
    );
    assert!(
        int8.agreement >= 0.98,
        "int8 label agreement {}",
        int8.agreement
    );
    assert!(
        (int8.runtime_accuracy - fp32.candle_accuracy).abs() <= 0.01,
        "int8 accuracy {} vs fp32 {}",
        int8.runtime_accuracy,
        fp32.candle_accuracy
    );
}
