//! CPU vs CUDA parity for the trainable models: the same weights, inputs and dropout masks on both
//! devices must give the same logits, loss and gradients of one training step (fp32, 1e-4).
//! The CPU side runs the hand-written fast ops (LayerNorm, softmax, GELU custom ops), the CUDA side
//! their CUDA kernels (models/cuda/ops.cu), or the composed candle fallbacks with
//! `EDGEBERT_CUDA_KERNELS=0`: run both ways, this checks that either GPU path computes the same
//! function.
//!
//! Built only with `--features cuda`; needs an NVIDIA GPU at run time. Without one the tests print
//! `SKIPPED` and pass, unless `EDGEBERT_REQUIRE_CUDA` is set (the device script sets it).
//! `cuda_train_step_throughput` is `#[ignore]`d: a timing run (DistilBERT-base size, random weights,
//! candle-nn AdamW), started explicitly by `scripts/device-gpu-check`.
#![cfg(feature = "cuda")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use candle_nn::{loss::cross_entropy, Optimizer, VarMap};
use edgebert_models::{DropoutRng, LoadOptions, ModelConfig, ModelFiles, SequenceClassifier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Largest absolute difference allowed between CPU and CUDA values (fp32).
const TOL: f32 = 1e-4;

/// The GPU, or `None` (after a SKIPPED line) when there is none and none is required.
/// `EDGEBERT_PARITY_REHEARSE=1` compares the CPU with itself instead, to rehearse the harness on a
/// machine without a GPU (it proves nothing about CUDA).
fn cuda_or_skip(test: &str) -> Option<Device> {
    if std::env::var_os("EDGEBERT_PARITY_REHEARSE").is_some() {
        eprintln!("REHEARSAL {test}: second device is the CPU, not CUDA");
        return Some(Device::Cpu);
    }
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var_os("EDGEBERT_REQUIRE_CUDA").is_some() {
                panic!("EDGEBERT_REQUIRE_CUDA is set but no CUDA device answers: {e}");
            }
            eprintln!("SKIPPED {test}: no CUDA device ({e})");
            None
        }
    }
}

/// `models/tests/fixtures`: from the run-time `CARGO_MANIFEST_DIR` when set (cargo test, or the
/// device script for a binary moved to another machine), else the build-time one.
fn fixtures_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("tests").join("fixtures")
}

/// A padded batch: ids `[b, s]` (u32) and mask `[b, s]` (f32), the later rows shorter.
fn batch(vocab: usize, b: usize, s: usize, seed: u64) -> (Vec<u32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids = vec![0u32; b * s];
    let mut mask = vec![0f32; b * s];
    for r in 0..b {
        // Row r keeps at least 2 tokens; row 0 is full length.
        let len = (s - (r * s) / (2 * b)).max(2);
        for c in 0..len {
            ids[r * s + c] = rng.random_range(1..vocab as u32);
            mask[r * s + c] = 1.0;
        }
    }
    (ids, mask)
}

/// Everything one device produced for the same step.
struct StepResult {
    logits: Vec<f32>,
    loss: f32,
    grads: BTreeMap<String, Vec<f32>>,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn named_vars(vm: &VarMap) -> Result<BTreeMap<String, Var>> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Eval logits, then the cross-entropy loss of those logits and its gradient for every variable.
/// Dropout stays off: masks are drawn per device, and the gradient of a fixed mask multiply is not
/// what this test is about.
#[allow(clippy::too_many_arguments)]
fn run_step(
    model: &SequenceClassifier,
    vm: &VarMap,
    ids: &[u32],
    mask: &[f32],
    labels: &[u32],
    shape: (usize, usize),
    device: &Device,
) -> Result<StepResult> {
    let ids_t = Tensor::from_slice(ids, shape, device)?;
    let mask_t = Tensor::from_slice(mask, shape, device)?;
    let labels_t = Tensor::from_slice(labels, shape.0, device)?;
    let logits = model.forward(&ids_t, &mask_t, None)?;
    let loss = cross_entropy(&logits, &labels_t)?;
    let store: GradStore = loss.backward()?;
    let mut grads = BTreeMap::new();
    for (name, var) in named_vars(vm)? {
        let g = store
            .get(var.as_tensor())
            .with_context(|| format!("no gradient for {name} on {device:?}"))?;
        grads.insert(name, to_vec(g)?);
    }
    Ok(StepResult {
        logits: to_vec(&logits)?,
        loss: loss.to_device(&Device::Cpu)?.to_scalar::<f32>()?,
        grads,
    })
}

/// Max |a - b| and the max |b| it is measured against.
fn max_diff(a: &[f32], b: &[f32]) -> Result<(f32, f32)> {
    if a.len() != b.len() {
        bail!("length {} vs {}", a.len(), b.len());
    }
    let mut d = 0f32;
    let mut m = 0f32;
    for (x, y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            bail!("non-finite value (cpu {x}, cuda {y})");
        }
        d = d.max((x - y).abs());
        m = m.max(y.abs());
    }
    Ok((d, m))
}

