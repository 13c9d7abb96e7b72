//! `DynamicQuantizeLinear` whose scale and zero point come from the rows of real tokens only.
//!
//! An int8 export quantizes each Linear's input per tensor: one scale from the tensor's range.
//! The runtime pads each text to a sequence bucket, and the padding rows' activations would
//! widen that range and change how the real tokens are quantized, so the same text would give
//! different results in different buckets (and differ from onnxruntime on the unpadded text:
//! 0.6% of emotion validation labels). [`super::int8::apply`] therefore rewrites every remaining
//! `DynamicQuantizeLinear(x)` of a graph with an `attention_mask` input into
//! `EdgebertDynamicQuantize(x, attention_mask)`: same outputs, statistics over the rows whose
//! mask is 1 (every row when `x` does not have one row per token). Padding rows are still
//! quantized (with the real rows' scale) and read by no real row. The fused int8 Linear does the
//! same inside its kernel ([`super::int8_linear`]).
use std::cell::RefCell;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::internal::{
    expand, Expansion, InferenceOp, InferenceResult, Solver, TensorProxy,
};

use edgebert_kernels::int8_gemm::{dynamic_scale_and_zero_point_of_rows, quantize};

use super::names::MASKED_QUANTIZE;
use super::shared::arity;

/// Parser entry for [`MASKED_QUANTIZE`] nodes.
pub fn parse_masked_quantize(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(MaskedQuantizeNode), vec![]))
}

/// The parsed node.
#[derive(Debug, Clone)]
struct MaskedQuantizeNode;

impl Expansion for MaskedQuantizeNode {
    fn name(&self) -> StaticName {
        MASKED_QUANTIZE.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(3)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        arity(MASKED_QUANTIZE, inputs, outputs, 2..=2, 3)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[1].datum_type, i64::datum_type())?;
        s.equals(&outputs[0].datum_type, u8::datum_type())?;
        s.equals(&outputs[1].datum_type, f32::datum_type())?;
        s.equals(&outputs[2].datum_type, u8::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals(&outputs[1].rank, 0)?;
        s.equals(&outputs[2].rank, 0)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, MaskedDynamicQuantize, inputs)
    }
}

/// `(codes, scale, zero_point) = DynamicQuantizeLinear(x)` with the statistics of the rows
/// the mask flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedDynamicQuantize;

impl Op for MaskedDynamicQuantize {
    fn name(&self) -> StaticName {
        MASKED_QUANTIZE.into()
    }

    op_as_typed_op!();
}

thread_local! {
    /// One flag per row of `x` (reused).
    static ROWS: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with one flag per row of an activation of `values` values in rows of `k` (true
/// for a real token) when `mask` has one value per such row, and with `None` otherwise (no
/// mask, or rows that are not tokens, such as the `[CLS]` rows a classifier head reads). The
/// rule shared by this quantizer and the fused int8 Linear ([`super::int8_linear`]); the flags
/// live in a reused thread-local buffer, so a call allocates nothing once warm.
pub fn with_token_rows<R>(
    mask: Option<&[i64]>,
    k: usize,
    values: usize,
    f: impl FnOnce(Option<&[bool]>) -> R,
) -> R {
    ROWS.with(|rows| {
        let mut rows = rows.borrow_mut();
        let flags = match mask {
            Some(m) if m.len().checked_mul(k) == Some(values) => {
                rows.clear();
                rows.extend(m.iter().map(|&v| v != 0));
                Some(&rows[..])
            }
            _ => None,
        };
        f(flags)
    })
}

impl EvalOp for MaskedDynamicQuantize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, mask) = (&inputs[0], &inputs[1]);
        let k = x.shape().last().copied().unwrap_or(1);
        let xv = x.try_as_plain_ram()?;
        let xs = xv.as_slice::<f32>()?;
        let mv = mask.try_as_plain_ram()?;
        let ms = mv.as_slice::<i64>()?;
        let (scale, zero_point) = with_token_rows(Some(ms), k, xs.len(), |flags| {
            dynamic_scale_and_zero_point_of_rows(xs, k, flags)
        });
        // SAFETY: `quantize` writes every value of `codes` or returns false, and then `codes`
        // is dropped unread.
        let mut codes = unsafe { Tensor::uninitialized::<u8>(x.shape())? };
        {
            let mut cv = codes.try_as_plain_ram_mut()?;
            ensure!(
                quantize(xs, scale, zero_point, cv.as_slice_mut::<u8>()?),
                "{MASKED_QUANTIZE}: inconsistent sizes"
            );
        }
        Ok(tvec!(
            codes.into_tvalue(),
            tensor0(scale).into_tvalue(),
            tensor0(zero_point).into_tvalue()
        ))
    }
}

impl TypedOp for MaskedDynamicQuantize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(
            u8::fact(inputs[0].shape.clone()),
            f32::scalar_fact(),
            u8::scalar_fact()
        ))
    }

    as_op!();
}
