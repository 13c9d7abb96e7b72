//! Passes over each bucket's typed tract graph, between tract's own steps: after `declutter`
//! (graph in core ops) and after `optimize` (kernels chosen), before it becomes runnable.
//!
//! Each pass lives in its own file as a plain function over a [`TypedModel`]; [`DEFAULT_PASSES`]
//! names them and says when each runs. ONNX-level rewrites, made before tract parses the graph,
//! are in [`super::rewrite`].
mod fold;
mod gelu;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::TractErrorContext;

pub(crate) use fold::fold_all_constants;

/// When in the pipeline a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassStage {
    /// After `declutter`, before `optimize` (graph still in core ops: EinSum, Gather...).
    Decluttered,
    /// After `optimize`, right before `into_runnable` (kernels chosen).
    Optimized,
}

/// A named graph rewrite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelPass {
    /// Name used in error messages.
    pub name: &'static str,
    /// Stage it runs at.
    pub stage: PassStage,
    /// The rewrite itself.
    pub run: fn(&mut TypedModel) -> TractResult<()>,
}

/// The passes every session applies, in order.
pub(crate) const DEFAULT_PASSES: &[ModelPass] = &[
    ModelPass {
        name: "fold constants (decluttered)",
        stage: PassStage::Decluttered,
        run: fold_all_constants,
    },
    ModelPass {
        name: "edgebert GELU",
        stage: PassStage::Decluttered,
        run: |model| gelu::replace_gelu_nodes(model).map(|_| ()),
    },
    ModelPass {
        name: "fold constants (optimized)",
        stage: PassStage::Optimized,
        run: fold_all_constants,
    },
];

/// Applies every pass of `stage` in order; the error names the failing pass.
pub(crate) fn apply(
    passes: &[ModelPass],
    model: &mut TypedModel,
    stage: PassStage,
) -> TractResult<()> {
    for pass in passes.iter().filter(|p| p.stage == stage) {
        (pass.run)(model).with_context(|| format!("model pass {:?}", pass.name))?;
    }
    Ok(())
}
