//! Bad input never panics: truncated/corrupt safetensors, wrong shapes, missing and unexpected
//! tensors, unknown config values, empty or incomplete directories, bad id tensors. Every error
//! names the file and the tensor or field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use edgebert_models::{Error, ModelConfig, ModelFiles, SequenceClassifier};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies a fixture into a temp dir so that a test can damage it.
fn copy_fixture(name: &str) -> anyhow::Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    for f in ["config.json", "model.safetensors", "vocab.txt"] {
        std::fs::copy(fixture(name).join(f), tmp.path().join(f))?;
    }
    Ok(tmp)
}

fn load_err(dir: &Path) -> String {
    let spec = dir.to_string_lossy().to_string();
    let res =
        ModelFiles::resolve(&spec).and_then(|f| SequenceClassifier::load(&f, 6, &Device::Cpu, 0));
    match res {
        Ok(_) => panic!("{spec}: expected an error"),
        Err(e) => e.to_string(),
    }
}

fn edit_config(
    dir: &Path,
    f: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> anyhow::Result<()> {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    f(v.as_object_mut().ok_or_else(|| anyhow::anyhow!("object"))?);
    std::fs::write(&path, serde_json::to_string(&v)?)?;
    Ok(())
}

/// Rewrites model.safetensors through `f` (names -> tensors).
fn edit_weights(dir: &Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) -> anyhow::Result<()> {
    let path = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu)?;
    f(&mut t);
    candle_core::safetensors::save(&t, &path)?;
    Ok(())
}

#[test]
fn truncated_safetensors_names_the_file() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-bert")?;
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path)?;
    for keep in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..keep])?;
        let e = load_err(tmp.path());
        assert!(e.contains("model.safetensors"), "truncated to {keep}: {e}");
        assert!(e.contains("safetensors file"), "truncated to {keep}: {e}");
    }
    Ok(())
}

#[test]
fn corrupt_safetensors_header_names_the_file() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-distilbert")?;
    let path = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path)?;
    // Header length far beyond the file, then garbage JSON.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&path, &huge)?;
    assert!(load_err(tmp.path()).contains("model.safetensors"));
    for b in bytes.iter_mut().skip(8).take(20) {
        *b = b'#';
    }
    std::fs::write(&path, &bytes)?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a readable"),
        "{e}"
    );
    Ok(())
}

#[test]
fn wrong_shape_names_tensor_and_shapes() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-distilbert")?;
    edit_weights(tmp.path(), |t| {
        if let Ok(bad) = Tensor::zeros((64, 31), candle_core::DType::F32, &Device::Cpu) {
            t.insert("distilbert.transformer.layer.1.ffn.lin1.weight".into(), bad);
        }
    })?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("distilbert.transformer.layer.1.ffn.lin1.weight"),
        "{e}"
    );
    assert!(e.contains("[64, 32]") && e.contains("[64, 31]"), "{e}");
    assert!(e.contains("model.safetensors"), "{e}");
    Ok(())
}

#[test]
fn head_with_other_label_count_is_reported() -> anyhow::Result<()> {
    let files = ModelFiles::resolve(fixture("tiny-bert").to_str().unwrap_or_default())?;
    let e = SequenceClassifier::load(&files, 3, &Device::Cpu, 0)
        .err()
        .map(|e| e.to_string());
    let e = e.unwrap_or_default();
    assert!(
        e.contains("classifier.weight") && e.contains("[3, 32]") && e.contains("[6, 32]"),
        "{e}"
    );
    // Opting in re-initialises the head instead.
    let opts = edgebert_models::LoadOptions {
        num_labels: Some(3),
        reinit_mismatched_head: true,
        ..Default::default()
    };
    let (m, _) = SequenceClassifier::load_with(&files, &opts, &Device::Cpu)?;
    assert_eq!(m.num_labels(), 3);
    assert_eq!(
        m.load_report().fresh,
        vec!["classifier.weight", "classifier.bias"]
    );
    Ok(())
}

