//! Recipe 2, fine-tuning: AdamW + linear schedule + gradient clipping, dropout on, evaluation
//! every epoch, best-model selection and early stopping, exact resume from checkpoints, Ctrl-C
//! checkpointing, and the output directory in Hugging Face layout.
use crate::checkpoint::{
    dropout_seed, latest_checkpoint, load_tensors, save_checkpoint, save_tensors, LogEntry,
    TrainState,
};
use crate::data::{
    epoch_batches, load_dataset, make_batch, DataOptions, Encoded, OrderOptions, TextEncoder,
};
use crate::device::parse_device;
use crate::error::{Result, TrainError};
use crate::eval::{batch_tensors, predict, progress_bar, Predictions};
use crate::io::{copy_atomic, write_atomic, write_json, Fnv64};
use crate::metrics::Metrics;
use crate::optimizer::{clip_scale, AdamW, AdamWConfig};
use crate::schedule::LinearSchedule;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use edgebert_models::{DropoutRng, ModelFiles, SequenceClassifier};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The metric that selects the best epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum BestMetric {
    /// Validation accuracy (higher is better).
    Accuracy,
    /// Validation weighted F1 (higher is better).
    F1,
    /// Validation loss (lower is better).
    Loss,
}

impl BestMetric {
    fn value(self, e: &LogEntry) -> f64 {
        match self {
            BestMetric::Accuracy => e.eval_accuracy.unwrap_or(f64::NAN),
            BestMetric::F1 => e.eval_f1.unwrap_or(f64::NAN),
            BestMetric::Loss => e.eval_loss.unwrap_or(f64::NAN),
        }
    }
    fn better(self, new: f64, old: f64) -> bool {
        match self {
            BestMetric::Loss => new < old,
            _ => new > old,
        }
    }
}

/// Every knob of a fine-tuning run (the CLI flags of `edgebert-train finetune`).
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneOptions {
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
    /// Training epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Fraction of steps for linear warm-up.
    pub warmup_ratio: f64,
    /// Gradient-norm clipping threshold.
    pub max_grad_norm: f64,
    /// Use only the first N training examples.
    pub max_train_samples: Option<usize>,
    /// Use only the first N validation examples.
    pub max_eval_samples: Option<usize>,
    /// Maximum tokens per text.
    pub max_len: usize,
    /// Length-grouped batches.
    pub group_by_length: bool,
    /// Seed for head init, data order and dropout.
    pub seed: u64,
    /// `auto|cpu|cuda[:N]`.
    pub device: String,
    /// Continue from `OUT/checkpoints/latest`.
    pub resume: bool,
    /// Log every N optimizer steps.
    pub logging_steps: usize,
    /// Also checkpoint every N optimizer steps.
    pub save_steps: Option<usize>,
    /// Metric for best-model selection.
    pub best_metric: BestMetric,
    /// Stop after this many evaluations without improvement.
    pub patience: Option<usize>,
    /// Number of highest-loss validation samples written for error analysis.
    pub error_samples: usize,
    /// Show progress bars and log lines.
    pub progress: bool,
    /// Write a checkpoint and stop after this global step (simulates an interruption).
    pub stop_after_steps: Option<usize>,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            model: "distilbert-base-uncased".into(),
            data: PathBuf::new(),
            source: crate::data::DataSource::default(),
            out: PathBuf::new(),
            labels: None,
            skip_bad_lines: false,
            epochs: 2,
            lr: 2e-5,
            batch_size: 64,
            eval_batch_size: 128,
            weight_decay: 0.01,
            warmup_ratio: 0.0,
            max_grad_norm: 1.0,
            max_train_samples: None,
            max_eval_samples: None,
            max_len: 128,
            group_by_length: false,
            seed: 42,
            device: "auto".into(),
            resume: false,
            logging_steps: 50,
            save_steps: None,
            best_metric: BestMetric::F1,
            patience: None,
            error_samples: 100,
            progress: true,
            stop_after_steps: None,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneSummary {
    /// The output directory.
    pub out: PathBuf,
    /// Validation metrics of the saved (best) weights.
    pub validation: Metrics,
    /// Validation loss of the saved weights.
    pub validation_loss: f64,
    /// Test metrics, when a test split exists.
    pub test: Option<Metrics>,
    /// Majority-class baseline on validation (accuracy).
    pub majority_accuracy: f64,
    /// Epoch (1-based) whose weights were saved.
    pub best_epoch: Option<usize>,
    /// Optimizer steps done.
    pub global_step: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Seconds spent in training steps (all resumed parts).
    pub train_seconds: f64,
    /// Training samples per second over the run.
    pub train_samples_per_second: f64,
    /// Training loss of the first and last logging windows.
    pub first_loss: Option<f64>,
    /// Training loss of the last logging window.
    pub last_loss: Option<f64>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: std::sync::Once = std::sync::Once::new();

/// Installs (once per process) the Ctrl-C handler that makes training checkpoint and stop.
pub fn install_ctrlc_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("second Ctrl-C: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!(
                "Ctrl-C: writing a checkpoint after the current step (Ctrl-C again to abort)"
            );
        });
    });
}

