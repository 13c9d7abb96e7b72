//! Parity with PyTorch/transformers: tiny random checkpoints (fixtures written by
//! scripts/make_fixtures.py) and, when EDGEBERT_SHARED is set, the real all-MiniLM-L6-v2.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use edgebert_models::{ModelFiles, SequenceClassifier};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn matrix_i64(v: &Value) -> anyhow::Result<Tensor> {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone())?;
    let (b, s) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<i64> = rows.into_iter().flatten().collect();
    Ok(Tensor::from_vec(flat, (b, s), &Device::Cpu)?)
}

fn floats(v: &Value) -> anyhow::Result<Vec<f32>> {
    fn walk(v: &Value, out: &mut Vec<f32>) -> anyhow::Result<()> {
        match v {
            Value::Array(a) => a.iter().try_for_each(|x| walk(x, out)),
            Value::Number(n) => {
                out.push(n.as_f64().ok_or_else(|| anyhow::anyhow!("bad number"))? as f32);
                Ok(())
            }
            other => anyhow::bail!("unexpected {other}"),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out)?;
    Ok(out)
}

fn max_abs_diff(a: &Tensor, b: &[f32]) -> anyhow::Result<f32> {
    let a: Vec<f32> = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    anyhow::ensure!(a.len() == b.len(), "length {} vs {}", a.len(), b.len());
    Ok(a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max))
}

/// Returns (max |Δ| logits, max |Δ| hidden) over all reference batches.
fn check_tiny(name: &str, ids_u32: bool) -> anyhow::Result<(f32, f32)> {
    let dir = fixture(name);
    let files = ModelFiles::resolve(dir.to_str().ok_or_else(|| anyhow::anyhow!("path"))?)?;
    let (model, _vars) = SequenceClassifier::load(&files, 6, &Device::Cpu, 0)?;
    assert!(
        model.has_trained_head(),
        "{name}: head must come from the checkpoint"
    );
    assert_eq!(model.config().id2label[1], "joy");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
    let batches = reference["batches"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("batches"))?;
    assert!(batches.len() >= 3);
    let (mut dl, mut dh) = (0f32, 0f32);
    for b in batches {
        let mut ids = matrix_i64(&b["input_ids"])?;
        if ids_u32 {
            ids = ids.to_dtype(DType::U32)?;
        }
        let mask = matrix_i64(&b["attention_mask"])?;
        let logits = model.forward(&ids, &mask, None)?;
        let hidden = model.hidden_states(&ids, &mask, None)?;
        let ref_logits = floats(&b["logits"])?;
        let ref_hidden = floats(&b["last_hidden_state"])?;
        assert_eq!(logits.dims()[1], 6);
        // The references are far from zero, so a wrong op cannot hide under the tolerance.
        assert!(
            ref_logits.iter().any(|x| x.abs() > 0.1),
            "{name}: degenerate reference"
        );
        dl = dl.max(max_abs_diff(&logits, &ref_logits)?);
        dh = dh.max(max_abs_diff(&hidden, &ref_hidden)?);
    }
    eprintln!("{name}: max |Δ| logits {dl:.3e}, last_hidden_state {dh:.3e}");
    Ok((dl, dh))
}

#[test]
fn tiny_distilbert_matches_transformers() -> anyhow::Result<()> {
    for ids_u32 in [false, true] {
        let (dl, dh) = check_tiny("tiny-distilbert", ids_u32)?;
        assert!(dl <= TOL && dh <= TOL, "logits {dl}, hidden {dh} > {TOL}");
    }
    Ok(())
}

#[test]
fn tiny_bert_matches_transformers() -> anyhow::Result<()> {
    for ids_u32 in [false, true] {
        let (dl, dh) = check_tiny("tiny-bert", ids_u32)?;
        assert!(dl <= TOL && dh <= TOL, "logits {dl}, hidden {dh} > {TOL}");
    }
    Ok(())
}

#[test]
fn padding_does_not_change_unpadded_rows() -> anyhow::Result<()> {
    // The same sentence alone and padded inside a longer batch gives the same logits.
    let files = ModelFiles::resolve(fixture("tiny-bert").to_str().unwrap_or_default())?;
    let (model, _) = SequenceClassifier::load(&files, 6, &Device::Cpu, 0)?;
    let alone = Tensor::new(&[[101u32, 7, 8, 9, 102]], &Device::Cpu)?;
    let ones = Tensor::ones((1, 5), DType::U32, &Device::Cpu)?;
    let a = model.forward(&alone, &ones, None)?;
    let batch = Tensor::new(
        &[[101u32, 7, 8, 9, 102, 0, 0], [101, 5, 6, 7, 8, 9, 102]],
        &Device::Cpu,
    )?;
    let mask = Tensor::new(
        &[[1u32, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]],
        &Device::Cpu,
    )?;
    let b = model.forward(&batch, &mask, None)?.narrow(0, 0, 1)?;
    let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-5, "padded row differs by {d}");
    Ok(())
}

fn shared_dir(test: &str) -> PathBuf {
    match std::env::var_os("EDGEBERT_SHARED") {
        Some(d) => {
            // A relative path is read from the workspace root, where the README's command runs
            // (cargo runs each test in its own package's folder).
            let d = PathBuf::from(d);
            if d.is_relative() {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(d)
            } else {
                d
            }
        }
        None => panic!(
            "{test} needs EDGEBERT_SHARED: the folder holding data/emotion and models/all-MiniLM-L6-v2 (this test is ignored by default; run it with `EDGEBERT_SHARED=../shared cargo test --workspace -- --include-ignored`)"
        ),
    }
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn minilm_cls_matches_transformers() -> anyhow::Result<()> {
    let shared = shared_dir("minilm_cls_matches_transformers");
    let dir = shared.join("models/all-MiniLM-L6-v2");
    let files = ModelFiles::resolve(dir.to_str().ok_or_else(|| anyhow::anyhow!("path"))?)?;
    let (model, _) = SequenceClassifier::load(&files, 2, &Device::Cpu, 0)?;
    assert!(
        !model.has_trained_head(),
        "MiniLM has no classifier: head must be fresh"
    );
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm_reference.json"))?)?;
    let ids = matrix_i64(&reference["input_ids"])?;
    let mask = matrix_i64(&reference["attention_mask"])?;
    let cls = model.cls_hidden(&ids, &mask)?;
    assert_eq!(cls.dims(), &[3, 384]);
    let d_cls = max_abs_diff(&cls, &floats(&reference["cls"])?)?;
    let hidden = model.hidden_states(&ids, &mask, None)?;
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let mean = hidden
        .broadcast_mul(&m)?
        .sum(1)?
        .broadcast_div(&m.sum(1)?)?;
    let d_mean = max_abs_diff(&mean, &floats(&reference["mean"])?)?;
    eprintln!("MiniLM: max |Δ| cls {d_cls:.3e}, mean-pooled {d_mean:.3e}");
    assert!(d_cls <= TOL, "cls differs by {d_cls}");
    assert!(d_mean <= TOL, "mean differs by {d_mean}");
    Ok(())
}
