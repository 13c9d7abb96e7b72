//! The runtime's internals, for its own cross-crate tests and fuzz targets only (feature
//! `internals`): not part of the public API and not covered by semver.
pub use crate::session::auto_takes_kernel;
pub use crate::session::ops::mapped_gather::MappedMatrix;
pub use crate::session::ops::{
    onnx, ATTENTION, LAYER_NORM, MASKED_OP_TYPE, MASKED_QUANTIZE, OP_TYPE,
};
pub use crate::session::rewrite::attention::{attention_blocks, fuse_attention};
pub use crate::session::rewrite::int8::{apply as apply_int8, count_matmul_integer};
pub use crate::session::rewrite::layer_norm::fuse_layer_norms;
pub use crate::session::weights::{skeleton, PayloadChecksum, Skeleton};
pub use edgebert_kernels::int8_gemm;