/// The fingerprint of everything a resumed run must share with the original.
fn run_fingerprint(
    o: &FinetuneOptions,
    files: &ModelFiles,
    n_train: usize,
    labels: &[String],
) -> String {
    let mut h = Fnv64::default();
    for s in [
        files.config.display().to_string(),
        files.weights.display().to_string(),
        o.data.display().to_string(),
        format!(
            "{n_train} {labels:?} {} {} {} {}",
            o.epochs, o.lr, o.batch_size, o.weight_decay
        ),
        format!(
            "{} {} {:?} {} {} {}",
            o.warmup_ratio,
            o.max_grad_norm,
            o.max_train_samples,
            o.max_len,
            o.group_by_length,
            o.seed
        ),
    ] {
        h.update_str(&s);
    }
    h.hex()
}

/// The variables of a VarMap, by name.
pub fn var_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Options("VarMap lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

/// Overwrites every variable of `varmap` with the tensor of the same name.
pub fn set_vars(varmap: &VarMap, tensors: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Options("VarMap lock poisoned".into()))?;
    for (name, var) in data.iter() {
        let t = tensors.get(name).ok_or_else(|| TrainError::Checkpoint {
            path: source.to_path_buf(),
            msg: format!("tensor {name} is missing"),
        })?;
        if t.dims() != var.dims() {
            return Err(TrainError::Checkpoint {
                path: source.to_path_buf(),
                msg: format!(
                    "tensor {name} has shape {:?}, the model has {:?}",
                    t.dims(),
                    var.dims()
                ),
            });
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Copies the tokenizer files of a model directory into `out`.
pub fn copy_tokenizer_files(model_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        let src = model_dir.join(f);
        if src.is_file() && model_dir.join(f) != out.join(f) {
            copy_atomic(&src, &out.join(f))?;
            copied.push(f.to_string());
        }
    }
    Ok(copied)
}

/// The training state around the model: optimizer, schedule, data, options.
pub struct TrainLoop<'a> {
    /// The model.
    pub model: &'a SequenceClassifier,
    /// Its variables.
    pub varmap: &'a VarMap,
    /// Training data.
    pub train: &'a Encoded,
    /// Validation data.
    pub validation: &'a Encoded,
    /// Pad id.
    pub pad_id: u32,
    /// Device.
    pub device: &'a Device,
    /// Options.
    pub opts: &'a FinetuneOptions,
}

/// How [`TrainLoop::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopEnd {
    /// All epochs done.
    Finished,
    /// Early stopping.
    EarlyStopped,
}

