//! Packed weights shared between the plans of different sequence buckets.
//!
//! During `optimize()` tract packs every constant matmul operand into its kernel's panel
//! layout and bakes the result into the `OptMatMul` op, so each bucket's plan used to hold its
//! own copy: five MiniLM buckets held five copies of its 42 MB of packed fp32 weights, and
//! each new bucket faulted in 42 MB of fresh memory. Once a plan is optimized,
//! [`PackedWeights::share`] swaps every baked operand for the identical one an earlier plan
//! already holds and drops the new copy. Operands are compared by format, shape and every
//! packed value ([`same_packed_values`]), so a bucket whose kernel choice packs a weight
//! differently, or a packing this module does not know, keeps its own copy.
//!
//! Large constants that stay constants (an embedding table under its `Gather`) are shared the
//! same way by [`PackedWeights::share_consts`]: a plan built from a fresh parse of the model
//! would otherwise hold its own copy of the table.
use std::collections::HashMap;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::matmul::optimized::{MatMulOperand, OptMatMul, ProtoFusedSpec};
use tract_onnx::tract_core::tract_linalg::mmm::{EagerPackedInput, MMMInputValue};
use tract_onnx::tract_core::tract_linalg::pack::PackedFormat;

use crate::session::ops::int8_linear::{Int8Linear, Int8LinearWeights};

/// Where an operand sits: node name, micro-op index, and whether it is the `b` operand.
type Site = (String, usize, bool);

/// The packed constant operands of the plans built so far, by site (one per distinct packing).
#[derive(Debug, Default)]
pub struct PackedWeights {
    by_site: HashMap<Site, Vec<Box<dyn MMMInputValue>>>,
    consts: HashMap<String, Vec<Arc<Tensor>>>,
    int8: HashMap<String, Vec<Arc<Int8LinearWeights>>>,
}

/// Constants smaller than this are not worth comparing.
const MIN_SHARED_CONST_BYTES: usize = 64 * 1024;

impl PackedWeights {
    /// An empty cache.
    pub fn new() -> PackedWeights {
        PackedWeights::default()
    }

    /// Number of distinct packed operands held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_site.values().map(Vec::len).sum()
    }

    /// Whether no operand is held yet.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_site.is_empty()
    }

    /// Replaces each packed constant operand of `model`'s matmuls by an identical one already
    /// held (the new copy is freed) and remembers the others; returns how many were replaced.
    pub fn share(&mut self, model: &mut TypedModel) -> usize {
        let mut shared = 0;
        for id in 0..model.nodes().len() {
            let node = model.node_mut(id);
            let name = node.name.clone();
            let Some(op) = node.op_as_mut::<OptMatMul>() else {
                continue;
            };
            for (ix, micro_op) in op.micro_ops.iter_mut().enumerate() {
                let ProtoFusedSpec::AddMatMul { a, b, .. } = micro_op else {
                    continue;
                };
                for (is_b, operand) in [(false, a), (true, b)] {
                    let MatMulOperand::Const(value) = operand else {
                        continue;
                    };
                    let held = self.by_site.entry((name.clone(), ix, is_b)).or_default();
                    match held.iter().find(|h| same_packed_values(&***h, &**value)) {
                        Some(same) => {
                            *value = same.clone();
                            shared += 1;
                        }
                        None => held.push(value.clone()),
                    }
                }
            }
        }
        shared
    }

    /// Replaces each large constant of `model`, and the packed weights of each
    /// [`Int8Linear`], by an identical one already held (by node name and value) and remembers
    /// the others; returns how many were replaced.
    pub fn share_consts(&mut self, model: &mut TypedModel) -> TractResult<usize> {
        let mut shared = 0;
        for id in 0..model.nodes().len() {
            let node = model.node_mut(id);
            let name = node.name.clone();
            if let Some(op) = node.op_as_mut::<Int8Linear>() {
                let held = self.int8.entry(name).or_default();
                let weights = op.weights().clone();
                match held.iter().find(|h| **h == weights).cloned() {
                    Some(same) if !Arc::ptr_eq(&same, &weights) => {
                        op.share(same);
                        shared += 1;
                    }
                    Some(_) => {}
                    None => held.push(weights),
                }
                continue;
            }
            // plain host tensors only (an exotic constant carries a fact this would drop)
            let Some(konst) = node.op_as::<Const>().filter(|k| k.exotic_fact().is_none()) else {
                continue;
            };
            let value = konst.val().clone();
            if value.len() * value.datum_type().size_of() < MIN_SHARED_CONST_BYTES {
                continue;
            }
            let held = self.consts.entry(node.name.clone()).or_default();
            let Some(same) = held
                .iter()
                .find(|h| Arc::ptr_eq(h, &value) || ***h == *value)
                .cloned()
            else {
                held.push(value);
                continue;
            };
            if Arc::ptr_eq(&same, &value) {
                continue;
            }
            node.op = Box::new(Const::new(same.clone())?);
            if let Some(fact) = node.outputs.first_mut() {
                if fact.fact.konst.is_some() {
                    fact.fact.konst = Some(same);
                }
            }
            shared += 1;
        }
        Ok(shared)
    }
}

