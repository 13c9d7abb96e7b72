//! Shared helpers of the ONNX export tests: tiny random models, a plain candle reference
//! forward, running an exported graph in tract, and the python peer (onnx.checker + onnxruntime).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor, D};
use edgebert_models::config::{Activation, Architecture, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tract_onnx::prelude::*;

/// A batch: token ids and attention masks, `[batch][sequence]`.
#[derive(Clone, Debug)]
pub struct Case {
    pub input_ids: Vec<Vec<i64>>,
    pub attention_mask: Vec<Vec<i64>>,
}

/// Whether python with onnx/onnxruntime/numpy is usable; follows the team's skip pattern.
pub fn python_ready(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var_os("EDGEBERT_REQUIRE_PYTHON").is_some() {
        panic!("EDGEBERT_REQUIRE_PYTHON is set but python3 with onnx, onnxruntime, numpy is unavailable");
    }
    eprintln!("SKIPPED {test}: python3 with onnx/onnxruntime/numpy unavailable");
    false
}

/// `$EDGEBERT_SHARED`; panics with how to set it when unset (the tests that call this are
/// `#[ignore]`d, so they run only with `--include-ignored`).
pub fn shared_dir(test: &str) -> PathBuf {
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
        },
        None => panic!(
            "{test} needs EDGEBERT_SHARED: the folder holding data/emotion and models/all-MiniLM-L6-v2 (this test is ignored by default; run it with `EDGEBERT_SHARED=../shared cargo test --workspace -- --include-ignored`)"
        ),
    }
}

/// The repository root (parent of `models/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("models/ has a parent")
        .to_path_buf()
}

/// A tiny HF config of the given family.
pub fn tiny_config(arch: Architecture, activation: &str) -> ModelConfig {
    let json = match arch {
        Architecture::DistilBert => format!(
            r#"{{"model_type":"distilbert","vocab_size":97,"dim":32,"n_layers":2,"n_heads":4,
               "hidden_dim":64,"activation":"{activation}","max_position_embeddings":40,
               "id2label":{{"0":"neg","1":"neu","2":"pos"}}}}"#
        ),
        Architecture::Bert => format!(
            r#"{{"model_type":"bert","vocab_size":97,"hidden_size":32,"num_hidden_layers":2,
               "num_attention_heads":4,"intermediate_size":64,"hidden_act":"{activation}",
               "max_position_embeddings":40,"type_vocab_size":2,"layer_norm_eps":1e-12,
               "id2label":{{"0":"neg","1":"neu","2":"pos"}}}}"#
        ),
    };
    ModelConfig::from_json_str(&json, Path::new("<tiny>")).expect("tiny config parses")
}

