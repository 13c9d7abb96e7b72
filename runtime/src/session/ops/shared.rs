//! What every op file uses: the type-inference checks each `Expansion::rules` starts with, and
//! how ops compare their constants.
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::bail;
use tract_onnx::tract_hir::internal::{InferenceResult, Solver, TensorProxy};

/// Fails unless the node has `inputs` (a count or a range of counts) inputs and `outputs`
/// outputs, naming the op and what it got.
pub fn arity(
    op: &str,
    inputs: &[TensorProxy],
    outputs: &[TensorProxy],
    want_inputs: std::ops::RangeInclusive<usize>,
    want_outputs: usize,
) -> InferenceResult {
    if !want_inputs.contains(&inputs.len()) || outputs.len() != want_outputs {
        let (lo, hi) = (want_inputs.start(), want_inputs.end());
        let wanted = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo} to {hi}")
        };
        bail!(
            "{op} takes {wanted} input(s) and gives {want_outputs} output(s), got {} and {}",
            inputs.len(),
            outputs.len()
        );
    }
    Ok(())
}

/// Each of `proxies` has datum type `dt`.
pub fn all_of_type<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    proxies: &'p [TensorProxy],
    dt: DatumType,
) -> InferenceResult {
    for p in proxies {
        s.equals(&p.datum_type, dt)?;
    }
    Ok(())
}

/// Whether two f32 slices hold the same bits (NaN equal to itself): how the ops compare their
/// constants.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
