//! Fused fp32 ops: each ONNX `LayerNormalization` over the last axis (and the residual `Add`
//! feeding it, when nothing else reads that sum) becomes one `EdgebertLayerNorm` node run by
//! [`edgebert_kernels::layer_norm`], instead of the ten or so ops tract expands it into.
//!
//! Like the int8 rewrite ([`super::int8`]) this works on the ONNX protobuf before tract parses
//! it and moves no weight data; a node that does not match exactly is left as it is. Results
//! agree with tract's expansion to f32 rounding (mean and variance are accumulated in f64), not
//! bit for bit.
use std::collections::{HashMap, HashSet};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::math::add;
use tract_onnx::tract_hir::internal::{
    expand, Expansion, InferenceOp, InferenceResult, Solver, TensorProxy,
};
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

use edgebert_kernels::layer_norm::layer_norm;

/// `op_type` of the fused LayerNorm node.
pub const LAYER_NORM: &str = "EdgebertLayerNorm";

/// Rewrites every matching `LayerNormalization` of the main graph; returns how many.
pub fn fuse_layer_norms(model: &mut ModelProto) -> usize {
    let Some(g) = model.graph.as_mut() else {
        return 0;
    };
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.as_str(), i);
        }
        for x in &n.input {
            *readers.entry(x.as_str()).or_default() += 1;
        }
    }
    let graph_outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let vector_of = |name: &str| {
        inits.get(name).and_then(|t| {
            (t.data_type == DataType::Float as i32 && t.dims.len() == 1).then_some(t.dims[0])
        })
    };

    let mut fused = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        let standard = n.domain.is_empty() || n.domain == "ai.onnx";
        if n.op_type != "LayerNormalization" || !standard || n.input.len() != 3 {
            continue;
        }
        if n.output.len() != 1 {
            continue;
        }
        let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
        let axis = attr("axis").map_or(-1, |a| a.i);
        let stash = attr("stash_type").map_or(1, |a| a.i);
        let epsilon = attr("epsilon").map_or(1e-5, |a| a.f);
        if axis != -1 || stash != 1 || !epsilon.is_finite() || epsilon < 0.0 {
            continue;
        }
        let (Some(h), Some(hb)) = (vector_of(&n.input[1]), vector_of(&n.input[2])) else {
            continue;
        };
        if h != hb || h <= 0 {
            continue;
        }
        // A residual `Add` of two activations whose sum only this node reads.
        let x = &n.input[0];
        let residual = producer.get(x.as_str()).copied().filter(|&a| {
            let add = &g.node[a];
            add.op_type == "Add"
                && add.input.len() == 2
                && add.input.iter().all(|v| !inits.contains_key(v.as_str()))
                && readers.get(x.as_str()) == Some(&1)
                && !graph_outputs.contains(x.as_str())
        });
        fused.push((i, residual, epsilon));
    }
    let count = fused.len();
    let mut remove = HashSet::new();
    for (i, residual, epsilon) in fused {
        let n = g.node[i].clone();
        let mut input = match residual {
            Some(a) => {
                remove.insert(a);
                g.node[a].input.clone()
            }
            None => vec![n.input[0].clone()],
        };
        input.extend(n.input[1..].iter().cloned());
        g.node[i] = NodeProto {
            input,
            output: n.output,
            name: format!("{}/fused", n.name),
            op_type: LAYER_NORM.into(),
            domain: super::int8_linear::DOMAIN.into(),
            attribute: vec![
                AttributeProto {
                    name: "epsilon".into(),
                    r#type: AttributeType::Float as i32,
                    f: epsilon,
                    ..Default::default()
                },
                AttributeProto {
                    name: "residual".into(),
                    r#type: AttributeType::Int as i32,
                    i: i64::from(residual.is_some()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
    }
    let mut k = 0;
    g.node.retain(|_| {
        k += 1;
        !remove.contains(&(k - 1))
    });
    count
}

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
        if inputs.len() != want || outputs.len() != 1 {
            bail!(
                "{LAYER_NORM} takes {want} inputs and gives 1 output, got {} and {}",
                inputs.len(),
                outputs.len()
            );
        }
        for i in inputs {
            s.equals(&i.datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
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
        let same = super::same_bits;
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
            let done = layer_norm(
                xs,
                rs,
                &self.gamma,
                &self.beta,
                self.epsilon,
                yv.as_slice_mut::<f32>()?,
            );
            ensure!(done, "LayerNorm: inconsistent sizes");
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
