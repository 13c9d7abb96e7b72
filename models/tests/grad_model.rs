//! Whole-model gradient tests: finite differences on a few parameters of the tiny fixtures (f64,
//! with dropout active under a fixed seed), and every trainable variable receiving a gradient.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use edgebert_models::{DropoutRng, LoadOptions, ModelFiles, SequenceClassifier};

fn load(name: &str, dtype: DType) -> anyhow::Result<(SequenceClassifier, VarMap)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let files = ModelFiles::from_dir(&dir, name)?;
    let opts = LoadOptions {
        num_labels: Some(6),
        dtype,
        ..LoadOptions::default()
    };
    Ok(SequenceClassifier::load_with(&files, &opts, &Device::Cpu)?)
}

fn batch() -> anyhow::Result<(Tensor, Tensor, Tensor)> {
    let ids = Tensor::new(
        &[
            [101u32, 17, 230, 999, 45, 102],
            [101, 300, 102, 0, 0, 0],
            [101, 5, 6, 7, 8, 102],
        ],
        &Device::Cpu,
    )?;
    let mask = Tensor::new(
        &[
            [1u32, 1, 1, 1, 1, 1],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        &Device::Cpu,
    )?;
    let labels = Tensor::new(&[1u32, 4, 0], &Device::Cpu)?;
    Ok((ids, mask, labels))
}

fn loss(model: &SequenceClassifier, seed: Option<u64>) -> anyhow::Result<Tensor> {
    let (ids, mask, labels) = batch()?;
    let mut rng = seed.map(DropoutRng::new);
    let logits = model.forward(&ids, &mask, rng.as_mut())?;
    Ok(candle_nn::loss::cross_entropy(&logits, &labels)?)
}

fn var(vars: &VarMap, name: &str) -> anyhow::Result<Var> {
    let data = vars.data().lock().map_err(|_| anyhow::anyhow!("lock"))?;
    data.get(name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no var {name}"))
}

fn finite_difference_check(name: &str, params: &[(&str, usize)]) -> anyhow::Result<()> {
    let (model, vars) = load(name, DType::F64)?;
    let seed = Some(7); // dropout on, same masks in every evaluation
    let grads = loss(&model, seed)?.backward()?;
    let h = 1e-5;
    for &(pname, index) in params {
        let v = var(&vars, pname)?;
        let g = grads
            .get(&v)
            .ok_or_else(|| anyhow::anyhow!("{pname}: no gradient"))?;
        let analytic = g.flatten_all()?.to_vec1::<f64>()?[index];
        let orig = v.as_tensor().copy()?;
        let base: Vec<f64> = orig.flatten_all()?.to_vec1()?;
        let eval = |delta: f64| -> anyhow::Result<f64> {
            let mut p = base.clone();
            p[index] += delta;
            v.set(&Tensor::from_vec(p, orig.shape(), &Device::Cpu)?)?;
            Ok(loss(&model, seed)?.to_scalar::<f64>()?)
        };
        let numeric = (eval(h)? - eval(-h)?) / (2.0 * h);
        v.set(&orig)?;
        eprintln!("{name} {pname}[{index}]: analytic {analytic:.9} numeric {numeric:.9}");
        assert!(numeric.abs() > 1e-6, "{pname}[{index}]: degenerate check");
        assert!(
            (analytic - numeric).abs() <= 1e-5 * numeric.abs().max(1e-2),
            "{pname}[{index}]: analytic {analytic} vs numeric {numeric}"
        );
    }
    Ok(())
}

#[test]
fn distilbert_gradients_match_finite_differences() -> anyhow::Result<()> {
    finite_difference_check(
        "tiny-distilbert",
        &[
            ("distilbert.embeddings.word_embeddings.weight", 17 * 32 + 3),
            (
                "distilbert.embeddings.position_embeddings.weight",
                2 * 32 + 5,
            ),
            ("distilbert.embeddings.LayerNorm.weight", 4),
            ("distilbert.transformer.layer.0.attention.q_lin.weight", 40),
            ("distilbert.transformer.layer.0.attention.v_lin.bias", 3),
            ("distilbert.transformer.layer.0.sa_layer_norm.bias", 9),
            ("distilbert.transformer.layer.1.ffn.lin1.weight", 100),
            (
                "distilbert.transformer.layer.1.output_layer_norm.weight",
                31,
            ),
            ("pre_classifier.weight", 7),
            ("classifier.bias", 1),
        ],
    )
}

#[test]
fn bert_gradients_match_finite_differences() -> anyhow::Result<()> {
    finite_difference_check(
        "tiny-bert",
        &[
            ("bert.embeddings.word_embeddings.weight", 230 * 32 + 1),
            ("bert.embeddings.token_type_embeddings.weight", 6),
            ("bert.embeddings.LayerNorm.bias", 2),
            ("bert.encoder.layer.0.attention.self.key.weight", 77),
            ("bert.encoder.layer.0.attention.output.LayerNorm.weight", 12),
            ("bert.encoder.layer.1.intermediate.dense.weight", 500),
            ("bert.encoder.layer.1.output.dense.bias", 30),
            ("bert.pooler.dense.weight", 64),
            ("classifier.weight", 40),
        ],
    )
}

fn every_variable_gets_a_gradient(name: &str, expected_vars: usize) -> anyhow::Result<()> {
    let (model, vars) = load(name, DType::F32)?;
    let all = vars.all_vars();
    assert_eq!(all.len(), expected_vars, "{name}: variable count");
    for seed in [None, Some(3)] {
        let grads = loss(&model, seed)?.backward()?;
        let data = vars.data().lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let mut without = Vec::new();
        for (n, v) in data.iter() {
            // The key bias shifts every score of a query row equally, so softmax cancels its
            // gradient mathematically (as in PyTorch): it must be in the graph, not non-zero.
            let key_bias = n.ends_with("k_lin.bias") || n.ends_with("self.key.bias");
            let ok = match grads.get(v) {
                Some(g) => key_bias || g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0,
                None => false,
            };
            if !ok {
                without.push(n.clone());
            }
        }
        without.sort();
        assert!(
            without.is_empty(),
            "{name} (dropout {seed:?}): no gradient for {without:?}"
        );
    }
    Ok(())
}

#[test]
fn every_distilbert_variable_gets_a_gradient() -> anyhow::Result<()> {
    // 2 embeddings + 2 LN + 2 layers * 16 + pre_classifier 2 + classifier 2
    every_variable_gets_a_gradient("tiny-distilbert", 40)
}

#[test]
fn every_bert_variable_gets_a_gradient() -> anyhow::Result<()> {
    // 3 embeddings + 2 LN + 2 layers * 16 + pooler 2 + classifier 2
    every_variable_gets_a_gradient("tiny-bert", 41)
}

#[test]
fn dropout_is_seeded_and_only_active_in_training() -> anyhow::Result<()> {
    let (model, _) = load("tiny-distilbert", DType::F32)?;
    let eval_a = loss(&model, None)?.to_scalar::<f32>()?;
    let eval_b = loss(&model, None)?.to_scalar::<f32>()?;
    let train_a = loss(&model, Some(1))?.to_scalar::<f32>()?;
    let train_b = loss(&model, Some(1))?.to_scalar::<f32>()?;
    let train_c = loss(&model, Some(2))?.to_scalar::<f32>()?;
    assert_eq!(eval_a, eval_b);
    assert_eq!(train_a, train_b, "same seed, same masks");
    assert_ne!(train_a, eval_a, "dropout active in training");
    assert_ne!(train_a, train_c, "different seed, different masks");
    Ok(())
}
