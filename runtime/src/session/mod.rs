//! Inference sessions: a bundle opened once, then one text after another classified through
//! tract plans whose heavy ops are the runtime's own kernels.
//!
//! The public API is this file: [`Session`], [`SessionOptions`], [`Classification`] and the
//! int8 choice ([`Int8Mode`], [`Int8Path`]). Behind it, one concern per module, imports pointing
//! one way (this file → `load`/`plan` → `rewrite`, `passes`, `weights` → `ops` → kernels):
//!
//! - `load`: opening a file or bundle, checksum first, rewrites, parse, weight packing;
//! - `plan`: sequence-length buckets and their tract plans;
//! - `rewrite`: ONNX protobuf → protobuf rewrites before tract parses the graph (int8 Linear,
//!   LayerNorm, attention);
//! - `passes`: passes over each bucket's typed graph (constant folding, GELU);
//! - `weights`: the ONNX skeleton, weights read from the file and checked, shared between plans;
//! - `ops`: the runtime's tract ops, one file each, over `edgebert-kernels`;
//! - `guard`: tract's panics turned into errors.
mod guard;
mod int8_mode;
mod load;
mod many;
pub(crate) mod ops;
pub(crate) mod passes;
mod plan;
pub(crate) mod rewrite;
mod synthetic;
pub(crate) mod weights;

use std::path::Path;

use edgebert_kernels::attention::AttentionKernel;

use crate::bundle::{Bundle, BundleHeader};
use crate::error::Result;
use crate::tokenizer::{SeqEncoding, Tokenizer};
use plan::{Bucket, InputKind, Prototype, Reload};
use weights::shared::PackedWeights;

pub(crate) use guard::guarded;
#[cfg(feature = "internals")]
pub use int8_mode::auto_takes_kernel;
pub use int8_mode::{Int8Mode, Int8Path};
pub(crate) use load::word_embedding_rows;
pub use synthetic::synthetic_text;

/// How a session is built: `SessionOptions::default()` and the `with_*` methods.
///
/// ```
/// use edgebert_runtime::{Int8Mode, SessionOptions};
/// let options = SessionOptions::default().with_int8(Int8Mode::Auto).with_max_len(Some(64));
/// assert_eq!(options.max_len, Some(64));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Build every bucket's plan at load instead of on first use.
    pub eager: bool,
    /// Cap on the sequence length (defaults to the bundle's `max_len`).
    pub max_len: Option<usize>,
    /// How an int8 model runs (integer kernels, or weights dequantized to fp32 at load).
    pub int8: Int8Mode,
    /// Once more than one plan is needed (eager, or a second bucket), type and declutter the
    /// graph once with a symbolic sequence length and derive every further plan from it (the
    /// default). `false` types the graph again for each bucket; a graph tract cannot type
    /// symbolically falls back to that by itself.
    pub shared_graph: bool,
    /// Sessions opened from a file ([`Session::open_with`]) read every initializer of at least
    /// this many bytes from the file when a plan needs it, instead of keeping it in memory
    /// (the default: 64 KiB); `usize::MAX` keeps the whole model in memory as an in-memory bundle does.
    pub file_weights_min_bytes: usize,
    /// Run each `LayerNormalization` (with the residual `Add` before it) as one fused op
    /// (`EdgebertLayerNorm`); `false` leaves them to tract.
    pub fuse_layer_norm: bool,
    /// Run each multi-head attention block (head split, `Q·Kᵀ`, mask, softmax, `·V`, head
    /// merge) as one fused op (`EdgebertAttention`). Default: on where its AVX2+FMA kernel runs
    /// (x86-64), where it is faster than tract's op sequence; elsewhere tract's ops.
    pub fuse_attention: bool,
    /// Sessions opened from a file map the word-embedding matrix and read only the rows a text
    /// uses (the default), instead of loading it like any weight.
    pub map_embedding: bool,
    /// Threads one text is spread over, and texts of [`Session::classify_many`] shared
    /// between (`1..=256`; default: one per physical core, as ONNX Runtime's default). Results
    /// are bit-identical at every count; `1` runs everything on the caller's thread.
    pub threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            eager: false,
            max_len: None,
            int8: Int8Mode::default(),
            shared_graph: true,
            file_weights_min_bytes: weights::MIN_EXTERNAL_BYTES,
            fuse_layer_norm: true,
            fuse_attention: AttentionKernel::best() != AttentionKernel::Portable,
            map_embedding: true,
            threads: crate::threads::default_threads(),
        }
    }
}

impl SessionOptions {
    /// Builds every bucket's plan at load (`true`) or on first use (`false`, the default).
    pub fn with_eager(mut self, eager: bool) -> Self {
        self.eager = eager;
        self
    }

    /// Caps the sequence length (`None`: the bundle's `max_len`).
    pub fn with_max_len(mut self, max_len: Option<usize>) -> Self {
        self.max_len = max_len;
        self
    }

    /// How an int8 model runs ([`Int8Mode`]).
    pub fn with_int8(mut self, int8: Int8Mode) -> Self {
        self.int8 = int8;
        self
    }

