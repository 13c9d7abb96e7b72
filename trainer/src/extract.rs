//! Recipe 1, feature extraction: the frozen encoder's `[CLS]` last hidden state for every split
//! (cached in `OUT/features.safetensors`, reused while the model and data fingerprint match),
//! a multinomial logistic regression on them, and the majority-class baseline.
use crate::data::{load_dataset, DataOptions, Encoded, Split, TextEncoder};
use crate::device::parse_device;
use crate::error::{Result, TrainError};
use crate::eval::cls_features;
use crate::io::{write_atomic, write_json, Fnv64};
use crate::logreg::{LogRegOptions, LogisticRegression};
use crate::metrics::{majority_label, Metrics};
use candle_core::{Device, Tensor};
use edgebert_models::{ModelFiles, SequenceClassifier};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `edgebert-train extract`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractOptions {
    /// Model directory or hub id.
    pub model: String,
    /// Data directory, or a hub dataset id (`owner/name`).
    pub data: PathBuf,
    /// Hub revision, column names and endpoint of the data.
    pub source: crate::data::DataSource,
    /// Output directory.
    pub out: PathBuf,
    /// Fixed label order.
    pub labels: Option<Vec<String>>,
    /// Skip malformed lines.
    pub skip_bad_lines: bool,
    /// Maximum tokens per text.
    pub max_len: usize,
    /// Batch size of the frozen forward pass.
    pub batch_size: usize,
    /// `auto|cpu|cuda[:N]`.
    pub device: String,
    /// Logistic-regression `C`.
    pub c: f64,
    /// Logistic-regression iteration cap.
    pub max_iter: usize,
    /// Use only the first N training examples.
    pub max_train_samples: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            model: "distilbert-base-uncased".into(),
            data: PathBuf::new(),
            source: crate::data::DataSource::default(),
            out: PathBuf::new(),
            labels: None,
            skip_bad_lines: false,
            max_len: 128,
            batch_size: 64,
            device: "auto".into(),
            c: 1.0,
            max_iter: 3000,
            max_train_samples: None,
            progress: true,
        }
    }
}

/// One classifier's results on one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitResult {
    /// Accuracy.
    pub accuracy: f64,
    /// Weighted F1.
    pub weighted_f1: f64,
    /// All metrics.
    pub metrics: Metrics,
}

/// What `extract` reports (and writes as `metrics.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtractSummary {
    /// Label names by id.
    pub labels: Vec<String>,
    /// Logistic regression on validation.
    pub logistic_regression: SplitResult,
    /// Logistic regression on test, when present.
    pub logistic_regression_test: Option<SplitResult>,
    /// Majority class on validation.
    pub majority_baseline: SplitResult,
    /// Whether cached features were reused.
    pub features_cached: bool,
    /// Seconds spent computing features (0 when cached).
    pub feature_seconds: f64,
    /// Examples per second of the feature pass.
    pub feature_samples_per_second: f64,
    /// Seconds spent fitting the regression.
    pub fit_seconds: f64,
    /// L-BFGS iterations.
    pub fit_iterations: usize,
    /// Whether L-BFGS reached its tolerance.
    pub fit_converged: bool,
}

fn result(y: &[usize], pred: &[usize], labels: &[String]) -> SplitResult {
    let m = Metrics::compute(y, pred, labels);
    SplitResult {
        accuracy: m.accuracy,
        weighted_f1: m.weighted_f1,
        metrics: m,
    }
}

fn hash_file(h: &mut Fnv64, path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// Fingerprint of the model files, tokenizer, max_len and the data.
fn fingerprint(
    files: &ModelFiles,
    tok: &Path,
    max_len: usize,
    splits: &[(&str, &Split)],
) -> Result<String> {
    let mut h = Fnv64::default();
    hash_file(&mut h, &files.config)?;
    hash_file(&mut h, &files.weights)?;
    hash_file(&mut h, tok)?;
    h.update(&(max_len as u64).to_le_bytes());
    for (name, s) in splits {
        h.update_str(name);
        for e in &s.examples {
            h.update_str(&e.text);
            h.update(&(e.label as u64).to_le_bytes());
        }
    }
    Ok(h.hex())
}

/// Loads cached features when the fingerprint matches.
fn load_cache(path: &Path, fp: &str) -> Option<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let ok = meta
        .metadata()
        .as_ref()?
        .get("fingerprint")
        .map(String::as_str)
        == Some(fp);
    if !ok {
        return None;
    }
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).ok()
}

fn save_cache(path: &Path, fp: &str, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let meta: HashMap<String, String> = [("fingerprint".to_string(), fp.to_string())].into();
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
        .map_err(|e| TrainError::data(path, format!("cannot serialize features: {e}")))?;
    write_atomic(path, &bytes)
}

