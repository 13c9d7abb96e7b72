//! edgebert facade.
pub use edgebert_runtime as runtime;