/// Compares a CPU and a CUDA result, failing with every offending tensor named.
fn compare(what: &str, cpu: &StepResult, gpu: &StepResult) -> Result<()> {
    let mut bad = Vec::new();
    let mut check = |name: &str, a: &[f32], b: &[f32]| -> Result<()> {
        let (d, m) = max_diff(a, b).with_context(|| format!("{what}: {name}"))?;
        if d > TOL {
            bad.push(format!(
                "{name}: max |cpu-cuda| = {d:.3e} (max |value| {m:.3e})"
            ));
        }
        Ok(())
    };
    check("logits", &cpu.logits, &gpu.logits)?;
    check("loss", &[cpu.loss], &[gpu.loss])?;
    if cpu.grads.len() != gpu.grads.len() {
        bail!(
            "{what}: {} CPU gradients vs {} CUDA gradients",
            cpu.grads.len(),
            gpu.grads.len()
        );
    }
    let mut worst = (String::new(), 0f32);
    for (name, g) in &cpu.grads {
        let h = gpu
            .grads
            .get(name)
            .with_context(|| format!("{what}: no CUDA gradient for {name}"))?;
        let (d, _) = max_diff(g, h).with_context(|| format!("{what}: grad {name}"))?;
        if d > worst.1 {
            worst = (name.clone(), d);
        }
        check(&format!("grad {name}"), g, h)?;
    }
    eprintln!(
        "{what}: loss cpu {:.6} cuda {:.6}; {} gradients, worst {} at {:.3e}",
        cpu.loss,
        gpu.loss,
        cpu.grads.len(),
        worst.0,
        worst.1
    );
    // Gradients must be non-trivial or the comparison proves nothing.
    let nonzero = cpu
        .grads
        .values()
        .filter(|g| g.iter().any(|v| *v != 0.0))
        .count();
    if nonzero * 2 < cpu.grads.len() {
        bail!(
            "{what}: only {nonzero} of {} gradients are non-zero",
            cpu.grads.len()
        );
    }
    if !bad.is_empty() {
        bail!(
            "{what}: CPU and CUDA differ beyond {TOL:e}:\n  {}",
            bad.join("\n  ")
        );
    }
    Ok(())
}

/// Loads the fixture on both devices and compares one step.
fn fixture_parity(name: &str, test: &str) -> Result<()> {
    let Some(gpu) = cuda_or_skip(test) else {
        return Ok(());
    };
    let dir = fixtures_dir().join(name);
    let files = ModelFiles::from_dir(&dir, &dir.display().to_string())
        .with_context(|| format!("fixture {}", dir.display()))?;
    // The fixture's own head (6 labels), so logits come from checkpoint weights only.
    let opts = LoadOptions::default();
    let (cpu_model, cpu_vm) = SequenceClassifier::load_with(&files, &opts, &Device::Cpu)?;
    let (gpu_model, gpu_vm) = SequenceClassifier::load_with(&files, &opts, &gpu)?;
    if !cpu_model.has_trained_head() {
        bail!("fixture {name} has no classification head");
    }
    let num_labels = cpu_model.num_labels();
    let cfg = cpu_model.config().clone();
    let (b, s) = (4, 16.min(cfg.max_position_embeddings));
    let (ids, mask) = batch(cfg.vocab_size, b, s, 11);
    let labels: Vec<u32> = (0..b as u32).map(|i| i % num_labels as u32).collect();
    let c = run_step(
        &cpu_model,
        &cpu_vm,
        &ids,
        &mask,
        &labels,
        (b, s),
        &Device::Cpu,
    )?;
    let g = run_step(&gpu_model, &gpu_vm, &ids, &mask, &labels, (b, s), &gpu)?;
    compare(name, &c, &g)
}

