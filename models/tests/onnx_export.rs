//! fp32 ONNX export of the sequence classifiers: graph shape rules, tract and onnxruntime parity
//! with a candle reference forward (and with the PyTorch fixtures' logits where present).

mod onnx_common;

use std::collections::HashMap;

use candle_core::Tensor;
use edgebert_models::config::{Architecture, ModelConfig};
use edgebert_models::onnx::{export_classifier, write_onnx, ExportOptions};
use onnx_common::*;
use prost::Message;
use tract_onnx::pb::ModelProto;

const TOL: f32 = 1e-4;

fn families() -> Vec<(&'static str, ModelConfig)> {
    vec![
        (
            "distilbert-gelu",
            tiny_config(Architecture::DistilBert, "gelu"),
        ),
        ("bert-gelu", tiny_config(Architecture::Bert, "gelu")),
        (
            "distilbert-relu",
            tiny_config(Architecture::DistilBert, "relu"),
        ),
        ("bert-gelu_new", tiny_config(Architecture::Bert, "gelu_new")),
    ]
}

#[test]
fn graph_declares_dynamic_int64_inputs_labels_and_no_value_info() {
    let cfg = tiny_config(Architecture::DistilBert, "gelu");
    let w = random_weights(&cfg, 3, 1);
    let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
    let m = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].domain, "");
    assert_eq!(m.opset_import[0].version, 17);
    let g = m.graph.unwrap();
    assert!(
        g.value_info.is_empty(),
        "intermediate value_info must not be emitted"
    );
    assert!(
        g.node.iter().all(|n| n.domain.is_empty()),
        "standard domain only"
    );
    let names: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask"]);
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, "logits");
    for input in &g.input {
        let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.clone())
        else {
            panic!("input {} has no tensor type", input.name);
        };
        assert_eq!(
            t.elem_type,
            tract_onnx::pb::tensor_proto::DataType::Int64 as i32
        );
        let dims = t.shape.unwrap().dim;
        assert_eq!(dims.len(), 2);
        for d in dims {
            assert!(matches!(
                d.value,
                Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimParam(_))
            ));
        }
    }
    let meta: HashMap<_, _> = m
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["labels"], r#"["neg","neu","pos"]"#);
    assert_eq!(meta["edgebert.architecture"], "distilbert");
    assert_eq!(meta["edgebert.quantization"], "none");
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert!(ops.contains(&"Erf"), "exact GELU goes through Erf");
    assert!(ops.contains(&"LayerNormalization"));
    assert!(!ops.contains(&"MatMulInteger"));
}

