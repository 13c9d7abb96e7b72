//! Finding a model (local directory or Hugging Face hub id) and reading its safetensors weights.
//!
//! [`ModelFiles::resolve`] turns a directory or hub id into paths; [`read_safetensors`] reads a
//! checkpoint into named candle tensors, with errors that name the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// The files of one model, resolved to local paths.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the caller asked for (directory or hub id), for messages.
    pub spec: String,
    /// The directory holding the files (a hub snapshot directory for hub ids).
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json`, when present.
    pub tokenizer_json: Option<PathBuf>,
    /// `vocab.txt`, when present.
    pub vocab: Option<PathBuf>,
}

/// How to turn a PyTorch-only checkpoint into safetensors.
pub fn convert_hint(dir: &str) -> String {
    format!(
        "only pytorch_model.bin found; convert it with: python -c \"from transformers import AutoModel; \
         AutoModel.from_pretrained('{dir}').save_pretrained('{dir}', safe_serialization=True)\" \
         (use AutoModelForSequenceClassification for a fine-tuned classifier)"
    )
}

fn env_truthy(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

fn looks_like_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    !spec.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl ModelFiles {
    /// Resolves a local directory, or else a hub id (`org/name`, optionally `@revision`)
    /// through the hf-hub cache (`HF_HOME`), downloading unless `HF_HUB_OFFLINE` is set.
    pub fn resolve(spec: &str) -> Result<ModelFiles> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::from_dir(path, spec);
        }
        let (id, rev) = match spec.split_once('@') {
            Some((id, rev)) => (id, Some(rev)),
            None => (spec, None),
        };
        if !looks_like_hub_id(id) {
            return Err(Error::ModelFiles {
                spec: spec.into(),
                message: "no such directory, and not a hub id of the form org/name".into(),
            });
        }
        Self::from_hub(spec, id, rev)
    }

    /// Resolves a local HF directory (config.json + model.safetensors).
    pub fn from_dir(dir: &Path, spec: &str) -> Result<ModelFiles> {
        if !dir.is_dir() {
            return Err(Error::ModelFiles {
                spec: spec.into(),
                message: "is not a directory (expected a directory with config.json and model.safetensors)".into(),
            });
        }
        let config = dir.join("config.json");
        let weights = dir.join("model.safetensors");
        let has_config = config.is_file();
        let has_weights = weights.is_file();
        if !has_weights {
            let message = if dir.join("pytorch_model.bin").is_file() {
                convert_hint(&dir.display().to_string())
            } else if dir.join("model.safetensors.index.json").is_file() {
                "sharded checkpoints (model.safetensors.index.json) are not supported; \
                 re-save with a larger max_shard_size"
                    .into()
            } else if has_config {
                "model.safetensors is missing".into()
            } else {
                "config.json and model.safetensors are missing (is this a model directory?)".into()
            };
            return Err(Error::ModelFiles {
                spec: spec.into(),
                message,
            });
        }
        if !has_config {
            return Err(Error::ModelFiles {
                spec: spec.into(),
                message: "config.json is missing".into(),
            });
        }
        let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Ok(ModelFiles {
            spec: spec.into(),
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer_json: opt("tokenizer.json"),
            vocab: opt("vocab.txt"),
        })
    }

    fn from_hub(spec: &str, id: &str, rev: Option<&str>) -> Result<ModelFiles> {
        use hf_hub::{Repo, RepoType};
        let repo = match rev {
            Some(r) => Repo::with_revision(id.into(), RepoType::Model, r.into()),
            None => Repo::new(id.into(), RepoType::Model),
        };
        let hub_err = |message: String| Error::Hub {
            repo: spec.into(),
            message,
        };
        let offline = env_truthy("HF_HUB_OFFLINE");
        // Each lookup yields the local path, or a message saying why there is none.
        type Lookup = Box<dyn Fn(&str) -> std::result::Result<PathBuf, String>>;
        let get: Lookup = if offline {
            let cache = hf_hub::Cache::from_env();
            let where_ = format!(
                "not in the local cache {} (HF_HUB_OFFLINE is set)",
                cache.path().display()
            );
            let cache = cache.repo(repo.clone());
            Box::new(move |f: &str| cache.get(f).ok_or_else(|| format!("{f} {where_}")))
        } else {
            let api = hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(false)
                .build()
                .map_err(|e| hub_err(format!("cannot start hub client: {e}")))?;
            let api_repo = api.repo(repo.clone());
            Box::new(move |f: &str| api_repo.get(f).map_err(|e| format!("{f}: {e}")))
        };
        let config = get("config.json").map_err(hub_err)?;
        let weights = match get("model.safetensors") {
            Ok(p) => p,
            Err(why) => {
                let has_bin = offline && get("pytorch_model.bin").is_ok();
                let message = if has_bin || why.contains("404") {
                    format!(
                        "{why}; if the repo has only pytorch_model.bin: {}",
                        convert_hint(id)
                    )
                } else {
                    why
                };
                return Err(hub_err(message));
            }
        };
        let dir = config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let tokenizer_json = get("tokenizer.json").ok();
        let vocab = get("vocab.txt").ok();
        Ok(ModelFiles {
            spec: spec.into(),
            dir,
            config,
            weights,
            tokenizer_json,
            vocab,
        })
    }

    /// Parses `config.json`.
    pub fn load_config(&self) -> Result<ModelConfig> {
        ModelConfig::from_file(&self.config)
    }
}

/// Reads every tensor of a safetensors file, converting float tensors to `dtype` on `device`.
pub fn read_safetensors(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = HashMap::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let src = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::I64 if name.ends_with("position_ids") => DType::I64,
            other => {
                return Err(Error::TensorDtype {
                    path: path.to_path_buf(),
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let t =
            Tensor::from_raw_buffer(view.data(), src, view.shape(), &Device::Cpu).map_err(|e| {
                Error::Safetensors {
                    path: path.to_path_buf(),
                    message: format!("tensor \"{name}\": {e}"),
                }
            })?;
        let t = if src.is_float() && src != dtype {
            t.to_dtype(dtype)?
        } else {
            t
        };
        let t = t.to_device(device)?;
        out.insert(name, t);
    }
    Ok(out)
}
