//! tract's parse of a skeleton, its weights read from the file into their tensors.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{anyhow, bail, ensure};

use crate::session::ops::mapped_gather::MappedMatrix;

use super::file::FileWeights;
use super::skeleton::Skeleton;

/// Parses `skeleton` with tract, its external initializers read through `weights`.
///
/// Each external initializer whose type tract reads as raw bytes is first turned into a typed
/// graph input, and after parsing that input becomes a constant whose tensor the file's bytes
/// were read straight into (`FileWeights::read_tensor`): tract's own route for external data
/// reads into a buffer and copies it into a tensor, one more write of every weight into fresh
/// memory (MiniLM fp32: 91 MB). Any other external initializer takes tract's route.
pub fn parse(skeleton: &Skeleton, weights: &FileWeights) -> TractResult<InferenceModel> {
    let dir = match weights.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = dir
        .to_str()
        .ok_or_else(|| anyhow!("{}: directory name is not UTF-8", dir.display()))?;
    let (proto, embedding, injected) = weights.weights_as_inputs(skeleton);
    let mut onnx = crate::session::ops::onnx();
    onnx.provider = std::sync::Arc::new(weights.clone());
    let parsed = onnx.parse(&proto, Some(dir))?;
    ensure!(
        parsed.unresolved_inputs.is_empty(),
        "could not resolve inputs at top level: {:?}",
        parsed.unresolved_inputs
    );
    let mut model = parsed.model;
    for input in injected {
        let Some(outlet) = model
            .inputs
            .iter()
            .copied()
            .find(|o| model.node(o.node).name == input.name)
        else {
            bail!("weights {:?}: no graph input after parsing", input.name);
        };
        if let Some(e) = embedding.as_ref().filter(|e| e.weights == input.name) {
            map_embedding(&mut model, outlet, e, &input, weights)?;
            continue;
        }
        let preloaded = weights
            .take_preloaded(input.tensor)
            .filter(|t| t.datum_type() == input.datum_type && t.shape() == &input.shape[..]);
        let tensor = preloaded
            .map_or_else(
                || weights.read_tensor(input.tensor, input.datum_type, &input.shape),
                Ok,
            )
            .map_err(|e| anyhow!("{}: weights {:?}: {e}", weights.file.display(), input.name))?
            .into_arc_tensor();
        let fact = TypedFact::try_from(tensor.clone())?;
        let node = model.node_mut(outlet.node);
        node.op = Box::new(tract_onnx::tract_core::ops::konst::Const::new(tensor)?);
        node.outputs[0].fact = fact.into();
        model.inputs.retain(|o| *o != outlet);
    }
    // Weights preloaded for a graph the rewrites changed are not kept.
    if let Ok(mut preloaded) = weights.preloaded.lock() {
        preloaded.clear();
    }
    Ok(model)
}

/// The word-embedding lookup [`parse`] maps: a `Gather` along axis 0 of a 2-D external
/// initializer that nothing else reads.
struct GatheredEmbedding {
    /// tract's name for the `Gather` node.
    gather: String,
    /// The initializer.
    weights: String,
}

/// The `Gather` of `proto` that reads rows of a 2-D external initializer of `weights`, fed by
/// `input_ids`, when there is exactly one such and its matrix is read by it alone.
fn gathered_embedding(
    proto: &tract_onnx::pb::ModelProto,
    weights: &FileWeights,
) -> Option<GatheredEmbedding> {
    let graph = proto.graph.as_ref()?;
    let mut found = graph.node.iter().filter(|n| {
        n.op_type == "Gather"
            && n.input.len() == 2
            && n.input[1] == "input_ids"
            && n.attribute.iter().all(|a| a.name != "axis" || a.i == 0)
            && graph
                .initializer
                .iter()
                .find(|t| t.name == n.input[0])
                .and_then(|t| injectable(t, weights))
                .is_some_and(|t| t.shape.len() == 2)
    });
    let node = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let weights_name = &node.input[0];
    let readers = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .filter(|i| *i == weights_name)
        .count();
    if readers != 1 || graph.output.iter().any(|o| &o.name == weights_name) {
        return None;
    }
    // tract names a node by its name, else its first output.
    let gather = if node.name.is_empty() {
        node.output.first()?.clone()
    } else {
        node.name.clone()
    };
    Some(GatheredEmbedding {
        gather,
        weights: weights_name.clone(),
    })
}

/// The embedding matrix `input` mapped from the file (once per [`FileWeights`], shared by
/// later parses), its checksum started on another thread when one will be asked for.
fn mapped_matrix(input: &InjectedWeights, weights: &FileWeights) -> TractResult<Arc<MappedMatrix>> {
    let [rows, cols] = input.shape[..] else {
        bail!("embedding {:?} is not 2-D", input.name);
    };
    match weights.mapped.get() {
        Some((i, m)) if *i == input.tensor => Ok(m.clone()),
        Some(_) => bail!("a second mapped embedding"),
        None => {
            let t = &weights.tensors[input.tensor];
            let m = MappedMatrix::map(
                &weights.handle,
                t.offset,
                t.len,
                input.datum_type,
                rows,
                cols,
            )
            .map_err(|e| anyhow!("{}: mapping {:?}: {e}", weights.file.display(), input.name))?;
            weights.hash_in_background(input.tensor);
            Ok(weights
                .mapped
                .get_or_init(|| (input.tensor, Arc::new(m)))
                .1
                .clone())
        }
    }
}