/// One op's output and input gradients (of `sum(y * w)` for a fixed random `w`) on `device`.
fn op_result(
    name: &str,
    inputs: &[Vec<f32>],
    shapes: &[Vec<usize>],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let vars: Vec<Var> = inputs
        .iter()
        .zip(shapes)
        .map(|(v, s)| Var::from_slice(v, s.as_slice(), device))
        .collect::<candle_core::Result<_>>()?;
    let x = vars[0].as_tensor();
    let y = match name {
        "layer_norm" => {
            edgebert_models::ops::layer_norm(x, vars[1].as_tensor(), vars[2].as_tensor(), 1e-12)?
        }
        "softmax" => edgebert_models::ops::softmax_last_dim(x)?,
        "gelu" => edgebert_models::ops::gelu_erf(x)?,
        other => bail!("unknown op {other}"),
    };
    let mut rng = StdRng::seed_from_u64(5);
    let w: Vec<f32> = (0..y.elem_count())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let w = Tensor::from_slice(&w, y.shape(), device)?;
    let grads = (&y * &w)?.sum_all()?.backward()?;
    let mut out = vec![to_vec(&y)?];
    for v in &vars {
        let g = grads
            .get(v.as_tensor())
            .with_context(|| format!("{name}: no gradient for an input on {device:?}"))?;
        out.push(to_vec(g)?);
    }
    Ok(out)
}

/// The CUDA kernels of LayerNorm, softmax and GELU (forward and every input gradient) against the
/// CPU custom ops, at shapes the model tests do not reach: rows and columns that are not
/// multiples of the kernels' block sizes, a single column, long rows.
#[test]
fn ops_match_cpu_at_odd_shapes() -> Result<()> {
    let Some(gpu) = cuda_or_skip("ops_match_cpu_at_odd_shapes") else {
        return Ok(());
    };
    let mut rng = StdRng::seed_from_u64(9);
    let mut rand_vec = |n: usize, scale: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    };
    let mut checked = 0;
    let mut bad = Vec::new();
    for &(rows, cols) in &[
        (1, 1),
        (3, 5),
        (7, 33),
        (5, 768),
        (130, 57),
        (9, 1030),
        (2, 4099),
    ] {
        for op in ["layer_norm", "softmax", "gelu"] {
            let n = rows * cols;
            // An offset on LayerNorm's input checks the variance is not E[x²] − mean² in fp32.
            let x: Vec<f32> = rand_vec(n, 4.0)
                .into_iter()
                .map(|v| if op == "layer_norm" { v + 30.0 } else { v })
                .collect();
            let (inputs, shapes) = if op == "layer_norm" {
                (
                    vec![x, rand_vec(cols, 2.0), rand_vec(cols, 1.0)],
                    vec![vec![rows, cols], vec![cols], vec![cols]],
                )
            } else {
                (vec![x], vec![vec![rows, cols]])
            };
            let c = op_result(op, &inputs, &shapes, &Device::Cpu)?;
            let g = op_result(op, &inputs, &shapes, &gpu)?;
            for (i, (a, b)) in c.iter().zip(&g).enumerate() {
                let what = if i == 0 {
                    "output".to_string()
                } else {
                    format!("grad of input {}", i - 1)
                };
                let (d, m) =
                    max_diff(a, b).with_context(|| format!("{op} [{rows}, {cols}] {what}"))?;
                // Column sums over many rows (LayerNorm's gamma/beta gradients) scale with the rows.
                let tol = TOL * m.max(1.0);
                if d > tol {
                    bad.push(format!("{op} [{rows}, {cols}] {what}: max |cpu-cuda| = {d:.3e} > {tol:.1e} (max |value| {m:.3e})"));
                }
                checked += 1;
            }
        }
    }
    eprintln!(
        "ops_match_cpu_at_odd_shapes: {} of {checked} outputs and gradients within tolerance",
        checked - bad.len()
    );
    if !bad.is_empty() {
        bail!("CPU and CUDA ops differ:\n  {}", bad.join("\n  "));
    }
    Ok(())
}

