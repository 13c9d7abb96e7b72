//! tract's `GeluExact` nodes replaced by the runtime's one-pass GELU op
//! ([`crate::session::ops::gelu::EdgebertGelu`]).
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::nn::gelu_exact::GeluExact;

use crate::session::ops::gelu::EdgebertGelu;

/// Replaces every f32 `GeluExact` node by [`EdgebertGelu`] (a decluttered-stage pass; the
/// shapes and types of the graph do not change). Returns how many were replaced.
pub(crate) fn replace_gelu_nodes(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(op) = node.op_as::<ElementWiseOp>() else {
            continue;
        };
        if op.0.downcast_ref::<GeluExact>().is_none()
            || model.node_input_facts(id)?.first().map(|f| f.datum_type) != Some(f32::datum_type())
        {
            continue;
        }
        let out_dt = op.1;
        model.node_mut(id).op = Box::new(ElementWiseOp(Box::new(EdgebertGelu::new()), out_dt));
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::nn::gelu_exact::gelu_exact;

    /// `x → GeluExact` over `[1, n]` f32.
    fn model(n: usize) -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, n]))?;
        let y = m.wire_node("gelu", gelu_exact(), &[x])?;
        m.select_output_outlets(&y)?;
        Ok(m)
    }

    fn run(m: TypedModel, x: &[f32]) -> TractResult<Vec<f32>> {
        let input = tensor1(x).into_shape(&[1, x.len()])?;
        let out = m.into_runnable()?.run(tvec!(input.into_tvalue()))?;
        Ok(out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    }

    #[test]
    fn replaces_tracts_gelu_and_computes_gelu_within_tracts_error() -> TractResult<()> {
        let x: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.02).collect();
        let tract = run(model(x.len())?, &x)?;
        let mut m = model(x.len())?;
        assert_eq!(replace_gelu_nodes(&mut m)?, 1);
        assert_eq!(replace_gelu_nodes(&mut m)?, 0, "nothing left to replace");
        assert!(m.nodes().iter().any(|n| n.op.name() == "EdgebertGelu"));
        let ours = run(m, &x)?;
        let expected: Vec<f32> = x.iter().map(|&v| edgebert_kernels::gelu::gelu(v)).collect();
        assert_eq!(ours, expected, "the kernel's own function");
        let worst = tract
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 5e-6, "max |tract - edgebert| = {worst}");
        Ok(())
    }
}
