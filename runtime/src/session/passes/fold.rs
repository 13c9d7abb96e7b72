//! Constant folding without tract's size budget.
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::source::TypedSource;
use tract_onnx::tract_core::optim::CONST_FOLD_MEM_BUDGET;

/// Replaces every stateless node whose inputs are all constants by the constant it computes,
/// whatever the size of the result.
///
/// tract's own folding skips results over 4 MiB (`CONST_FOLD_MEM_BUDGET`) that are larger
/// than their inputs, so `DequantizeLinear` of a large int8 weight (a 768×3072 FFN: 2.4 MB of
/// codes, 9.4 MB of fp32) would run on every call and its MatMul would never see a constant
/// weight to pack; after `optimize()` the same budget leaves the zero-point compensation sums
/// of large int8 weights to be recomputed on every call. Folding them once at plan time removes
/// both. An input constant shared with other nodes is folded only when it is small, so a large
/// weight is never duplicated per consumer (tract's rule).
pub(crate) fn fold_all_constants(model: &mut TypedModel) -> TractResult<()> {
    while let Some(patch) = next_fold(model)? {
        patch.apply(model)?;
    }
    model.compact()
}

/// The patch folding the first foldable node in evaluation order, if any.
fn next_fold(model: &TypedModel) -> TractResult<Option<TypedModelPatch>> {
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.inputs.is_empty() || node.op_is::<Const>() || node.op_is::<TypedSource>() {
            continue;
        }
        let facts = model.node_input_facts(id)?;
        let foldable = facts.iter().zip(&node.inputs).all(|(fact, outlet)| {
            fact.konst.is_some()
                && (model.node(outlet.node).outputs[outlet.slot]
                    .successors
                    .len()
                    == 1
                    || fact
                        .mem_size()
                        .as_i64()
                        .is_some_and(|m| m as u64 <= CONST_FOLD_MEM_BUDGET))
        });
        if !foldable {
            continue;
        }
        let inputs = facts
            .iter()
            .filter_map(|f| f.konst.clone())
            .map(|t| t.into_tvalue())
            .collect();
        // An op that cannot run out of a plan (state, unresolved symbols) just stays as it is.
        let Ok(Some(outputs)) = node.op.eval_out_of_plan(inputs) else {
            continue;
        };
        let mut patch = TypedModelPatch::default();
        for (slot, value) in outputs.into_iter().enumerate() {
            let exotic = model
                .outlet_fact(OutletId::new(id, slot))?
                .exotic_fact
                .clone();
            let name = if slot == 0 {
                node.name.clone()
            } else {
                format!("{}.{slot}", node.name)
            };
            let konst = Const::new_with_opt_exotic_fact(value.into_arc_tensor(), exotic)?;
            let wire = patch.wire_node(name, konst, &[])?[0];
            patch.shunt_outside(model, OutletId::new(id, slot), wire)?;
        }
        return Ok(Some(patch));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::{cast::cast, math};

    /// `x + cast(codes) × scale` with a 768×3072 int8 weight: the fp32 result (9.4 MB) is over
    /// tract's folding budget, so declutter leaves the Cast and Mul to run on every call.
    fn dequantize_and_add() -> TractResult<TypedModel> {
        let (rows, cols) = (768usize, 3072usize);
        let codes: Vec<i8> = (0..rows * cols)
            .map(|k| ((k * 7919) % 255) as u8 as i8)
            .collect();
        let scales: Vec<f32> = (0..cols).map(|c| 1e-3 * (1 + c % 13) as f32).collect();
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([rows, cols]))?;
        let w = model.add_const("codes", Tensor::from_shape(&[rows, cols], &codes)?)?;
        let s = model.add_const("scales", Tensor::from_shape(&[1, cols], &scales)?)?;
        let wf = model.wire_node("cast", cast(f32::datum_type()), &[w])?;
        let deq = model.wire_node("dequantize", math::mul(), &[wf[0], s])?;
        let y = model.wire_node("add", math::add(), &[x, deq[0]])?;
        model.select_output_outlets(&y)?;
        Ok(model)
    }

    fn non_const_ops(model: &TypedModel) -> Vec<String> {
        model
            .nodes()
            .iter()
            .filter(|n| !n.op_is::<Const>() && !n.op_is::<TypedSource>())
            .map(|n| n.op().name().to_string())
            .collect()
    }

    #[test]
    fn folds_what_tract_leaves_over_its_budget_and_keeps_the_result() -> TractResult<()> {
        let decluttered = dequantize_and_add()?.into_decluttered()?;
        assert!(
            non_const_ops(&decluttered).len() > 1,
            "tract folded the 9.4 MB dequantization itself: {:?}",
            non_const_ops(&decluttered)
        );
        let mut folded = decluttered.clone();
        fold_all_constants(&mut folded)?;
        assert_eq!(
            non_const_ops(&folded).len(),
            1,
            "{:?}",
            non_const_ops(&folded)
        );

        let x = Tensor::from_shape(
            &[768, 3072],
            &(0..768 * 3072)
                .map(|k| (k % 97) as f32 * 0.01)
                .collect::<Vec<_>>(),
        )?;
        let run = |m: TypedModel| -> TractResult<Tensor> {
            let out = m.into_runnable()?.run(tvec!(x.clone().into()))?;
            Ok(out[0].clone().into_tensor())
        };
        assert_eq!(run(decluttered)?, run(folded)?);
        Ok(())
    }

    #[test]
    fn leaves_a_model_without_constant_subgraphs_alone() -> TractResult<()> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([4]))?;
        let y = model.wire_node("sq", math::square(), &[x])?;
        model.select_output_outlets(&y)?;
        let before = model.nodes().len();
        fold_all_constants(&mut model)?;
        assert_eq!(model.nodes().len(), before);
        Ok(())
    }
}
