//! Inference with tract: one ONNX parse, one optimized plan per sequence-length bucket,
//! one reused `SimpleState` per bucket, softmax over the logits.
//!
//! Buckets are powers of two from 8 up to `max_len` (plus `max_len` itself), so padding at
//! most doubles the work. A plan is built on first use (lazy, the default) or all at load
//! ([`SessionOptions::eager`]). The first plan types the parsed graph with its bucket's
//! length, the fastest way to a first result; once a second plan is needed, the graph is typed
//! and decluttered once with a symbolic length `S` and every further plan only binds `S` and
//! optimizes (≈ 6 ms of typing per plan instead of ≈ 40 for MiniLM). Packed weights and large
//! constants are shared between plans ([`shared_weights`]). Graph rewrites go in [`passes`],
//! not here.
//!
//! A session opened from a file holds no copy of the weights of its own: it keeps a skeleton of
//! the ONNX graph whose large initializers tract reads from the file ([`weights`]), gives the
//! graph parsed at open to the first plan (tract frees each weight once packed), and parses the
//! skeleton again when a second plan is needed (MiniLM fp32 bundle, one text: peak RSS 193 →
//! 134 MiB).
pub mod int8;
/// edgebert's int8 Linear kernel (`edgebert-kernels`).
pub use edgebert_kernels::int8_gemm;
pub mod fused;
pub mod fused_attention;
pub mod gelu;
pub mod int8_linear;
pub mod mapped_embedding;
pub mod masked_quantize;
pub mod passes;
pub mod shared_weights;
pub mod weights;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anyhow::ensure;
use prost::Message;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::bundle::{Bundle, BundleHeader};
use crate::error::{Error, Result};
use crate::model_source::{ModelSource, ModelView};
use crate::tokenizer::{SeqEncoding, Tokenizer};
pub use int8::{Int8Mode, Int8Path};
use passes::{ModelPass, PassStage, DEFAULT_PASSES};
use shared_weights::PackedWeights;

/// Smallest sequence bucket.
pub const MIN_BUCKET: usize = 8;

/// How a session is built.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Build every bucket's plan at load instead of on first use.
    pub eager: bool,
    /// Cap on the sequence length (defaults to the bundle's `max_len`).
    pub max_len: Option<usize>,
    /// Graph passes applied to each bucket (defaults to [`DEFAULT_PASSES`]).
    pub passes: Vec<ModelPass>,
    /// How an int8 model runs (integer kernels, or weights dequantized to fp32 at load).
    pub int8: Int8Mode,
    /// Once more than one plan is needed (eager, or a second bucket), type and declutter the
    /// graph once with a symbolic sequence length and derive every further plan from it (the
    /// default). `false` types the graph again for each bucket; a graph tract cannot type
    /// symbolically falls back to that by itself.
    pub shared_graph: bool,
    /// Sessions opened from a file ([`Session::open_with`]) read every initializer of at least
    /// this many bytes from the file when a plan needs it, instead of keeping it in memory
    /// ([`weights`]); `usize::MAX` keeps the whole model in memory as an in-memory bundle does.
    pub file_weights_min_bytes: usize,
    /// Run each `LayerNormalization` (with the residual `Add` before it) as one fused op
    /// ([`fused`]); `false` leaves them to tract.
    pub fuse_layer_norm: bool,
    /// Run each multi-head attention block (head split, `Q·Kᵀ`, mask, softmax, `·V`, head
    /// merge) as one fused op ([`fused_attention`]). Default: on where its AVX2+FMA kernel runs
    /// (x86-64), where it is faster than tract's op sequence; elsewhere tract's ops.
    pub fuse_attention: bool,
    /// Sessions opened from a file map the word-embedding matrix and read only the rows a text
    /// uses ([`mapped_embedding`]; the default), instead of loading it like any weight.
    pub map_embedding: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            eager: false,
            max_len: None,
            passes: DEFAULT_PASSES.to_vec(),
            int8: Int8Mode::default(),
            shared_graph: true,
            file_weights_min_bytes: weights::MIN_EXTERNAL_BYTES,
            fuse_layer_norm: true,
            fuse_attention: edgebert_kernels::attention::fma_available(),
            map_embedding: true,
        }
    }
}