/// Names and shapes of every tensor of the classifier, HF naming with the family prefix.
pub fn tensor_shapes(cfg: &ModelConfig, n_labels: usize) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    let p = cfg.architecture.prefix();
    let mut v: Vec<(String, Vec<usize>)> = vec![
        (
            format!("{p}.embeddings.word_embeddings.weight"),
            vec![cfg.vocab_size, h],
        ),
        (
            format!("{p}.embeddings.position_embeddings.weight"),
            vec![cfg.max_position_embeddings, h],
        ),
        (format!("{p}.embeddings.LayerNorm.weight"), vec![h]),
        (format!("{p}.embeddings.LayerNorm.bias"), vec![h]),
    ];
    let lin = |v: &mut Vec<(String, Vec<usize>)>, n: String, o: usize, i: usize| {
        v.push((format!("{n}.weight"), vec![o, i]));
        v.push((format!("{n}.bias"), vec![o]));
    };
    let ln = |v: &mut Vec<(String, Vec<usize>)>, n: String| {
        v.push((format!("{n}.weight"), vec![h]));
        v.push((format!("{n}.bias"), vec![h]));
    };
    for i in 0..cfg.num_layers {
        match cfg.architecture {
            Architecture::DistilBert => {
                let l = format!("{p}.transformer.layer.{i}");
                for n in ["q_lin", "k_lin", "v_lin", "out_lin"] {
                    lin(&mut v, format!("{l}.attention.{n}"), h, h);
                }
                ln(&mut v, format!("{l}.sa_layer_norm"));
                lin(&mut v, format!("{l}.ffn.lin1"), f, h);
                lin(&mut v, format!("{l}.ffn.lin2"), h, f);
                ln(&mut v, format!("{l}.output_layer_norm"));
            }
            Architecture::Bert => {
                let l = format!("{p}.encoder.layer.{i}");
                for n in ["query", "key", "value"] {
                    lin(&mut v, format!("{l}.attention.self.{n}"), h, h);
                }
                lin(&mut v, format!("{l}.attention.output.dense"), h, h);
                ln(&mut v, format!("{l}.attention.output.LayerNorm"));
                lin(&mut v, format!("{l}.intermediate.dense"), f, h);
                lin(&mut v, format!("{l}.output.dense"), h, f);
                ln(&mut v, format!("{l}.output.LayerNorm"));
            }
        }
    }
    match cfg.architecture {
        Architecture::DistilBert => lin(&mut v, "pre_classifier".into(), h, h),
        Architecture::Bert => {
            v.push((
                format!("{p}.embeddings.token_type_embeddings.weight"),
                vec![cfg.type_vocab_size, h],
            ));
            lin(&mut v, format!("{p}.pooler.dense"), h, h);
        }
    }
    lin(&mut v, "classifier".into(), n_labels, h);
    v
}

/// Random weights with unit-scale activations (so that errors are not hidden by tiny logits).
pub fn random_weights(cfg: &ModelConfig, n_labels: usize, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    tensor_shapes(cfg, n_labels)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.contains("LayerNorm") || name.contains("layer_norm") {
                if name.ends_with("weight") {
                    (0..n).map(|_| 1.0 + rng.random_range(-0.3..0.3)).collect()
                } else {
                    (0..n).map(|_| rng.random_range(-0.2..0.2)).collect()
                }
            } else if name.contains("embeddings") {
                (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
            } else if shape.len() == 2 {
                let a = (3.0 / shape[1] as f32).sqrt() * 1.2;
                (0..n).map(|_| rng.random_range(-a..a)).collect()
            } else {
                (0..n).map(|_| rng.random_range(-0.2..0.2)).collect()
            };
            let t = Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor");
            (name, t)
        })
        .collect()
}

/// Batches of `batch` rows at sequence length `seq`: row r has `seq - 2r` real tokens (at
/// least 1), the rest padding (id 0, mask 0).
pub fn padded_case(vocab: usize, batch: usize, seq: usize, seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut input_ids = Vec::new();
    let mut attention_mask = Vec::new();
    for r in 0..batch {
        let real = seq.saturating_sub(2 * r).max(1);
        let ids: Vec<i64> = (0..seq)
            .map(|j| {
                if j < real {
                    rng.random_range(1..vocab as i64)
                } else {
                    0
                }
            })
            .collect();
        let mask: Vec<i64> = (0..seq).map(|j| (j < real) as i64).collect();
        input_ids.push(ids);
        attention_mask.push(mask);
    }
    Case {
        input_ids,
        attention_mask,
    }
}

/// The standard set of cases: batch 1 and 3 (with padding) at several sequence lengths.
pub fn standard_cases(vocab: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, seq) in [1usize, 5, 8, 17, 40].into_iter().enumerate() {
        cases.push(padded_case(vocab, 1, seq, 100 + i as u64));
        cases.push(padded_case(vocab, 3, seq, 200 + i as u64));
    }
    cases
}

fn get(w: &HashMap<String, Tensor>, prefix: &str, name: &str) -> candle_core::Result<Tensor> {
    let full = format!("{prefix}.{name}");
    w.get(&full)
        .or_else(|| w.get(name))
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg(format!("missing {full}")))?
        .to_dtype(DType::F32)
}

