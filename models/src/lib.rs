//! edgebert architectures: Hugging Face config parsing, checkpoint loading (local or hub),
//! trainable DistilBERT/BERT encoders with transformers-named classification heads in candle,
//! and differentiable ops candle-nn lacks.

pub mod bert;
pub mod classifier;
pub mod config;
pub mod distilbert;
pub mod error;
pub mod layers;
pub mod loading;
pub mod onnx;
pub mod ops;

pub use classifier::{Encoder, LoadOptions, LoadReport, SequenceClassifier};
pub use config::{Activation, Architecture, ModelConfig};
pub use error::{Error, Result};
pub use layers::DropoutRng;
pub use loading::{read_safetensors, ModelFiles};

/// The candle version this crate is built on, re-exported for dependants (examples, trainer).
pub use candle_core;
/// candle-nn (VarMap, optimizers), re-exported.
pub use candle_nn;
