//! The fused multi-head attention op: `Attention(q, k, v, mask)` with `q, k, v` of shape
//! `[b, s, heads·d]`, run by [`edgebert_kernels::attention`] (the node
//! [`crate::session::rewrite::attention`] writes). Results agree with tract's op sequence to f32
//! rounding.
use std::cell::RefCell;

use rayon::prelude::*;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::internal::{
    expand, Expansion, InferenceOp, InferenceResult, Solver, TensorProxy,
};

use super::names::ATTENTION;
use super::shared::{all_of_type, arity};
use super::split;
use edgebert_kernels::attention::{
    attention_rows, AttentionKernel, AttentionScratch, AttentionShape, MaskStrides,
};

/// Parser entry for [`ATTENTION`] nodes.
pub fn parse_attention(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| usize::try_from(a.i).ok())
            .filter(|&v| v > 0)
            .with_context(|| format!("{ATTENTION} node {:?}: no positive `{name}`", node.name))
    };
    Ok((
        expand(AttentionNode {
            heads: attr("heads")?,
            head_dim: attr("head_dim")?,
        }),
        vec![],
    ))
}

/// The parsed node.
#[derive(Debug, Clone)]
struct AttentionNode {
    heads: usize,
    head_dim: usize,
}

impl Expansion for AttentionNode {
    fn name(&self) -> StaticName {
        ATTENTION.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        arity(ATTENTION, inputs, outputs, 4..=4, 1)?;
        all_of_type(s, inputs, f32::datum_type())?;
        all_of_type(s, outputs, f32::datum_type())?;
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[0].shape, &inputs[1].shape)?;
        s.equals(&inputs[0].shape, &inputs[2].shape)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let q = model.outlet_fact(inputs[0])?.clone();
        let width = self.heads * self.head_dim;
        ensure!(
            q.rank() == 3 && q.shape[2] == width.to_dim(),
            "{prefix}: queries of shape {:?} for {} heads of {}",
            q.shape,
            self.heads,
            self.head_dim
        );
        let mask = model.outlet_fact(inputs[3])?;
        ensure!(
            mask.rank() <= 4,
            "{prefix}: a mask of rank {} for attention scores of rank 4",
            mask.rank()
        );
        let op = FusedAttention {
            heads: self.heads,
            head_dim: self.head_dim,
            kernel: AttentionKernel::best(),
        };
        model.wire_node(prefix, op, inputs)
    }
}

/// `softmax(Q·Kᵀ + mask) · V` over `heads` heads of `head_dim` features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedAttention {
    heads: usize,
    head_dim: usize,
    kernel: AttentionKernel,
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        ATTENTION.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} heads × {}, {:?} kernel",
            self.heads, self.head_dim, self.kernel
        )])
    }

    op_as_typed_op!();
}

/// Score multiply-adds (queries × keys × width) below which one thread runs the attention.
const MIN_PARALLEL_MACS: usize = 1 << 18;

thread_local! {
    static SCRATCH: RefCell<AttentionScratch> = RefCell::new(AttentionScratch::default());
}

/// The mask's strides over the scores `[batch, heads, seq, seq]`, or `None` when its shape
/// does not broadcast to them without enlarging them.
fn mask_strides(mask: &[usize], batch: usize, heads: usize, seq: usize) -> Option<MaskStrides> {
    if mask.len() > 4 {
        return None;
    }
    let mut dims = [1usize; 4];
    dims[4 - mask.len()..].copy_from_slice(mask);
    let full = [batch, heads, seq, seq];
    let mut strides = [0usize; 4];
    let mut step = 1;
    for axis in (0..4).rev() {
        if dims[axis] == full[axis] && full[axis] != 1 {
            strides[axis] = step;
        } else if dims[axis] != 1 {
            return None;
        }
        step *= dims[axis];
    }
    Some(MaskStrides {
        batch: strides[0],
        head: strides[1],
        query: strides[2],
        key: strides[3],
    })
}

