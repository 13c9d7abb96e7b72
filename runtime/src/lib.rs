//! edgebert device runtime: allocation-free WordPiece tokenizer (`no_std` core), the
//! `model.edgebert` bundle format, tract inference sessions, and the `edgebert` CLI.
#![cfg_attr(not(feature = "std"), no_std)]
extern crate alloc;

pub mod tokenizer;

#[cfg(feature = "std")]
pub mod bundle;
#[cfg(feature = "std")]
pub mod error;
#[cfg(feature = "std")]
pub mod memory;
#[cfg(feature = "std")]
pub mod model_source;
#[cfg(feature = "std")]
pub mod session;

#[cfg(feature = "std")]
pub use bundle::{Bundle, BundleHeader, BundleWriter};
#[cfg(feature = "std")]
pub use error::{Error, Result};
#[cfg(feature = "std")]
pub use model_source::ModelSource;
#[cfg(feature = "std")]
pub use session::{Classification, Session, SessionOptions};
