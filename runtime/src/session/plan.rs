//! Sequence-length buckets and their plans.
//!
//! Buckets are the multiples of 8 up to 64, then lengths a quarter apart at most (80, 96, 112,
//! 128, 160, …; [`bucket_lengths`]), so a text is padded by fewer than 8 tokens up to 64 and by
//! under a quarter beyond. A plan is built on first use (lazy, the default) or all at load
//! ([`super::SessionOptions::eager`]). The first plan types the parsed graph with its bucket's
//! length, the fastest way to a first result; once a second plan is needed, the graph is typed
//! and decluttered once with a symbolic length `S` and every further plan only binds `S` and
//! optimizes (≈ 6 ms of typing per plan instead of ≈ 40 for MiniLM). Packed weights and large
//! constants are shared between plans ([`super::weights::shared`]).
use std::collections::HashMap;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure};

use super::guard::guarded;
use super::int8_mode::Int8Path;
use super::ops::{int8_linear, split};
use super::passes::{self, ModelPass, PassStage, DEFAULT_PASSES};
use super::weights::{self, dequantize};
use super::Session;
use crate::error::{Error, Result};
use crate::tokenizer::SeqEncoding;

/// Smallest sequence bucket.
pub(super) const MIN_BUCKET: usize = 8;

/// What a graph input is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InputKind {
    /// `input_ids`.
    Ids,
    /// `attention_mask`.
    Mask,
    /// `token_type_ids` (all 0).
    TypeIds,
}

/// One sequence-length bucket: its length, its plan's state once built, and its input tensors.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) seq_len: usize,
    pub(super) state: Option<TypedSimpleState>,
    /// One reusable `[1, seq_len]` i64 tensor per graph input (made on the first run).
    pub(super) inputs: Vec<Arc<Tensor>>,
}

/// The graph every bucket's plan starts from.
#[derive(Debug)]
pub(super) enum Prototype {
    /// The ONNX graph as tract parsed it; a plan types it with the bucket's length. Fastest
    /// for the first plan (typing with concrete shapes is quicker than with a symbol).
    Parsed(InferenceModel),
    /// Typed, decluttered and rewritten by the decluttered-stage passes once, with the
    /// sequence length left as the symbol `seq`; a plan binds it (about 6 ms, against about
    /// 40 ms to type the parsed graph again).
    Symbolic { model: TypedModel, seq: Symbol },
    /// Nothing held: the parsed graph went to a plan, and the next plan parses the skeleton
    /// again (sessions opened from a file, see [`Session::open_with`]).
    Reload,
}

/// The ONNX skeleton and the file its weights are read from: a fresh parsed graph on demand.
#[derive(Debug)]
pub(super) struct Reload {
    pub(super) skeleton: weights::Skeleton,
    pub(super) weights: weights::FileWeights,
}

/// Types `model` with inputs `[1, s]`, declutters it and applies the decluttered-stage passes.
fn concrete(
    mut model: InferenceModel,
    s: usize,
    n_inputs: usize,
    passes: &[ModelPass],
) -> TractResult<TypedModel> {
    for ix in 0..n_inputs {
        model.set_input_fact(ix, InferenceFact::dt_shape(i64::datum_type(), tvec!(1, s)))?;
    }
    let mut typed = model.into_typed()?.into_decluttered()?;
    passes::apply(passes, &mut typed, PassStage::Decluttered)?;
    Ok(typed)
}

/// Bucket lengths for `max_len`: every multiple of 8 up to 64, then steps of a power of two
/// within a quarter of the length (80, 96, 112, 128, 160, …, 256, 320, …), below `max_len`, then
/// `max_len`: a text is padded by fewer than 8 tokens up to 64 and by under a quarter beyond.
pub(super) fn bucket_lengths(max_len: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut s = MIN_BUCKET;
    while s < max_len {
        v.push(s);
        // the largest power of two within a quarter of `s`, at least 8
        s += MIN_BUCKET.max(1 << (s / 4).max(1).ilog2());
    }
    v.push(max_len);
    v
}

impl Session {
    pub(super) fn bucket_index(&self, tokens: usize) -> usize {
        bucket_for(self.buckets.iter().map(|b| b.seq_len), tokens)
    }

