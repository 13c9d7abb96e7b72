//! The crate's error type: every variant names the file, field or tensor at fault.

use std::path::PathBuf;

/// Shape of one tensor, as reported in errors.
pub type Dims = Vec<usize>;

/// Errors of the models crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file did not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A config field is missing, mistyped or has an unsupported value.
    #[error("{path}: field \"{field}\" {message}")]
    Config {
        /// The config file (or a description of the source).
        path: PathBuf,
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The model location could not be resolved to config + weights.
    #[error("{spec}: {message}")]
    ModelFiles {
        /// The directory or hub id that was asked for.
        spec: String,
        /// What is missing and what to do.
        message: String,
    },
    /// A safetensors file is truncated, corrupt or unreadable.
    #[error("{path}: not a readable safetensors file: {message}")]
    Safetensors {
        /// The file at fault.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor in the checkpoint has an unsupported dtype.
    #[error(
        "{path}: tensor \"{name}\" has dtype {dtype}, expected a float type (F32, F16, BF16, F64)"
    )]
    TensorDtype {
        /// The file at fault.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// Tensors whose shape differs from what the config implies.
    #[error("{path}: mis-shaped tensors: {}", fmt_mismatch(.tensors))]
    TensorShapes {
        /// The file at fault.
        path: PathBuf,
        /// `(name, expected, found)` per tensor.
        tensors: Vec<(String, Dims, Dims)>,
    },
    /// Tensors the architecture needs that the checkpoint lacks.
    #[error("{path}: missing tensors: {}", fmt_list(.tensors))]
    MissingTensors {
        /// The file at fault.
        path: PathBuf,
        /// `(name, expected shape)` per tensor.
        tensors: Vec<(String, Dims)>,
    },
    /// Tensors in the checkpoint that the architecture does not know.
    #[error("{path}: unexpected tensors (not part of this architecture): {}", fmt_list(.tensors))]
    UnexpectedTensors {
        /// The file at fault.
        path: PathBuf,
        /// `(name, shape)` per tensor.
        tensors: Vec<(String, Dims)>,
    },
    /// The hugging face hub could not provide a file.
    #[error("hub model {repo}: {message}")]
    Hub {
        /// The hub repo id.
        repo: String,
        /// What went wrong.
        message: String,
    },
    /// A caller passed tensors of the wrong shape or dtype.
    #[error("bad input: {0}")]
    Input(String),
    /// ONNX graph emission failed.
    #[error("onnx export: {0}")]
    Onnx(String),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

fn fmt_list(tensors: &[(String, Dims)]) -> String {
    tensors
        .iter()
        .map(|(n, s)| format!("{n} {s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_mismatch(tensors: &[(String, Dims, Dims)]) -> String {
    tensors
        .iter()
        .map(|(n, e, f)| format!("{n} expected {e:?} found {f:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
