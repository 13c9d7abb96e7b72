//! The fused LayerNorm op: `LayerNorm(x [+ r], gamma, beta)` over the last axis, run by
//! [`edgebert_kernels::layer_norm`] (the node [`crate::session::rewrite::layer_norm`] writes).
//!
//! Results agree with tract's expansion of `LayerNormalization` to f32 rounding (mean and
//! variance are accumulated in f64), not bit for bit.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::math::add;
use tract_onnx::tract_hir::internal::{
    expand, Expansion, InferenceOp, InferenceResult, Solver, TensorProxy,
};
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

use edgebert_kernels::layer_norm::layer_norm;

use super::names::LAYER_NORM;
use super::shared::{all_of_type, arity, same_bits};
use super::split;

/// Parser entry for [`LAYER_NORM`] nodes.
pub fn parse_layer_norm(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let epsilon = attr("epsilon").map_or(1e-5, |a| a.f);
    let residual = attr("residual").is_some_and(|a| a.i != 0);
    Ok((expand(LayerNormNode { epsilon, residual }), vec![]))
}

/// The parsed node: `LayerNorm(x [+ r], gamma, beta)` over the last axis.
#[derive(Debug, Clone)]
struct LayerNormNode {
    epsilon: f32,
    residual: bool,
}

impl Expansion for LayerNormNode {
    fn name(&self) -> StaticName {
        LAYER_NORM.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let want = if self.residual { 4 } else { 3 };
        arity(LAYER_NORM, inputs, outputs, want..=want, 1)?;
        all_of_type(s, inputs, f32::datum_type())?;
        all_of_type(s, outputs, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let k = if self.residual { 2 } else { 1 };
        let konst = |i: usize, what: &str| {
            model
                .outlet_fact(inputs[i])?
                .konst
                .clone()
                .with_context(|| format!("{prefix}: the {what} must be a constant"))
        };
        let (gamma, beta) = (konst(k, "scale")?, konst(k + 1, "bias")?);
        let vector = |t: &Tensor| -> TractResult<Vec<f32>> {
            ensure!(
                t.rank() == 1,
                "{prefix}: a LayerNorm parameter of shape {:?}",
                t.shape()
            );
            Ok(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
        };
        let (gamma, beta) = (vector(&gamma)?, vector(&beta)?);
        ensure!(
            gamma.len() == beta.len(),
            "{prefix}: scale and bias lengths differ"
        );
        let x_fact = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            x_fact.shape.last() == Some(&gamma.len().to_dim()),
            "{prefix}: input of shape {:?} for {} features",
            x_fact.shape,
            gamma.len()
        );
        let mut wires: TVec<OutletId> = tvec!(inputs[0]);
        let mut residual = self.residual;
        if self.residual {
            if model.outlet_fact(inputs[1])?.shape == x_fact.shape {
                wires.push(inputs[1]);
            } else {
                // A broadcasting residual: tract adds, the kernel normalises the sum.
                wires =
                    wire_with_rank_broadcast(format!("{prefix}.add"), model, add(), &inputs[..2])?;
                residual = false;
            }
        }
        let op = FusedLayerNorm {
            gamma: Arc::new(gamma),
            beta: Arc::new(beta),
            epsilon: self.epsilon,
            residual,
        };
        model.wire_node(prefix, op, &wires)
    }
}

/// LayerNorm over the last axis of `x` (or of `x + r` when `residual`).
#[derive(Debug, Clone)]
pub struct FusedLayerNorm {
    gamma: Arc<Vec<f32>>,
    beta: Arc<Vec<f32>>,
    epsilon: f32,
    residual: bool,
}

impl PartialEq for FusedLayerNorm {
    fn eq(&self, other: &Self) -> bool {
        let same = same_bits;
        self.epsilon.to_bits() == other.epsilon.to_bits()
            && self.residual == other.residual
            && same(&self.gamma, &other.gamma)
            && same(&self.beta, &other.beta)
    }
}

impl Eq for FusedLayerNorm {}

impl Op for FusedLayerNorm {
    fn name(&self) -> StaticName {
        LAYER_NORM.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} features, epsilon {:e}{}",
            self.gamma.len(),
            self.epsilon,
            if self.residual { ", residual sum" } else { "" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FusedLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        // SAFETY: `layer_norm` writes every value of `y` or returns false, and then `y` is
        // dropped unread.
        let mut y = unsafe { Tensor::uninitialized::<f32>(x.shape())? };
        {
            let xv = x.try_as_plain_ram()?;
            let xs = xv.as_slice::<f32>()?;
            let rv = match inputs.get(1) {
                Some(r) if self.residual => Some(r.try_as_plain_ram()?),
                _ => None,
            };
            let rs = match &rv {
                Some(v) => Some(v.as_slice::<f32>()?),
                None => None,
            };
            let mut yv = y.try_as_plain_ram_mut()?;
            let ys = yv.as_slice_mut::<f32>()?;
            let h = self.gamma.len();
            ensure!(
                h > 0
                    && xs.len() == ys.len()
                    && ys.len().is_multiple_of(h)
                    && rs.is_none_or(|r| r.len() == xs.len()),
                "LayerNorm: inconsistent sizes"
            );
            // Whole rows per thread of the running plan's pool, each row as on one thread.
            split::par_rows(ys, h, |first_row, y| {
                let rows = first_row * h..first_row * h + y.len();
                let done = layer_norm(
                    &xs[rows.clone()],
                    rs.map(|r| &r[rows.clone()]),
                    &self.gamma,
                    &self.beta,
                    self.epsilon,
                    y,
                );
                ensure!(done, "LayerNorm: inconsistent sizes");
                Ok(())
            })?;
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for FusedLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        if self.residual {
            ensure!(
                inputs.len() == 2 && inputs[1].shape == inputs[0].shape,
                "residual of another shape"
            );
        }
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}
