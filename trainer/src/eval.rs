//! Batched, gradient-free inference over an encoded split: logits and per-example losses for
//! evaluation, `[CLS]` hidden states for feature extraction; plus `evaluate` of a trained model
//! directory on a data file.
use crate::data::{eval_batches, load_file_with_labels, make_batch, Batch, Encoded, TextEncoder};
use crate::error::{Result, TrainError};
use crate::metrics::{argmax_rows, Metrics};
use candle_core::{Device, Tensor};
use edgebert_models::SequenceClassifier;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::Path;

/// A progress bar for `len` items, or a hidden one.
pub fn progress_bar(len: usize, msg: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb
}

/// `input_ids` and `attention_mask` tensors `[batch, seq]` (u32) of a batch.
pub fn batch_tensors(b: &Batch, device: &Device) -> Result<(Tensor, Tensor)> {
    let ids = Tensor::from_slice(&b.ids, (b.batch, b.seq_len), device)?;
    let mask = Tensor::from_slice(&b.mask, (b.batch, b.seq_len), device)?;
    Ok((ids, mask))
}

/// Logits and losses of a split, in the split's order.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// `[n, k]` row-major logits.
    pub logits: Vec<f32>,
    /// Cross-entropy loss per example.
    pub losses: Vec<f32>,
    /// Number of classes.
    pub k: usize,
}

impl Predictions {
    /// Mean loss.
    pub fn mean_loss(&self) -> f64 {
        self.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / self.losses.len().max(1) as f64
    }
    /// Predicted label ids.
    pub fn predicted(&self) -> Vec<usize> {
        argmax_rows(&self.logits, self.k)
    }
    /// Softmax probabilities of row `i`.
    pub fn probs(&self, i: usize) -> Vec<f32> {
        let row = &self.logits[i * self.k..(i + 1) * self.k];
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    }
}

/// Per-example cross-entropy from logits (`log_softmax` in f64).
pub fn cross_entropy_rows(logits: &[f32], labels: &[usize], k: usize) -> Vec<f32> {
    logits
        .chunks(k.max(1))
        .zip(labels)
        .map(|(row, &y)| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row
                .iter()
                .map(|&v| (f64::from(v) - m).exp())
                .sum::<f64>()
                .ln();
            (lse - f64::from(row.get(y).copied().unwrap_or(f32::NAN))) as f32
        })
        .collect()
}

fn run_batches(
    data: &Encoded,
    pad_id: u32,
    batch_size: usize,
    width: usize,
    progress: Option<&str>,
    mut f: impl FnMut(&Batch) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let lengths: Vec<usize> = data.ids.iter().map(Vec::len).collect();
    let batches = eval_batches(&lengths, batch_size);
    let pb = progress_bar(data.len(), progress.unwrap_or(""), progress.is_some());
    let mut out = vec![0f32; data.len() * width];
    for idx in &batches {
        let b = make_batch(data, idx, pad_id);
        let rows = f(&b)?;
        if rows.len() != idx.len() * width {
            return Err(TrainError::Options(format!(
                "model returned {} values for {} rows of width {width}",
                rows.len(),
                idx.len()
            )));
        }
        for (r, &i) in rows.chunks(width).zip(idx) {
            out[i * width..(i + 1) * width].copy_from_slice(r);
        }
        pb.inc(idx.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Logits (eval mode, no gradients) and losses of every example.
pub fn predict(
    model: &SequenceClassifier,
    data: &Encoded,
    pad_id: u32,
    batch_size: usize,
    device: &Device,
    progress: Option<&str>,
) -> Result<Predictions> {
    let k = model.num_labels();
    let logits = run_batches(data, pad_id, batch_size, k, progress, |b| {
        let (ids, mask) = batch_tensors(b, device)?;
        let logits = model.forward(&ids, &mask, None)?.detach();
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    })?;
    let losses = cross_entropy_rows(&logits, &data.labels, k);
    Ok(Predictions { logits, losses, k })
}

/// The `[CLS]` last hidden state `[n, hidden]` of every example (frozen encoder, no gradients).
pub fn cls_features(
    model: &SequenceClassifier,
    data: &Encoded,
    pad_id: u32,
    batch_size: usize,
    device: &Device,
    progress: Option<&str>,
) -> Result<Vec<f32>> {
    let hidden = model.config().hidden_size;
    run_batches(data, pad_id, batch_size, hidden, progress, |b| {
        let (ids, mask) = batch_tensors(b, device)?;
        let h = model.cls_hidden(&ids, &mask)?.detach();
        Ok(h.flatten_all()?.to_vec1::<f32>()?)
    })
}

/// The result of `edgebert-train evaluate`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The model directory.
    pub model: String,
    /// The data file.
    pub data: String,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Lines skipped as malformed.
    pub skipped_lines: usize,
    /// All metrics.
    pub metrics: Metrics,
}

/// Options of [`evaluate_dir`].
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// Maximum tokens per text.
    pub max_len: usize,
    /// Examples per batch.
    pub batch_size: usize,
    /// Skip malformed lines.
    pub skip_bad_lines: bool,
    /// `auto|cpu|cuda[:N]`.
    pub device: String,
    /// Show a progress bar.
    pub progress: bool,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions {
            max_len: 128,
            batch_size: 64,
            skip_bad_lines: false,
            device: "auto".into(),
            progress: false,
        }
    }
}