#[test]
fn missing_encoder_tensor_is_reported_with_shape() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-bert")?;
    edit_weights(tmp.path(), |t| {
        t.remove("bert.encoder.layer.0.attention.self.value.bias");
    })?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("missing tensors")
            && e.contains("bert.encoder.layer.0.attention.self.value.bias [32]"),
        "{e}"
    );
    Ok(())
}

#[test]
fn unexpected_tensor_is_reported_with_shape() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-bert")?;
    edit_weights(tmp.path(), |t| {
        if let Ok(x) = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu) {
            t.insert("bert.encoder.layer.2.output.dense.weight".into(), x);
        }
    })?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("unexpected tensors")
            && e.contains("bert.encoder.layer.2.output.dense.weight [2, 3]"),
        "{e}"
    );
    Ok(())
}

#[test]
fn integer_weight_tensor_is_reported() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-bert")?;
    edit_weights(tmp.path(), |t| {
        if let Ok(x) = Tensor::zeros(32, candle_core::DType::U32, &Device::Cpu) {
            t.insert("bert.embeddings.LayerNorm.bias".into(), x);
        }
    })?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("bert.embeddings.LayerNorm.bias") && e.contains("U32"),
        "{e}"
    );
    Ok(())
}

#[test]
fn unknown_config_values_name_the_field() -> anyhow::Result<()> {
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "tiny-distilbert",
            "activation",
            Value::from("swish"),
            "\"activation\" = \"swish\" is not supported",
        ),
        (
            "tiny-bert",
            "hidden_act",
            Value::from("silu"),
            "\"hidden_act\" = \"silu\" is not supported",
        ),
        (
            "tiny-bert",
            "model_type",
            Value::from("roberta"),
            "\"model_type\" = \"roberta\"",
        ),
        (
            "tiny-distilbert",
            "sinusoidal_pos_embds",
            Value::from(true),
            "\"sinusoidal_pos_embds\"",
        ),
        (
            "tiny-bert",
            "position_embedding_type",
            Value::from("relative_key"),
            "\"position_embedding_type\"",
        ),
        (
            "tiny-bert",
            "num_attention_heads",
            Value::from(5),
            "\"num_attention_heads\" = 5 does not divide",
        ),
        (
            "tiny-distilbert",
            "dim",
            Value::from("wide"),
            "\"dim\" = \"wide\" is not a non-negative integer",
        ),
        (
            "tiny-bert",
            "hidden_dropout_prob",
            Value::from(1.5),
            "\"hidden_dropout_prob\" = 1.5",
        ),
        (
            "tiny-bert",
            "vocab_size",
            Value::Null,
            "\"vocab_size\" is missing",
        ),
        (
            "tiny-distilbert",
            "pad_token_id",
            Value::from(5000),
            "\"pad_token_id\" = 5000",
        ),
    ];
    for (fixture_name, field, value, want) in cases {
        let tmp = copy_fixture(fixture_name)?;
        edit_config(tmp.path(), |o| {
            o.insert(field.into(), value.clone());
        })?;
        let e = load_err(tmp.path());
        assert!(
            e.contains("config.json") && e.contains(want),
            "{field}={value}: {e}"
        );
    }
    Ok(())
}

#[test]
fn bad_labels_name_the_field() -> anyhow::Result<()> {
    let text = r#"{"model_type":"bert","vocab_size":10,"hidden_size":4,"num_attention_heads":2,
        "num_hidden_layers":1,"intermediate_size":8,"id2label":{"0":"a","2":"b"}}"#;
    let e = ModelConfig::from_json_str(text, Path::new("x/config.json"))
        .err()
        .map(|e| e.to_string());
    let e = e.unwrap_or_default();
    assert!(
        e.contains("x/config.json") && e.contains("\"id2label\"") && e.contains("id 1 is missing"),
        "{e}"
    );
    let text = r#"{"model_type":"bert","vocab_size":10,"hidden_size":4,"num_attention_heads":2,
        "num_hidden_layers":1,"intermediate_size":8,"id2label":{"0":"a","1":"b"},"label2id":{"a":1}}"#;
    let e = ModelConfig::from_json_str(text, Path::new("config.json"))
        .err()
        .map(|e| e.to_string());
    assert!(e.unwrap_or_default().contains("\"label2id\""));
    Ok(())
}

