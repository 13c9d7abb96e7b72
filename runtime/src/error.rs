//! The runtime's error type: every failure of bundle I/O, model loading and inference,
//! with the file, field or tensor at fault. Library code returns these, never panics.
use std::path::PathBuf;

/// Result alias used throughout the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    /// The path exists but is not something a model can be loaded from.
    #[error("{path}: {reason}")]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// What was wrong with it and what was expected.
        reason: String,
    },
    /// The bundle is shorter than its layout requires.
    #[error("bundle truncated: {what} needs {needed} bytes, only {available} present")]
    BundleTruncated {
        /// The part being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The file does not start with the bundle magic.
    #[error("not an edgebert bundle: magic is {found:?}, expected \"EDGEBERT\"")]
    BadMagic {
        /// The first bytes found (escaped).
        found: String,
    },
    /// The bundle was written by a newer (or unknown) format version.
    #[error("bundle format version {found} is not supported (this runtime reads version {supported}); upgrade edgebert")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Highest version this runtime reads.
        supported: u32,
    },
    /// The payload does not match its checksum: the file is corrupt.
    #[error("bundle checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x} (file corrupt)")]
    ChecksumMismatch {
        /// Checksum stored in the file.
        expected: u32,
        /// Checksum of the payload read.
        actual: u32,
    },
    /// The bundle's length field disagrees with the file.
    #[error(
        "bundle payload length {declared} disagrees with the {available} bytes after the preamble"
    )]
    LengthMismatch {
        /// Length declared in the preamble.
        declared: u64,
        /// Bytes actually present.
        available: u64,
    },
    /// The bundle header is present but invalid.
    #[error("bundle header: {0}")]
    BadHeader(String),
    /// A configuration file (config.json, tokenizer files) is invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed to load or encode.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    /// tract failed to parse, type or optimize the ONNX graph.
    #[error("model: {context}: {message}")]
    Model {
        /// What the runtime was doing.
        context: String,
        /// tract's message chain.
        message: String,
    },
    /// The ONNX graph's embedding table is smaller than the tokenizer's vocabulary.
    #[error("model/tokenizer mismatch: ONNX word embedding ({tensor}) has {onnx} rows but the tokenizer vocabulary has {tokenizer} tokens")]
    VocabMismatch {
        /// Name of the embedding weight tensor.
        tensor: String,
        /// Rows in the embedding.
        onnx: u64,
        /// Tokens in the vocab.
        tokenizer: u64,
    },
    /// The model's inputs/outputs are not what the runtime expects.
    #[error("model interface: {0}")]
    Interface(String),
    /// Invalid argument from the caller.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Model`] from a tract error, flattening its context chain into one line.
    pub fn model(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        let message = format!("{err:#}").replace('\n', " ");
        Error::Model {
            context: context.into(),
            message,
        }
    }
}