/// Loads a fine-tuned model directory (with a trained head and `id2label`) and a model-ready
/// tokenizer, for evaluation and export.
pub fn load_trained(
    model_dir: &str,
    device: &Device,
) -> Result<(
    SequenceClassifier,
    candle_nn::VarMap,
    Vec<String>,
    edgebert_models::ModelFiles,
)> {
    let files = edgebert_models::ModelFiles::resolve(model_dir)?;
    let cfg = files.load_config()?;
    if cfg.id2label.is_empty() {
        return Err(TrainError::data(
            &files.config,
            "no id2label: this is not a fine-tuned classifier (run `edgebert-train finetune` first)",
        ));
    }
    let opts = edgebert_models::LoadOptions {
        num_labels: Some(cfg.id2label.len()),
        ..Default::default()
    };
    let (model, varmap) = SequenceClassifier::load_with(&files, &opts, device)?;
    if !model.has_trained_head() {
        return Err(TrainError::data(
            &files.weights,
            format!(
                "the classification head is missing ({:?}): not a fine-tuned classifier",
                model.load_report().fresh
            ),
        ));
    }
    let labels = cfg.id2label.clone();
    Ok((model, varmap, labels, files))
}

/// `edgebert-train evaluate`: metrics of a fine-tuned model directory on one data file.
pub fn evaluate_dir(model_dir: &str, data: &Path, o: &EvaluateOptions) -> Result<EvalReport> {
    let device = crate::device::parse_device(&o.device, o.progress)?;
    let (model, _varmap, labels, files) = load_trained(model_dir, &device)?;
    let enc = TextEncoder::from_model_dir(&files.dir, o.max_len)?;
    let split = load_file_with_labels(data, &labels, o.skip_bad_lines)?;
    let encoded = Encoded::new(&enc, &split)?;
    let progress = o.progress.then_some("evaluate");
    let p = predict(
        &model,
        &encoded,
        enc.pad_id,
        o.batch_size,
        &device,
        progress,
    )?;
    Ok(EvalReport {
        model: model_dir.to_string(),
        data: data.display().to_string(),
        loss: p.mean_loss(),
        skipped_lines: split.skipped,
        metrics: Metrics::compute(&encoded.labels, &p.predicted(), &labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_by_hand() {
        let l = cross_entropy_rows(&[0.0, 0.0, 1.0, 3.0], &[0, 1], 2);
        assert!((l[0] - std::f32::consts::LN_2).abs() < 1e-6);
        let want = (1.0f64 + (-2.0f64).exp()).ln() as f32;
        assert!((l[1] - want).abs() < 1e-6);
    }
}