impl TrainLoop<'_> {
    fn evaluate(&self) -> Result<(Predictions, Metrics)> {
        let progress = self.opts.progress.then_some("eval");
        let p = predict(
            self.model,
            self.validation,
            self.pad_id,
            self.opts.eval_batch_size,
            self.device,
            progress,
        )?;
        let names: Vec<String> = (0..self.model.num_labels())
            .map(|i| i.to_string())
            .collect();
        let m = Metrics::compute(&self.validation.labels, &p.predicted(), &names);
        Ok((p, m))
    }

    /// Trains from `state` (fresh or resumed) to the end, checkpointing into `opts.out`.
    pub fn run(&self, opt: &mut AdamW, state: &mut TrainState) -> Result<LoopEnd> {
        let o = self.opts;
        let steps_per_epoch = self.train.len().div_ceil(o.batch_size.max(1));
        let sched = LinearSchedule::new(o.lr, o.warmup_ratio, state.max_steps);
        let order = OrderOptions {
            batch_size: o.batch_size,
            seed: o.seed,
            group_by_length: o.group_by_length,
        };
        let lengths: Vec<usize> = self.train.ids.iter().map(Vec::len).collect();
        let log = |msg: String, pb: &indicatif::ProgressBar| {
            if !o.progress {
                return;
            }
            if pb.is_hidden() {
                eprintln!("{msg}");
            } else {
                pb.println(msg);
            }
        };
        let checkpoint = |state: &TrainState, opt: &AdamW| -> Result<PathBuf> {
            save_checkpoint(&o.out, &var_tensors(self.varmap)?, &opt.state()?, state)
        };
        let (mut win_loss, mut win_n, mut win_samples) = (0.0f64, 0usize, 0usize);
        let mut win_start = Instant::now();
        while state.epoch < o.epochs {
            let batches = epoch_batches(&lengths, state.epoch, &order);
            let pb = progress_bar(
                batches.len(),
                &format!("epoch {}/{}", state.epoch + 1, o.epochs),
                o.progress,
            );
            pb.set_position(state.batch_in_epoch as u64);
            for idx in batches.iter().skip(state.batch_in_epoch) {
                let t0 = Instant::now();
                let b = make_batch(self.train, idx, self.pad_id);
                let (ids, mask) = batch_tensors(&b, self.device)?;
                let labels = Tensor::from_slice(&b.labels, b.batch, self.device)?;
                let mut drng = DropoutRng::new(dropout_seed(o.seed, state.global_step));
                let logits = self.model.forward(&ids, &mask, Some(&mut drng))?;
                let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                // The loss is read back after the backward pass is queued: on a GPU, reading it
                // first would stall the host until the forward pass finished. Either way the
                // checks below run before any weight changes.
                let grads = loss.backward()?;
                let norm = opt.grad_norm(&grads)?;
                let loss_v = loss.to_scalar::<f32>()?;
                if !loss_v.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        loss: loss_v,
                        epoch: state.epoch + 1,
                        step: state.global_step + 1,
                    });
                }
                if !norm.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        loss: norm as f32,
                        epoch: state.epoch + 1,
                        step: state.global_step + 1,
                    });
                }
                let lr = sched.lr(state.global_step);
                opt.step(&grads, lr, clip_scale(norm, o.max_grad_norm))?;
                state.global_step += 1;
                state.batch_in_epoch += 1;
                state.train_seconds += t0.elapsed().as_secs_f64();
                win_loss += f64::from(loss_v);
                win_n += 1;
                win_samples += b.batch;
                pb.inc(1);
                if o.logging_steps > 0 && state.global_step.is_multiple_of(o.logging_steps) {
                    let secs = win_start.elapsed().as_secs_f64().max(1e-9);
                    let entry = LogEntry {
                        epoch: state.epoch as f64
                            + state.batch_in_epoch as f64 / steps_per_epoch.max(1) as f64,
                        step: state.global_step,
                        loss: Some(win_loss / win_n.max(1) as f64),
                        learning_rate: Some(lr),
                        grad_norm: Some(norm),
                        samples_per_second: Some(win_samples as f64 / secs),
                        ..Default::default()
                    };
                    log(
                        format!(
                            "step {:>6}  epoch {:.2}  loss {:.4}  lr {:.3e}  grad_norm {:.3}  {:.1} samples/s",
                            entry.step,
                            entry.epoch,
                            entry.loss.unwrap_or(f64::NAN),
                            lr,
                            norm,
                            win_samples as f64 / secs
                        ),
                        &pb,
                    );
                    state.log_history.push(entry);
                    (win_loss, win_n, win_samples) = (0.0, 0, 0);
                    win_start = Instant::now();
                }
                let stop_now = o.stop_after_steps == Some(state.global_step);
                let interrupted = INTERRUPTED.load(Ordering::SeqCst);
                if interrupted
                    || stop_now
                    || o.save_steps
                        .is_some_and(|n| n > 0 && state.global_step.is_multiple_of(n))
                {
                    let path = checkpoint(state, opt)?;
                    if interrupted || stop_now {
                        pb.abandon();
                        return Err(TrainError::Interrupted { path });
                    }
                }
            }
            pb.finish_and_clear();
            // End of epoch: evaluate, select, checkpoint.
            let (p, m) = self.evaluate()?;
            let entry = LogEntry {
                epoch: (state.epoch + 1) as f64,
                step: state.global_step,
                eval_loss: Some(p.mean_loss()),
                eval_accuracy: Some(m.accuracy),
                eval_f1: Some(m.weighted_f1),
                ..Default::default()
            };
            if o.progress {
                eprintln!(
                    "epoch {}: eval_loss {:.4}  accuracy {:.4}  weighted F1 {:.4}",
                    state.epoch + 1,
                    p.mean_loss(),
                    m.accuracy,
                    m.weighted_f1
                );
            }
            let value = o.best_metric.value(&entry);
            state.log_history.push(entry);
            state.epoch += 1;
            state.batch_in_epoch = 0;
            let improved = state
                .best_metric
                .is_none_or(|b| o.best_metric.better(value, b));
            if improved {
                state.best_metric = Some(value);
                state.best_epoch = Some(state.epoch);
                state.evals_without_improvement = 0;
                save_tensors(&var_tensors(self.varmap)?, &best_weights_path(&o.out))?;
            } else {
                state.evals_without_improvement += 1;
            }
            checkpoint(state, opt)?;
            if o.patience
                .is_some_and(|p| state.evals_without_improvement >= p)
                && state.epoch < o.epochs
            {
                if o.progress {
                    eprintln!(
                        "early stopping: no improvement in {} evaluations",
                        state.evals_without_improvement
                    );
                }
                return Ok(LoopEnd::EarlyStopped);
            }
        }
        Ok(LoopEnd::Finished)
    }
}

