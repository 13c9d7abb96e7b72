//! A directory written by `save_pretrained` loads in transformers and gives the same logits.
//! Needs python3 with torch + transformers (a by-hand peer, not installed in CI): skipped with a
//! message when they are not importable.

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer;
use edgebert_models::{DropoutRng, ModelFiles, SequenceClassifier};

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, transformers"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

const SCRIPT: &str = r#"
import json, sys, torch
from transformers import AutoModelForSequenceClassification
m = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
ids = torch.tensor(json.loads(sys.argv[2])); mask = torch.tensor(json.loads(sys.argv[3]))
with torch.no_grad():
    out = m(input_ids=ids, attention_mask=mask).logits
print(json.dumps({"logits": out.tolist(), "labels": [m.config.id2label[i] for i in range(m.config.num_labels)]}))
"#;

#[test]
fn saved_directory_loads_in_transformers() -> anyhow::Result<()> {
    if !torch_available() {
        eprintln!("SKIPPED saved_directory_loads_in_transformers: python3 torch/transformers not importable");
        return Ok(());
    }
    for name in ["tiny-distilbert", "tiny-bert"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let files = ModelFiles::from_dir(&dir, name)?;
        // Three labels: the head is re-initialised, then one SGD step changes every weight.
        let opts = edgebert_models::LoadOptions {
            num_labels: Some(3),
            reinit_mismatched_head: true,
            ..Default::default()
        };
        let (model, vars) = SequenceClassifier::load_with(&files, &opts, &Device::Cpu)?;
        let ids_v = vec![vec![101u32, 17, 230, 999, 102], vec![101, 300, 102, 0, 0]];
        let mask_v = vec![vec![1u32, 1, 1, 1, 1], vec![1, 1, 1, 0, 0]];
        let ids = Tensor::new(
            &[[101u32, 17, 230, 999, 102], [101, 300, 102, 0, 0]],
            &Device::Cpu,
        )?;
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &Device::Cpu)?;
        let labels_t = Tensor::new(&[2u32, 0], &Device::Cpu)?;
        let mut rng = DropoutRng::new(1);
        let loss = candle_nn::loss::cross_entropy(
            &model.forward(&ids, &mask, Some(&mut rng))?,
            &labels_t,
        )?;
        let mut sgd = candle_nn::SGD::new(vars.all_vars(), 0.5)?;
        sgd.backward_step(&loss)?;
        let logits: Vec<Vec<f32>> = model.forward(&ids, &mask, None)?.to_vec2()?;

        let out = tempfile::tempdir()?;
        let labels: Vec<String> = ["neg", "neutral", "pos"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        model.save_pretrained(&vars, out.path(), &labels)?;
        let res = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(out.path())
            .arg(serde_json::to_string(&ids_v)?)
            .arg(serde_json::to_string(&mask_v)?)
            .output()?;
        anyhow::ensure!(
            res.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&res.stdout)?;
        let py: Vec<Vec<f32>> = serde_json::from_value(v["logits"].clone())?;
        assert_eq!(v["labels"], serde_json::json!(labels));
        let d = logits
            .iter()
            .flatten()
            .zip(py.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: saved model, candle vs transformers max |Δ| logits {d:.3e}");
        assert!(d <= 1e-4, "{name}: {d}");
    }
    Ok(())
}
