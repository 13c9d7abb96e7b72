//! edgebert trainer: data loading and batching, both recipes of the book (feature extraction +
//! logistic regression, and fine-tuning), metrics and plots, checkpoints, and export to a runtime bundle.
#![warn(missing_docs)]

pub mod alloc;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod extract;
pub mod finetune;
pub mod io;
pub mod logreg;
pub mod metrics;
pub mod optimizer;
pub mod plot;
pub mod schedule;

pub use alloc::tune_allocator;
/// Weight format of an exported model (re-exported from the models crate).
pub use edgebert_models::onnx::Quantization;
pub use error::{Result, TrainError};