impl EvalOp for FusedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape();
        ensure!(
            shape.len() == 3 && shape[2] == self.heads * self.head_dim,
            "attention: queries of shape {shape:?} for {} heads of {}",
            self.heads,
            self.head_dim
        );
        let (batch, seq) = (shape[0], shape[1]);
        let strides =
            mask_strides(inputs[3].shape(), batch, self.heads, seq).with_context(|| {
                format!(
                    "attention: a mask of shape {:?} for scores of shape {:?}",
                    inputs[3].shape(),
                    [batch, self.heads, seq, seq]
                )
            })?;
        // SAFETY: `attention` writes every value of `out` or returns false, and then `out` is
        // dropped unread.
        let mut out = unsafe { Tensor::uninitialized::<f32>(shape)? };
        {
            let views = [0, 1, 2, 3].map(|i| inputs[i].try_as_plain_ram());
            let [q, k, v, m] = views;
            let (q, k, v, m) = (q?, k?, v?, m?);
            let mut view = out.try_as_plain_ram_mut()?;
            let (q, k, v, m) = (
                q.as_slice::<f32>()?,
                k.as_slice::<f32>()?,
                v.as_slice::<f32>()?,
                m.as_slice::<f32>()?,
            );
            let shape = AttentionShape {
                batch,
                seq,
                heads: self.heads,
                head_dim: self.head_dim,
            };
            let out = view.as_slice_mut::<f32>()?;
            let width = self.heads * self.head_dim;
            let rows = batch * seq;
            // Query rows in blocks of whole passes (4 rows), one block per thread of the
            // running plan's pool, when the scores are large enough to be worth it.
            let run = |rows: std::ops::Range<usize>, out: &mut [f32]| {
                SCRATCH.with(|s| {
                    attention_rows(
                        q,
                        k,
                        v,
                        m,
                        strides,
                        shape,
                        rows,
                        out,
                        self.kernel,
                        &mut s.borrow_mut(),
                    )
                })
            };
            let pool = split::current_pool().filter(|_| rows * seq * width >= MIN_PARALLEL_MACS);
            let done = match pool {
                Some(pool) if width > 0 => {
                    let block = split::block_rows(rows, pool.current_num_threads(), 4);
                    pool.install(|| {
                        out.par_chunks_mut(block * width)
                            .enumerate()
                            .all(|(b, out)| {
                                let first = b * block;
                                run(first..first + out.len() / width, out)
                            })
                    })
                }
                _ => run(0..rows, out),
            };
            ensure!(done, "attention: inconsistent sizes");
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 4
                && inputs[1].shape == inputs[0].shape
                && inputs[2].shape == inputs[0].shape,
            "attention: queries, keys and values of different shapes"
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_strides_follow_broadcasting() {
        let s = |m: &[usize]| mask_strides(m, 2, 3, 5);
        let padding = MaskStrides {
            batch: 5,
            head: 0,
            query: 0,
            key: 1,
        };
        assert_eq!(s(&[2, 1, 1, 5]), Some(padding));
        assert_eq!(
            s(&[1, 5]),
            Some(MaskStrides {
                batch: 0,
                head: 0,
                query: 0,
                key: 1
            })
        );
        assert_eq!(
            s(&[2, 3, 5, 5]),
            Some(MaskStrides {
                batch: 75,
                head: 25,
                query: 5,
                key: 1
            })
        );
        assert_eq!(
            s(&[]),
            Some(MaskStrides {
                batch: 0,
                head: 0,
                query: 0,
                key: 0
            })
        );
        // Would enlarge the scores, or does not broadcast.
        assert_eq!(s(&[4, 1, 1, 5]), None);
        assert_eq!(s(&[2, 1, 1, 4]), None);
        assert_eq!(s(&[1, 2, 1, 1, 5]), None);
    }
}
