//! One training step of the trainer (forward, backward, its fused AdamW) for batch 64 x 32 tokens
//! at MiniLM size and DistilBERT-base size, randomly initialised from a config; prints tokens/s as
//! JSON lines.
//! `scripts/bench-train-step.py` runs it next to PyTorch (same shapes and thread count) and
//! prints the ratio.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p edgebert-trainer --example train_step -- [STEPS] [MODEL]`
//! (MODEL: `minilm` or `distilbert-base`; both when omitted).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use edgebert_models::{DropoutRng, ModelConfig, SequenceClassifier};
use edgebert_trainer::optimizer::{AdamW, AdamWConfig};

const BATCH: usize = 64;
const SEQ: usize = 32;
const LABELS: usize = 6;

fn configs() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "minilm",
            serde_json::json!({
                "model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
                "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
                "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2
            }),
        ),
        (
            "distilbert-base",
            serde_json::json!({
                "model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6,
                "n_heads": 12, "hidden_dim": 3072, "activation": "gelu",
                "max_position_embeddings": 512
            }),
        ),
    ]
}

/// Deterministic ids in [1000, 30000) with lengths 16..=32 (padding exercised), as the script.
fn batch(device: &Device) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let mut ids = vec![0u32; BATCH * SEQ];
    let mut mask = vec![0u32; BATCH * SEQ];
    let mut s: u64 = 12345;
    for r in 0..BATCH {
        let len = 16 + r % (SEQ - 15);
        for c in 0..len {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ids[r * SEQ + c] = 1000 + ((s >> 33) % 29000) as u32;
            mask[r * SEQ + c] = 1;
        }
    }
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % LABELS as u32).collect();
    Ok((
        Tensor::from_vec(ids, (BATCH, SEQ), device)?,
        Tensor::from_vec(mask, (BATCH, SEQ), device)?,
        Tensor::from_vec(labels, BATCH, device)?,
    ))
}

fn main() -> anyhow::Result<()> {
    let steps: usize = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 5,
    };
    let only = std::env::args().nth(2);
    edgebert_trainer::tune_allocator();
    let device = Device::Cpu;
    let (ids, mask, labels) = batch(&device)?;
    for (name, json) in configs() {
        if only.as_deref().is_some_and(|m| m != name) {
            continue;
        }
        let cfg = ModelConfig::from_value(json, std::path::Path::new(name))?;
        let (model, vars) = SequenceClassifier::from_config(&cfg, LABELS, &device, DType::F32, 0)?;
        let named: Vec<_> = vars
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?
            .iter()
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        let mut opt = AdamW::new(named, AdamWConfig::default())?;
        let mut rng = DropoutRng::new(0);
        let mut step = || -> anyhow::Result<()> {
            let logits = model.forward(&ids, &mask, Some(&mut rng))?;
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
            let grads = loss.backward()?;
            opt.step(&grads, 2e-5, 1.0)?;
            Ok(())
        };
        step()?; // warm-up
        let t0 = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        let dt = t0.elapsed().as_secs_f64() / steps as f64;
        let tok_s = (BATCH * SEQ) as f64 / dt;
        println!(
            "{}",
            serde_json::json!({"model": name, "step_s": dt, "tokens_per_s": tok_s, "steps": steps})
        );
    }
    Ok(())
}
