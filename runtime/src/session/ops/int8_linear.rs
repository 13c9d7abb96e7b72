//! The int8 Linear as one tract op over [`super::int8_gemm`], and the ONNX node that stands for
//! it in a rewritten graph.
//!
//! [`super::int8::apply`] replaces each `DynamicQuantizeLinear → MatMulInteger → Cast → Mul`
//! block by one node `EdgebertInt8Linear(x, codes, scales)` (domain [`DOMAIN`]); the
//! parser built by [`onnx`] knows it. Right after parsing, [`pack_weights`] packs each
//! node's codes (constants) into the kernel's layout, all in one [`WeightArena`] (one block,
//! on huge pages where the system has them), frees each int8 original as soon as it is packed
//! (so the weights are never held twice), and leaves a node with `x` as its only input;
//! typing it gives an [`Int8Linear`] op holding the packed weights. A node that was not packed
//! packs its codes when typed.
//!
//! When the graph has an `attention_mask` input, the rewrite emits
//! `EdgebertInt8LinearMasked(x, attention_mask, codes, scales[, bias])` instead: the activation
//! scale and zero point then come from the rows of real tokens only
//! ([`int8_gemm::linear_rows`]), so the rows a sequence bucket pads with cannot change how the
//! real ones are quantized — a text gets the result the ONNX graph gives on it unpadded,
//! whichever bucket runs it. Padding rows are read by no real row (attention masks them out), so
//! the rows after the last real token are not multiplied at all: their outputs are zeros.
use std::cell::RefCell;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_hir::infer::{Factoid, InferenceModelPatch};
use tract_onnx::tract_hir::internal::{
    expand, Expansion, InferenceOp, InferenceResult, Solver, TensorProxy,
};

use edgebert_kernels::int8_gemm::{
    self, Kernel, PackedInt8Weights, PreparedLinear, Scratch, COLUMN_BLOCK, PARTIAL_PER_ROW,
};
use edgebert_kernels::weight_arena::WeightArena;
use rayon::prelude::*;

use super::masked_quantize::with_token_rows;
use super::names::{MASKED_OP_TYPE, OP_TYPE};
use super::shared::{arity, same_bits};
use super::split;

/// Parser entry for [`OP_TYPE`] nodes.
pub(super) fn parse_node(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((
        expand(Int8LinearNode {
            packed: None,
            masked: false,
        }),
        vec![],
    ))
}

/// Parser entry for [`MASKED_OP_TYPE`] nodes.
pub(super) fn parse_masked_node(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((
        expand(Int8LinearNode {
            packed: None,
            masked: true,
        }),
        vec![],
    ))
}

/// The parsed node: `y[.., n] = Linear(x[.., k], codes[k, n] int8, scales[1 or n] f32
/// [, bias[n] f32])`, or, once [`pack_weights`] has run, `Linear(x)` with the packed weights
/// inside.
#[derive(Debug, Clone)]
struct Int8LinearNode {
    packed: Option<Arc<Int8LinearWeights>>,
    /// Inputs are `x, mask, codes, …` instead of `x, codes, …`.
    masked: bool,
}

impl Int8LinearNode {
    /// Index of the codes input (after `x` and, when masked, the mask).
    fn codes_at(&self) -> usize {
        1 + usize::from(self.masked)
    }
}