/// Replaces the source `outlet` (the embedding matrix made a graph input) by a placeholder
/// constant of its rows and no columns, and the `Gather` reading it by the lookup over the
/// mapped matrix ([`crate::session::ops::mapped_gather`]).
fn map_embedding(
    model: &mut InferenceModel,
    outlet: OutletId,
    embedding: &GatheredEmbedding,
    input: &InjectedWeights,
    weights: &FileWeights,
) -> TractResult<()> {
    use crate::session::ops::mapped_gather::MappedGatherNode;
    let mapped = mapped_matrix(input, weights)?;
    let gather = model.node_id_by_name(&embedding.gather)?;
    let placeholder = Tensor::zero_dt(input.datum_type, &[mapped.rows(), 0])?.into_arc_tensor();
    let fact = TypedFact::try_from(placeholder.clone())?;
    let node = model.node_mut(outlet.node);
    node.op = Box::new(tract_onnx::tract_core::ops::konst::Const::new(placeholder)?);
    node.outputs[0].fact = fact.into();
    model.inputs.retain(|o| *o != outlet);
    model.node_mut(gather).op = tract_onnx::tract_hir::internal::expand(MappedGatherNode(mapped));
    Ok(())
}

/// An external initializer turned into a graph input by [`external_initializers_as_inputs`].
struct InjectedWeights {
    name: String,
    /// Index in [`FileWeights`]' tensors.
    tensor: usize,
    datum_type: DatumType,
    shape: Vec<usize>,
}

/// Moves every external initializer of `proto` that [`FileWeights::read_tensor`] can read into
/// the graph's inputs, typed with its element type and shape.
fn external_initializers_as_inputs(
    proto: &mut tract_onnx::pb::ModelProto,
    weights: &FileWeights,
) -> Vec<InjectedWeights> {
    use tract_onnx::pb::{
        tensor_shape_proto, type_proto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let Some(graph) = proto.graph.as_mut() else {
        return Vec::new();
    };
    let mut injected = Vec::new();
    let mut inputs = Vec::new();
    graph.initializer.retain(|t| {
        let Some(found) = injectable(t, weights) else {
            return true;
        };
        inputs.push(ValueInfoProto {
            name: t.name.clone(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: t.data_type,
                    shape: Some(TensorShapeProto {
                        dim: t
                            .dims
                            .iter()
                            .map(|&d| tensor_shape_proto::Dimension {
                                value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        });
        injected.push(found);
        false
    });
    graph.input.extend(inputs);
    injected
}

/// The external initializer `t` as [`InjectedWeights`], when it is one of `weights`' tensors,
/// of a plain numeric type whose size matches its shape.
fn injectable(t: &tract_onnx::pb::TensorProto, weights: &FileWeights) -> Option<InjectedWeights> {
    if t.data_location != Some(DataLocation::External as i32) || !t.raw_data.is_empty() {
        return None;
    }
    let entry = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .and_then(|e| e.value.parse::<u64>().ok())
    };
    let tensor = *weights.index.get(&(entry("offset")?, entry("length")?))?;
    let data_type = tract_onnx::pb::tensor_proto::DataType::try_from(t.data_type).ok()?;
    let datum_type = DatumType::try_from(data_type).ok()?;
    if !(datum_type.is_float() || datum_type.is_integer()) {
        return None;
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()?;
    let bytes = shape
        .iter()
        .try_fold(datum_type.size_of(), |acc, &d| acc.checked_mul(d))?;
    (bytes as u64 == weights.tensors[tensor].len).then(|| InjectedWeights {
        name: t.name.clone(),
        tensor,
        datum_type,
        shape,
    })
}

impl FileWeights {
    /// Reads every weight of `skeleton` that [`parse`] will inject into tensors kept for the
    /// next parse, and maps the word embedding (hashed on another thread meanwhile when asked
    /// for, [`FileWeights::with_mapped_embedding`]): afterwards every byte of the weights has
    /// been hashed, so [`PayloadChecksum::check`] can vouch for the file before anything parses
    /// it. Which tensor is the embedding is decided here on the skeleton as given; a parse that
    /// decides otherwise (after graph rewrites) still finds every weight, read or readable.
    pub fn preload(&self, skeleton: &Skeleton) -> TractResult<()> {
        let (_, embedding, injected) = self.weights_as_inputs(skeleton);
        let mut read = HashMap::new();
        for input in &injected {
            if embedding.as_ref().is_some_and(|e| e.weights == input.name) {
                mapped_matrix(input, self)?;
                continue;
            }
            let tensor = self
                .read_tensor(input.tensor, input.datum_type, &input.shape)
                .map_err(|e| anyhow!("{}: weights {:?}: {e}", self.file.display(), input.name))?;
            read.insert(input.tensor, tensor);
        }
        if let Ok(mut preloaded) = self.preloaded.lock() {
            *preloaded = read;
        }
        Ok(())
    }

    /// `skeleton`'s model with its external weights made graph inputs
    /// ([`external_initializers_as_inputs`]), the word-embedding lookup to map (when mapping is
    /// on) and the weights made inputs.
    fn weights_as_inputs(
        &self,
        skeleton: &Skeleton,
    ) -> (
        tract_onnx::pb::ModelProto,
        Option<GatheredEmbedding>,
        Vec<InjectedWeights>,
    ) {
        let mut proto = skeleton.model.clone();
        let embedding = if self.map_embedding {
            gathered_embedding(&proto, self)
        } else {
            None
        };
        let injected = external_initializers_as_inputs(&mut proto, self);
        (proto, embedding, injected)
    }
}