fn linear(
    x: &Tensor,
    w: &HashMap<String, Tensor>,
    p: &str,
    n: &str,
) -> candle_core::Result<Tensor> {
    let weight = get(w, p, &format!("{n}.weight"))?;
    let bias = get(w, p, &format!("{n}.bias"))?;
    x.broadcast_matmul(&weight.t()?)?.broadcast_add(&bias)
}

fn layer_norm(
    x: &Tensor,
    w: &HashMap<String, Tensor>,
    p: &str,
    n: &str,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let g = get(w, p, &format!("{n}.weight"))?;
    let b = get(w, p, &format!("{n}.bias"))?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(&g)?
        .broadcast_add(&b)
}

/// A plain candle forward of the classifier (the math transformers does), logits per row.
pub fn reference_logits(
    cfg: &ModelConfig,
    w: &HashMap<String, Tensor>,
    case: &Case,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let dev = Device::Cpu;
    let p = cfg.architecture.prefix();
    let (b, s, h) = (
        case.input_ids.len(),
        case.input_ids[0].len(),
        cfg.hidden_size,
    );
    let (nh, dh) = (cfg.num_heads, cfg.hidden_size / cfg.num_heads);
    let ids: Vec<u32> = case.input_ids.iter().flatten().map(|&i| i as u32).collect();
    let ids = Tensor::from_vec(ids, b * s, &dev)?;
    let mut x = get(w, p, "embeddings.word_embeddings.weight")?
        .index_select(&ids, 0)?
        .reshape((b, s, h))?;
    x = x.broadcast_add(&get(w, p, "embeddings.position_embeddings.weight")?.narrow(0, 0, s)?)?;
    if cfg.architecture == Architecture::Bert {
        x = x.broadcast_add(&get(w, p, "embeddings.token_type_embeddings.weight")?.get(0)?)?;
    }
    x = layer_norm(&x, w, p, "embeddings.LayerNorm", cfg.layer_norm_eps)?;
    let mask: Vec<f32> = case
        .attention_mask
        .iter()
        .flatten()
        .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
        .collect();
    let mask = Tensor::from_vec(mask, (b, 1, 1, s), &dev)?;
    let names: [&str; 8] = match cfg.architecture {
        Architecture::DistilBert => [
            "attention.q_lin",
            "attention.k_lin",
            "attention.v_lin",
            "attention.out_lin",
            "sa_layer_norm",
            "ffn.lin1",
            "ffn.lin2",
            "output_layer_norm",
        ],
        Architecture::Bert => [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ],
    };
    let layer = match cfg.architecture {
        Architecture::DistilBert => "transformer.layer",
        Architecture::Bert => "encoder.layer",
    };
    for i in 0..cfg.num_layers {
        let n = |k: usize| format!("{layer}.{i}.{}", names[k]);
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, s, nh, dh))?.transpose(1, 2)?.contiguous()
        };
        let q = split(linear(&x, w, p, &n(0))?)?;
        let k = split(linear(&x, w, p, &n(1))?)?;
        let v = split(linear(&x, w, p, &n(2))?)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (dh as f64).sqrt()))?;
        let scores = scores.broadcast_add(&mask)?;
        let max = scores.max_keepdim(D::Minus1)?;
        let e = scores.broadcast_sub(&max)?.exp()?;
        let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, h))?;
        let a = linear(&ctx, w, p, &n(3))?;
        let x1 = layer_norm(&(a + &x)?, w, p, &n(4), cfg.layer_norm_eps)?;
        let f = linear(&x1, w, p, &n(5))?;
        let f = match cfg.activation {
            Activation::Gelu => f.gelu_erf()?,
            Activation::GeluTanh => f.gelu()?,
            Activation::Relu => f.relu()?,
        };
        let f = linear(&f, w, p, &n(6))?;
        x = layer_norm(&(f + x1)?, w, p, &n(7), cfg.layer_norm_eps)?;
    }
    let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
    let pooled = match cfg.architecture {
        Architecture::DistilBert => linear(&cls, w, "", "pre_classifier")?.relu()?,
        Architecture::Bert => linear(&cls, w, p, "pooler.dense")?.tanh()?,
    };
    linear(&pooled, w, "", "classifier")?.to_vec2::<f32>()
}

