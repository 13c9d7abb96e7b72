//! Resolving models (local dir, hub id through the hf-hub cache with HF_HUB_OFFLINE), base vs
//! classification checkpoints, and the save_pretrained round trip.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use edgebert_models::{Architecture, ModelConfig, ModelFiles, SequenceClassifier};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn batch() -> anyhow::Result<(Tensor, Tensor)> {
    let ids = Tensor::new(
        &[[101u32, 17, 230, 999, 102], [101, 300, 102, 0, 0]],
        &Device::Cpu,
    )?;
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &Device::Cpu)?;
    Ok((ids, mask))
}

fn max_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?)
}

/// The hub path is tested up to its cache lookup: a fake HF cache under a temp HF_HOME.
/// (One test owns the HF_* variables; no other test in this binary reads them.)
#[test]
fn hub_id_resolves_from_offline_cache() -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let repo = home.path().join("hub/models--edgebert-test--tiny-bert");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap)?;
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::write(repo.join("refs/main"), rev)?;
    for f in ["config.json", "model.safetensors", "vocab.txt"] {
        std::fs::copy(fixture("tiny-bert").join(f), snap.join(f))?;
    }
    // A second repo with only pytorch_model.bin.
    let repo2 = home.path().join("hub/models--edgebert-test--pt-only");
    std::fs::create_dir_all(repo2.join("snapshots").join(rev))?;
    std::fs::create_dir_all(repo2.join("refs"))?;
    std::fs::write(repo2.join("refs/main"), rev)?;
    std::fs::copy(
        fixture("tiny-bert/config.json"),
        repo2.join("snapshots").join(rev).join("config.json"),
    )?;
    std::fs::write(
        repo2.join("snapshots").join(rev).join("pytorch_model.bin"),
        b"x",
    )?;

    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let files = ModelFiles::resolve("edgebert-test/tiny-bert")?;
    assert_eq!(files.weights, snap.join("model.safetensors"));
    assert_eq!(
        files.vocab.as_deref(),
        Some(snap.join("vocab.txt").as_path())
    );
    assert!(files.tokenizer_json.is_none());
    let (m, _) = SequenceClassifier::load(&files, 6, &Device::Cpu, 0)?;
    assert_eq!(m.config().architecture, Architecture::Bert);

    let e = ModelFiles::resolve("edgebert-test/absent")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("edgebert-test/absent")
            && e.contains("not in the local cache")
            && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
    let e = ModelFiles::resolve("edgebert-test/pt-only")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("pytorch_model.bin") && e.contains("safe_serialization=True"),
        "{e}"
    );
    let e = ModelFiles::resolve("edgebert-test/tiny-bert@feedbeef")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("not in the local cache"), "{e}");
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_HOME");
    Ok(())
}

#[test]
fn base_checkpoint_without_prefix_gets_fresh_seeded_head() -> anyhow::Result<()> {
    // Rewrite the tiny DistilBERT as a bare DistilBertModel (no prefix, no head, plus MLM tensors).
    let tmp = tempfile::tempdir()?;
    std::fs::copy(
        fixture("tiny-distilbert/config.json"),
        tmp.path().join("config.json"),
    )?;
    let full =
        candle_core::safetensors::load(fixture("tiny-distilbert/model.safetensors"), &Device::Cpu)?;
    let mut base = std::collections::HashMap::new();
    for (k, v) in &full {
        if let Some(rest) = k.strip_prefix("distilbert.") {
            base.insert(rest.to_string(), v.clone());
        }
    }
    base.insert(
        "vocab_projector.bias".into(),
        Tensor::zeros(1000, DType::F32, &Device::Cpu)?,
    );
    candle_core::safetensors::save(&base, tmp.path().join("model.safetensors"))?;
    let files = ModelFiles::resolve(tmp.path().to_str().unwrap_or_default())?;
    let (a, _) = SequenceClassifier::load(&files, 4, &Device::Cpu, 42)?;
    let (b, _) = SequenceClassifier::load(&files, 4, &Device::Cpu, 42)?;
    let (c, _) = SequenceClassifier::load(&files, 4, &Device::Cpu, 43)?;
    assert!(!a.has_trained_head());
    assert_eq!(a.load_report().fresh.len(), 4);
    assert_eq!(a.load_report().ignored, vec!["vocab_projector.bias"]);
    assert_eq!(a.config().id2label.len(), 4);
    let (ids, mask) = batch()?;
    let (la, lb, lc) = (
        a.forward(&ids, &mask, None)?,
        b.forward(&ids, &mask, None)?,
        c.forward(&ids, &mask, None)?,
    );
    assert_eq!(la.dims(), &[2, 4]);
    assert_eq!(max_diff(&la, &lb)?, 0.0, "same seed, same head");
    assert!(max_diff(&la, &lc)? > 0.0, "different seed, different head");
    // The encoder is the checkpoint's: same hidden states as the full classifier.
    let full_files = ModelFiles::resolve(fixture("tiny-distilbert").to_str().unwrap_or_default())?;
    let (f, _) = SequenceClassifier::load(&full_files, 6, &Device::Cpu, 0)?;
    assert!(max_diff(&a.cls_hidden(&ids, &mask)?, &f.cls_hidden(&ids, &mask)?)? == 0.0);
    Ok(())
}

