//! CI smoke: one short epoch of MiniLM on a few hundred emotion examples; the training loss falls
//! and validation accuracy beats the majority-class baseline. Needs EDGEBERT_SHARED.
mod common;
use edgebert_trainer::finetune::{finetune, FinetuneOptions};

#[test]
fn minilm_emotion_smoke() {
    let Some(shared) = common::shared("minilm_emotion_smoke") else {
        return;
    };
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
}
