//! [`SequenceClassifier`]: an encoder (DistilBERT or BERT) plus its transformers-named
//! classification head, loaded from HF checkpoints (base or `*ForSequenceClassification`) into a
//! [`VarMap`] whose names are the HF names, and saved back as an HF directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::bert::{self, Bert, BertHead};
use crate::config::{Architecture, ModelConfig};
use crate::distilbert::{self, DistilBert, DistilBertHead};
use crate::error::{Error, Result};
use crate::layers::{init_tensor, DropoutRng, ParamSpec, Params};
use crate::loading::{read_safetensors, ModelFiles};

/// The encoder of a [`SequenceClassifier`].
pub enum Encoder {
    /// DistilBERT.
    DistilBert(DistilBert),
    /// BERT.
    Bert(Bert),
}

enum Head {
    DistilBert(DistilBertHead),
    Bert(BertHead),
}

/// Options for [`SequenceClassifier::load_with`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Number of labels; `None` takes the checkpoint head's, else the config's, else 2.
    pub num_labels: Option<usize>,
    /// Parameter dtype (F32 normally; F64 for gradient checks).
    pub dtype: DType,
    /// Seed for fresh head weights.
    pub seed: u64,
    /// Re-initialise a checkpoint head whose label count differs instead of failing.
    pub reinit_mismatched_head: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            num_labels: None,
            dtype: DType::F32,
            seed: 0,
            reinit_mismatched_head: false,
        }
    }
}

/// What loading did besides copying tensors.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Head parameters that were freshly initialised (absent or re-initialised).
    pub fresh: Vec<String>,
    /// Checkpoint tensors that were ignored (pre-training heads, position_ids buffers).
    pub ignored: Vec<String>,
}

/// Encoder + classification head, trainable in candle.
pub struct SequenceClassifier {
    cfg: ModelConfig,
    num_labels: usize,
    encoder: Encoder,
    head: Head,
    report: LoadReport,
}

/// Maps a checkpoint tensor name to the canonical HF name of a classifier, or `None` for
/// tensors that are safely ignored (pre-training heads, buffers).
pub fn canonical_name(arch: Architecture, name: &str) -> Option<String> {
    if name.ends_with("position_ids") {
        return None;
    }
    let prefix = arch.prefix();
    let name = name
        .replace("LayerNorm.gamma", "LayerNorm.weight")
        .replace("LayerNorm.beta", "LayerNorm.bias");
    let encoder_roots: &[&str] = match arch {
        Architecture::DistilBert => &["embeddings.", "transformer."],
        Architecture::Bert => &["embeddings.", "encoder.", "pooler."],
    };
    let ignored: &[&str] = match arch {
        Architecture::DistilBert => &["vocab_transform.", "vocab_layer_norm.", "vocab_projector."],
        Architecture::Bert => &["cls."],
    };
    if ignored.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    if encoder_roots.iter().any(|r| name.starts_with(r)) {
        return Some(format!("{prefix}.{name}"));
    }
    Some(name)
}

fn specs(cfg: &ModelConfig, num_labels: usize) -> Vec<ParamSpec> {
    match cfg.architecture {
        Architecture::DistilBert => distilbert::param_specs(cfg, num_labels),
        Architecture::Bert => bert::param_specs(cfg, num_labels),
    }
}

impl SequenceClassifier {
    /// Loads `files` with `num_labels` labels in f32; a head absent from the checkpoint is
    /// initialised from `seed`. Returns the model and the [`VarMap`] holding its variables.
    pub fn load(
        files: &ModelFiles,
        num_labels: usize,
        device: &Device,
        seed: u64,
    ) -> Result<(Self, VarMap)> {
        let opts = LoadOptions {
            num_labels: Some(num_labels),
            seed,
            ..LoadOptions::default()
        };
        Self::load_with(files, &opts, device)
    }