#[test]
fn invalid_json_names_the_file() -> anyhow::Result<()> {
    let tmp = copy_fixture("tiny-bert")?;
    std::fs::write(tmp.path().join("config.json"), "{\"model_type\": \"bert\",")?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );
    Ok(())
}

#[test]
fn empty_and_incomplete_directories() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("config.json and model.safetensors are missing"),
        "{e}"
    );
    std::fs::write(tmp.path().join("config.json"), "{}")?;
    assert!(load_err(tmp.path()).contains("model.safetensors is missing"));
    std::fs::remove_file(tmp.path().join("config.json"))?;
    std::fs::copy(
        fixture("tiny-bert/model.safetensors"),
        tmp.path().join("model.safetensors"),
    )?;
    assert!(load_err(tmp.path()).contains("config.json is missing"));
    let file = tmp.path().join("model.safetensors");
    assert!(load_err(&file).contains("is not a directory"));
    Ok(())
}

#[test]
fn pytorch_only_directory_says_how_to_convert() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::copy(
        fixture("tiny-bert/config.json"),
        tmp.path().join("config.json"),
    )?;
    std::fs::write(tmp.path().join("pytorch_model.bin"), b"not really")?;
    let e = load_err(tmp.path());
    assert!(
        e.contains("pytorch_model.bin") && e.contains("safe_serialization=True"),
        "{e}"
    );
    Ok(())
}

#[test]
fn nonexistent_path_is_not_mistaken_for_a_hub_id() {
    let e = ModelFiles::resolve("./no/such/dir")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("no such directory"), "{e}");
}

#[test]
fn bad_input_tensors_are_errors() -> anyhow::Result<()> {
    let files = ModelFiles::resolve(fixture("tiny-distilbert").to_str().unwrap_or_default())?;
    let (m, _) = SequenceClassifier::load(&files, 6, &Device::Cpu, 0)?;
    let dev = Device::Cpu;
    let ok_mask = Tensor::ones((1, 3), candle_core::DType::U32, &dev)?;
    let cases: Vec<(Tensor, Tensor, &str)> = vec![
        (
            Tensor::new(&[[101u32, 1000, 102]], &dev)?,
            ok_mask.clone(),
            "outside vocab_size",
        ),
        (
            Tensor::new(&[[101i64, -3, 102]], &dev)?,
            ok_mask.clone(),
            "negative id",
        ),
        (
            Tensor::new(&[[1f32, 2., 3.]], &dev)?,
            ok_mask.clone(),
            "dtype",
        ),
        (
            Tensor::new(&[101u32, 5, 102], &dev)?,
            ok_mask.clone(),
            "[batch, seq]",
        ),
        (
            Tensor::new(&[[101u32, 5, 102]], &dev)?,
            Tensor::ones((1, 4), candle_core::DType::U32, &dev)?,
            "attention_mask",
        ),
        (
            Tensor::zeros((1, 65), candle_core::DType::U32, &dev)?,
            Tensor::ones((1, 65), candle_core::DType::U32, &dev)?,
            "max_position_embeddings",
        ),
        (
            Tensor::zeros((0, 3), candle_core::DType::U32, &dev)?,
            Tensor::zeros((0, 3), candle_core::DType::U32, &dev)?,
            "empty batch",
        ),
    ];
    for (ids, mask, want) in cases {
        match m.forward(&ids, &mask, None) {
            Err(e @ Error::Input(_)) => assert!(e.to_string().contains(want), "{e} lacks {want}"),
            other => panic!(
                "expected Input error containing {want}, got {:?}",
                other.map(|t| t.dims().to_vec())
            ),
        }
    }
    Ok(())
}