/// The result of classifying one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classification {
    /// Index of the most probable label.
    pub label_id: usize,
    /// Its name.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// Softmax probabilities in label-id order.
    pub probs: Vec<f32>,
    /// Raw logits in label-id order.
    pub logits: Vec<f32>,
    /// Number of tokens fed to the model (with `[CLS]`/`[SEP]`, without padding).
    pub tokens: usize,
    /// Whether the text was cut to `max_len` tokens.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    Ids,
    Mask,
    TypeIds,
}

#[derive(Debug)]
struct Bucket {
    seq_len: usize,
    state: Option<TypedSimpleState>,
    /// One reusable `[1, seq_len]` i64 tensor per graph input.
    inputs: Vec<Arc<Tensor>>,
}

/// The graph every bucket's plan starts from.
#[derive(Debug)]
enum Prototype {
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

/// A loaded model ready to classify text.
#[derive(Debug)]
pub struct Session {
    header: BundleHeader,
    tokenizer: Tokenizer,
    prototype: Prototype,
    shared_graph: bool,
    input_kinds: Vec<InputKind>,
    max_len: usize,
    buckets: Vec<Bucket>,
    passes: Vec<ModelPass>,
    enc: Box<SeqEncoding>,
    packed: PackedWeights,
    embedding_rows: Option<(String, u64)>,
    int8_path: Int8Path,
    /// Where a fresh copy of the parsed graph comes from (sessions opened from a file).
    reload: Option<Reload>,
    /// The logits outlet: node name and slot in the parsed graph.
    output: (String, usize),
}

/// The large initializers a skeleton left in the model file, and their reader (holding them
/// read and verified).
struct External {
    tensors: Vec<weights::ExternalTensor>,
    weights: weights::FileWeights,
}

/// Hashes the payload of the bundle `file` whole: `Ok` when it has the `expected` checksum,
/// else the checksum error (or the error reading it).
fn payload_crc_of(file: &Path, expected: u32) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    f.seek(SeekFrom::Start(crate::bundle::PREAMBLE_LEN as u64))
        .map_err(|e| Error::io(file, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(file, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    crate::model_source::checksum_result(file, expected, hasher.finalize())
}

/// The ONNX skeleton and the file its weights are read from: a fresh parsed graph on demand.
#[derive(Debug)]
struct Reload {
    skeleton: weights::Skeleton,
    weights: weights::FileWeights,
}

/// Runs third-party code on untrusted data, turning a panic into an error.
fn guarded<T>(context: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::model(context, e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::model(context, format!("tract panicked: {msg}")))
        }
    }
}

/// Types `model` with inputs `[1, s]`, declutters it and applies the decluttered-stage passes.
fn concrete(
    mut model: InferenceModel,
    s: usize,
    n_inputs: usize,
    passes: &[ModelPass],
    header: &BundleHeader,
) -> TractResult<TypedModel> {
    for ix in 0..n_inputs {
        model.set_input_fact(ix, InferenceFact::dt_shape(i64::datum_type(), tvec!(1, s)))?;
    }
    let mut typed = model.into_typed()?.into_decluttered()?;
    passes::apply(passes, &mut typed, header, Some(s), PassStage::Decluttered)?;
    Ok(typed)
}

/// Whether two f32 slices hold the same bits (NaN equal to itself): how the fused ops compare
/// their constants.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Bucket lengths for `max_len`: 8, 16, 32, ... below `max_len`, then `max_len`.
pub fn bucket_lengths(max_len: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut s = MIN_BUCKET;
    while s < max_len {
        v.push(s);
        s *= 2;
    }
    v.push(max_len);
    v
}

impl Session {
    /// Opens a bundle file or export directory with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Session> {
        Session::open_with(path, SessionOptions::default())
    }

