//! Training checkpoints: weights, AdamW moments, and the trainer state (global step, epoch and
//! batch position in it, seed, schedule, best metric, log history) under `OUT/checkpoints/`.
//!
//! A checkpoint is written into a temporary directory that is renamed to `checkpoint-<step>`
//! when complete; then the `latest` pointer file is replaced atomically and older checkpoints
//! are removed. A crash at any moment leaves the previous checkpoint intact and pointed to.
//!
//! Randomness needs no saved generator state: the data order of epoch `e` is a pure function of
//! `(seed, e)` ([`crate::data::epoch_batches`]) and the dropout generator of step `t` is seeded
//! from `(seed, t)` ([`dropout_seed`]), so `(seed, epoch, batch position, step)` *is* the RNG state.
use crate::error::{Result, TrainError};
use crate::io::{read_json, write_atomic, write_json};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One `log_history` entry (training log or evaluation), as in transformers' `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LogEntry {
    /// Fractional epoch at the time of the entry.
    pub epoch: f64,
    /// Global optimizer step.
    pub step: usize,
    /// Mean training loss since the previous log entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Learning rate of the last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Gradient norm (before clipping) of the last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training throughput since the previous log entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<f64>,
    /// Validation loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// Validation accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_accuracy: Option<f64>,
    /// Validation weighted F1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_f1: Option<f64>,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub global_step: usize,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of `epoch` already trained.
    pub batch_in_epoch: usize,
    /// Total optimizer steps of the run (schedule length).
    pub max_steps: usize,
    /// The run's seed.
    pub seed: u64,
    /// Hash of the options that must not change across a resume (data, model, hyper-parameters).
    pub run_fingerprint: String,
    /// Best value of the selection metric so far.
    pub best_metric: Option<f64>,
    /// Epoch (1-based) of the best evaluation.
    pub best_epoch: Option<usize>,
    /// Evaluations since the best one (early stopping).
    pub evals_without_improvement: usize,
    /// Seconds of training so far (summed over resumed runs).
    pub train_seconds: f64,
    /// Log and evaluation history.
    pub log_history: Vec<LogEntry>,
}

/// The dropout seed of optimizer step `step` (a SplitMix64 mix of seed and step).
pub fn dropout_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((step as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes named tensors as safetensors, atomically.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let bytes =
        safetensors::serialize(cpu.iter().map(|(k, v)| (k.as_str(), v)), None).map_err(|e| {
            TrainError::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("cannot serialize tensors: {e}"),
            }
        })?;
    write_atomic(path, &bytes)
}

/// Reads a safetensors file onto `device`.
pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("cannot read tensors: {e}"),
    })
}

/// The checkpoint directory of a run's output directory.
pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// A checkpoint found on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its trainer state.
    pub state: TrainState,
}

impl Checkpoint {
    /// Path of the weights.
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    /// Path of the optimizer moments.
    pub fn optimizer(&self) -> PathBuf {
        self.dir.join("optimizer.safetensors")
    }
}

/// Writes a checkpoint (weights, optimizer moments, state) and points `latest` at it.
pub fn save_checkpoint(
    out: &Path,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    std::fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let name = format!("checkpoint-{}", state.global_step);
    let final_dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_tensors(weights, &tmp.join("model.safetensors"))?;
    save_tensors(optimizer, &tmp.join("optimizer.safetensors"))?;
    write_json(&tmp.join("trainer_state.json"), state)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    write_atomic(&root.join("latest"), name.as_bytes())?;
    // Remove older checkpoints (and stale temporaries of crashed runs).
    if let Ok(rd) = std::fs::read_dir(&root) {
        for entry in rd.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            let stale =
                (n.starts_with("checkpoint-") || n.starts_with(".checkpoint-")) && n != name;
            if stale && entry.path().is_dir() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(final_dir)
}

/// The checkpoint `latest` points to, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<Checkpoint>> {
    let root = checkpoints_dir(out);
    let pointer = root.join("latest");
    if !pointer.is_file() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| TrainError::io(&pointer, e))?;
    let dir = root.join(name.trim());
    let state: TrainState = read_json(&dir.join("trainer_state.json"))?;
    for f in ["model.safetensors", "optimizer.safetensors"] {
        if !dir.join(f).is_file() {
            return Err(TrainError::Checkpoint {
                path: dir.clone(),
                msg: format!("{f} is missing"),
            });
        }
    }
    Ok(Some(Checkpoint { dir, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> TrainState {
        TrainState {
            global_step: step,
            epoch: 0,
            batch_in_epoch: step,
            max_steps: 10,
            seed: 1,
            run_fingerprint: "x".into(),
            best_metric: None,
            best_epoch: None,
            evals_without_improvement: 0,
            train_seconds: 0.0,
            log_history: vec![LogEntry {
                step,
                loss: Some(1.0),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn save_then_latest_round_trips_and_prunes() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        let t = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu)?;
        let w: HashMap<String, Tensor> = [("a.weight".to_string(), t.clone())].into();
        let o: HashMap<String, Tensor> = [("exp_avg.a.weight".to_string(), t)].into();
        save_checkpoint(dir.path(), &w, &o, &state(3))?;
        save_checkpoint(dir.path(), &w, &o, &state(5))?;
        let ck = latest_checkpoint(dir.path())?.expect("checkpoint");
        assert_eq!(ck.state, state(5));
        let back = load_tensors(&ck.weights(), &Device::Cpu)?;
        assert_eq!(back["a.weight"].to_vec1::<f32>()?, vec![1.0, 2.0, 3.0]);
        let dirs = std::fs::read_dir(checkpoints_dir(dir.path()))
            .map_err(|e| TrainError::io("ls", e))?
            .filter(|e| e.as_ref().map(|e| e.path().is_dir()).unwrap_or(false))
            .count();
        assert_eq!(dirs, 1);
        Ok(())
    }

    #[test]
    fn dropout_seeds_differ_per_step() {
        assert_ne!(dropout_seed(42, 0), dropout_seed(42, 1));
        assert_ne!(dropout_seed(42, 0), dropout_seed(43, 0));
        assert_eq!(dropout_seed(42, 7), dropout_seed(42, 7));
    }
}
