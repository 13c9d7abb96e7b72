//! `edgebert-train export`: a fine-tuned HF directory to `model.fp32.onnx` (+ `model.int8.onnx`),
//! the runtime bundle `model.edgebert` (written with the runtime's own `BundleWriter`; it carries
//! the int8 model by default, the fp32 one with `--quantize none`), `config.json` and the tokenizer
//! files; then proof: the runtime classifies the validation file and its fp32 accuracy must equal
//! candle's within 0.1 point. With int8, the fp32 bundle is kept as `model.fp32.edgebert` and the
//! int8 accuracy and label agreement are reported beside it.
use crate::data::{find_split_file, load_file_with_source, DataSource, Encoded, TextEncoder};
use crate::error::{Result, TrainError};
use crate::eval::{load_trained, predict};
use crate::finetune::{copy_tokenizer_files, var_tensors};
use crate::io::{copy_atomic, write_atomic, write_json};
use crate::metrics::Metrics;
use candle_core::Device;
use edgebert_models::onnx::{export_classifier, ExportOptions, Quantization, WeightRange};
use edgebert_runtime::{BundleWriter, Session, SessionOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Options of `edgebert-train export`.
#[derive(Debug, Clone)]
pub struct ExportOpts {
    /// The fine-tuned model directory.
    pub model: String,
    /// The export directory.
    pub out: PathBuf,
    /// Data file to verify on; default: the validation file of the run's data directory
    /// (from `training_args.json`).
    pub data: Option<PathBuf>,
    /// Bundle `max_len` (tokens with `[CLS]`/`[SEP]`).
    pub max_len: usize,
    /// Quantize the shipped model: `Int8` (default) writes `model.int8.onnx` and makes
    /// `model.edgebert` carry it (the fp32 bundle stays as `model.fp32.edgebert`); `None` ships fp32.
    pub quantize: Quantization,
    /// Code range of the int8 Linear weights (see [`WeightRange`]); default reduced (7-bit).
    pub weight_range: WeightRange,
    /// Skip the runtime verification.
    pub skip_verify: bool,
    /// Verify on the first N examples only.
    pub max_verify_samples: Option<usize>,
    /// Show progress.
    pub progress: bool,
}

impl Default for ExportOpts {
    fn default() -> Self {
        ExportOpts {
            model: String::new(),
            out: PathBuf::new(),
            data: None,
            max_len: 128,
            quantize: Quantization::Int8,
            weight_range: WeightRange::Reduced,
            skip_verify: false,
            max_verify_samples: None,
            progress: true,
        }
    }
}

/// Runtime-vs-candle agreement on one bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The bundle checked.
    pub bundle: PathBuf,
    /// Examples classified.
    pub n: usize,
    /// Candle (training framework) accuracy.
    pub candle_accuracy: f64,
    /// Runtime (tract) accuracy.
    pub runtime_accuracy: f64,
    /// Runtime weighted F1.
    pub runtime_weighted_f1: f64,
    /// Fraction of examples where both predict the same label.
    pub agreement: f64,
    /// Largest |logit difference|.
    pub max_abs_logit_diff: f32,
    /// Largest |logit| of candle's fp32 model, the scale `max_abs_logit_diff` is read against.
    pub max_abs_candle_logit: f32,
}

/// What `export` produced and measured.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// fp32 bundle verification.
    pub fp32: Option<Verification>,
    /// int8 bundle verification (reported, not enforced here).
    pub int8: Option<Verification>,
}

/// The validation file(s) recorded in a fine-tuned directory's `training_args.json` (a data
/// directory's validation file, or the validation shards of a hub dataset), with its columns.
fn default_validation_files(
    model_dir: &Path,
    progress: bool,
) -> Option<(Vec<PathBuf>, DataSource)> {
    let args: serde_json::Value =
        crate::io::read_json(&model_dir.join("training_args.json")).ok()?;
    let data = PathBuf::from(args.get("data")?.as_str()?);
    let source: DataSource = args
        .get("source")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let files = if crate::data::is_hub_dataset(&data) {
        crate::data::hub::split_files(&data.to_string_lossy(), &source, "validation", progress)
            .ok()?
    } else {
        vec![find_split_file(&data, "validation").ok().flatten()?]
    };
    (!files.is_empty()).then_some((files, source))
}

fn verify(
    bundle: &Path,
    texts: &[&str],
    encoded: &Encoded,
    candle: &crate::eval::Predictions,
    labels: &[String],
) -> Result<Verification> {
    let mut session = Session::open_with(bundle, SessionOptions::default())
        .map_err(|e| TrainError::Export(format!("{}: {e}", bundle.display())))?;
    let k = labels.len();
    let mut runtime_pred = Vec::with_capacity(texts.len());
    let mut max_diff = 0f32;
    for (i, t) in texts.iter().enumerate() {
        let c = session
            .classify(t)
            .map_err(|e| TrainError::Export(format!("{}: text {i}: {e}", bundle.display())))?;
        for (a, b) in c.logits.iter().zip(&candle.logits[i * k..(i + 1) * k]) {
            max_diff = max_diff.max((a - b).abs());
        }
        runtime_pred.push(c.label_id);
    }
    let candle_pred = candle.predicted();
    let mc = Metrics::compute(&encoded.labels, &candle_pred, labels);
    let mr = Metrics::compute(&encoded.labels, &runtime_pred, labels);
    let agree = candle_pred
        .iter()
        .zip(&runtime_pred)
        .filter(|(a, b)| a == b)
        .count();
    Ok(Verification {
        bundle: bundle.to_path_buf(),
        n: texts.len(),
        candle_accuracy: mc.accuracy,
        runtime_accuracy: mr.accuracy,
        runtime_weighted_f1: mr.weighted_f1,
        agreement: agree as f64 / texts.len().max(1) as f64,
        max_abs_logit_diff: max_diff,
        max_abs_candle_logit: candle.logits.iter().fold(0f32, |m, v| m.max(v.abs())),
    })
}

