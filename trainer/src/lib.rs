//! edgebert trainer: data loading and batching, both recipes of the book (feature extraction +
//! logistic regression, and fine-tuning), metrics and plots, checkpoints, and export to a runtime bundle.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod extract;
pub mod finetune;
pub mod hub;
pub mod io;
pub mod logreg;
pub mod metrics;
pub mod optimizer;
pub mod plot;
pub mod schedule;
pub mod version;

/// Weight format of an exported model (re-exported from the models crate).
pub use edgebert_models::onnx::{Quantization, WeightRange};
/// glibc heap settings for training processes: candle allocates a fresh buffer for nearly every
/// tensor op, and with glibc's defaults each freed block over 128 KiB was unmapped and faulted in
/// again (28% of a CPU fine-tune's time in the kernel). Shared with the runtime's CLI.
pub use edgebert_runtime::memory::tune_allocator;
pub use error::{Result, TrainError};
