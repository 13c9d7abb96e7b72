//! int8 Linear weights dequantized to fp32 constants right after tract parses the graph (the
//! `dequantize` int8 path): each `Cast(codes) × scale` the int8 rewrite wrote becomes one
//! constant.
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceModelPatch};

use crate::session::ops::{CAST_SUFFIX, DEQUANTIZED_SUFFIX};

/// Folds every weight dequantization that the int8 rewrite ([`crate::session::rewrite::int8`]) emitted (`Mul(Cast(codes), scale)` on
/// constants) into one fp32 constant, computed row by row in one pass over the int8 codes;
/// tract's generic `Cast` and broadcasting `Mul` would take several times longer. Returns how
/// many weights were folded; a node whose inputs are not the expected constants is left as is.
pub(crate) fn fold_dequantized_weights(model: &mut InferenceModel) -> TractResult<usize> {
    let targets: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.name.ends_with(DEQUANTIZED_SUFFIX) && n.inputs.len() == 2)
        .map(|n| n.id)
        .collect();
    let mut folded = 0;
    for id in targets {
        let node = model.node(id);
        let cast = model.node(node.inputs[0].node);
        // Only the nodes `apply` wrote: `{codes}/dequantized = Mul({codes}/cast, scale)`.
        if node.op().name() != "Mul" || !cast.name.ends_with(CAST_SUFFIX) {
            continue;
        }
        let (Some(&codes), Ok(scales)) = (cast.inputs.first(), model.outlet_fact(node.inputs[1]))
        else {
            continue;
        };
        let (Some(codes), Some(scales)) = (
            model.outlet_fact(codes)?.value.concretize(),
            scales.value.concretize(),
        ) else {
            continue;
        };
        let Some(weight) = dequantized(&codes, &scales)? else {
            continue;
        };
        let name = node.name.clone();
        let mut patch = InferenceModelPatch::default();
        let konst = patch.add_const(name, weight)?;
        patch.shunt_outside(model, OutletId::new(id, 0), konst)?;
        patch.apply(model)?;
        folded += 1;
    }
    if folded > 0 {
        // Drops the replaced Mul, Cast and int8 codes (now unread) and renumbers the nodes.
        model.compact()?;
    }
    Ok(folded)
}

/// `codes × scales` for a 2-D int8 `codes` and one scale, or one per column; `None` for other
/// shapes and types.
fn dequantized(codes: &Tensor, scales: &Tensor) -> TractResult<Option<Tensor>> {
    let &[rows, cols] = codes.shape() else {
        return Ok(None);
    };
    if codes.datum_type() != i8::datum_type() || scales.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let (codes, scales) = (codes.try_as_plain_ram()?, scales.try_as_plain_ram()?);
    let (codes, scales) = (codes.as_slice::<i8>()?, scales.as_slice::<f32>()?);
    let per_column = scales.len() == cols;
    if cols == 0 || !(per_column || scales.len() == 1) {
        return Ok(None);
    }
    let mut out = Tensor::zero::<f32>(&[rows, cols])?;
    let mut dst = out.try_as_plain_ram_mut()?;
    let dst = dst.as_slice_mut::<f32>()?;
    for (row_out, row) in dst.chunks_exact_mut(cols).zip(codes.chunks_exact(cols)) {
        if per_column {
            for ((d, &q), &s) in row_out.iter_mut().zip(row).zip(scales) {
                *d = f32::from(q) * s;
            }
        } else {
            let s = scales[0];
            for (d, &q) in row_out.iter_mut().zip(row) {
                *d = f32::from(q) * s;
            }
        }
    }
    Ok(Some(out))
}