    /// Loads `files` with explicit [`LoadOptions`].
    pub fn load_with(
        files: &ModelFiles,
        opts: &LoadOptions,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        let cfg = files.load_config()?;
        let raw = read_safetensors(&files.weights, opts.dtype, device)?;
        Self::from_tensors(cfg, raw, &files.weights, opts, device)
    }

    /// A randomly initialised model (transformers' init) for `cfg`.
    pub fn from_config(
        cfg: &ModelConfig,
        num_labels: usize,
        device: &Device,
        dtype: DType,
        seed: u64,
    ) -> Result<(Self, VarMap)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vars = HashMap::new();
        for spec in specs(cfg, num_labels) {
            let t = init_tensor(&spec, cfg.initializer_range, &mut rng, dtype, device)?;
            vars.insert(spec.name.clone(), Var::from_tensor(&t)?);
        }
        let report = LoadReport::default();
        Self::assemble(cfg.clone(), num_labels, vars, report)
    }

    /// Builds a model from checkpoint tensors (`path` is only used in errors).
    pub fn from_tensors(
        mut cfg: ModelConfig,
        raw: HashMap<String, Tensor>,
        path: &Path,
        opts: &LoadOptions,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        let arch = cfg.architecture;
        let mut report = LoadReport::default();
        let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(raw.len());
        let mut raw_names: BTreeMap<String, String> = BTreeMap::new();
        for (name, t) in raw {
            match canonical_name(arch, &name) {
                None => report.ignored.push(name),
                Some(c) => {
                    raw_names.insert(c.clone(), name);
                    tensors.insert(c, t);
                }
            }
        }
        report.ignored.sort();
        let num_labels = match opts.num_labels {
            Some(n) => n,
            None => match tensors.get("classifier.weight") {
                Some(w) => w.dim(0)?,
                None => cfg.num_labels().unwrap_or(2),
            },
        };
        if num_labels == 0 {
            return Err(Error::Input("num_labels must be > 0".into()));
        }
        let specs = specs(&cfg, num_labels);
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        let mut vars = HashMap::with_capacity(specs.len());
        for spec in &specs {
            let fresh = match tensors.remove(&spec.name) {
                Some(t) if t.dims() == spec.shape.as_slice() => {
                    vars.insert(spec.name.clone(), Var::from_tensor(&t)?);
                    false
                }
                Some(t) => {
                    if spec.head
                        && opts.reinit_mismatched_head
                        && spec.name.starts_with("classifier.")
                    {
                        true
                    } else {
                        let shown = raw_names
                            .get(&spec.name)
                            .cloned()
                            .unwrap_or(spec.name.clone());
                        mismatched.push((shown, spec.shape.clone(), t.dims().to_vec()));
                        false
                    }
                }
                None if spec.head => true,
                None => {
                    missing.push((spec.name.clone(), spec.shape.clone()));
                    false
                }
            };
            if fresh {
                let t = init_tensor(spec, cfg.initializer_range, &mut rng, opts.dtype, device)?;
                vars.insert(spec.name.clone(), Var::from_tensor(&t)?);
                report.fresh.push(spec.name.clone());
            }
        }
        if !mismatched.is_empty() {
            return Err(Error::TensorShapes {
                path: path.to_path_buf(),
                tensors: mismatched,
            });
        }
        if !missing.is_empty() {
            return Err(Error::MissingTensors {
                path: path.to_path_buf(),
                tensors: missing,
            });
        }
        if !tensors.is_empty() {
            let mut unexpected: Vec<(String, Vec<usize>)> = tensors
                .iter()
                .map(|(n, t)| {
                    (
                        raw_names.get(n).cloned().unwrap_or(n.clone()),
                        t.dims().to_vec(),
                    )
                })
                .collect();
            unexpected.sort();
            return Err(Error::UnexpectedTensors {
                path: path.to_path_buf(),
                tensors: unexpected,
            });
        }
        if cfg.num_labels() != Some(num_labels) {
            let labels: Vec<String> = (0..num_labels).map(|i| format!("LABEL_{i}")).collect();
            cfg.set_labels(&labels);
        }
        Self::assemble(cfg, num_labels, vars, report)
    }

    fn assemble(
        cfg: ModelConfig,
        num_labels: usize,
        vars: HashMap<String, Var>,
        report: LoadReport,
    ) -> Result<(Self, VarMap)> {
        let p = Params { vars: &vars };
        let (encoder, head) = match cfg.architecture {
            Architecture::DistilBert => (
                Encoder::DistilBert(DistilBert::new(&cfg, &p)?),
                Head::DistilBert(DistilBertHead::new(&cfg, &p)?),
            ),
            Architecture::Bert => (
                Encoder::Bert(Bert::new(&cfg, &p)?),
                Head::Bert(BertHead::new(&cfg, &p)?),
            ),
        };
        let varmap = VarMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Input("VarMap lock poisoned".into()))?;
            data.extend(vars);
        }
        Ok((
            Self {
                cfg,
                num_labels,
                encoder,
                head,
                report,
            },
            varmap,
        ))
    }

    /// The normalised config (labels updated to the model's label count).
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Number of output labels.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// What loading initialised freshly or ignored.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// True when every head parameter came from the checkpoint (logits are meaningful).
    pub fn has_trained_head(&self) -> bool {
        self.report.fresh.is_empty()
    }

    /// Last hidden states `[b, s, hidden]`; dropout active only when `train` is given.
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        match &self.encoder {
            Encoder::DistilBert(m) => m.forward(input_ids, attention_mask, train),
            Encoder::Bert(m) => m.forward(input_ids, attention_mask, train),
        }
    }

    /// The `[CLS]` (first token) last hidden state `[b, hidden]`, eval mode.
    pub fn cls_hidden(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let h = self.hidden_states(input_ids, attention_mask, None)?;
        Ok(h.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?)
    }

    /// Logits `[b, num_labels]`; dropout active only when `train` is given.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mut train: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        let h = self.hidden_states(input_ids, attention_mask, train.as_deref_mut())?;
        match &self.head {
            Head::DistilBert(hd) => hd.forward(&h, train),
            Head::Bert(hd) => hd.forward(&h, train),
        }
    }

    /// Writes an HF directory: `config.json` (architectures, id2label, label2id) and
    /// `model.safetensors` from `varmap`, each via a temp file + rename.
    pub fn save_pretrained(&self, varmap: &VarMap, dir: &Path, labels: &[String]) -> Result<()> {
        if labels.len() != self.num_labels {
            return Err(Error::Input(format!(
                "save_pretrained: {} labels given for a {}-label model",
                labels.len(),
                self.num_labels
            )));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut cfg = self.cfg.clone();
        cfg.set_labels(labels);
        let json = serde_json::to_string_pretty(&cfg.to_hf_json()).map_err(|e| Error::Json {
            path: dir.join("config.json"),
            source: e,
        })?;
        let weights = dir.join("model.safetensors");
        let weights_tmp = dir.join("model.safetensors.tmp");
        {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Input("VarMap lock poisoned".into()))?;
            let tensors: BTreeMap<&String, &Tensor> =
                data.iter().map(|(k, v)| (k, v.as_tensor())).collect();
            let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
            safetensors::serialize_to_file(tensors, Some(meta), &weights_tmp).map_err(|e| {
                Error::Safetensors {
                    path: weights_tmp.clone(),
                    message: e.to_string(),
                }
            })?;
        }
        std::fs::rename(&weights_tmp, &weights).map_err(io(&weights))?;
        let cfg_path = dir.join("config.json");
        let cfg_tmp = dir.join("config.json.tmp");
        std::fs::write(&cfg_tmp, json + "\n").map_err(io(&cfg_tmp))?;
        std::fs::rename(&cfg_tmp, &cfg_path).map_err(io(&cfg_path))?;
        Ok(())
    }
}
