//! Compiles `cuda/*.cu` (the optimizer's kernels) to PTX with the `cuda` feature: the same build
//! script as edgebert-models'.
include!("../models/build.rs");
