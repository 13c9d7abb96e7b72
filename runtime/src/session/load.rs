//! Opening a session: the file mapped and checked, the ONNX skeleton and its weights read
//! (checksum verified before anything else sees them), the graph rewrites applied, tract's
//! parse, the int8 weights packed or dequantized, and the graph's inputs and output found.
//!
//! A session opened from a file holds no copy of the weights of its own: it keeps a skeleton of
//! the ONNX graph whose large initializers tract reads from the file ([`super::weights`]), gives
//! the graph parsed at open to the first plan (tract frees each weight once packed), and parses
//! the skeleton again when a second plan is needed (MiniLM fp32 bundle, one text: peak RSS
//! 193 → 134 MiB).
use std::path::Path;

use prost::Message;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::guard::guarded;
use super::int8_mode::Int8Path;
use super::ops::{self, int8_linear};
use super::plan::{bucket_lengths, Bucket, InputKind, Prototype, Reload};
use super::rewrite;
use super::weights::{self, checksum, dequantize, shared::PackedWeights};
use super::{Session, SessionOptions};
use crate::bundle::{Bundle, BundleHeader};
use crate::error::{Error, Result};
use crate::model_source::{ModelSource, ModelView};

/// The large initializers a skeleton left in the model file, and their reader (holding them
/// read and verified).
struct External {
    tensors: Vec<weights::ExternalTensor>,
    weights: weights::FileWeights,
}

impl Session {
    pub(super) fn load_file(path: &Path, options: SessionOptions) -> Result<Session> {
        // The file is mapped, not read, while it is validated and walked (`FileBytes`).
        let view = ModelSource::open_view(path)?;
        view.header.validate()?;
        // The model bytes are the tail of the file (a bundle's payload ends with them; an
        // .onnx file is nothing else). An absolute path keeps later reads independent of the
        // working directory; tract resolves external data against a UTF-8 directory name.
        let offset = view.file_size.checked_sub(view.model().len() as u64);
        let model_file = std::fs::canonicalize(&view.model_file).unwrap_or(view.model_file.clone());
        let utf8_dir = model_file.parent().is_none_or(|d| d.to_str().is_some());
        let location = model_file.file_name().and_then(|n| n.to_str());
        let skeleton = match (offset, location) {
            (Some(offset), Some(location))
                if utf8_dir && options.file_weights_min_bytes < usize::MAX =>
            {
                weights::skeleton(
                    view.model(),
                    offset,
                    location,
                    options.file_weights_min_bytes,
                )
                .ok()
            }
            _ => None,
        };
        // The bundle checksum: the bytes between the weights hashed now, the weights as they
        // are read ([`weights::PayloadChecksum`]); without a skeleton, hashed whole now.
        let payload_check = match (&skeleton, view.pending_checksum) {
            (Some(sk), Some(expected)) => weights::PayloadChecksum::of_gaps(
                &view.bytes,
                crate::bundle::PREAMBLE_LEN as u64,
                &sk.tensors,
                expected,
            ),
            _ => None,
        };
        if payload_check.is_none() {
            view.verify_checksum()?;
        }
        match skeleton {
            Some(skeleton) => {
                // Unmap before tract loads the weights: mapped pages count as resident.
                let ModelView {
                    header,
                    bytes,
                    pending_checksum,
                    ..
                } = view;
                drop(bytes);
                let weights =
                    Session::verified_weights(&skeleton, &model_file, payload_check, &options)
                        .map_err(|e| {
                            // A corrupt file may fail before its checksum is complete: name the
                            // checksum. (Once verified, later errors are the model's own.)
                            let whole = pending_checksum
                                .map(|expected| checksum::whole_payload(&model_file, expected));
                            match whole {
                                Some(Err(checksum)) => checksum,
                                _ => e,
                            }
                        })?;
                let external = External {
                    tensors: skeleton.tensors,
                    weights,
                };
                Session::from_proto(header, skeleton.model, Some(external), options)
            }
            // Not a protobuf this walker follows: decode it whole (the error, if any, is the
            // decoder's).
            None => {
                let model = view.model().to_vec();
                let ModelView { header, bytes, .. } = view;
                drop(bytes);
                Session::load_bundle(Bundle { header, model }, options)
            }
        }
    }

    /// Opens the weights of `skeleton` in `file` and reads them (the word embedding mapped),
    /// and checks the bundle checksum `payload_check` over everything read: a corrupt bundle is
    /// refused before its header, graph or weights are used.
    fn verified_weights(
        skeleton: &weights::Skeleton,
        file: &Path,
        payload_check: Option<weights::PayloadChecksum>,
        options: &SessionOptions,
    ) -> Result<weights::FileWeights> {
        let weights = weights::FileWeights::open(file, skeleton)
            .map_err(|e| Error::io(file, e))?
            .with_mapped_embedding(options.map_embedding, payload_check.is_some());
        guarded("reading weights", || weights.preload(skeleton))?;
        if let Some(check) = payload_check {
            let (expected, actual) = check.check(&weights).map_err(|e| Error::io(file, e))?;
            crate::model_source::checksum_result(file, expected, actual)?;
        }
        Ok(weights)
    }

    /// [`Session::from_bundle`].
    pub(super) fn load_bundle(bundle: Bundle, options: SessionOptions) -> Result<Session> {
        let Bundle {
            header,
            model: bytes,
        } = bundle;
        header.validate()?;
        // Decoded straight from the bundle's bytes (tract's `proto_model_for_read` would first
        // copy them into a buffer of its own: one more model-sized block at the peak).
        let proto = guarded("parsing ONNX", || {
            Ok(tract_onnx::pb::ModelProto::decode(&bytes[..])?)
        })?;
        drop(bytes);
        Session::from_proto(header, proto, None, options)
    }