/// Where the best weights so far are kept.
pub fn best_weights_path(out: &Path) -> PathBuf {
    crate::checkpoint::checkpoints_dir(out).join("best.safetensors")
}

#[derive(Serialize)]
struct ErrorSample<'a> {
    text: &'a str,
    label: &'a str,
    predicted: &'a str,
    loss: f32,
    probability: f32,
}

/// `edgebert-train finetune`: the whole run, from files to the HF-layout output directory.
pub fn finetune(o: &FinetuneOptions) -> Result<FinetuneSummary> {
    if o.epochs == 0 || o.batch_size == 0 {
        return Err(TrainError::Options(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(TrainError::Options(format!(
            "--lr {}: must be a positive number",
            o.lr
        )));
    }
    let device = parse_device(&o.device, o.progress)?;
    let files = ModelFiles::resolve(&o.model)?;
    let dataset = load_dataset(
        &o.data,
        &DataOptions {
            labels: o.labels.clone(),
            skip_bad_lines: o.skip_bad_lines,
            source: o.source.clone(),
            progress: o.progress,
        },
    )?;
    let skipped = dataset.train.skipped + dataset.validation.skipped;
    if skipped > 0 && o.progress {
        eprintln!("skipped {skipped} malformed lines");
    }
    let tok = files
        .tokenizer_json
        .clone()
        .ok_or_else(|| TrainError::Tokenizer {
            path: files.dir.join("tokenizer.json"),
            msg: "missing: the model directory needs a tokenizer.json".into(),
        })?;
    let enc = TextEncoder::from_file(&tok, o.max_len)?;
    let mut train = Encoded::new(&enc, &dataset.train)?;
    if let Some(n) = o.max_train_samples {
        train.truncate(n);
    }
    let mut val_split = dataset.validation.clone();
    if let Some(n) = o.max_eval_samples {
        val_split.examples.truncate(n);
    }
    let validation = Encoded::new(&enc, &val_split)?;
    let labels = dataset.labels.clone();
    let (model, varmap) = SequenceClassifier::load(&files, labels.len(), &device, o.seed)?;
    let vars: Vec<(String, candle_core::Var)> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| TrainError::Options("VarMap lock poisoned".into()))?;
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            weight_decay: o.weight_decay,
            ..Default::default()
        },
    )?;
    let fingerprint = run_fingerprint(o, &files, train.len(), &labels);
    let steps_per_epoch = train.len().div_ceil(o.batch_size);
    let mut state = TrainState {
        global_step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        max_steps: steps_per_epoch * o.epochs,
        seed: o.seed,
        run_fingerprint: fingerprint.clone(),
        best_metric: None,
        best_epoch: None,
        evals_without_improvement: 0,
        train_seconds: 0.0,
        log_history: Vec::new(),
    };
    std::fs::create_dir_all(&o.out).map_err(|e| TrainError::io(&o.out, e))?;
    if o.resume {
        match latest_checkpoint(&o.out)? {
            Some(ck) => {
                if ck.state.run_fingerprint != fingerprint {
                    return Err(TrainError::Checkpoint {
                        path: ck.dir,
                        msg: "written by a run with other data, model or hyper-parameters; \
                              resume with the same flags or drop --resume"
                            .into(),
                    });
                }
                set_vars(
                    &varmap,
                    &load_tensors(&ck.weights(), &device)?,
                    &ck.weights(),
                )?;
                opt.load_state(
                    &load_tensors(&ck.optimizer(), &device)?,
                    ck.state.global_step,
                )?;
                if o.progress {
                    eprintln!(
                        "resuming from {} (step {}, epoch {}, batch {})",
                        ck.dir.display(),
                        ck.state.global_step,
                        ck.state.epoch + 1,
                        ck.state.batch_in_epoch
                    );
                }
                state = ck.state;
            }
            None => {
                if o.progress {
                    eprintln!(
                        "--resume: no checkpoint in {}, starting fresh",
                        o.out.display()
                    );
                }
            }
        }
    }
    install_ctrlc_handler();
    let lp = TrainLoop {
        model: &model,
        varmap: &varmap,
        train: &train,
        validation: &validation,
        pad_id: enc.pad_id,
        device: &device,
        opts: o,
    };
    let end = lp.run(&mut opt, &mut state)?;

    // Final weights: the best epoch's.
    let best = best_weights_path(&o.out);
    if best.is_file() {
        set_vars(&varmap, &load_tensors(&best, &device)?, &best)?;
    }
    model.save_pretrained(&varmap, &o.out, &labels)?;
    copy_tokenizer_files(&files.dir, &o.out)?;
    let p = predict(
        &model,
        &validation,
        enc.pad_id,
        o.eval_batch_size,
        &device,
        o.progress.then_some("final eval"),
    )?;
    let val_metrics = Metrics::compute(&validation.labels, &p.predicted(), &labels);
    let test_metrics = match &dataset.test {
        Some(t) => {
            let te = Encoded::new(&enc, t)?;
            let pt = predict(
                &model,
                &te,
                enc.pad_id,
                o.eval_batch_size,
                &device,
                o.progress.then_some("test"),
            )?;
            Some(Metrics::compute(&te.labels, &pt.predicted(), &labels))
        }
        None => None,
    };
    let majority = crate::metrics::majority_label(&train.labels, labels.len());
    let majority_accuracy = validation.labels.iter().filter(|&&y| y == majority).count() as f64
        / validation.len().max(1) as f64;
    write_outputs(
        o,
        &state,
        &labels,
        &val_split,
        &p,
        &val_metrics,
        test_metrics.as_ref(),
    )?;
    let train_samples: usize = state.global_step.min(state.max_steps) * o.batch_size;
    let losses: Vec<f64> = state.log_history.iter().filter_map(|e| e.loss).collect();
    let summary = FinetuneSummary {
        out: o.out.clone(),
        validation_loss: p.mean_loss(),
        validation: val_metrics,
        test: test_metrics,
        majority_accuracy,
        best_epoch: state.best_epoch,
        global_step: state.global_step,
        stopped_early: end == LoopEnd::EarlyStopped,
        train_seconds: state.train_seconds,
        train_samples_per_second: train_samples.min(train.len() * o.epochs) as f64
            / state.train_seconds.max(1e-9),
        first_loss: losses.first().copied(),
        last_loss: losses.last().copied(),
    };
    write_json(&o.out.join("metrics.json"), &summary)?;
    crate::hub::card::write_model_card(&o.out, &crate::hub::card::CardOptions::default())?;
    Ok(summary)
}