/// Packs the weights of every fused int8 Linear node of a freshly parsed graph (see the module
/// doc); returns how many were packed. A node whose weight is not a constant is left to fail
/// with a clear error when typed.
pub fn pack_weights(model: &mut InferenceModel) -> TractResult<usize> {
    let targets: Vec<(usize, bool)> = model
        .nodes()
        .iter()
        .filter_map(|n| {
            let masked = match n.op.name().as_ref() {
                OP_TYPE => false,
                MASKED_OP_TYPE => true,
                _ => return None,
            };
            let w = 1 + usize::from(masked);
            (w + 2..=w + 3)
                .contains(&n.inputs.len())
                .then_some((n.id, masked))
        })
        .collect();
    let mut arena = weight_arena(model, &targets)?;
    let (mut packed, mut freed) = (0, 0);
    for (id, masked) in targets {
        let node = model.node(id);
        let w = 1 + usize::from(masked);
        let taps: Vec<OutletId> = node.inputs[..w].to_vec();
        let (codes_at, scales_at) = (node.inputs[w], node.inputs[w + 1]);
        let bias_at = node.inputs.get(w + 2).copied();
        let name = node.name.clone();
        let (Some(codes), Some(scales)) = (
            model.outlet_fact(codes_at)?.value.concretize(),
            model.outlet_fact(scales_at)?.value.concretize(),
        ) else {
            continue;
        };
        let bias = match bias_at {
            Some(at) => match model.outlet_fact(at)?.value.concretize() {
                Some(b) => Some(b),
                None => continue,
            },
            None => None,
        };
        let op = Int8Linear::new_in(&codes, &scales, bias.as_deref(), arena.as_mut())
            .with_context(|| name.clone())?;
        let codes_bytes = codes.len();
        drop(codes);
        let mut patch = InferenceModelPatch::default();
        let taps = taps
            .iter()
            .map(|&t| patch.tap_model(model, t))
            .collect::<TractResult<Vec<_>>>()?;
        let node_op = expand(Int8LinearNode {
            packed: Some(op.weights.clone()),
            masked,
        });
        let out = patch.wire_node(&name, node_op, &taps)?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), out)?;
        patch.apply(model)?;
        // The fused node was the codes' only reader: free them now, not at `compact`.
        let unread = model
            .nodes()
            .iter()
            .all(|n| n.id == id || !n.inputs.contains(&codes_at));
        if unread {
            let konst = model.node_mut(codes_at.node);
            konst.op = Box::new(Const::new(rctensor0(0i8))?);
            if let Some(o) = konst.outputs.get_mut(codes_at.slot) {
                o.fact = InferenceFact::default();
            }
        }
        packed += 1;
        if unread {
            freed += codes_bytes;
            if freed >= RETURN_FREED_BYTES {
                return_freed_memory();
                freed = 0;
            }
        }
    }
    if freed > 0 {
        return_freed_memory();
    }
    if packed > 0 {
        model.compact()?;
    }
    Ok(packed)
}

/// Bytes of freed int8 originals after which [`pack_weights`] hands freed memory back.
const RETURN_FREED_BYTES: usize = 8 << 20;

/// Hands the allocator's free memory back to the system. The int8 originals [`pack_weights`]
/// frees lie in glibc's heap, and their packed copies go to a [`WeightArena`], not into that
/// freed memory: without this the process would keep both. Other allocators (musl's, the
/// system's elsewhere) unmap large blocks when they are freed.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One block for the packed codes of every target of [`pack_weights`] whose codes are a
/// constant `[k, n]` tensor (see [`WeightArena`]); `None` when there are none.
fn weight_arena(
    model: &InferenceModel,
    targets: &[(usize, bool)],
) -> TractResult<Option<WeightArena>> {
    let mut lengths = Vec::with_capacity(targets.len());
    for &(id, masked) in targets {
        let codes_at = model.node(id).inputs[1 + usize::from(masked)];
        if let Some(codes) = model.outlet_fact(codes_at)?.value.concretize() {
            if let &[k, n] = codes.shape() {
                lengths.extend(PackedInt8Weights::packed_len(k, n));
            }
        }
    }
    Ok(WeightArena::space_for(lengths).and_then(WeightArena::with_capacity))
}