    pub(super) fn prepare_bucket(&mut self, b: usize) -> Result<()> {
        let Some(bucket) = self.buckets.get(b) else {
            return Err(Error::InvalidArgument(format!("no bucket {b}")));
        };
        if bucket.state.is_some() {
            return Ok(());
        }
        let s = bucket.seq_len;
        if self.buckets.iter().any(|b| b.state.is_some()) {
            self.share_typed_graph();
        }
        let context = format!("building the {s}-token plan");
        let owned = self.owned_parsed()?;
        let (header, passes) = (&self.header, DEFAULT_PASSES);
        let n_inputs = self.input_kinds.len();
        let (prototype, packed) = (&self.prototype, &mut self.packed);
        let state = guarded(&context, move || {
            let mut typed = match (prototype, owned) {
                (Prototype::Symbolic { model, seq }, _) => {
                    let length = HashMap::from([(seq.clone(), s.to_dim())]);
                    model.set_symbols(&length)?.into_decluttered()?
                }
                (Prototype::Parsed(model), None) => concrete(model.clone(), s, n_inputs, passes)?,
                (_, Some(model)) => concrete(model, s, n_inputs, passes)?,
                (Prototype::Reload, None) => bail!("no graph to build the plan from"),
            };
            typed.optimize()?;
            passes::apply(passes, &mut typed, PassStage::Optimized)?;
            packed.share(&mut typed);
            packed.share_consts(&mut typed)?;
            let plan = typed.into_runnable()?;
            let out = plan.model().output_fact(0)?;
            let shape = out.shape.as_concrete().map(|s| s.to_vec());
            ensure!(
                out.datum_type == f32::datum_type(),
                "logits are {:?}, expected f32",
                out.datum_type
            );
            let n_labels = header.labels.len();
            ensure!(
                shape.as_deref() == Some(&[1, n_labels][..]),
                "logits shape is {:?}, expected [1, {n_labels}] ({} labels)",
                out.shape,
                n_labels
            );
            plan.spawn()
        })?;
        // The input tensors are made by `bucket_values` on the first run.
        self.buckets[b].state = Some(state);
        Ok(())
    }

    /// Replaces the parsed graph by one typed and decluttered with inputs `[1, S]`, the
    /// decluttered-stage passes applied, when sharing is on; when tract cannot type it with a
    /// symbolic `S`, each plan types the parsed graph (kept, or parsed again) with concrete
    /// shapes.
    pub(super) fn share_typed_graph(&mut self) {
        if !self.shared_graph {
            return;
        }
        let mut model = match (self.owned_parsed(), &self.prototype) {
            (Ok(Some(model)), _) => model,
            (Ok(None), Prototype::Parsed(parsed)) => parsed.clone(),
            // already symbolic; or the file cannot be parsed again, which the plan that
            // needed this graph reports
            _ => return,
        };
        let seq = model.symbols.sym("S");
        let n_inputs = self.input_kinds.len();
        let packed = &mut self.packed;
        let typed = guarded("typing the graph", || {
            for ix in 0..n_inputs {
                let shape = tvec!(1.to_dim(), seq.to_dim());
                model.set_input_fact(ix, InferenceFact::dt_shape(i64::datum_type(), shape))?;
            }
            let mut typed = model.into_typed()?.into_decluttered()?;
            passes::apply(DEFAULT_PASSES, &mut typed, PassStage::Decluttered)?;
            // the weights an earlier plan holds are not held twice
            packed.share_consts(&mut typed)?;
            Ok(typed)
        });
        match typed {
            Ok(model) => self.prototype = Prototype::Symbolic { model, seq },
            // Not an error: every plan can still be typed from the parsed graph (kept, or
            // parsed again).
            Err(_) => self.shared_graph = false,
        }
    }

    /// The parsed graph, owned, for a plan or the symbolic graph when the session can parse it
    /// again: the one parsed at open is handed over (tract then frees each weight as soon as it
    /// has packed it, instead of a copy staying here for later plans), later ones are parsed
    /// anew. `None` when the prototype is symbolic or must be cloned (in-memory sessions).
    fn owned_parsed(&mut self) -> Result<Option<InferenceModel>> {
        if self.reload.is_none() {
            return Ok(None);
        }
        match std::mem::replace(&mut self.prototype, Prototype::Reload) {
            Prototype::Parsed(model) => Ok(Some(model)),
            Prototype::Reload => self.reparse().map(Some),
            symbolic => {
                self.prototype = symbolic;
                Ok(None)
            }
        }
    }

    /// A fresh parsed graph from the skeleton and the model file, prepared as at load
    /// (int8 weights dequantized when that path was taken, the logits output selected).
    fn reparse(&self) -> Result<InferenceModel> {
        let Some(r) = &self.reload else {
            return Err(Error::model(
                "parsing ONNX",
                "the session keeps no skeleton to parse",
            ));
        };
        let (name, slot) = &self.output;
        guarded("parsing ONNX", || {
            let mut model = weights::parse(&r.skeleton, &r.weights)?;
            match self.int8_path {
                Int8Path::Dequantized(_) => {
                    dequantize::fold_dequantized_weights(&mut model)?;
                }
                Int8Path::Kernel(_) => {
                    int8_linear::pack_weights(&mut model)?;
                }
                _ => {}
            }
            let id = model.node_by_name(name)?.id;
            model.select_output_outlets(&[OutletId::new(id, *slot)])?;
            Ok(model)
        })
    }

    /// Runs the plan of bucket `b` (built) on the first `n` tokens of the session's encoding and
    /// writes the logits into `out`.
    pub(super) fn run_bucket(&mut self, b: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        let Session {
            buckets,
            enc,
            input_kinds,
            pool,
            ..
        } = self;
        let bucket = &mut buckets[b];
        let s = bucket.seq_len;
        let values = bucket_values(&mut bucket.inputs, input_kinds, s, enc, n)?;
        let Some(state) = bucket.state.as_mut() else {
            return Err(Error::InvalidArgument(format!("bucket {s} not built")));
        };
        let outputs = guarded("running the model", || run_on(pool.as_ref(), state, values))?;
        read_logits(&outputs, out)
    }
}

