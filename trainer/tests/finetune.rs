//! Fine-tuning on the tiny fixtures: exact resume, HF-layout output, evaluate, NaN detection.
mod common;
use common::{fixture, read_weights, synthetic_data, tiny_model_dir, EMOTIONS};
use edgebert_trainer::eval::{evaluate_dir, EvaluateOptions};
use edgebert_trainer::finetune::{finetune, FinetuneOptions};
use edgebert_trainer::TrainError;
use std::path::Path;

fn options(model: &Path, data: &Path, out: &Path) -> FinetuneOptions {
    FinetuneOptions {
        model: model.display().to_string(),
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        labels: Some(EMOTIONS.iter().map(|s| s.to_string()).collect()),
        epochs: 2,
        lr: 1e-3,
        batch_size: 8,
        eval_batch_size: 16,
        max_len: 16,
        seed: 7,
        device: "cpu".into(),
        logging_steps: 2,
        progress: false,
        warmup_ratio: 0.1,
        ..Default::default()
    }
}

#[test]
fn resume_is_exact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-distilbert", tmp.path());
    let data = synthetic_data(tmp.path(), 60, 20, 1);
    // 60 examples / batch 8 = 8 steps per epoch, 16 in all.
    let straight = options(&model, &data, &tmp.path().join("straight"));
    let a = finetune(&straight).expect("straight run");
    assert_eq!(a.global_step, 16);

    let mut o = options(&model, &data, &tmp.path().join("resumed"));
    o.stop_after_steps = Some(3); // killed mid-epoch 1
    assert!(matches!(finetune(&o), Err(TrainError::Interrupted { .. })));
    o.resume = true;
    o.stop_after_steps = Some(8); // last batch of epoch 1, before its evaluation
    assert!(matches!(finetune(&o), Err(TrainError::Interrupted { .. })));
    o.stop_after_steps = None;
    let b = finetune(&o).expect("resumed run");
    assert_eq!(b.global_step, 16);

    for f in [
        "model.safetensors",
        "checkpoints/checkpoint-16/model.safetensors",
        "checkpoints/checkpoint-16/optimizer.safetensors",
    ] {
        let wa = read_weights(&tmp.path().join("straight").join(f));
        let wb = read_weights(&tmp.path().join("resumed").join(f));
        assert!(!wa.is_empty());
        assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
        for (name, (shape, va)) in &wa {
            let (shape_b, vb) = &wb[name];
            assert_eq!(shape, shape_b, "{f}: {name}");
            assert!(
                va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{f}: {name} differs"
            );
        }
    }
    assert_eq!(a.validation, b.validation);
    let hist = |d: &str| -> serde_json::Value {
        let s: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join(d).join("trainer_state.json")).expect("state"),
        )
        .expect("json");
        let evals: Vec<serde_json::Value> = s["log_history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| e.get("eval_loss").is_some())
            .cloned()
            .collect();
        serde_json::Value::Array(evals)
    };
    assert_eq!(hist("straight"), hist("resumed"));

    // And the weights actually moved away from the starting checkpoint.
    let start = read_weights(&model.join("model.safetensors"));
    let end = read_weights(
        &tmp.path()
            .join("straight/checkpoints/checkpoint-16/model.safetensors"),
    );
    let name = "classifier.weight";
    assert_ne!(start[name].1, end[name].1);
}

#[test]
fn same_seed_same_weights_other_seed_differs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-distilbert", tmp.path());
    let data = synthetic_data(tmp.path(), 24, 8, 2);
    let run = |out: &str, seed: u64| {
        let mut o = options(&model, &data, &tmp.path().join(out));
        o.epochs = 1;
        o.seed = seed;
        finetune(&o).expect("run");
        read_weights(
            &tmp.path()
                .join(out)
                .join("checkpoints/checkpoint-3/model.safetensors"),
        )
    };
    let (a, b, c) = (run("a", 5), run("b", 5), run("c", 6));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn output_has_hf_layout_matching_transformers_fixture() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-bert", tmp.path());
    let data = synthetic_data(tmp.path(), 40, 24, 3);
    let out = tmp.path().join("out");
    let mut o = options(&model, &data, &out);
    o.epochs = 1;
    o.error_samples = 5;
    let s = finetune(&o).expect("finetune");

    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "trainer_state.json",
        "metrics.json",
        "confusion_matrix.png",
        "confusion_matrix.txt",
        "error_analysis.jsonl",
        "training_args.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Tensor names and shapes equal those transformers wrote for BertForSequenceClassification.
    let want = read_weights(&fixture("tiny-bert").join("model.safetensors"));
    let got = read_weights(&out.join("model.safetensors"));
    let shapes = |w: &std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>| -> Vec<(String, Vec<usize>)> {
        w.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    };
    assert_eq!(shapes(&got), shapes(&want));
    // Config keys: every key transformers wrote is there, with labels in our order.
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
    };
    let want_cfg = read(&fixture("tiny-bert").join("config.json"));
    let got_cfg = read(&out.join("config.json"));
    for (k, v) in want_cfg.as_object().expect("object") {
        let g = got_cfg
            .get(k)
            .unwrap_or_else(|| panic!("config key {k} missing"));
        if [
            "hidden_size",
            "num_hidden_layers",
            "vocab_size",
            "model_type",
            "architectures",
            "id2label",
            "label2id",
        ]
        .contains(&k.as_str())
        {
            assert_eq!(g, v, "config key {k}");
        }
    }
    // Error analysis: highest losses first.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("error_analysis.jsonl"))
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), 5);
    let losses: Vec<f64> = lines
        .iter()
        .map(|l| l["loss"].as_f64().expect("loss"))
        .collect();
    assert!(losses.windows(2).all(|w| w[0] >= w[1]), "{losses:?}");
    // evaluate on the same file agrees with the run's own final evaluation.
    let r = evaluate_dir(
        &out.display().to_string(),
        &data.join("validation.txt"),
        &EvaluateOptions {
            max_len: 16,
            device: "cpu".into(),
            ..Default::default()
        },
    )
    .expect("evaluate");
    assert_eq!(r.metrics.confusion, s.validation.confusion);
    assert!((r.loss - s.validation_loss).abs() < 1e-5);
}

#[test]
fn diverging_run_stops_with_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-distilbert", tmp.path());
    let data = synthetic_data(tmp.path(), 32, 8, 4);
    let mut o = options(&model, &data, &tmp.path().join("out"));
    o.lr = 1e38;
    o.warmup_ratio = 0.0;
    let e = finetune(&o).expect_err("must diverge");
    assert!(matches!(e, TrainError::NonFiniteLoss { .. }), "{e}");
    assert!(e.to_string().contains("lower --lr"), "{e}");
}