impl Expansion for Int8LinearNode {
    fn name(&self) -> StaticName {
        if self.masked {
            MASKED_OP_TYPE.into()
        } else {
            OP_TYPE.into()
        }
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let c = self.codes_at();
        if self.masked && inputs.len() >= 2 {
            s.equals(&inputs[1].datum_type, i64::datum_type())?;
        }
        if let Some(w) = &self.packed {
            arity(
                &format!("packed {}", self.name()),
                inputs,
                outputs,
                c..=c,
                1,
            )?;
            let (k, n) = (w.packed.k(), w.packed.n());
            s.equals(&inputs[0].datum_type, f32::datum_type())?;
            s.equals(&outputs[0].datum_type, f32::datum_type())?;
            s.equals(&inputs[0].rank, &outputs[0].rank)?;
            return s.given(&inputs[0].rank, move |s, rank| {
                let last = (rank as usize).checked_sub(1).context("a scalar input")?;
                for ax in 0..last {
                    s.equals(&inputs[0].shape[ax], &outputs[0].shape[ax])?;
                }
                s.equals(&inputs[0].shape[last], k.to_dim())?;
                s.equals(&outputs[0].shape[last], n.to_dim())?;
                Ok(())
            });
        }
        arity(&self.name(), inputs, outputs, c + 2..=c + 3, 1)?;
        let (codes, scales) = (&inputs[c], &inputs[c + 1]);
        if let Some(bias) = inputs.get(c + 2) {
            s.equals(&bias.datum_type, f32::datum_type())?;
            s.equals(&bias.rank, 1)?;
            s.equals(&bias.shape[0], &codes.shape[1])?;
        }
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&codes.datum_type, i8::datum_type())?;
        s.equals(&scales.datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&codes.rank, 2)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.given(&inputs[0].rank, move |s, rank| {
            let last = (rank as usize).checked_sub(1).context("a scalar input")?;
            for ax in 0..last {
                s.equals(&inputs[0].shape[ax], &outputs[0].shape[ax])?;
            }
            s.equals(&inputs[0].shape[last], &codes.shape[0])?;
            s.equals(&outputs[0].shape[last], &codes.shape[1])?;
            Ok(())
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let c = self.codes_at();
        if let Some(weights) = &self.packed {
            let op = Int8Linear {
                weights: weights.clone(),
                masked: self.masked,
            };
            return model.wire_node(prefix, op, &inputs[..c]);
        }
        let codes = model
            .outlet_fact(inputs[c])?
            .konst
            .clone()
            .with_context(|| format!("{prefix}: the int8 weight must be a constant"))?;
        let scales = model
            .outlet_fact(inputs[c + 1])?
            .konst
            .clone()
            .with_context(|| format!("{prefix}: the weight scales must be a constant"))?;
        let bias = match inputs.get(c + 2) {
            Some(&b) => Some(
                model
                    .outlet_fact(b)?
                    .konst
                    .clone()
                    .with_context(|| format!("{prefix}: the bias must be a constant"))?,
            ),
            None => None,
        };
        let mut op = Int8Linear::new(&codes, &scales, bias.as_deref())
            .with_context(|| prefix.to_string())?;
        op.masked = self.masked;
        model.wire_node(prefix, op, &inputs[..c])
    }
}

/// Packed weights and scales of one Linear layer.
#[derive(Debug)]
pub struct Int8LinearWeights {
    packed: PackedInt8Weights,
    scales: Vec<f32>,
    /// Empty when the layer has no bias.
    bias: Vec<f32>,
    kernel: Kernel,
}

impl PartialEq for Int8LinearWeights {
    /// Same codes, same kernel, bit-identical scales.
    fn eq(&self, other: &Self) -> bool {
        let same = same_bits;
        self.kernel == other.kernel
            && self.packed == other.packed
            && same(&self.scales, &other.scales)
            && same(&self.bias, &other.bias)
    }
}

impl Eq for Int8LinearWeights {}

/// A Linear layer with int8 weights: dynamic per-tensor quantization of `x`, exact integer
/// products, fp32 rescale ([`int8_gemm::linear`]).
#[derive(Debug, Clone)]
pub struct Int8Linear {
    weights: Arc<Int8LinearWeights>,
    /// A second input, the `[batch, sequence]` attention mask, flags the rows whose values set
    /// the activation scale (when `x` has one row per token).
    masked: bool,
}

impl PartialEq for Int8Linear {
    fn eq(&self, other: &Self) -> bool {
        self.masked == other.masked
            && (Arc::ptr_eq(&self.weights, &other.weights) || self.weights == other.weights)
    }
}

impl Eq for Int8Linear {}

impl Int8Linear {
    /// Packs `codes` (`[k, n]` int8) with `scales` (one, or one per column) and an optional
    /// `bias` (`[n]` f32, added after the rescale).
    pub fn new(codes: &Tensor, scales: &Tensor, bias: Option<&Tensor>) -> TractResult<Int8Linear> {
        Self::new_in(codes, scales, bias, None)
    }