/// The embedding op (CUDA: host-grouped deterministic gradient kernel) against candle's
/// `index_select` on the CPU: repeated and unused ids, a width that is not a multiple of the
/// kernel's block; the CUDA gradient is also bit-identical between two runs.
#[test]
fn embedding_grad_matches_cpu() -> Result<()> {
    let Some(gpu) = cuda_or_skip("embedding_grad_matches_cpu") else {
        return Ok(());
    };
    let (vocab, width, n) = (50usize, 300usize, 700usize);
    let mut rng = StdRng::seed_from_u64(4);
    let table: Vec<f32> = (0..vocab * width)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    // ids 0..40 only (rows 40..50 get no gradient), heavily repeated.
    let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..40u32)).collect();
    let w: Vec<f32> = (0..n * width)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let run = |device: &Device| -> Result<(Vec<f32>, Vec<f32>)> {
        let t = Var::from_slice(&table, (vocab, width), device)?;
        let i = Tensor::from_slice(&ids, n, device)?;
        let y = edgebert_models::ops::embedding(t.as_tensor(), &i)?;
        let wt = Tensor::from_slice(&w, (n, width), device)?;
        let grads = (&y * &wt)?.sum_all()?.backward()?;
        let g = grads
            .get(t.as_tensor())
            .context("no gradient for the table")?;
        Ok((to_vec(&y)?, to_vec(g)?))
    };
    let (yc, gc) = run(&Device::Cpu)?;
    let (yg, gg) = run(&gpu)?;
    let (_, gg2) = run(&gpu)?;
    let (dy, _) = max_diff(&yc, &yg)?;
    let (dg, m) = max_diff(&gc, &gg)?;
    eprintln!(
        "embedding: forward max |cpu-cuda| {dy:.3e}, gradient {dg:.3e} (max |value| {m:.3e})"
    );
    if dy != 0.0 || dg > TOL * m.max(1.0) {
        bail!("embedding differs: forward {dy:.3e}, gradient {dg:.3e}");
    }
    if gg != gg2 {
        bail!("embedding gradient differs between two CUDA runs");
    }
    if gc[40 * width..].iter().any(|v| *v != 0.0) || gg[40 * width..].iter().any(|v| *v != 0.0) {
        bail!("rows of unused ids must get a zero gradient");
    }
    Ok(())
}

/// DistilBERT-base widths (768 hidden, 12 heads, 3072 FFN) with `layers` layers and a small vocab.
fn base_config(layers: usize, vocab: usize) -> Result<ModelConfig> {
    let json = format!(
        r#"{{"model_type": "distilbert", "architectures": ["DistilBertForSequenceClassification"],
        "vocab_size": {vocab}, "dim": 768, "n_layers": {layers}, "n_heads": 12, "hidden_dim": 3072,
        "max_position_embeddings": 512, "activation": "gelu", "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.2, "initializer_range": 0.02, "pad_token_id": 0}}"#
    );
    Ok(ModelConfig::from_json_str(
        &json,
        Path::new("<cuda_parity base config>"),
    )?)
}

#[test]
fn tiny_distilbert_logits_and_grads_match_cpu() -> Result<()> {
    fixture_parity(
        "tiny-distilbert",
        "tiny_distilbert_logits_and_grads_match_cpu",
    )
}

#[test]
fn tiny_bert_logits_and_grads_match_cpu() -> Result<()> {
    fixture_parity("tiny-bert", "tiny_bert_logits_and_grads_match_cpu")
}