/// `edgebert-train extract`: features, cache, logistic regression, baseline, `metrics.json`.
pub fn extract(o: &ExtractOptions) -> Result<ExtractSummary> {
    let device = parse_device(&o.device, o.progress)?;
    let files = ModelFiles::resolve(&o.model)?;
    let mut ds = load_dataset(
        &o.data,
        &DataOptions {
            labels: o.labels.clone(),
            skip_bad_lines: o.skip_bad_lines,
            source: o.source.clone(),
            progress: o.progress,
        },
    )?;
    if let Some(n) = o.max_train_samples {
        ds.train.examples.truncate(n);
    }
    let tok = files
        .tokenizer_json
        .clone()
        .ok_or_else(|| TrainError::Tokenizer {
            path: files.dir.join("tokenizer.json"),
            msg: "missing: the model directory needs a tokenizer.json".into(),
        })?;
    let mut splits: Vec<(&str, &Split)> =
        vec![("train", &ds.train), ("validation", &ds.validation)];
    if let Some(t) = &ds.test {
        splits.push(("test", t));
    }
    std::fs::create_dir_all(&o.out).map_err(|e| TrainError::io(&o.out, e))?;
    let fp = fingerprint(&files, &tok, o.max_len, &splits)?;
    let cache = o.out.join("features.safetensors");
    let (features, cached, feature_seconds, n_feat) = match load_cache(&cache, &fp) {
        Some(f) => {
            if o.progress {
                eprintln!("reusing cached features {}", cache.display());
            }
            (f, true, 0.0, 0)
        }
        None => {
            let enc = TextEncoder::from_file(&tok, o.max_len)?;
            let (model, _vm) = SequenceClassifier::load(&files, ds.labels.len(), &device, 0)?;
            let hidden = model.config().hidden_size;
            let t0 = Instant::now();
            let mut out = HashMap::new();
            let mut n = 0;
            for (name, split) in &splits {
                let e = Encoded::new(&enc, split)?;
                let progress = o.progress.then_some(*name);
                let f = cls_features(&model, &e, enc.pad_id, o.batch_size, &device, progress)?;
                n += e.len();
                out.insert(
                    name.to_string(),
                    Tensor::from_vec(f, (e.len(), hidden), &Device::Cpu)?,
                );
            }
            let secs = t0.elapsed().as_secs_f64();
            save_cache(&cache, &fp, &out)?;
            (out, false, secs, n)
        }
    };
    let get = |name: &str| -> Result<(Vec<f32>, usize)> {
        let t = features
            .get(name)
            .ok_or_else(|| TrainError::data(&cache, format!("tensor {name} missing")))?;
        let (_, d) = t.dims2()?;
        Ok((t.flatten_all()?.to_vec1::<f32>()?, d))
    };
    let (xtr, d) = get("train")?;
    let (xva, _) = get("validation")?;
    let ytr = ds.train.labels();
    let yva = ds.validation.labels();
    let k = ds.labels.len();
    let t0 = Instant::now();
    let lr = LogisticRegression::fit(
        &xtr,
        d,
        &ytr,
        k,
        &LogRegOptions {
            c: o.c,
            max_iter: o.max_iter,
            ..Default::default()
        },
    )?;
    let fit_seconds = t0.elapsed().as_secs_f64();
    let logistic = result(&yva, &lr.predict(&xva), &ds.labels);
    let logistic_test = match &ds.test {
        Some(t) => {
            let (xte, _) = get("test")?;
            Some(result(&t.labels(), &lr.predict(&xte), &ds.labels))
        }
        None => None,
    };
    let maj = majority_label(&ytr, k);
    let baseline = result(&yva, &vec![maj; yva.len()], &ds.labels);
    write_json(&o.out.join("logistic_regression.json"), &lr)?;
    let cm = &logistic.metrics.confusion;
    write_atomic(
        &o.out.join("confusion_matrix.txt"),
        crate::metrics::confusion_text(cm, &ds.labels).as_bytes(),
    )?;
    crate::plot::confusion_png(
        cm,
        &ds.labels,
        &crate::plot::confusion_title(&o.model, "features + logistic regression", "validation"),
        &o.out.join("confusion_matrix.png"),
    )?;
    let report = format!(
        "logistic regression on [CLS] features (validation)\n{}\nmajority-class baseline (validation)\n{}",
        logistic.metrics.report(),
        baseline.metrics.report()
    );
    write_atomic(&o.out.join("classification_report.txt"), report.as_bytes())?;
    let summary = ExtractSummary {
        labels: ds.labels.clone(),
        logistic_regression: logistic,
        logistic_regression_test: logistic_test,
        majority_baseline: baseline,
        features_cached: cached,
        feature_seconds,
        feature_samples_per_second: if feature_seconds > 0.0 {
            n_feat as f64 / feature_seconds
        } else {
            0.0
        },
        fit_seconds,
        fit_iterations: lr.iterations,
        fit_converged: lr.converged,
    };
    write_json(&o.out.join("metrics.json"), &summary)?;
    Ok(summary)
}