    /// As [`Int8Linear::new`], with the packed codes in `arena` when it has room for them.
    pub fn new_in(
        codes: &Tensor,
        scales: &Tensor,
        bias: Option<&Tensor>,
        arena: Option<&mut WeightArena>,
    ) -> TractResult<Int8Linear> {
        let &[k, n] = codes.shape() else {
            bail!("int8 weight of shape {:?}, expected [k, n]", codes.shape());
        };
        ensure!(
            codes.datum_type() == i8::datum_type(),
            "int8 weight of type {:?}",
            codes.datum_type()
        );
        ensure!(
            scales.datum_type() == f32::datum_type() && (scales.len() == 1 || scales.len() == n),
            "weight scales: {} values of type {:?}, expected 1 or {n} f32",
            scales.len(),
            scales.datum_type()
        );
        let codes = codes.try_as_plain_ram()?;
        let codes = codes.as_slice::<i8>()?;
        let packed = arena
            .and_then(|arena| PackedInt8Weights::pack_in(codes, k, n, arena))
            .or_else(|| PackedInt8Weights::pack(codes, k, n))
            .context("int8 weight size disagrees with its shape")?;
        let scales = scales.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = match bias {
            Some(b) => {
                ensure!(
                    b.datum_type() == f32::datum_type() && b.shape() == [n],
                    "bias of shape {:?} and type {:?}, expected [{n}] f32",
                    b.shape(),
                    b.datum_type()
                );
                b.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()
            }
            None => Vec::new(),
        };
        let kernel = Kernel::best_for(&packed);
        Ok(Int8Linear {
            weights: Arc::new(Int8LinearWeights {
                packed,
                scales,
                bias,
                kernel,
            }),
            masked: false,
        })
    }

    /// The packed weights, shared by every plan holding this layer.
    pub fn weights(&self) -> &Arc<Int8LinearWeights> {
        &self.weights
    }

    /// Uses `weights` instead of this layer's own (equal) ones.
    pub fn share(&mut self, weights: Arc<Int8LinearWeights>) {
        self.weights = weights;
    }
}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "EdgebertInt8Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let w = &self.weights;
        Ok(vec![format!(
            "{}×{} int8, {} scale(s), {}, {:?} kernel{}",
            w.packed.k(),
            w.packed.n(),
            w.scales.len(),
            if w.bias.is_empty() { "no bias" } else { "bias" },
            w.kernel,
            if self.masked {
                ", activation scale from real tokens"
            } else {
                ""
            }
        )])
    }

    op_as_typed_op!();
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let w = &self.weights;
        let (k, n) = (w.packed.k(), w.packed.n());
        let shape = x.shape();
        ensure!(
            shape.last() == Some(&k),
            "input of shape {shape:?}, expected {k} features last"
        );
        let mut out_shape: TVec<usize> = shape.into();
        if let Some(last) = out_shape.last_mut() {
            *last = n;
        }
        // SAFETY: `linear` writes every value of `y` or returns false, and then `y` is dropped
        // unread.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        {
            let x = x.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut view = y.try_as_plain_ram_mut()?;
            let out = view.as_slice_mut::<f32>()?;
            let mask = match inputs.get(1) {
                Some(m) if self.masked => Some(m.try_as_plain_ram()?),
                _ => None,
            };
            let mask = match &mask {
                Some(m) => Some(m.as_slice::<i64>()?),
                None => None,
            };
            let done = with_token_rows(mask, k, x.len(), |flags| {
                // Rows past the last real token are padding: no real row reads them, so they
                // are zeros instead of products.
                let live = flags
                    .and_then(|f| f.iter().rposition(|&real| real))
                    .map_or(x.len() / k.max(1), |last| last + 1);
                let (x, flags) = (&x[..live * k], flags.map(|f| &f[..live]));
                let (out, padding) = out.split_at_mut((live * n).min(out.len()));
                padding.fill(0.0);
                SCRATCH.with(|s| {
                    let mut scratch = s.borrow_mut();
                    int8_gemm::prepare_linear(
                        x,
                        flags,
                        &w.packed,
                        &w.scales,
                        &w.bias,
                        w.kernel,
                        &mut scratch,
                    )
                    .is_some_and(|(prepared, partial)| multiply_rows(&prepared, out, partial))
                })
            });
            ensure!(done, "int8 Linear: inconsistent sizes");
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