#[test]
fn labels_option_overrides_config_and_must_match_head() {
    let cfg = tiny_config(Architecture::Bert, "gelu");
    let w = random_weights(&cfg, 3, 2);
    let opts = ExportOptions {
        labels: vec!["a".into(), "b".into(), "c".into()],
        ..Default::default()
    };
    let m = ModelProto::decode(&export_classifier(&cfg, &w, &opts).unwrap()[..]).unwrap();
    assert!(m
        .metadata_props
        .iter()
        .any(|p| p.key == "labels" && p.value == r#"["a","b","c"]"#));
    let opts = ExportOptions {
        labels: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let err = export_classifier(&cfg, &w, &opts).unwrap_err().to_string();
    assert!(
        err.contains("classifier.weight") && err.contains('2'),
        "{err}"
    );
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let cfg = tiny_config(Architecture::DistilBert, "gelu");
    let mut w = random_weights(&cfg, 3, 3);
    w.remove("distilbert.transformer.layer.1.ffn.lin2.weight");
    let err = export_classifier(&cfg, &w, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("distilbert.transformer.layer.1.ffn.lin2.weight"),
        "{err}"
    );
    assert!(err.contains("[32, 64]"), "{err}");

    let mut w = random_weights(&cfg, 3, 3);
    w.insert(
        "distilbert.transformer.layer.0.attention.k_lin.bias".into(),
        Tensor::zeros(31, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    let err = export_classifier(&cfg, &w, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attention.k_lin.bias") && err.contains("[31]"),
        "{err}"
    );

    let w = random_weights(&cfg, 3, 3);
    let opts = ExportOptions {
        opset: 13,
        ..Default::default()
    };
    assert!(export_classifier(&cfg, &w, &opts)
        .unwrap_err()
        .to_string()
        .contains("opset 13"));
}

#[test]
fn unprefixed_base_model_names_are_accepted() {
    let cfg = tiny_config(Architecture::Bert, "gelu");
    let w = random_weights(&cfg, 3, 4);
    let stripped: HashMap<String, Tensor> = w
        .iter()
        .map(|(k, v)| (k.strip_prefix("bert.").unwrap_or(k).to_string(), v.clone()))
        .collect();
    let a = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
    let b = export_classifier(&cfg, &stripped, &ExportOptions::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn write_onnx_replaces_the_file_atomically() {
    let dir = std::env::temp_dir().join(format!("edgebert-write-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.onnx");
    write_onnx(&path, b"first").unwrap();
    write_onnx(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp file remains");
    let err = write_onnx(&dir.join("missing-dir/model.onnx"), b"x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing-dir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fp32_tract_matches_candle_reference_batch_1_and_3_with_padding() {
    for (tag, cfg) in families() {
        let w = random_weights(&cfg, 3, 11);
        let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
        let mut worst = 0f32;
        for case in standard_cases(cfg.vocab_size) {
            let want = reference_logits(&cfg, &w, &case).unwrap();
            let got = tract_logits(&bytes, &case).unwrap();
            let d = max_abs_diff(&got, &want);
            assert!(
                d <= TOL,
                "{tag} batch {} seq {}: tract max |Δ| {d}",
                case.input_ids.len(),
                case.input_ids[0].len()
            );
            assert!(
                max_abs(&want) > 0.1,
                "{tag}: logits too small to test anything"
            );
            worst = worst.max(d);
        }
        eprintln!("{tag}: fp32 tract vs candle reference max |Δ| = {worst:.2e}");
    }
}

/// The runtime's fused LayerNorm: every `LayerNormalization` becomes one node (with the residual
/// `Add` before it folded in where it is the sum's only reader), and the logits stay within the
/// fp32 tolerance of the candle reference, batched and padded.
#[test]
fn fp32_fused_layer_norm_matches_candle_reference() {
    use edgebert_runtime::internals::{fuse_layer_norms, LAYER_NORM};
    for (tag, cfg) in families() {
        let w = random_weights(&cfg, 3, 13);
        let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
        let mut proto = ModelProto::decode(&bytes[..]).unwrap();
        // embeddings, then two per layer (after attention and after the FFN)
        let norms = 1 + 2 * cfg.num_layers;
        assert_eq!(fuse_layer_norms(&mut proto), norms, "{tag}");
        let g = proto.graph.as_ref().unwrap();
        let fused: Vec<_> = g.node.iter().filter(|n| n.op_type == LAYER_NORM).collect();
        assert_eq!(fused.len(), norms);
        assert!(g.node.iter().all(|n| n.op_type != "LayerNormalization"));
        // every residual sum of the encoder layers is folded in (and DistilBERT's sum of word
        // and position embeddings; BERT adds a constant token-type row last, which stays)
        let residuals = fused.iter().filter(|n| n.input.len() == 4).count();
        let embeddings = usize::from(cfg.architecture == Architecture::DistilBert);
        assert_eq!(residuals, 2 * cfg.num_layers + embeddings, "{tag}");
        let fused_bytes = proto.encode_to_vec();
        for case in standard_cases(cfg.vocab_size) {
            let want = reference_logits(&cfg, &w, &case).unwrap();
            let got = tract_logits(&fused_bytes, &case).unwrap();
            let d = max_abs_diff(&got, &want);
            assert!(d <= TOL, "{tag}: fused LayerNorm max |Δ| {d}");
        }
    }
}

/// The runtime's fused attention: each layer's head split, `Q·Kᵀ`, mask, softmax, `·V` and
/// head merge become one node, and the logits stay within the fp32 tolerance of the candle
/// reference, batched and padded. A block that differs from the pattern (here a Softmax written
/// with `axis = 3` instead of `-1`: the same math) is left to tract, next to fused ones.
#[test]
fn fp32_fused_attention_matches_candle_reference() {
    use edgebert_runtime::internals::{fuse_attention, fuse_layer_norms, ATTENTION};
    for (tag, cfg) in families() {
        let w = random_weights(&cfg, 3, 17);
        let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
        for unmatched in [0, 1] {
            let mut proto = ModelProto::decode(&bytes[..]).unwrap();
            let g = proto.graph.as_mut().unwrap();
            if unmatched == 1 {
                let softmax = g.node.iter_mut().find(|n| n.op_type == "Softmax").unwrap();
                softmax.attribute[0].i = 3;
            }
            let nodes = g.node.len();
            assert_eq!(fuse_layer_norms(&mut proto), 1 + 2 * cfg.num_layers);
            let fused = fuse_attention(&mut proto);
            assert_eq!(fused, cfg.num_layers - unmatched, "{tag}");
            let g = proto.graph.as_ref().unwrap();
            let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
            assert_eq!(count(ATTENTION), fused);
            assert_eq!(count("Softmax"), unmatched, "{tag}");
            assert!(g.node.len() < nodes);
            let fused_bytes = proto.encode_to_vec();
            for case in standard_cases(cfg.vocab_size) {
                let want = reference_logits(&cfg, &w, &case).unwrap();
                let got = tract_logits(&fused_bytes, &case).unwrap();
                let d = max_abs_diff(&got, &want);
                assert!(d <= TOL, "{tag}: fused attention max |Δ| {d}");
            }
        }
    }
}

#[test]
fn fp32_padding_does_not_change_real_rows() {
    // the same sentence padded to a longer length gives the same logits
    let cfg = tiny_config(Architecture::Bert, "gelu");
    let w = random_weights(&cfg, 3, 12);
    let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
    let short = padded_case(cfg.vocab_size, 1, 6, 5);
    let mut long = short.clone();
    long.input_ids[0].extend([0; 10]);
    long.attention_mask[0].extend([0; 10]);
    let a = tract_logits(&bytes, &short).unwrap();
    let b = tract_logits(&bytes, &long).unwrap();
    assert!(max_abs_diff(&a, &b) <= TOL, "{a:?} vs {b:?}");
}

#[test]
fn fp32_onnx_checker_accepts_and_onnxruntime_matches_reference() {
    if !python_ready("fp32_onnx_checker_accepts_and_onnxruntime_matches_reference") {
        return;
    }
    for (tag, cfg) in families() {
        let w = random_weights(&cfg, 3, 21);
        let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
        let cases = standard_cases(cfg.vocab_size);
        let peer = onnx_peer(&bytes, &cases, tag);
        assert_eq!(peer.json["checker"], "ok");
        assert_eq!(peer.json["value_info"], 0);
        assert_eq!(
            peer.json["inputs"][0][1],
            serde_json::json!(["batch", "sequence"])
        );
        for op in peer.json["ops"].as_array().unwrap() {
            assert_eq!(op[0], "", "{tag}: non-standard domain in {op}");
        }
        let mut worst = 0f32;
        for (case, ort) in cases.iter().zip(&peer.logits) {
            let want = reference_logits(&cfg, &w, case).unwrap();
            let d = max_abs_diff(ort, &want);
            assert!(
                d <= TOL,
                "{tag} batch {} seq {}: onnxruntime max |Δ| {d}",
                case.input_ids.len(),
                case.input_ids[0].len()
            );
            worst = worst.max(d);
        }
        eprintln!("{tag}: fp32 onnxruntime vs candle reference max |Δ| = {worst:.2e}");
    }
}

/// The committed PyTorch fixtures (models/tests/fixtures/tiny-*): reference.json batches with
/// transformers' logits.
type Fixture = (
    ModelConfig,
    HashMap<String, Tensor>,
    Vec<(Case, Vec<Vec<f32>>)>,
);

fn fixture(name: &str) -> Fixture {
    let dir = repo_root().join("models/tests/fixtures").join(name);
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let w =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let batches = json["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let rows = |k: &str| -> Vec<Vec<f64>> { serde_json::from_value(b[k].clone()).unwrap() };
            let ints = |k: &str| {
                rows(k)
                    .into_iter()
                    .map(|r| r.into_iter().map(|v| v as i64).collect())
                    .collect()
            };
            let logits = rows("logits")
                .into_iter()
                .map(|r| r.into_iter().map(|v| v as f32).collect())
                .collect();
            (
                Case {
                    input_ids: ints("input_ids"),
                    attention_mask: ints("attention_mask"),
                },
                logits,
            )
        })
        .collect();
    (cfg, w, batches)
}

/// Logits of the models crate's own candle classifier (`SequenceClassifier`).
fn candle_classifier_logits(name: &str, case: &Case) -> Vec<Vec<f32>> {
    use edgebert_models::{ModelFiles, SequenceClassifier};
    let dir = repo_root().join("models/tests/fixtures").join(name);
    let files = ModelFiles::from_dir(&dir, name).unwrap();
    let n = files.load_config().unwrap().id2label.len();
    let (model, _vars) = SequenceClassifier::load(&files, n, &candle_core::Device::Cpu, 0).unwrap();
    let (b, s) = (case.input_ids.len(), case.input_ids[0].len());
    let dev = candle_core::Device::Cpu;
    let ids = Tensor::from_vec(case.input_ids.concat(), (b, s), &dev).unwrap();
    let mask = Tensor::from_vec(case.attention_mask.concat(), (b, s), &dev).unwrap();
    model
        .forward(&ids, &mask, None)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

#[test]
fn fp32_pytorch_fixtures_match_in_tract_and_candle() {
    for name in ["tiny-distilbert", "tiny-bert"] {
        let (cfg, w, batches) = fixture(name);
        let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
        let (mut worst, mut worst_candle) = (0f32, 0f32);
        for (case, torch) in &batches {
            let got = tract_logits(&bytes, case).unwrap();
            let d = max_abs_diff(&got, torch);
            assert!(
                d <= TOL,
                "{name} batch {}x{}: tract vs PyTorch {d}",
                case.input_ids.len(),
                case.input_ids[0].len()
            );
            let c = candle_classifier_logits(name, case);
            let dc = max_abs_diff(&got, &c);
            assert!(dc <= TOL, "{name}: tract vs candle SequenceClassifier {dc}");
            worst = worst.max(d);
            worst_candle = worst_candle.max(dc);
        }
        eprintln!("{name}: fp32 tract vs PyTorch max |Δ| = {worst:.2e}, vs candle SequenceClassifier {worst_candle:.2e}");
    }
}

#[test]
fn fp32_pytorch_fixtures_match_in_onnxruntime() {
    if !python_ready("fp32_pytorch_fixtures_match_in_onnxruntime") {
        return;
    }
    for name in ["tiny-distilbert", "tiny-bert"] {
        let (cfg, w, batches) = fixture(name);
        let bytes = export_classifier(&cfg, &w, &ExportOptions::default()).unwrap();
        let cases: Vec<Case> = batches.iter().map(|(c, _)| c.clone()).collect();
        let peer = onnx_peer(&bytes, &cases, name);
        assert_eq!(peer.json["checker"], "ok");
        let labels: Vec<String> =
            serde_json::from_str(peer.json["metadata"]["labels"].as_str().unwrap()).unwrap();
        assert_eq!(labels, cfg.id2label);
        let mut worst = 0f32;
        for ((case, torch), ort) in batches.iter().zip(&peer.logits) {
            let d = max_abs_diff(ort, torch);
            assert!(
                d <= TOL,
                "{name} batch {}x{}: onnxruntime vs PyTorch {d}",
                case.input_ids.len(),
                case.input_ids[0].len()
            );
            worst = worst.max(d);
        }
        eprintln!("{name}: fp32 onnxruntime vs PyTorch max |Δ| = {worst:.2e}");
    }
}