fn write_outputs(
    o: &FinetuneOptions,
    state: &TrainState,
    labels: &[String],
    val: &crate::data::Split,
    p: &Predictions,
    m: &Metrics,
    test: Option<&Metrics>,
) -> Result<()> {
    let out = &o.out;
    write_json(
        &out.join("trainer_state.json"),
        &serde_json::json!({
            "best_metric": state.best_metric,
            "best_epoch": state.best_epoch,
            "metric_for_best_model": o.best_metric,
            "epoch": state.epoch,
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "num_train_epochs": o.epochs,
            "train_batch_size": o.batch_size,
            "train_seconds": state.train_seconds,
            "log_history": state.log_history,
        }),
    )?;
    write_json(&out.join("training_args.json"), o)?;
    let mut report = m.report();
    if let Some(t) = test {
        report += "\ntest split:\n";
        report += &t.report();
    }
    write_atomic(&out.join("classification_report.txt"), report.as_bytes())?;
    write_atomic(
        &out.join("confusion_matrix.txt"),
        crate::metrics::confusion_text(&m.confusion, labels).as_bytes(),
    )?;
    crate::plot::confusion_png(
        &m.confusion,
        labels,
        &crate::plot::confusion_title(&o.model, "fine-tuned", "validation"),
        &out.join("confusion_matrix.png"),
    )?;
    // Error analysis: the highest-loss validation samples.
    let pred = p.predicted();
    let mut order: Vec<usize> = (0..p.losses.len()).collect();
    order.sort_by(|&a, &b| p.losses[b].total_cmp(&p.losses[a]));
    let mut jsonl = String::new();
    for &i in order.iter().take(o.error_samples) {
        let probs = p.probs(i);
        let s = ErrorSample {
            text: &val.examples[i].text,
            label: &labels[val.examples[i].label],
            predicted: &labels[pred[i]],
            loss: p.losses[i],
            probability: probs[pred[i]],
        };
        jsonl += &serde_json::to_string(&s).map_err(|e| TrainError::Options(e.to_string()))?;
        jsonl.push('\n');
    }
    write_atomic(&out.join("error_analysis.jsonl"), jsonl.as_bytes())
}