    /// Builds a session from a decoded model, with the file its external weights are read
    /// from when it is a [`weights::Skeleton`].
    fn from_proto(
        header: BundleHeader,
        mut proto: tract_onnx::pb::ModelProto,
        external: Option<External>,
        options: SessionOptions,
    ) -> Result<Session> {
        let tokenizer = header.tokenizer()?;
        let pool = crate::threads::pool(options.threads)?;
        if options.fuse_layer_norm {
            rewrite::layer_norm::fuse_layer_norms(&mut proto);
        }
        if options.fuse_attention {
            rewrite::attention::fuse_attention(&mut proto);
        }
        let int8_path = rewrite::int8::apply(&mut proto, options.int8);
        let reload = external.map(|External { tensors, weights }| Reload {
            skeleton: weights::Skeleton {
                model: proto.clone(),
                tensors,
            },
            weights,
        });
        let mut model = match &reload {
            Some(r) => guarded("parsing ONNX", || weights::parse(&r.skeleton, &r.weights))?,
            None => guarded("parsing ONNX", || ops::onnx().model_for_proto_model(&proto))?,
        };
        drop(proto);
        match int8_path {
            Int8Path::Dequantized(_) => {
                guarded("dequantizing int8 weights", || {
                    dequantize::fold_dequantized_weights(&mut model)
                })?;
            }
            Int8Path::Kernel(_) => {
                guarded("packing int8 weights", || {
                    int8_linear::pack_weights(&mut model)
                })?;
            }
            _ => {}
        }

        // Inputs: map each graph input to the tensor we feed it.
        let mut input_kinds = Vec::new();
        for outlet in model
            .input_outlets()
            .map_err(|e| Error::model("inputs", e))?
        {
            let name = &model.node(outlet.node).name;
            let kind = match name.as_str() {
                "input_ids" => InputKind::Ids,
                "attention_mask" => InputKind::Mask,
                "token_type_ids" => InputKind::TypeIds,
                other => {
                    return Err(Error::Interface(format!(
                        "unsupported graph input {other:?} (expected input_ids, attention_mask, token_type_ids)"
                    )))
                }
            };
            input_kinds.push(kind);
        }
        if !input_kinds.contains(&InputKind::Ids) {
            return Err(Error::Interface("graph has no \"input_ids\" input".into()));
        }

        // Output: the one named like the header says, or the only one.
        let outputs = model
            .output_outlets()
            .map_err(|e| Error::model("outputs", e))?
            .to_vec();
        let named = outputs.iter().copied().find(|o| {
            model.outlet_label(*o) == Some(header.output_name.as_str())
                || model.node(o.node).name == header.output_name
        });
        let output = match (named, outputs.as_slice()) {
            (Some(o), _) => o,
            (None, [only]) => *only,
            (None, _) => {
                return Err(Error::Interface(format!(
                    "graph has {} outputs and none is named {:?}",
                    outputs.len(),
                    header.output_name
                )))
            }
        };
        model
            .select_output_outlets(&[output])
            .map_err(|e| Error::model("selecting output", e))?;
        let output_node = model.node(output.node).name.clone();

        let embedding_rows = word_embedding_rows(&model);
        if let Some((tensor, rows)) = &embedding_rows {
            let vocab = tokenizer.vocab_size() as u64;
            if *rows < vocab {
                return Err(Error::VocabMismatch {
                    tensor: tensor.clone(),
                    onnx: *rows,
                    tokenizer: vocab,
                });
            }
        }

        let max_len = options
            .max_len
            .map_or(header.max_len as usize, |m| m.min(header.max_len as usize))
            .max(2);
        let buckets = bucket_lengths(max_len)
            .into_iter()
            .map(|seq_len| Bucket {
                seq_len,
                state: None,
                inputs: Vec::new(),
            })
            .collect();
        let shared_graph = options.shared_graph;
        let mut session = Session {
            header,
            tokenizer,
            prototype: Prototype::Parsed(model),
            shared_graph,
            input_kinds,
            max_len,
            buckets,
            enc: Box::default(),
            packed: PackedWeights::new(),
            embedding_rows,
            int8_path,
            reload,
            output: (output_node, output.slot),
            pool,
        };
        if options.eager {
            if session.buckets.len() > 1 {
                session.share_typed_graph();
            }
            for b in 0..session.buckets.len() {
                session.prepare_bucket(b)?;
            }
        }
        Ok(session)
    }
}

/// Finds the word-embedding `Gather` fed by `input_ids` and returns its weight's name and rows.
pub(crate) fn word_embedding_rows(model: &InferenceModel) -> Option<(String, u64)> {
    let ids_node = model
        .input_outlets()
        .ok()?
        .iter()
        .find(|o| model.node(o.node).name == "input_ids")?
        .node;
    // Walk a few steps downstream (through Cast/Reshape/Unsqueeze) to the first Gather.
    let mut frontier = vec![ids_node];
    for _ in 0..4 {
        let mut next = Vec::new();
        for id in frontier {
            for out in &model.node(id).outputs {
                for succ in &out.successors {
                    let node = model.node(succ.node);
                    let name = node.op().name();
                    let gather = name == "Gather" || name == ops::MAPPED_GATHER;
                    if gather && succ.slot == 1 {
                        let w = *node.inputs.first()?;
                        let fact = model.outlet_fact(w).ok()?;
                        let rows = fact
                            .value
                            .concretize()
                            .map(|t| t.shape().first().copied().unwrap_or(0) as u64)?;
                        return Some((model.node(w.node).name.clone(), rows));
                    }
                    next.push(succ.node);
                }
            }
        }
        frontier = next;
    }
    None
}