/// Real widths exercise the kernels at the sizes training uses (long rows for LayerNorm and
/// softmax, cuBLAS at 768/3072), which tiny fixtures cannot.
#[test]
fn base_width_distilbert_matches_cpu() -> Result<()> {
    let Some(gpu) = cuda_or_skip("base_width_distilbert_matches_cpu") else {
        return Ok(());
    };
    let cfg = base_config(2, 1000)?;
    // Same seed, so both devices get the same random weights (drawn on the CPU by from_config).
    let (cpu_model, cpu_vm) =
        SequenceClassifier::from_config(&cfg, 6, &Device::Cpu, DType::F32, 3)?;
    let (gpu_model, gpu_vm) = SequenceClassifier::from_config(&cfg, 6, &gpu, DType::F32, 3)?;
    let (b, s) = (8, 48);
    let (ids, mask) = batch(1000, b, s, 21);
    let labels: Vec<u32> = (0..b as u32).map(|i| i % 6).collect();
    let c = run_step(
        &cpu_model,
        &cpu_vm,
        &ids,
        &mask,
        &labels,
        (b, s),
        &Device::Cpu,
    )?;
    let g = run_step(&gpu_model, &gpu_vm, &ids, &mask, &labels, (b, s), &gpu)?;
    compare("base-width distilbert (2 layers)", &c, &g)
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Training steps per second of a DistilBERT-base-sized model (random weights) on the GPU:
/// forward, cross-entropy, backward and candle-nn AdamW, batch `EDGEBERT_BENCH_BATCH` (64) at a
/// fixed length `EDGEBERT_BENCH_SEQ` (64; later rows partly padded, as [`batch`] makes them),
/// dropout on, `EDGEBERT_BENCH_LAYERS` (6) layers.
/// Prints one `RESULT` line; the model-level counterpart of the PyTorch script's `--fixed-seq-len`.
#[test]
#[ignore = "timing run for the GPU machine (scripts/device-gpu-check)"]
fn cuda_train_step_throughput() -> Result<()> {
    let Some(gpu) = cuda_or_skip("cuda_train_step_throughput") else {
        return Ok(());
    };
    let b = env_usize("EDGEBERT_BENCH_BATCH", 64)?;
    let s = env_usize("EDGEBERT_BENCH_SEQ", 64)?;
    let steps = env_usize("EDGEBERT_BENCH_STEPS", 50)?;
    let warmup = env_usize("EDGEBERT_BENCH_WARMUP", 5)?;
    let layers = env_usize("EDGEBERT_BENCH_LAYERS", 6)?;
    let phase_steps = env_usize("EDGEBERT_BENCH_PHASE_STEPS", 5)?;
    // 0: forward and backward only (for a kernel profile of the model alone).
    let with_optimizer = env_usize("EDGEBERT_BENCH_OPTIMIZER", 1)? != 0;
    let cfg = base_config(layers, 30522)?;
    let (model, vm) = SequenceClassifier::from_config(&cfg, 6, &gpu, DType::F32, 1)?;
    let mut opt = candle_nn::AdamW::new(
        vm.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 2e-5,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut drop = DropoutRng::new(1);
    let mut t0 = Instant::now();
    let mut last_loss = f32::NAN;
    for step in 0..warmup + steps {
        if step == warmup {
            gpu.synchronize()?;
            t0 = Instant::now();
        }
        let (ids, mask) = batch(30522, b, s, step as u64);
        let labels: Vec<u32> = (0..b as u32).map(|i| (i * 7 + step as u32) % 6).collect();
        let ids = Tensor::from_slice(&ids, (b, s), &gpu)?;
        let mask = Tensor::from_slice(&mask, (b, s), &gpu)?;
        let labels = Tensor::from_slice(&labels, b, &gpu)?;
        let logits = model.forward(&ids, &mask, Some(&mut drop))?;
        let loss = cross_entropy(&logits, &labels)?;
        if with_optimizer {
            opt.backward_step(&loss)?;
        } else {
            let _grads = loss.backward()?;
        }
        if step + 1 == warmup + steps {
            last_loss = loss.to_device(&Device::Cpu)?.to_scalar::<f32>()?;
        }
    }
    gpu.synchronize()?;
    let secs = t0.elapsed().as_secs_f64();
    if !last_loss.is_finite() {
        bail!("loss is {last_loss} after {steps} steps");
    }
    println!(
        "RESULT candle_train_step batch={b} seq={s} steps={steps} secs={secs:.3} \
         samples_per_s={:.1} ms_per_step={:.2} last_loss={last_loss:.4}",
        (b * steps) as f64 / secs,
        1e3 * secs / steps as f64
    );
    // Where a step's time goes: a few more steps with the device synchronised after each phase
    // (host-side op issue and device time together; the sums exceed the pipelined step above).
    let mut ms = [0f64; 3];
    for step in 0..phase_steps {
        let (ids, mask) = batch(30522, b, s, 1000 + step as u64);
        let labels: Vec<u32> = (0..b as u32).map(|i| (i * 5 + step as u32) % 6).collect();
        let ids = Tensor::from_slice(&ids, (b, s), &gpu)?;
        let mask = Tensor::from_slice(&mask, (b, s), &gpu)?;
        let labels = Tensor::from_slice(&labels, b, &gpu)?;
        gpu.synchronize()?;
        let t = Instant::now();
        let logits = model.forward(&ids, &mask, Some(&mut drop))?;
        let loss = cross_entropy(&logits, &labels)?;
        gpu.synchronize()?;
        ms[0] += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let grads = loss.backward()?;
        gpu.synchronize()?;
        ms[1] += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        if with_optimizer {
            opt.step(&grads)?;
        }
        gpu.synchronize()?;
        ms[2] += t.elapsed().as_secs_f64() * 1e3;
    }
    if phase_steps == 0 {
        return Ok(());
    }
    let n = phase_steps as f64;
    println!(
        "PHASES candle_train_step forward_ms={:.2} backward_ms={:.2} optimizer_ms={:.2} (candle-nn AdamW)",
        ms[0] / n,
        ms[1] / n,
        ms[2] / n
    );
    Ok(())
}