/// Rows per block of a multi-threaded int8 Linear: whole tiles of every kernel.
const ROW_GRANULE: usize = 4;
/// Multiply-adds below which one thread does a whole int8 Linear (the split would cost more).
const MIN_PARALLEL_MACS: usize = 1 << 18;

thread_local! {
    /// A worker's partial sums for the column blocks it computes.
    static BLOCK_PARTIAL: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// Whether `n` output columns split over `threads` in whole [`COLUMN_BLOCK`] groups leave no
/// thread more than an eighth above an even share. A column split reads each weight on one
/// thread only (a row split streams every weight on every thread), so it is taken whenever it
/// balances: DistilBERT-base at 16 to 64 tokens on 2 threads runs 6–18% faster than split by
/// rows, equal at 128.
fn splits_by_columns(n: usize, threads: usize) -> bool {
    let groups = n.div_ceil(COLUMN_BLOCK);
    let busiest = groups.div_ceil(threads.max(1));
    busiest * threads * 8 <= groups * 9
}

/// All rows of `prepared` into `y`: split over the running plan's pool when it has several
/// threads and the product is large enough (by column blocks when they balance, else by row
/// blocks), else in one call (the same values every way).
fn multiply_rows(prepared: &PreparedLinear, y: &mut [f32], partial: &mut [i32]) -> bool {
    let (m, n) = (prepared.rows(), prepared.columns());
    let pool =
        split::current_pool().filter(|_| m * n * prepared.weights().k() >= MIN_PARALLEL_MACS);
    let Some(pool) = pool else {
        return prepared.multiply(0..m, y, partial);
    };
    let threads = pool.current_num_threads();
    if splits_by_columns(n, threads) {
        let Some(blocks) = prepared.column_blocks(0..m, y, threads) else {
            return false;
        };
        return pool.install(|| {
            (0..blocks.len()).into_par_iter().all(|b| {
                BLOCK_PARTIAL.with_borrow_mut(|partial| {
                    if partial.len() < m * PARTIAL_PER_ROW {
                        partial.resize(m * PARTIAL_PER_ROW, 0);
                    }
                    blocks.run(b, partial)
                })
            })
        });
    }
    let block = split::block_rows(m, threads, ROW_GRANULE);
    if block >= m {
        return prepared.multiply(0..m, y, partial);
    }
    pool.install(|| {
        y.par_chunks_mut(block * n)
            .zip(partial.par_chunks_mut(block * PARTIAL_PER_ROW))
            .enumerate()
            .all(|(b, (y, partial))| {
                let first = b * block;
                prepared.multiply(first..first + y.len() / n, y, partial)
            })
    })
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        let k = self.weights.packed.k();
        match shape.last_mut() {
            Some(last) if *last == k.to_dim() => *last = self.weights.packed.n().to_dim(),
            _ => bail!(
                "input of shape {:?}, expected {k} features last",
                inputs[0].shape
            ),
        }
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::splits_by_columns;

    #[test]
    fn columns_split_when_every_thread_gets_a_near_even_share() {
        // 768 columns are 24 groups of 32: even on 2, 3, 4, 6 and 8 threads
        for threads in [2, 3, 4, 6, 8] {
            assert!(splits_by_columns(768, threads), "{threads}");
        }
        // 24 groups on 7 threads: 4 on the busiest against 3.4 on average
        assert!(!splits_by_columns(768, 7));
        // 5 groups on 2 threads: 3 against 2.5
        assert!(!splits_by_columns(150, 2));
        // fewer groups than threads
        assert!(!splits_by_columns(64, 3));
        assert!(splits_by_columns(3072, 7));
    }
}