    /// Opens a bundle file or export directory.
    ///
    /// The model's large initializers are not kept in memory: the session keeps a skeleton of
    /// the ONNX graph and reads each weight from the file when tract needs it ([`weights`]),
    /// and hands its parsed graph to the first plan instead of keeping a copy.
    pub fn open_with(path: impl AsRef<Path>, options: SessionOptions) -> Result<Session> {
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
                                .map(|expected| payload_crc_of(&model_file, expected));
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
                Session::from_bundle(Bundle { header, model }, options)
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

    /// Builds a session from an in-memory bundle (the ONNX bytes are dropped once parsed).
    pub fn from_bundle(bundle: Bundle, options: SessionOptions) -> Result<Session> {
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
        if options.fuse_layer_norm {
            fused::fuse_layer_norms(&mut proto);
        }
        if options.fuse_attention {
            fused_attention::fuse_attention(&mut proto);
        }
        let int8_path = int8::apply(&mut proto, options.int8);
        let reload = external.map(|External { tensors, weights }| Reload {
            skeleton: weights::Skeleton {
                model: proto.clone(),
                tensors,
            },
            weights,
        });
        let mut model = match &reload {
            Some(r) => guarded("parsing ONNX", || weights::parse(&r.skeleton, &r.weights))?,
            None => guarded("parsing ONNX", || {
                int8_linear::onnx().model_for_proto_model(&proto)
            })?,
        };
        drop(proto);
        match int8_path {
            Int8Path::Dequantized(_) => {
                guarded("dequantizing int8 weights", || {
                    int8::fold_dequantized_weights(&mut model)
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
            passes: options.passes,
            enc: Box::default(),
            packed: PackedWeights::new(),
            embedding_rows,
            int8_path,
            reload,
            output: (output_node, output.slot),
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

    /// The bundle header (labels, tokenizer config, provenance).
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// Class labels in label-id order.
    pub fn labels(&self) -> &[String] {
        &self.header.labels
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// How the int8 Linear layers run on this CPU (or that the model is fp32).
    pub fn int8_path(&self) -> Int8Path {
        self.int8_path
    }

    /// Initializers this session reads from its model file when a plan needs them (their
    /// number and total bytes); `(0, 0)` when the whole model is held in memory.
    pub fn file_weights(&self) -> (usize, u64) {
        self.reload.as_ref().map_or((0, 0), |r| {
            let t = &r.skeleton.tensors;
            (t.len(), t.iter().map(|t| t.len).sum())
        })
    }

    /// Whether this session reads the word-embedding rows from the mapped model file
    /// ([`mapped_embedding`]) instead of holding the matrix.
    pub fn maps_embedding(&self) -> bool {
        self.reload
            .as_ref()
            .is_some_and(|r| r.weights.mapped_embedding_rows().is_some())
    }

    /// Maximum tokens per input (longer texts are truncated).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Sequence-length buckets and whether each plan is built.
    pub fn buckets(&self) -> Vec<(usize, bool)> {
        self.buckets
            .iter()
            .map(|b| (b.seq_len, b.state.is_some()))
            .collect()
    }

    /// Whether further plans start from one graph typed and decluttered with a symbolic
    /// sequence length (built with the second plan, or at load when eager).
    pub fn shares_typed_graph(&self) -> bool {
        matches!(self.prototype, Prototype::Symbolic { .. })
    }

    /// Rows of the ONNX word-embedding table and its tensor name, when found in the graph.
    pub fn embedding_rows(&self) -> Option<(&str, u64)> {
        self.embedding_rows.as_ref().map(|(n, r)| (n.as_str(), *r))
    }

    /// Builds (if not yet built) the plan of the bucket that holds `seq_len` tokens.
    pub fn prepare(&mut self, seq_len: usize) -> Result<usize> {
        let b = self.bucket_index(seq_len);
        self.prepare_bucket(b)?;
        Ok(self.buckets[b].seq_len)
    }

    fn bucket_index(&self, tokens: usize) -> usize {
        self.buckets
            .iter()
            .position(|b| b.seq_len >= tokens)
            .unwrap_or(self.buckets.len().saturating_sub(1))
    }

    fn prepare_bucket(&mut self, b: usize) -> Result<()> {
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
        let (header, passes) = (&self.header, &self.passes);
        let n_inputs = self.input_kinds.len();
        let (prototype, packed) = (&self.prototype, &mut self.packed);
        let state = guarded(&context, move || {
            let mut typed = match (prototype, owned) {
                (Prototype::Symbolic { model, seq }, _) => {
                    let length = HashMap::from([(seq.clone(), s.to_dim())]);
                    model.set_symbols(&length)?.into_decluttered()?
                }
                (Prototype::Parsed(model), None) => {
                    concrete(model.clone(), s, n_inputs, passes, header)?
                }
                (_, Some(model)) => concrete(model, s, n_inputs, passes, header)?,
                (Prototype::Reload, None) => anyhow::bail!("no graph to build the plan from"),
            };
            typed.optimize()?;
            passes::apply(passes, &mut typed, header, Some(s), PassStage::Optimized)?;
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
        let inputs = (0..n_inputs)
            .map(|_| Arc::new(Tensor::zero::<i64>(&[1, s]).unwrap_or_else(|_| Tensor::from(0i64))))
            .collect();
        let bucket = &mut self.buckets[b];
        bucket.state = Some(state);
        bucket.inputs = inputs;
        Ok(())
    }

    /// Replaces the parsed graph by one typed and decluttered with inputs `[1, S]`, the
    /// decluttered-stage passes applied, when sharing is on; when tract cannot type it with a
    /// symbolic `S`, each plan types the parsed graph (kept, or parsed again) with concrete
    /// shapes.
    fn share_typed_graph(&mut self) {
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
        let (header, passes, n_inputs) = (&self.header, &self.passes, self.input_kinds.len());
        let packed = &mut self.packed;
        let typed = guarded("typing the graph", || {
            for ix in 0..n_inputs {
                let shape = tvec!(1.to_dim(), seq.to_dim());
                model.set_input_fact(ix, InferenceFact::dt_shape(i64::datum_type(), shape))?;
            }
            let mut typed = model.into_typed()?.into_decluttered()?;
            passes::apply(passes, &mut typed, header, None, PassStage::Decluttered)?;
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
                    int8::fold_dequantized_weights(&mut model)?;
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

    /// Classifies one text. An empty text is classified as `[CLS] [SEP]`.
    pub fn classify(&mut self, text: &str) -> Result<Classification> {
        let mut out = Classification::default();
        self.classify_into(text, &mut out)?;
        Ok(out)
    }

    /// Classifies each text in order (batch of one per run; each text uses its own bucket).
    pub fn classify_batch<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Classification>> {
        texts.iter().map(|t| self.classify(t.as_ref())).collect()
    }

    /// Classifies one text into `out`, reusing its buffers: once the bucket is built and `out`
    /// has grown, the only heap allocations left are tract's own.
    pub fn classify_into(&mut self, text: &str, out: &mut Classification) -> Result<()> {
        self.tokenizer
            .encode_into(text, self.max_len, &mut self.enc)?;
        let n = self.enc.input_ids.len();
        let truncated = self.enc.truncated;
        let b = self.bucket_index(n);
        self.prepare_bucket(b)?;
        let Session {
            buckets,
            enc,
            input_kinds,
            header,
            ..
        } = self;
        let bucket = &mut buckets[b];
        let s = bucket.seq_len;
        let ids = &enc.input_ids[..n.min(s)];
        let mask = &enc.attention_mask[..n.min(s)];
        let mut values: TVec<TValue> = tvec!();
        for (arc, kind) in bucket.inputs.iter_mut().zip(input_kinds.iter()) {
            if Arc::get_mut(arc).is_none() {
                *arc =
                    Arc::new(Tensor::zero::<i64>(&[1, s]).map_err(|e| Error::model("input", e))?);
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
        let Some(state) = bucket.state.as_mut() else {
            return Err(Error::InvalidArgument(format!("bucket {s} not built")));
        };
        let outputs = guarded("running the model", || state.run(values))?;
        let logits = outputs
            .first()
            .ok_or_else(|| Error::Interface("model produced no output".into()))?
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(|e| Error::model("reading logits", e))?;
        out.logits.clear();
        out.logits.extend_from_slice(logits);
        drop(outputs);
        softmax_into(&out.logits, &mut out.probs);
        let (label_id, score) =
            out.probs
                .iter()
                .copied()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, p)| {
                    if p > best.1 {
                        (i, p)
                    } else {
                        best
                    }
                });
        out.label_id = label_id;
        out.score = score;
        out.label.clear();
        out.label
            .push_str(header.labels.get(label_id).map_or("", String::as_str));
        out.tokens = n;
        out.truncated = truncated;
        Ok(())
    }
}

/// A text that encodes to exactly `tokens` tokens (with `[CLS]`/`[SEP]`): `tokens - 2` copies of
/// the first lowercase whole-word token of the vocabulary. Used by benchmarks.
pub fn synthetic_text(tok: &Tokenizer, tokens: usize) -> Result<String> {
    let mut enc = Box::<SeqEncoding>::default();
    let word = (0..tok.vocab_size() as u32)
        .filter_map(|id| tok.id_to_token(id))
        .filter(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_lowercase()))
        .find(|t| tok.encode_into(t, 8, &mut enc).is_ok() && enc.input_ids.len() == 3)
        .ok_or_else(|| {
            Error::InvalidArgument(
                "vocabulary has no lowercase whole-word token to build a text from".into(),
            )
        })?;
    let text = vec![word; tokens.saturating_sub(2)].join(" ");
    tok.encode_into(&text, tokens.max(2), &mut enc)?;
    if enc.input_ids.len() != tokens || enc.truncated {
        return Err(Error::InvalidArgument(format!(
            "could not build a {tokens}-token text (got {} tokens)",
            enc.input_ids.len()
        )));
    }
    Ok(text)
}

/// Numerically stable softmax of `logits` into `probs` (resized to match).
pub fn softmax_into(logits: &[f32], probs: &mut Vec<f32>) {
    probs.clear();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for &l in logits {
        let e = (l - max).exp();
        sum += e;
        probs.push(e);
    }
    if sum > 0.0 && sum.is_finite() {
        probs.iter_mut().for_each(|p| *p /= sum);
    }
}

/// Finds the word-embedding `Gather` fed by `input_ids` and returns its weight's name and rows.
fn word_embedding_rows(model: &InferenceModel) -> Option<(String, u64)> {
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
                    let gather = name == "Gather" || name == mapped_embedding::MAPPED_GATHER;
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

/// What `edgebert inspect` shows about an ONNX graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnnxSummary {
    /// Operator name → node count.
    pub op_histogram: std::collections::BTreeMap<String, usize>,
    /// Graph inputs with their declared facts.
    pub inputs: Vec<(String, String)>,
    /// Graph outputs with their declared facts.
    pub outputs: Vec<(String, String)>,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of scalar weights held in constants.
    pub parameters: u64,
    /// Word-embedding weight name and rows, when found.
    pub embedding: Option<(String, u64)>,
}

/// Parses ONNX bytes with tract (no optimization) and summarizes the graph.
pub fn inspect_onnx(bytes: &[u8]) -> Result<OnnxSummary> {
    let model = guarded("parsing ONNX", || {
        tract_onnx::onnx().model_for_read(&mut &bytes[..])
    })?;
    let mut s = OnnxSummary {
        nodes: model.nodes().len(),
        ..Default::default()
    };
    for node in model.nodes() {
        let op = node.op().name().to_string();
        if op == "Source" {
            continue;
        }
        if op == "Const" {
            if let Ok(f) = model.outlet_fact(OutletId::new(node.id, 0)) {
                if let Some(t) = f.value.concretize() {
                    s.parameters += t.len() as u64;
                }
            }
        }
        *s.op_histogram.entry(op).or_default() += 1;
    }
    let fact = |o: OutletId| {
        model
            .outlet_fact(o)
            .map(|f| format!("{f:?}"))
            .unwrap_or_default()
    };
    for o in model
        .input_outlets()
        .map_err(|e| Error::model("inputs", e))?
    {
        s.inputs.push((model.node(o.node).name.clone(), fact(*o)));
    }
    for o in model
        .output_outlets()
        .map_err(|e| Error::model("outputs", e))?
    {
        let name = model
            .outlet_label(*o)
            .unwrap_or(&model.node(o.node).name)
            .to_string();
        s.outputs.push((name, fact(*o)));
    }
    s.embedding = word_embedding_rows(&model);
    Ok(s)
}