/// Whether two packed operands hold the same values in the same layout.
///
/// A packed buffer is not compared whole: tract's `PackedFormat` lays out `r`-wide panels of
/// `k` rows, then leaves an end-padding record and alignment bytes uninitialized, so only the
/// first `k × r` values of each panel are compared (a partial last panel is zero-filled). Any
/// other packed value type compares as different.
pub fn same_packed_values(a: &dyn MMMInputValue, b: &dyn MMMInputValue) -> bool {
    let (Some(a), Some(b)) = (
        a.downcast_ref::<EagerPackedInput>(),
        b.downcast_ref::<EagerPackedInput>(),
    ) else {
        return false;
    };
    let Some(format) = a.fact.format.downcast_ref::<PackedFormat>() else {
        return false;
    };
    if a.fact != b.fact || a.panel_bytes != b.panel_bytes || a.mn != b.mn {
        return false;
    }
    let used = a.fact.k * format.r * format.dt.size_of();
    let (a_bytes, b_bytes) = (a.packed.as_bytes(), b.packed.as_bytes());
    let panels = a.mn.div_ceil(format.r);
    if used > a.panel_bytes
        || a_bytes.len() != b_bytes.len()
        || a_bytes.len() < panels * a.panel_bytes
    {
        return false;
    }
    (0..panels).all(|p| {
        let start = p * a.panel_bytes;
        a_bytes[start..start + used] == b_bytes[start..start + used]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;

    fn weight(k: usize, n: usize, seed: usize) -> TractResult<Tensor> {
        let v: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7919 + seed) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        Tensor::from_shape(&[k, n], &v)
    }

    /// A copy of `packed` with `edit` applied to its bytes (panel size and format unchanged).
    fn edited(
        packed: &dyn MMMInputValue,
        edit: impl Fn(&mut [u8], &EagerPackedInput),
    ) -> Box<dyn MMMInputValue> {
        let mut copy = packed
            .downcast_ref::<EagerPackedInput>()
            .expect("eager packing")
            .clone();
        let mut blob = (*copy.packed).clone();
        edit(blob.as_bytes_mut(), &copy);
        copy.packed = Arc::new(blob);
        Box::new(copy)
    }

    #[test]
    fn packed_values_compare_equal_whatever_the_padding_holds() -> TractResult<()> {
        // 100 columns in 8-wide panels: a partial last panel, plus an end-padding record.
        let format = PackedFormat::new(f32::datum_type(), 8, 32);
        let w = weight(64, 100, 1)?;
        let a = format.pack_tensor(&w, 0, 1)?;
        let b = format.pack_tensor(&w, 0, 1)?;
        assert!(same_packed_values(&*a, &*b));

        let used = 64 * 8 * 4;
        let garbage_in_padding = edited(&*b, |bytes, p| {
            assert!(p.panel_bytes > used, "the format pads each panel");
            for panel in bytes.chunks_mut(p.panel_bytes) {
                panel[used..].fill(0xAB);
            }
        });
        assert!(same_packed_values(&*a, &*garbage_in_padding));
        let one_value_changed = edited(&*b, |bytes, p| bytes[3 * p.panel_bytes + 17] ^= 1);
        assert!(!same_packed_values(&*a, &*one_value_changed));

        let other = format.pack_tensor(&weight(64, 100, 2)?, 0, 1)?;
        assert!(!same_packed_values(&*a, &*other), "different values");
        let wider = PackedFormat::new(f32::datum_type(), 16, 32).pack_tensor(&w, 0, 1)?;
        assert!(!same_packed_values(&*a, &*wider), "different panel width");
        Ok(())
    }

    /// `x [rows, 64] · W [64, 48]` with a constant W, optimized for `rows`.
    fn optimized_matmul(rows: usize, w: &Tensor) -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([rows, 64]))?;
        let w = model.add_const("w", w.clone())?;
        let y = model.wire_node(
            "matmul",
            EinSum::new("mk,kn->mn".parse()?, f32::datum_type()),
            &[x, w],
        )?;
        model.select_output_outlets(&y)?;
        model.into_optimized()
    }

    fn run(model: TypedModel, rows: usize) -> TractResult<Tensor> {
        let x: Vec<f32> = (0..rows * 64).map(|i| (i % 13) as f32 * 0.1).collect();
        let out = model
            .into_runnable()?
            .run(tvec!(Tensor::from_shape(&[rows, 64], &x)?.into()))?;
        Ok(out[0].clone().into_tensor())
    }

    #[test]
    fn second_plan_reuses_the_first_plans_packed_weight_and_gives_the_same_result(
    ) -> TractResult<()> {
        let w = weight(64, 48, 3)?;
        let mut weights = PackedWeights::new();
        let mut first = optimized_matmul(16, &w)?;
        assert_eq!(weights.share(&mut first), 0, "nothing held yet");
        assert!(!weights.is_empty(), "the packed weight is remembered");
        let held = weights.len();

        let mut second = optimized_matmul(16, &w)?;
        let reference = run(second.clone(), 16)?;
        assert_eq!(weights.share(&mut second), held, "every operand shared");
        assert_eq!(weights.len(), held, "no new copy held");
        assert_eq!(run(second, 16)?, reference);

        // Another weight under the same node name is not mistaken for the held one.
        let mut changed = optimized_matmul(16, &weight(64, 48, 4)?)?;
        let reference = run(changed.clone(), 16)?;
        assert_eq!(weights.share(&mut changed), 0);
        assert_eq!(run(changed, 16)?, reference);
        Ok(())
    }
}
