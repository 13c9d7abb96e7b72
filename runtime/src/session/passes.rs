//! Model passes applied to each bucket's typed tract graph before it becomes runnable.
//!
//! This is where graph rewrites belong (e.g. the int8 fixes of issue 5), not in the session
//! code: a pass is a plain function over a [`TypedModel`], registered in [`DEFAULT_PASSES`]
//! or supplied through [`crate::session::SessionOptions::passes`].
use anyhow::Context;
use tract_onnx::prelude::*;

use crate::bundle::BundleHeader;

/// When in the pipeline a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassStage {
    /// After `declutter`, before `optimize` (graph still in core ops: EinSum, Gather...).
    Decluttered,
    /// After `optimize`, right before `into_runnable` (kernels chosen).
    Optimized,
}

/// What a pass may know about the model it rewrites.
#[derive(Debug, Clone, Copy)]
pub struct PassContext<'a> {
    /// The bundle header (quantization tag, labels, ...).
    pub header: &'a BundleHeader,
    /// Sequence length of the bucket being built.
    pub seq_len: usize,
    /// Stage this call happens at.
    pub stage: PassStage,
}

/// A named graph rewrite.
#[derive(Debug, Clone, Copy)]
pub struct ModelPass {
    /// Name used in error messages.
    pub name: &'static str,
    /// Stage it runs at.
    pub stage: PassStage,
    /// The rewrite itself.
    pub run: fn(&mut TypedModel, &PassContext) -> TractResult<()>,
}

/// Passes every session applies unless told otherwise (none yet; int8 adds its own here).
pub const DEFAULT_PASSES: &[ModelPass] = &[];

/// Applies every pass of `stage` in order; the error names the failing pass.
pub fn apply(
    passes: &[ModelPass],
    model: &mut TypedModel,
    header: &BundleHeader,
    seq_len: usize,
    stage: PassStage,
) -> TractResult<()> {
    let ctx = PassContext {
        header,
        seq_len,
        stage,
    };
    for pass in passes.iter().filter(|p| p.stage == stage) {
        (pass.run)(model, &ctx).with_context(|| format!("model pass {:?}", pass.name))?;
    }
    Ok(())
}
