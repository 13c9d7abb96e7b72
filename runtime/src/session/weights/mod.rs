//! Weights read from the model file when tract needs them, not held in a protobuf copy.
//!
//! Decoding an ONNX file with prost copies every initializer into the decoded message, and
//! tract then copies each one again into its own tensor: for a moment the file's bytes, the
//! protobuf copy and tract's tensors all hold the weights (MiniLM fp32: 3 × 91 MB). Instead,
//! [`skeleton`] walks the protobuf wire format of the file's bytes and writes a copy of the
//! model whose large initializers are ONNX *external data* (location, offset, length) pointing
//! back into the file itself, without their bytes (a few hundred kB for MiniLM). tract reads
//! each external tensor through [`FileWeights`], one at a time, straight from the file; the
//! checksum of every tensor taken when the skeleton was made is checked on each read, so a file
//! changed after it was opened is an error, not silently different weights.
//!
//! Because the weights can be read again at any time, a session can hand its only copy of the
//! parsed graph to the first plan it builds (tract then frees each weight as soon as it has
//! packed it) and parse the skeleton again for later plans.
//!
//! - [`skeleton`]: the protobuf walker that writes the skeleton;
//! - [`file`]: [`FileWeights`], positioned reads of each tensor, hashed as they are read;
//! - [`checksum`]: the bundle checksum put together from those reads;
//! - [`parse`]: tract's parse of a skeleton, weights read straight into tensors, the word
//!   embedding mapped;
//! - [`shared`]: packed weights and large constants shared between bucket plans;
//! - [`dequantize`]: int8 weights turned into fp32 constants (the `dequantize` int8 path).
pub mod checksum;
pub mod dequantize;
pub mod file;
pub mod parse;
pub mod shared;
pub mod skeleton;
#[cfg(test)]
mod tests;

pub use checksum::PayloadChecksum;
pub use file::FileWeights;
pub use parse::parse;
pub use skeleton::{skeleton, ExternalTensor, Skeleton, MIN_EXTERNAL_BYTES};