/// Runs an exported graph in tract with the inputs fixed to the case's concrete shape.
pub fn tract_logits(bytes: &[u8], case: &Case) -> TractResult<Vec<Vec<f32>>> {
    let (b, s) = (case.input_ids.len(), case.input_ids[0].len());
    // tract's parser plus the runtime's fused int8 Linear node
    let model = edgebert_runtime::internals::onnx()
        .model_for_read(&mut &bytes[..])?
        .with_input_fact(0, InferenceFact::dt_shape(i64::datum_type(), tvec![b, s]))?
        .with_input_fact(1, InferenceFact::dt_shape(i64::datum_type(), tvec![b, s]))?
        .into_optimized()?
        .into_runnable()?;
    let ids: Vec<i64> = case.input_ids.iter().flatten().copied().collect();
    let mask: Vec<i64> = case.attention_mask.iter().flatten().copied().collect();
    let ids = tract_onnx::prelude::Tensor::from_shape(&[b, s], &ids)?;
    let mask = tract_onnx::prelude::Tensor::from_shape(&[b, s], &mask)?;
    let out = model.run(tvec![ids.into(), mask.into()])?;
    let view = out[0].to_plain_array_view::<f32>()?;
    let shape = view.shape().to_vec();
    if shape.len() != 2 || shape[0] != b {
        return Err(TractError::msg(format!(
            "logits shape {shape:?}, expected [{b}, n]"
        )));
    }
    Ok(view
        .outer_iter()
        .map(|row| row.iter().copied().collect())
        .collect())
}

/// What `scripts/onnx_check.py` reports.
pub struct PeerReport {
    pub json: serde_json::Value,
    pub logits: Vec<Vec<Vec<f32>>>,
}

/// Writes the model and cases to a temp dir and runs `scripts/onnx_check.py` on them.
pub fn onnx_peer(bytes: &[u8], cases: &[Case], tag: &str) -> PeerReport {
    let dir = std::env::temp_dir().join(format!("edgebert-onnx-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("model.onnx");
    edgebert_models::onnx::write_onnx(&model, bytes).expect("write model");
    let cases_json: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| serde_json::json!({"input_ids": c.input_ids, "attention_mask": c.attention_mask}))
        .collect();
    let cases_path = dir.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases_json).expect("json"))
        .expect("write cases");
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/onnx_check.py"))
        .arg(&model)
        .arg(&cases_path)
        .output()
        .expect("run python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "onnx_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peer JSON");
    let logits = json["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|case| {
            case.as_array()
                .expect("case")
                .iter()
                .map(|row| {
                    row.as_array()
                        .expect("row")
                        .iter()
                        .map(|v| v.as_f64().expect("f") as f32)
                        .collect()
                })
                .collect()
        })
        .collect();
    PeerReport { json, logits }
}

/// max |a - b| over two logit matrices of the same shape (panics on a shape mismatch).
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "batch size differs");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "label count differs");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0f32, f32::max)
}

/// max |x| over a logit matrix.
pub fn max_abs(a: &[Vec<f32>]) -> f32 {
    a.iter().flatten().fold(0f32, |m, v| m.max(v.abs()))
}

/// Whether onnxruntime's u8 x s8 integer GEMM is exact on this CPU. On x86 without VNNI it
/// uses `vpmaddubsw`, whose int16 pair sums saturate for full-range int8 weights (onnxruntime's
/// `reduce_range` case), so its int8 logits drift from tract's exact ones there.
pub fn ort_u8s8_exact() -> bool {
    if !cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
        return true;
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.contains("avx512_vnni") || s.contains("avx_vnni"))
        .unwrap_or(false)
}