/// `edgebert-train export`.
pub fn export(o: &ExportOpts) -> Result<ExportSummary> {
    let device = Device::Cpu;
    let (model, varmap, labels, files) = load_trained(&o.model, &device)?;
    std::fs::create_dir_all(&o.out).map_err(|e| TrainError::io(&o.out, e))?;
    let weights = var_tensors(&varmap)?;
    let rt_tok = edgebert_runtime::tokenizer::Tokenizer::from_hf_dir(&files.dir).map_err(|e| {
        TrainError::Export(format!("{}: runtime tokenizer: {e}", files.dir.display()))
    })?;
    let mut written = Vec::new();
    let variants = match o.quantize {
        Quantization::None => vec![(Quantization::None, "fp32", "model.edgebert")],
        Quantization::Int8 => vec![
            (Quantization::None, "fp32", "model.fp32.edgebert"),
            (Quantization::Int8, "int8", "model.edgebert"),
        ],
    };
    let mut bundles = Vec::new();
    for (q, tag, bundle_name) in variants {
        let eo = ExportOptions {
            quantize: q,
            weight_range: o.weight_range,
            labels: labels.clone(),
            ..Default::default()
        };
        let bytes = export_classifier(model.config(), &weights, &eo)?;
        let onnx = o.out.join(format!("model.{tag}.onnx"));
        write_atomic(&onnx, &bytes)?;
        written.push(onnx);
        let bundle = o.out.join(bundle_name);
        BundleWriter::new(&rt_tok, labels.clone(), bytes)
            .max_len(o.max_len as u32)
            .quantization(if q == Quantization::Int8 {
                "int8"
            } else {
                "none"
            })
            .metadata(
                "producer",
                concat!("edgebert-train ", env!("CARGO_PKG_VERSION")),
            )
            .metadata("source", o.model.clone())
            .write_to(&bundle)
            .map_err(|e| TrainError::Export(format!("{}: {e}", bundle.display())))?;
        written.push(bundle.clone());
        bundles.push((tag, bundle));
    }
    copy_atomic(&files.config, &o.out.join("config.json"))?;
    written.push(o.out.join("config.json"));
    for f in copy_tokenizer_files(&files.dir, &o.out)? {
        written.push(o.out.join(f));
    }
    let mut summary = ExportSummary {
        files: written,
        fp32: None,
        int8: None,
    };
    if !o.skip_verify {
        let (data, source) = match &o.data {
            Some(d) => (vec![d.clone()], DataSource::default()),
            None => default_validation_files(&files.dir, o.progress).ok_or_else(|| {
                TrainError::Options(
                    "export: no validation file to verify on (pass --data FILE, or --skip-verify)"
                        .into(),
                )
            })?,
        };
        let mut split = load_file_with_source(&data[0], &labels, false, &source)?;
        for more in &data[1..] {
            let s = load_file_with_source(more, &labels, false, &source)?;
            split.examples.extend(s.examples);
        }
        if let Some(n) = o.max_verify_samples {
            split.examples.truncate(n);
        }
        let enc = TextEncoder::from_model_dir(&files.dir, o.max_len)?;
        let encoded = Encoded::new(&enc, &split)?;
        let candle = predict(
            &model,
            &encoded,
            enc.pad_id,
            64,
            &device,
            o.progress.then_some("candle"),
        )?;
        let texts = split.texts();
        for (tag, bundle) in &bundles {
            let v = verify(bundle, &texts, &encoded, &candle, &labels)?;
            if o.progress {
                eprintln!(
                    "{tag}: runtime accuracy {:.4} vs candle {:.4} on {} examples (agreement {:.4}, max |Δlogit| {:.2e})",
                    v.runtime_accuracy, v.candle_accuracy, v.n, v.agreement, v.max_abs_logit_diff
                );
            }
            if *tag == "fp32" {
                if (v.runtime_accuracy - v.candle_accuracy).abs() > 0.001 {
                    return Err(TrainError::Export(format!(
                        "{}: runtime accuracy {:.4} differs from candle's {:.4} by more than 0.1 point",
                        bundle.display(),
                        v.runtime_accuracy,
                        v.candle_accuracy
                    )));
                }
                summary.fp32 = Some(v);
            } else {
                summary.int8 = Some(v);
            }
        }
    }
    write_json(&o.out.join("export_report.json"), &summary)?;
    Ok(summary)
}
