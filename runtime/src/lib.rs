//! The edgebert device runtime: a text classifier in one model file, run on the CPU.
//!
//! A `model.edgebert` bundle (written by `edgebert-train export`) holds the tokenizer, the
//! labels and the ONNX graph. [`Session`] opens it once and classifies one text after another:
//!
//! ```no_run
//! # fn main() -> edgebert_runtime::Result<()> {
//! use edgebert_runtime::{Classification, Session, SessionOptions};
//!
//! let mut session = Session::open_with("model.edgebert", SessionOptions::default())?;
//! let result = session.classify("i am so happy today")?;
//! println!("{} {:.3}", result.label, result.score);
//!
//! // The allocation-free form: reuse one result for every text.
//! let mut out = Classification::default();
//! for text in ["i feel sad", "what a surprise"] {
//!     session.classify_into(text, &mut out)?;
//!     println!("{text}: {} (label {})", out.label, out.label_id);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What is here:
//! - [`Session`], [`SessionOptions`], [`Classification`]: loading and classifying; [`Int8Mode`]
//!   and [`Int8Path`] choose and report how an int8 model runs on this CPU;
//! - [`tokenizer`]: the allocation-free WordPiece tokenizer (also `no_std`, without the `std`
//!   feature);
//! - [`bundle`]: the single-file model format, read and written;
//! - [`inspect`]: what `edgebert inspect` reports about a model;
//! - [`memory`]: allocator settings for long-running processes;
//! - [`threads`]: thread counts (the default, parsing, limits) and the worker pools;
//! - [`Error`]: every failure, naming the file, field or tensor at fault.
//!
//! The heavy ops (int8 Linear, LayerNorm, GELU, attention) run on the runtime's own kernels
//! (`edgebert-kernels`), chosen once per CPU.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
extern crate alloc;

pub mod tokenizer;

#[cfg(feature = "std")]
pub mod bundle;
#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
pub mod inspect;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
#[cfg(feature = "std")]
pub mod memory;
#[cfg(feature = "std")]
mod model_source;
#[cfg(feature = "std")]
mod session;
#[cfg(feature = "std")]
pub mod threads;

#[cfg(feature = "std")]
pub use bundle::{Bundle, BundleHeader, BundleWriter};
#[cfg(feature = "std")]
pub use error::{Error, Result};
#[cfg(feature = "std")]
pub use model_source::{open_tokenizer, ModelSource, SourceKind};
#[cfg(feature = "std")]
pub use session::{synthetic_text, Classification, Int8Mode, Int8Path, Session, SessionOptions};