    /// Types the graph once with a symbolic length for every further plan (`true`, the
    /// default) or again for each bucket.
    pub fn with_shared_graph(mut self, shared: bool) -> Self {
        self.shared_graph = shared;
        self
    }

    /// Initializers of at least `bytes` are read from the file when a plan needs them;
    /// `usize::MAX` keeps the whole model in memory.
    pub fn with_file_weights_min_bytes(mut self, bytes: usize) -> Self {
        self.file_weights_min_bytes = bytes;
        self
    }

    /// Runs each LayerNorm (and its residual `Add`) as one fused op, or leaves it to tract.
    pub fn with_fuse_layer_norm(mut self, fuse: bool) -> Self {
        self.fuse_layer_norm = fuse;
        self
    }

    /// Runs each attention block as one fused op, or leaves it to tract.
    pub fn with_fuse_attention(mut self, fuse: bool) -> Self {
        self.fuse_attention = fuse;
        self
    }

    /// Maps the word-embedding matrix from the file (`true`, the default) or loads it.
    pub fn with_map_embedding(mut self, map: bool) -> Self {
        self.map_embedding = map;
        self
    }

    /// Runs on `threads` threads (checked when the session opens: `1..=256`).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
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

/// A loaded model ready to classify text: the runtime's front door.
///
/// ```no_run
/// # fn main() -> edgebert_runtime::Result<()> {
/// let result = edgebert_runtime::Session::open("model.edgebert")?.classify("i feel great")?;
/// println!("{} ({:.2})", result.label, result.score);
/// # Ok(())
/// # }
/// ```
///
/// A session is `Send` but used through `&mut self`: one text at a time per session, spread
/// over [`SessionOptions::threads`] threads; [`Session::classify_many`] also shares many texts
/// between them (one copy of the weights).
#[derive(Debug)]
pub struct Session {
    header: BundleHeader,
    tokenizer: Tokenizer,
    prototype: Prototype,
    shared_graph: bool,
    input_kinds: Vec<InputKind>,
    max_len: usize,
    buckets: Vec<Bucket>,
    enc: Box<SeqEncoding>,
    packed: PackedWeights,
    embedding_rows: Option<(String, u64)>,
    int8_path: Int8Path,
    /// Where a fresh copy of the parsed graph comes from (sessions opened from a file).
    reload: Option<Reload>,
    /// The logits outlet: node name and slot in the parsed graph.
    output: (String, usize),
    /// The worker pool (`None`: one thread).
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Session {
    /// Opens a bundle file or export directory with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Session> {
        Session::open_with(path, SessionOptions::default())
    }

    /// Opens a bundle file or export directory.
    ///
    /// The model's large initializers are not kept in memory: the session keeps a skeleton of
    /// the ONNX graph and reads each weight from the file when tract needs it,
    /// and hands its parsed graph to the first plan instead of keeping a copy.
    pub fn open_with(path: impl AsRef<Path>, options: SessionOptions) -> Result<Session> {
        crate::threads::check_threads(options.threads)?;
        Session::load_file(path.as_ref(), options)
    }

    /// Builds a session from an in-memory bundle (the ONNX bytes are dropped once parsed).
    pub fn from_bundle(bundle: Bundle, options: SessionOptions) -> Result<Session> {
        crate::threads::check_threads(options.threads)?;
        Session::load_bundle(bundle, options)
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
    /// instead of holding the matrix.
    pub fn maps_embedding(&self) -> bool {
        self.reload
            .as_ref()
            .is_some_and(|r| r.weights.mapped_embedding_rows().is_some())
    }

    /// Threads this session runs on.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
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

    /// Classifies one text. An empty text is classified as `[CLS] [SEP]`.
    pub fn classify(&mut self, text: &str) -> Result<Classification> {
        let mut out = Classification::default();
        self.classify_into(text, &mut out)?;
        Ok(out)
    }

    /// Classifies each text in order, one after another (each text uses its own bucket, and is
    /// spread over the session's threads); [`Session::classify_many`] shares texts between them.
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
        self.run_bucket(b, n, &mut out.logits)?;
        finish_classification(&self.header.labels, n, truncated, out);
        Ok(())
    }
}

/// Fills `out` from its logits: probabilities, the most probable label, the token count.
fn finish_classification(
    labels: &[String],
    tokens: usize,
    truncated: bool,
    out: &mut Classification,
) {
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
        .push_str(labels.get(label_id).map_or("", String::as_str));
    out.tokens = tokens;
    out.truncated = truncated;
}

/// Numerically stable softmax of `logits` into `probs` (resized to match).
fn softmax_into(logits: &[f32], probs: &mut Vec<f32>) {
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

#[cfg(test)]
mod tests {
    use super::softmax_into;

    #[test]
    fn softmax_is_stable() {
        let mut p = Vec::new();
        softmax_into(&[1000.0, 1000.0, -1000.0], &mut p);
        assert!(
            (p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0,
            "{p:?}"
        );
        softmax_into(&[], &mut p);
        assert!(p.is_empty());
    }
}
