//! Hugging Face `config.json` for DistilBERT and BERT, normalised into one [`ModelConfig`].
//!
//! Every field that changes the math is read; unsupported values are errors naming the field.
//! The raw JSON is kept so that [`ModelConfig::to_hf_json`] writes back everything we did not
//! touch (only `architectures`, `id2label`, `label2id` and `num_labels` are updated).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The encoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `model_type: "distilbert"`.
    DistilBert,
    /// `model_type: "bert"`.
    Bert,
}

impl Architecture {
    /// The weight-name prefix transformers uses for the encoder (`distilbert` / `bert`).
    pub fn prefix(self) -> &'static str {
        match self {
            Architecture::DistilBert => "distilbert",
            Architecture::Bert => "bert",
        }
    }

    /// The transformers class name of the sequence classifier.
    pub fn classifier_class(self) -> &'static str {
        match self {
            Architecture::DistilBert => "DistilBertForSequenceClassification",
            Architecture::Bert => "BertForSequenceClassification",
        }
    }
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)` with erf (`"gelu"`).
    Gelu,
    /// Tanh-approximated GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    /// `max(0, x)` (`"relu"`).
    Relu,
}

/// One normalised config for both architectures.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Encoder family.
    pub architecture: Architecture,
    /// Word-piece vocabulary size.
    pub vocab_size: usize,
    /// Hidden size (`dim` in DistilBERT).
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Feed-forward inner size (`hidden_dim` in DistilBERT).
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Dropout on embeddings and sub-layer outputs.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Dropout before the classifier.
    pub classifier_dropout: f64,
    /// LayerNorm epsilon (DistilBERT hard-codes 1e-12).
    pub layer_norm_eps: f64,
    /// Size of the learned position table.
    pub max_position_embeddings: usize,
    /// Token-type vocabulary size (0 for DistilBERT, which has none).
    pub type_vocab_size: usize,
    /// Padding token id, if the config names one.
    pub pad_token_id: Option<u32>,
    /// Std of the normal init for fresh weights.
    pub initializer_range: f64,
    /// Labels ordered by id (empty when the config has none).
    pub id2label: Vec<String>,
    /// The parsed JSON, kept for writing back.
    pub raw: Value,
    /// Where the config came from (for error messages).
    pub source: PathBuf,
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> Error {
        Error::Config {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn usize_req(&self, field: &str) -> Result<usize> {
        match self.get(field) {
            None => Err(self.err(field, "is missing")),
            Some(v) => self.as_usize(field, v),
        }
    }

    fn usize_or(&self, field: &str, default: usize) -> Result<usize> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => self.as_usize(field, v),
        }
    }

    fn as_usize(&self, field: &str, v: &Value) -> Result<usize> {
        v.as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .ok_or_else(|| self.err(field, format!("= {v} is not a non-negative integer")))
    }

    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.err(field, format!("= {v} is not a number"))),
        }
    }

    fn prob_or(&self, field: &str, default: f64) -> Result<f64> {
        let p = self.f64_or(field, default)?;
        if (0.0..1.0).contains(&p) {
            Ok(p)
        } else {
            Err(self.err(field, format!("= {p} is not a probability in [0, 1)")))
        }
    }

    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(field, format!("= {v} is not a boolean"))),
        }
    }

    fn str_or<'s>(&'s self, field: &str, default: &'s str) -> Result<&'s str> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| self.err(field, format!("= {v} is not a string"))),
        }
    }

    fn activation(&self, field: &str, default: &str) -> Result<Activation> {
        let s = self.str_or(field, default)?;
        match s {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(self.err(
                field,
                format!(
                    "= \"{other}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)"
                ),
            )),
        }
    }

    fn labels(&self) -> Result<Vec<String>> {
        let mut labels = match self.get("id2label") {
            None => Vec::new(),
            Some(Value::Object(m)) => {
                let mut pairs = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let id: usize = k.parse().map_err(|_| {
                        self.err("id2label", format!("key \"{k}\" is not an integer id"))
                    })?;
                    let name = v.as_str().ok_or_else(|| {
                        self.err("id2label", format!("value for id {k} is not a string"))
                    })?;
                    pairs.push((id, name.to_string()));
                }
                pairs.sort_by_key(|(id, _)| *id);
                for (want, (id, _)) in pairs.iter().enumerate() {
                    if *id != want {
                        return Err(self.err(
                            "id2label",
                            format!(
                                "ids must be 0..{} without gaps, id {want} is missing",
                                m.len()
                            ),
                        ));
                    }
                }
                pairs.into_iter().map(|(_, n)| n).collect()
            }
            Some(v) => return Err(self.err("id2label", format!("= {v} is not an object"))),
        };
        if let Some(v) = self.get("num_labels") {
            let n = self.as_usize("num_labels", v)?;
            if labels.is_empty() {
                labels = (0..n).map(|i| format!("LABEL_{i}")).collect();
            } else if labels.len() != n {
                return Err(self.err(
                    "num_labels",
                    format!("= {n} but id2label has {} entries", labels.len()),
                ));
            }
        }
        if let Some(v) = self.get("label2id") {
            let m = v
                .as_object()
                .ok_or_else(|| self.err("label2id", format!("= {v} is not an object")))?;
            if !labels.is_empty() {
                for (id, name) in labels.iter().enumerate() {
                    match m.get(name).and_then(Value::as_u64) {
                        Some(x) if x as usize == id => {}
                        // Missing or different entries: transformers tolerates stale label2id
                        // maps (defaults "LABEL_i"); only a contradicting entry is an error.
                        Some(x) => {
                            return Err(self.err(
                                "label2id",
                                format!("maps \"{name}\" to {x} but id2label has it at {id}"),
                            ))
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(labels)
    }
}

impl ModelConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parses config text; `source` is only used in error messages.
    pub fn from_json_str(text: &str, source: &Path) -> Result<Self> {
        let raw: Value = serde_json::from_str(text).map_err(|e| Error::Json {
            path: source.to_path_buf(),
            source: e,
        })?;
        Self::from_value(raw, source)
    }

    /// Normalises an already parsed config.
    pub fn from_value(raw: Value, source: &Path) -> Result<Self> {
        let obj = raw.as_object().ok_or_else(|| Error::Config {
            path: source.to_path_buf(),
            field: "<root>".into(),
            message: "is not a JSON object".into(),
        })?;
        let f = Fields { obj, path: source };
        let model_type = match f.get("model_type") {
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return Err(f.err("model_type", format!("= {v} is not a string"))),
            None => {
                return Err(f.err(
                    "model_type",
                    "is missing (expected \"distilbert\" or \"bert\")",
                ))
            }
        };
        let pad_token_id = match f.get("pad_token_id") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|u| u32::try_from(u).ok())
                    .ok_or_else(|| f.err("pad_token_id", format!("= {v} is not a token id")))?,
            ),
        };
        let id2label = f.labels()?;
        let cfg = match model_type {
            "distilbert" => {
                if f.bool_or("sinusoidal_pos_embds", false)? {
                    return Err(f.err(
                        "sinusoidal_pos_embds",
                        "= true is not supported (only learned position embeddings)",
                    ));
                }
                let dropout = f.prob_or("dropout", 0.1)?;
                ModelConfig {
                    architecture: Architecture::DistilBert,
                    vocab_size: f.usize_req("vocab_size")?,
                    hidden_size: f.usize_or("dim", 768)?,
                    num_layers: f.usize_or("n_layers", 6)?,
                    num_heads: f.usize_or("n_heads", 12)?,
                    intermediate_size: f.usize_or("hidden_dim", 3072)?,
                    activation: f.activation("activation", "gelu")?,
                    hidden_dropout: dropout,
                    attention_dropout: f.prob_or("attention_dropout", 0.1)?,
                    classifier_dropout: f.prob_or("seq_classif_dropout", 0.2)?,
                    layer_norm_eps: 1e-12,
                    max_position_embeddings: f.usize_or("max_position_embeddings", 512)?,
                    type_vocab_size: 0,
                    pad_token_id: pad_token_id.or(Some(0)),
                    initializer_range: f.f64_or("initializer_range", 0.02)?,
                    id2label,
                    raw: Value::Null,
                    source: source.to_path_buf(),
                }
            }
            "bert" => {
                let pet = f.str_or("position_embedding_type", "absolute")?;
                if pet != "absolute" {
                    return Err(f.err(
                        "position_embedding_type",
                        format!("= \"{pet}\" is not supported (absolute)"),
                    ));
                }
                if f.bool_or("is_decoder", false)? {
                    return Err(f.err("is_decoder", "= true is not supported (encoders only)"));
                }
                let hidden_dropout = f.prob_or("hidden_dropout_prob", 0.1)?;
                ModelConfig {
                    architecture: Architecture::Bert,
                    vocab_size: f.usize_req("vocab_size")?,
                    hidden_size: f.usize_or("hidden_size", 768)?,
                    num_layers: f.usize_or("num_hidden_layers", 12)?,
                    num_heads: f.usize_or("num_attention_heads", 12)?,
                    intermediate_size: f.usize_or("intermediate_size", 3072)?,
                    activation: f.activation("hidden_act", "gelu")?,
                    hidden_dropout,
                    attention_dropout: f.prob_or("attention_probs_dropout_prob", 0.1)?,
                    classifier_dropout: f.prob_or("classifier_dropout", hidden_dropout)?,
                    layer_norm_eps: f.f64_or("layer_norm_eps", 1e-12)?,
                    max_position_embeddings: f.usize_or("max_position_embeddings", 512)?,
                    type_vocab_size: f.usize_or("type_vocab_size", 2)?,
                    pad_token_id,
                    initializer_range: f.f64_or("initializer_range", 0.02)?,
                    id2label,
                    raw: Value::Null,
                    source: source.to_path_buf(),
                }
            }
            other => {
                return Err(f.err(
                    "model_type",
                    format!("= \"{other}\" is not supported (distilbert, bert)"),
                ))
            }
        };
        cfg.validate(&f)?;
        Ok(ModelConfig { raw, ..cfg })
    }

    fn validate(&self, f: &Fields<'_>) -> Result<()> {
        let (hidden, heads, layers, inter) = match self.architecture {
            Architecture::DistilBert => ("dim", "n_heads", "n_layers", "hidden_dim"),
            Architecture::Bert => (
                "hidden_size",
                "num_attention_heads",
                "num_hidden_layers",
                "intermediate_size",
            ),
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            (hidden, self.hidden_size),
            (heads, self.num_heads),
            (layers, self.num_layers),
            (inter, self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(f.err(field, "must be > 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(f.err(
                heads,
                format!(
                    "= {} does not divide {hidden} = {}",
                    self.num_heads, self.hidden_size
                ),
            ));
        }
        if self.architecture == Architecture::Bert && self.type_vocab_size == 0 {
            return Err(f.err("type_vocab_size", "must be > 0"));
        }
        if let Some(p) = self.pad_token_id {
            if p as usize >= self.vocab_size {
                return Err(f.err(
                    "pad_token_id",
                    format!("= {p} is outside vocab_size {}", self.vocab_size),
                ));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(f.err("layer_norm_eps", "must be > 0"));
        }
        Ok(())
    }

    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Number of labels the config declares (None when it has no `id2label`/`num_labels`).
    pub fn num_labels(&self) -> Option<usize> {
        if self.id2label.is_empty() {
            None
        } else {
            Some(self.id2label.len())
        }
    }

    /// Replaces the label list (written back as `id2label`/`label2id`/`num_labels`).
    pub fn set_labels(&mut self, labels: &[String]) {
        self.id2label = labels.to_vec();
    }

    /// The config as HF JSON: the raw fields plus updated `architectures`, `id2label`,
    /// `label2id`, `num_labels` (when labels are set).
    pub fn to_hf_json(&self) -> Value {
        let mut obj = match &self.raw {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        obj.insert(
            "architectures".into(),
            Value::Array(vec![Value::String(
                self.architecture.classifier_class().into(),
            )]),
        );
        if !self.id2label.is_empty() {
            let id2label: Map<String, Value> = self
                .id2label
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), Value::String(l.clone())))
                .collect();
            let label2id: Map<String, Value> = self
                .id2label
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), Value::from(i)))
                .collect();
            obj.insert("id2label".into(), Value::Object(id2label));
            obj.insert("label2id".into(), Value::Object(label2id));
            obj.remove("num_labels");
        }
        if !obj.contains_key("model_type") {
            let mt = match self.architecture {
                Architecture::DistilBert => "distilbert",
                Architecture::Bert => "bert",
            };
            obj.insert("model_type".into(), Value::String(mt.into()));
        }
        Value::Object(obj)
    }
}