/// The index of the bucket that holds `tokens` tokens among buckets of `seq_lens` (the last
/// when none is long enough: the text was truncated to it).
pub(super) fn bucket_for(seq_lens: impl ExactSizeIterator<Item = usize>, tokens: usize) -> usize {
    let count = seq_lens.len();
    let mut seq_lens = seq_lens;
    seq_lens
        .position(|s| s >= tokens)
        .unwrap_or(count.saturating_sub(1))
}

/// The first `n` tokens of `enc` written into a bucket's reusable `[1, s]` input tensors (a
/// tensor still shared with a previous run is replaced), as the plan's input values.
pub(super) fn bucket_values(
    inputs: &mut Vec<Arc<Tensor>>,
    kinds: &[InputKind],
    s: usize,
    enc: &SeqEncoding,
    n: usize,
) -> Result<TVec<TValue>> {
    let ids = &enc.input_ids[..n.min(s)];
    let mask = &enc.attention_mask[..n.min(s)];
    if inputs.len() != kinds.len() {
        inputs.clear();
        for _ in kinds {
            inputs.push(Arc::new(
                Tensor::zero::<i64>(&[1, s]).map_err(|e| Error::model("input", e))?,
            ));
        }
    }
    let mut values: TVec<TValue> = tvec!();
    for (arc, kind) in inputs.iter_mut().zip(kinds.iter()) {
        if Arc::get_mut(arc).is_none() {
            *arc = Arc::new(Tensor::zero::<i64>(&[1, s]).map_err(|e| Error::model("input", e))?);
        }
        if let Some(t) = Arc::get_mut(arc) {
            let mut view = t
                .try_as_plain_ram_mut()
                .map_err(|e| Error::model("input", e))?;
            let dst = view
                .as_slice_mut::<i64>()
                .map_err(|e| Error::model("input", e))?;
            let src: &[i64] = match kind {
                InputKind::Ids => ids,
                InputKind::Mask => mask,
                InputKind::TypeIds => &[],
            };
            let k = src.len().min(dst.len());
            dst[..k].copy_from_slice(&src[..k]);
            dst[k..].fill(0);
        }
        values.push(TValue::from_const(arc.clone()));
    }
    Ok(values)
}

/// The logits (the plan's first output) copied into `out`.
pub(super) fn read_logits(outputs: &TVec<TValue>, out: &mut Vec<f32>) -> Result<()> {
    let logits = outputs
        .first()
        .ok_or_else(|| Error::Interface("model produced no output".into()))?
        .try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>())
        .map_err(|e| Error::model("reading logits", e))?;
    out.clear();
    out.extend_from_slice(logits);
    Ok(())
}

/// Runs `state` on `values`: on the caller's thread, or on a worker of `pool` with that pool
/// as the running plan's ([`split::with_pool`]), so that the runtime's ops spread over it, and
/// with the `tract-threads` feature tract's executor set to it too, for tract's matmuls.
pub(super) fn run_on(
    pool: Option<&Arc<rayon::ThreadPool>>,
    state: &mut TypedSimpleState,
    values: TVec<TValue>,
) -> TractResult<TVec<TValue>> {
    match pool {
        None => state.run(values),
        Some(pool) => {
            pool.install(|| split::with_pool(pool, || tract_scope(pool, || state.run(values))))
        }
    }
}

/// `f` with tract's executor set to `pool`.
#[cfg(feature = "tract-threads")]
fn tract_scope<R>(pool: &Arc<rayon::ThreadPool>, f: impl FnOnce() -> R) -> R {
    use tract_onnx::tract_core::tract_linalg::multithread::{multithread_tract_scope, Executor};
    multithread_tract_scope(Executor::MultiThread(pool.clone()), f)
}

/// `f` as it is: without `tract-threads` tract's matmuls run on the calling thread.
#[cfg(not(feature = "tract-threads"))]
fn tract_scope<R>(_pool: &Arc<rayon::ThreadPool>, f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_pad_by_under_8_tokens_or_a_quarter() {
        assert_eq!(bucket_lengths(64), vec![8, 16, 24, 32, 40, 48, 56, 64]);
        assert_eq!(
            bucket_lengths(512),
            vec![
                8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448,
                512
            ]
        );
        assert_eq!(
            bucket_lengths(100),
            vec![8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 100]
        );
        assert_eq!(bucket_lengths(5), vec![5]);
        for max in 2..=1024 {
            let b = bucket_lengths(max);
            assert_eq!(*b.last().expect("non-empty"), max);
            assert!(b.windows(2).all(|w| w[0] < w[1]), "max {max}: {b:?}");
            for tokens in 2..=max {
                let s = *b.iter().find(|&&s| s >= tokens).expect("a bucket fits");
                assert!(
                    s < tokens + 8 || 4 * s < 5 * tokens,
                    "max {max}: {tokens} tokens padded to {s}"
                );
            }
        }
    }
}