#[test]
fn old_gamma_beta_names_are_accepted() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::copy(
        fixture("tiny-bert/config.json"),
        tmp.path().join("config.json"),
    )?;
    let full =
        candle_core::safetensors::load(fixture("tiny-bert/model.safetensors"), &Device::Cpu)?;
    let renamed: std::collections::HashMap<String, Tensor> = full
        .iter()
        .map(|(k, v)| {
            let k = k
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (k, v.clone())
        })
        .collect();
    candle_core::safetensors::save(&renamed, tmp.path().join("model.safetensors"))?;
    let (m, _) = SequenceClassifier::load(
        &ModelFiles::resolve(tmp.path().to_str().unwrap_or_default())?,
        6,
        &Device::Cpu,
        0,
    )?;
    let (r, _) = SequenceClassifier::load(
        &ModelFiles::resolve(fixture("tiny-bert").to_str().unwrap_or_default())?,
        6,
        &Device::Cpu,
        0,
    )?;
    let (ids, mask) = batch()?;
    assert_eq!(
        max_diff(
            &m.forward(&ids, &mask, None)?,
            &r.forward(&ids, &mask, None)?
        )?,
        0.0
    );
    assert!(m.has_trained_head());
    Ok(())
}

#[test]
fn save_pretrained_round_trips() -> anyhow::Result<()> {
    for name in ["tiny-distilbert", "tiny-bert"] {
        let files = ModelFiles::resolve(fixture(name).to_str().unwrap_or_default())?;
        let (m, vars) = SequenceClassifier::load(&files, 6, &Device::Cpu, 0)?;
        let out = tempfile::tempdir()?;
        let labels: Vec<String> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        m.save_pretrained(&vars, out.path(), &labels)?;
        assert!(!out.path().join("model.safetensors.tmp").exists());
        let cfg = ModelConfig::from_file(&out.path().join("config.json"))?;
        assert_eq!(cfg.id2label, labels);
        assert_eq!(cfg.raw["label2id"]["c"], 2);
        assert_eq!(
            cfg.raw["architectures"][0],
            m.config().architecture.classifier_class()
        );
        // Untouched fields survive.
        assert_eq!(cfg.raw["vocab_size"], 1000);
        let saved =
            candle_core::safetensors::load(out.path().join("model.safetensors"), &Device::Cpu)?;
        let orig =
            candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)?;
        let mut a: Vec<&String> = saved.keys().collect();
        let mut b: Vec<&String> = orig.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "{name}: saved names equal the transformers checkpoint's"
        );
        let (m2, _) = SequenceClassifier::load(
            &ModelFiles::resolve(out.path().to_str().unwrap_or_default())?,
            6,
            &Device::Cpu,
            9,
        )?;
        let (ids, mask) = batch()?;
        assert_eq!(
            max_diff(
                &m.forward(&ids, &mask, None)?,
                &m2.forward(&ids, &mask, None)?
            )?,
            0.0
        );
        assert!(m.save_pretrained(&vars, out.path(), &labels[..2]).is_err());
    }
    Ok(())
}

#[test]
fn config_normalises_both_architectures() -> anyhow::Result<()> {
    let d = ModelConfig::from_file(&fixture("tiny-distilbert/config.json"))?;
    assert_eq!(d.architecture, Architecture::DistilBert);
    assert_eq!(
        (
            d.hidden_size,
            d.num_layers,
            d.num_heads,
            d.intermediate_size
        ),
        (32, 2, 2, 64)
    );
    assert_eq!(d.classifier_dropout, 0.2);
    assert_eq!(d.layer_norm_eps, 1e-12);
    assert_eq!(d.type_vocab_size, 0);
    assert_eq!(d.id2label.len(), 6);
    let b = ModelConfig::from_file(&fixture("tiny-bert/config.json"))?;
    assert_eq!(b.architecture, Architecture::Bert);
    assert_eq!(
        b.classifier_dropout, 0.1,
        "classifier_dropout null falls back to hidden_dropout_prob"
    );
    assert_eq!(b.type_vocab_size, 2);
    let text = r#"{"model_type":"bert","vocab_size":10,"hidden_size":4,"num_attention_heads":2,
        "num_hidden_layers":1,"intermediate_size":8,"classifier_dropout":0.25,"hidden_act":"gelu_new",
        "layer_norm_eps":1e-5,"num_labels":3}"#;
    let c = ModelConfig::from_json_str(text, Path::new("config.json"))?;
    assert_eq!(c.classifier_dropout, 0.25);
    assert_eq!(c.activation, edgebert_models::Activation::GeluTanh);
    assert_eq!(c.layer_norm_eps, 1e-5);
    assert_eq!(c.id2label, vec!["LABEL_0", "LABEL_1", "LABEL_2"]);
    let json = c.to_hf_json();
    assert_eq!(json["id2label"]["2"], "LABEL_2");
    assert!(json.get("num_labels").is_none());
    Ok(())
}

#[test]
fn random_init_follows_transformers() -> anyhow::Result<()> {
    let cfg = ModelConfig::from_file(&fixture("tiny-bert/config.json"))?;
    let (m, vars) = SequenceClassifier::from_config(&cfg, 6, &Device::Cpu, DType::F32, 5)?;
    let data = vars.data().lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let get = |n: &str| {
        data.get(n)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| anyhow::anyhow!("{n}"))
    };
    let w = get("bert.encoder.layer.0.intermediate.dense.weight")?;
    let std = w.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
    assert!((std - 0.02).abs() < 0.002, "std {std}");
    assert_eq!(
        get("bert.encoder.layer.0.output.LayerNorm.weight")?
            .min_all()?
            .to_scalar::<f32>()?,
        1.0
    );
    assert_eq!(
        get("classifier.bias")?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?,
        0.0
    );
    let pad_row = get("bert.embeddings.word_embeddings.weight")?.get(0)?;
    assert_eq!(pad_row.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
    let (ids, mask) = batch()?;
    assert_eq!(m.forward(&ids, &mask, None)?.dims(), &[2, 6]);
    Ok(())
}
