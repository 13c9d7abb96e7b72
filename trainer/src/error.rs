//! The trainer's error type: one enum whose messages name the file, line, field or tensor at fault.
use std::path::PathBuf;

/// Everything that can go wrong while loading data, training, evaluating or exporting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A malformed line in a data file.
    #[error("{}:{line}: {msg} (pass --skip-bad-lines to skip and count such lines)", path.display())]
    BadLine {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        msg: String,
    },
    /// A problem with a data directory or data file as a whole.
    #[error("{}: {msg}", path.display())]
    Data {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The tokenizer could not be loaded or failed to encode.
    #[error("tokenizer {}: {msg}", path.display())]
    Tokenizer {
        /// The tokenizer.json file.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// Invalid options (flags) or an inconsistent request.
    #[error("{0}")]
    Options(String),
    /// A checkpoint that cannot be written or resumed.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The loss became NaN or infinite.
    #[error("non-finite loss {loss} at epoch {epoch}, step {step}: training diverged; lower --lr, add --warmup-ratio, or check the data")]
    NonFiniteLoss {
        /// The offending loss value.
        loss: f32,
        /// 1-based epoch.
        epoch: usize,
        /// Global optimizer step.
        step: usize,
    },
    /// The requested device is unavailable.
    #[error("device {spec:?}: {msg}")]
    Device {
        /// What the user asked for.
        spec: String,
        /// Why it cannot be used.
        msg: String,
    },
    /// Training stopped by Ctrl-C after writing a checkpoint.
    #[error("interrupted: checkpoint written to {}; continue with --resume", path.display())]
    Interrupted {
        /// The checkpoint written before exiting.
        path: PathBuf,
    },
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error from the models crate (config, weights, forward pass).
    #[error("model: {0}")]
    Model(#[from] edgebert_models::Error),
    /// Export verification failed or the exporter reported an error.
    #[error("export: {0}")]
    Export(String),
    /// A Hub request (dataset download) failed.
    #[error("hub: {0}")]
    Hub(#[from] crate::hub::HubError),
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// A data-level error for a path.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrainError::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// The trainer's result type.
pub type Result<T> = std::result::Result<T, TrainError>;
