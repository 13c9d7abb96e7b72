//! Weights read from the model file when tract needs them, not held in a protobuf copy.
//!
//! Decoding an ONNX file with prost copies every initializer into the decoded message, and
//! tract then copies each one again into its own tensor: for a moment the file's bytes, the
//! protobuf copy and tract's tensors all hold the weights (MiniLM fp32: 3 × 91 MB). Instead,
//! [`skeleton`] walks the protobuf wire format of the file's bytes and writes a copy of the
//! model whose large initializers are ONNX *external data* (location, offset, length) pointing
//! back into the file itself, without their bytes (a few hundred kB for MiniLM). tract reads
//! each external tensor through [`FileWeights`], one at a time, straight from the file; the
//! checksum of every tensor taken when the skeleton was made is checked on each read, so a file
//! changed after it was opened is an error, not silently different weights.
//!
//! Because the weights can be read again at any time, a session can hand its only copy of the
//! parsed graph to the first plan it builds (tract then frees each weight as soon as it has
//! packed it) and parse the skeleton again for later plans.
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::pb::StringStringEntryProto;
use tract_onnx::prelude::*;

use super::mapped_embedding::MappedMatrix;

/// Default size from which an initializer's raw bytes are read from the file on demand;
/// smaller ones (biases, LayerNorm vectors, int8 scales) stay in the skeleton.
pub const MIN_EXTERNAL_BYTES: usize = 64 * 1024;

/// `ModelProto.graph`.
const MODEL_GRAPH: u32 = 7;
/// `GraphProto.initializer`.
const GRAPH_INITIALIZER: u32 = 5;
/// `TensorProto.raw_data`.
const TENSOR_RAW_DATA: u32 = 9;
/// `TensorProto.external_data`.
const TENSOR_EXTERNAL_DATA: u32 = 13;
/// `TensorProto.data_location`.
const TENSOR_DATA_LOCATION: u32 = 14;

/// Which message a byte range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Model,
    Graph,
    Tensor,
}

/// A byte range of the model file holding one initializer's raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalTensor {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The model without its large initializers' bytes, and where those bytes are.
#[derive(Debug, Clone)]
pub struct Skeleton {
    /// The ONNX model, its large initializers marked external.
    pub model: tract_onnx::pb::ModelProto,
    /// The byte ranges the external initializers point at.
    pub tensors: Vec<ExternalTensor>,
}

/// Builds the skeleton of `onnx`, the model bytes found at `offset_in_file` of a file called
/// `location` (a plain file name, resolved by tract against the file's directory): the
/// initializers with at least `min_bytes` of raw data become external. Errors are protobuf
/// decoding errors; the caller can fall back to decoding the bytes whole.
pub fn skeleton(
    onnx: &[u8],
    offset_in_file: u64,
    location: &str,
    min_bytes: usize,
) -> Result<Skeleton, String> {
    let mut out = Vec::with_capacity(onnx.len().min(1 << 20));
    let mut tensors = Vec::new();
    let mut walk = Walk {
        location,
        min_bytes: min_bytes.max(1),
        base: offset_in_file,
        tensors: &mut tensors,
    };
    walk.message(onnx, 0, Level::Model, &mut out)?;
    let model = tract_onnx::pb::ModelProto::decode(&out[..]).map_err(|e| e.to_string())?;
    Ok(Skeleton { model, tensors })
}

struct Walk<'a> {
    location: &'a str,
    min_bytes: usize,
    base: u64,
    tensors: &'a mut Vec<ExternalTensor>,
}

impl Walk<'_> {
    /// Copies the message `msg` (found at `at` in the model bytes) to `out`, descending into the
    /// graph and its initializers and leaving large `raw_data` fields out.
    fn message(
        &mut self,
        msg: &[u8],
        at: usize,
        level: Level,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut rest = msg;
        let mut external = None;
        while rest.has_remaining() {
            let start = msg.len() - rest.len();
            let (field, wire) = decode_key(&mut rest).map_err(|e| e.to_string())?;
            match wire {
                WireType::Varint => {
                    decode_varint(&mut rest).map_err(|e| e.to_string())?;
                }
                WireType::SixtyFourBit => skip(&mut rest, 8)?,
                WireType::ThirtyTwoBit => skip(&mut rest, 4)?,
                WireType::StartGroup | WireType::EndGroup => {
                    return Err(format!("unexpected protobuf group (field {field})"));
                }
                WireType::LengthDelimited => {
                    let len = decode_varint(&mut rest).map_err(|e| e.to_string())?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&l| l <= rest.len())
                        .ok_or_else(|| format!("field {field}: length {len} runs past the end"))?;
                    let body_at = at + (msg.len() - rest.len());
                    let body = &rest[..len];
                    rest = &rest[len..];
                    let child = match (level, field) {
                        (Level::Model, MODEL_GRAPH) => Some(Level::Graph),
                        (Level::Graph, GRAPH_INITIALIZER) => Some(Level::Tensor),
                        _ => None,
                    };
                    if let Some(child) = child {
                        let mut inner = Vec::with_capacity(len.min(4096));
                        self.message(body, body_at, child, &mut inner)?;
                        encode_key(field, WireType::LengthDelimited, out);
                        encode_varint(inner.len() as u64, out);
                        out.extend_from_slice(&inner);
                        continue;
                    }
                    if level == Level::Tensor && field == TENSOR_RAW_DATA && len >= self.min_bytes {
                        external = Some(ExternalTensor {
                            offset: self.base + body_at as u64,
                            len: len as u64,
                        });
                        continue;
                    }
                }
            }
            out.extend_from_slice(&msg[start..msg.len() - rest.len()]);
        }
        if let Some(t) = external {
            for (key, value) in [
                ("location", self.location.to_string()),
                ("offset", t.offset.to_string()),
                ("length", t.len.to_string()),
            ] {
                let entry = StringStringEntryProto {
                    key: key.into(),
                    value,
                };
                prost::encoding::message::encode(TENSOR_EXTERNAL_DATA, &entry, out);
            }
            prost::encoding::int32::encode(
                TENSOR_DATA_LOCATION,
                &(DataLocation::External as i32),
                out,
            );
            self.tensors.push(t);
        }
        Ok(())
    }
}

fn skip(rest: &mut &[u8], n: usize) -> Result<(), String> {
    if rest.len() < n {
        return Err("truncated fixed-size field".into());
    }
    rest.advance(n);
    Ok(())
}

/// Bytes read per `read` call (and hashed while they are still in cache).
const READ_CHUNK: usize = 1 << 20;

/// tract's reader for the external initializers of a [`Skeleton`]: reads each byte range from
/// the model file, hashing it as it goes. The first read of a tensor records its checksum
/// (what [`PayloadChecksum`] combines into the bundle's), every later read must match it: a
/// file changed after it was opened is an error, never silently different weights.
#[derive(Debug, Clone)]
pub struct FileWeights {
    file: PathBuf,
    handle: Arc<File>,
    tensors: Arc<[ExternalTensor]>,
    index: Arc<HashMap<(u64, u64), usize>>,
    crcs: Arc<[OnceLock<u32>]>,
    /// Whether [`parse`] maps the word-embedding matrix instead of reading it.
    map_embedding: bool,
    /// Whether the mapped matrix is hashed on another thread as soon as it is mapped.
    hash_mapped_now: bool,
    /// The mapped matrix, shared by every parse: (tensor index, map).
    mapped: Arc<OnceLock<(usize, Arc<MappedMatrix>)>>,
    /// A tensor being hashed on another thread: (tensor index, the thread).
    background: Arc<Mutex<Option<BackgroundHash>>>,
    /// Tensors read by [`FileWeights::preload`] and not yet handed to a parse, by index.
    preloaded: Arc<Mutex<HashMap<usize, Tensor>>>,
}

/// A tensor index and the thread hashing it.
type BackgroundHash = (usize, std::thread::JoinHandle<std::io::Result<u32>>);

impl FileWeights {
    /// A reader of `skeleton`'s external tensors from `file` (opened now and held, so a file
    /// replaced by rename later is still read from the one opened).
    pub fn open(file: impl Into<PathBuf>, skeleton: &Skeleton) -> std::io::Result<FileWeights> {
        let file = file.into();
        let handle = Arc::new(File::open(&file)?);
        let tensors: Arc<[ExternalTensor]> = skeleton.tensors.clone().into();
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.offset, t.len), i))
            .collect();
        Ok(FileWeights {
            file,
            handle,
            crcs: (0..tensors.len()).map(|_| OnceLock::new()).collect(),
            tensors,
            index: Arc::new(index),
            map_embedding: true,
            hash_mapped_now: false,
            mapped: Arc::new(OnceLock::new()),
            background: Arc::new(Mutex::new(None)),
            preloaded: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Whether [`parse`] maps the word-embedding matrix from the file
    /// ([`super::mapped_embedding`]; the default) or reads it like any weight, and whether the
    /// mapped matrix is hashed right away on a thread of its own (for a bundle checksum that
    /// [`PayloadChecksum::check`] will ask for) or only when asked.
    pub fn with_mapped_embedding(mut self, map: bool, hash_now: bool) -> FileWeights {
        self.map_embedding = map;
        self.hash_mapped_now = hash_now;
        self
    }

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
                .map_err(|e| {
                    anyhow::anyhow!("{}: weights {:?}: {e}", self.file.display(), input.name)
                })?;
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

    /// The tensor [`FileWeights::preload`] read for external tensor `i`, if it is still held.
    fn take_preloaded(&self, i: usize) -> Option<Tensor> {
        self.preloaded.lock().ok()?.remove(&i)
    }

    /// Rows of the word-embedding matrix when a parse mapped it.
    pub fn mapped_embedding_rows(&self) -> Option<usize> {
        self.mapped.get().map(|(_, m)| m.rows())
    }

    /// The model file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The checksum of external tensor `i`: recorded by its first read, else the one a
    /// background hash of it gives ([`FileWeights::hash_in_background`]), else read and hashed
    /// now (a tensor tract never asked for).
    fn tensor_crc(&self, i: usize) -> std::io::Result<u32> {
        if let Some(&crc) = self.crcs[i].get() {
            return Ok(crc);
        }
        let pending = self
            .background
            .lock()
            .ok()
            .and_then(|mut b| b.take_if(|(j, _)| *j == i));
        let crc = match pending {
            Some((_, job)) => job
                .join()
                .map_err(|_| std::io::Error::other("the checksum thread panicked"))??,
            None => hash_range(&self.handle, &self.tensors[i])?,
        };
        Ok(*self.crcs[i].get_or_init(|| crc))
    }

    /// Starts hashing external tensor `i` on a thread of its own, for a tensor the session maps
    /// instead of reading (its checksum is still part of the bundle's): on a second core the
    /// hash costs the open no time. Where no thread can be started it is hashed when needed.
    fn hash_in_background(&self, i: usize) {
        if !cfg!(unix) || !self.hash_mapped_now || self.crcs[i].get().is_some() {
            return;
        }
        let (handle, t) = (self.handle.clone(), self.tensors[i]);
        let job = std::thread::Builder::new()
            .name("edgebert-checksum".into())
            .spawn(move || hash_range(&handle, &t));
        if let (Ok(job), Ok(mut slot)) = (job, self.background.lock()) {
            *slot = Some((i, job));
        }
    }

    /// Reads external tensor `i` straight into a new tract tensor of type `dt` and `shape`
    /// (whose size the caller checked), hashing it as it goes; like a read through tract, a
    /// checksum different from the first read's is an error.
    fn read_tensor(&self, i: usize, dt: DatumType, shape: &[usize]) -> std::io::Result<Tensor> {
        let t = &self.tensors[i];
        let crc;
        #[cfg(unix)]
        let tensor = {
            let len = usize::try_from(t.len).map_err(std::io::Error::other)?;
            // SAFETY: the bytes are written by `pread` below before anything reads them.
            let mut tensor =
                unsafe { Tensor::uninitialized_dt(dt, shape) }.map_err(std::io::Error::other)?;
            // SAFETY: a `dt` tensor of `shape` holds exactly `t.len` bytes (checked by the caller).
            let ptr = unsafe { tensor.as_ptr_mut_unchecked::<u8>() };
            crate::memory::populate_for_write(ptr, len);
            crc = pread_hashed(&self.handle, ptr, len, t.offset)?;
            tensor
        };
        #[cfg(not(unix))]
        let tensor = {
            let mut buf = Vec::new();
            crc = self.read_hashed(t, &mut buf)?;
            // SAFETY: `buf` holds exactly the bytes of a `dt` tensor of `shape`.
            unsafe { Tensor::from_raw_dt(dt, shape, &buf) }.map_err(std::io::Error::other)?
        };
        let first = *self.crcs[i].get_or_init(|| crc);
        if first != crc {
            return Err(std::io::Error::other(format!(
                "the {} bytes of weights at offset {} changed since the model was opened",
                t.len, t.offset
            )));
        }
        Ok(tensor)
    }

    /// Reads tensor `t` into `buf` chunk by chunk, hashing each chunk right after reading it
    /// (`read_to_end` fills the reserved memory without zeroing it first).
    fn read_hashed(&self, t: &ExternalTensor, buf: &mut Vec<u8>) -> std::io::Result<u32> {
        let len = usize::try_from(t.len).map_err(std::io::Error::other)?;
        buf.clear();
        buf.try_reserve_exact(len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
        // Reads are sequential: a session reads weights from one thread at a time.
        let mut file = &*self.handle;
        file.seek(SeekFrom::Start(t.offset))?;
        let mut hasher = crc32fast::Hasher::new();
        while buf.len() < len {
            let start = buf.len();
            let want = (len - start).min(READ_CHUNK);
            file.take(want as u64).read_to_end(buf)?;
            if buf.len() != start + want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes of weights at offset {} run past the end of the file",
                        t.len, t.offset
                    ),
                ));
            }
            hasher.update(&buf[start..]);
        }
        Ok(hasher.finalize())
    }
}

/// CRC-32 of tensor `t`'s bytes, read through a small buffer (positioned reads where the
/// platform has them, so another thread may read the same file meanwhile).
fn hash_range(file: &File, t: &ExternalTensor) -> std::io::Result<u32> {
    let mut scratch = vec![0u8; READ_CHUNK.min(usize::try_from(t.len).unwrap_or(READ_CHUNK))];
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0u64;
    #[cfg(not(unix))]
    (&*file).seek(SeekFrom::Start(t.offset))?;
    while done < t.len {
        let n = scratch
            .len()
            .min(usize::try_from(t.len - done).unwrap_or(usize::MAX));
        #[cfg(unix)]
        std::os::unix::fs::FileExt::read_exact_at(file, &mut scratch[..n], t.offset + done)?;
        #[cfg(not(unix))]
        (&*file).read_exact(&mut scratch[..n])?;
        hasher.update(&scratch[..n]);
        done += n as u64;
    }
    Ok(hasher.finalize())
}

/// Reads `len` bytes at `offset` of `file` into `ptr` with `pread`, chunk by chunk, hashing each
/// chunk right after it is read; the memory at `ptr` need not be initialized.
#[cfg(unix)]
fn pread_hashed(file: &File, ptr: *mut u8, len: usize, offset: u64) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(READ_CHUNK);
        let at = libc::off_t::try_from(offset + done as u64).map_err(std::io::Error::other)?;
        // SAFETY: `ptr + done .. + want` lies inside the `len` bytes the caller owns.
        let n = unsafe { libc::pread(file.as_raw_fd(), ptr.add(done).cast(), want, at) };
        match n {
            n if n > 0 => {
                // SAFETY: `pread` initialized these `n` bytes.
                hasher.update(unsafe { std::slice::from_raw_parts(ptr.add(done), n as usize) });
                done += n as usize;
            }
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{len} bytes at offset {offset} run past the end of the file"),
                ))
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(hasher.finalize())
}

impl ModelDataResolver for FileWeights {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        _resolved: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        let (offset, len) = (offset as u64, length.unwrap_or(0) as u64);
        let Some(&i) = self.index.get(&(offset, len)) else {
            anyhow::bail!(
                "{}: no external tensor of {len} bytes at offset {offset}",
                self.file.display()
            );
        };
        let crc = self
            .read_hashed(&self.tensors[i], buf)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.file.display()))?;
        let first = *self.crcs[i].get_or_init(|| crc);
        anyhow::ensure!(
            first == crc,
            "{}: the {len} bytes of weights at offset {offset} changed since the model was opened",
            self.file.display()
        );
        Ok(())
    }
}

/// The bundle checksum, checked without a pass of its own over the weights: the bytes between
/// the external tensors are hashed when the file is opened (they are small), the tensors' own
/// checksums come from [`FileWeights`]' reads, and CRC-32's combination rule joins the pieces
/// in file order into the checksum of the whole payload.
#[derive(Debug, Clone)]
pub struct PayloadChecksum {
    expected: u32,
    /// Checksum and length of the bytes before each external tensor, and after the last one.
    gaps: Vec<(u32, u64)>,
}

impl PayloadChecksum {
    /// Hashes the bytes of `file_bytes` from `payload_start` on that `tensors` (sorted by
    /// offset, as [`skeleton`] lists them) do not cover; `expected` is the payload's checksum.
    /// `None` when the tensors are not sorted, overlap or lie outside the payload.
    pub fn of_gaps(
        file_bytes: &[u8],
        payload_start: u64,
        tensors: &[ExternalTensor],
        expected: u32,
    ) -> Option<PayloadChecksum> {
        let mut gaps = Vec::with_capacity(tensors.len() + 1);
        let mut at = usize::try_from(payload_start).ok()?;
        for t in tensors {
            let start = usize::try_from(t.offset).ok()?;
            let gap = file_bytes.get(at..start)?;
            gaps.push((crc32fast::hash(gap), gap.len() as u64));
            at = start.checked_add(usize::try_from(t.len).ok()?)?;
        }
        let tail = file_bytes.get(at..)?;
        gaps.push((crc32fast::hash(tail), tail.len() as u64));
        Some(PayloadChecksum { expected, gaps })
    }

    /// The checksum the header promised and the one the bytes read give (tensors tract did
    /// not read are read now).
    pub fn check(&self, weights: &FileWeights) -> std::io::Result<(u32, u32)> {
        let mut whole = crc32fast::Hasher::new();
        for (i, &(crc, len)) in self.gaps.iter().enumerate() {
            whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, len));
            if let Some(t) = weights.tensors.get(i) {
                let crc = weights.tensor_crc(i)?;
                whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, t.len));
            }
        }
        Ok((self.expected, whole.finalize()))
    }
}

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
        .ok_or_else(|| anyhow::anyhow!("{}: directory name is not UTF-8", dir.display()))?;
    let (proto, embedding, injected) = weights.weights_as_inputs(skeleton);
    let mut onnx = super::int8_linear::onnx();
    onnx.provider = std::sync::Arc::new(weights.clone());
    let parsed = onnx.parse(&proto, Some(dir))?;
    anyhow::ensure!(
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
            anyhow::bail!("weights {:?}: no graph input after parsing", input.name);
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
            .map_err(|e| {
                anyhow::anyhow!("{}: weights {:?}: {e}", weights.file.display(), input.name)
            })?
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
        anyhow::bail!("embedding {:?} is not 2-D", input.name);
    };
    match weights.mapped.get() {
        Some((i, m)) if *i == input.tensor => Ok(m.clone()),
        Some(_) => anyhow::bail!("a second mapped embedding"),
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
            .map_err(|e| {
                anyhow::anyhow!("{}: mapping {:?}: {e}", weights.file.display(), input.name)
            })?;
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
/// mapped matrix ([`super::mapped_embedding`]).
fn map_embedding(
    model: &mut InferenceModel,
    outlet: OutletId,
    embedding: &GatheredEmbedding,
    input: &InjectedWeights,
    weights: &FileWeights,
) -> TractResult<()> {
    use super::mapped_embedding::MappedGatherNode;
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

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};

    fn tensor(name: &str, n: usize) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![n as i64],
            data_type: DataType::Int8 as i32,
            raw_data: (0..n).map(|i| (i * 7 % 251) as u8).collect(),
            ..Default::default()
        }
    }

    fn model() -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                initializer: vec![tensor("small", 100), tensor("big", MIN_EXTERNAL_BYTES + 3)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn initializers(m: &ModelProto) -> TractResult<&[TensorProto]> {
        Ok(&m.graph.as_ref().context("no graph")?.initializer)
    }

    #[test]
    fn large_initializers_become_external_ranges_of_the_file() -> TractResult<()> {
        let original = model();
        let bytes = original.encode_to_vec();
        let s = skeleton(&bytes, 100, "m.onnx", MIN_EXTERNAL_BYTES).map_err(anyhow::Error::msg)?;
        let (kept, before) = (initializers(&s.model)?, initializers(&original)?);
        assert_eq!(s.model.producer_name, "test");
        assert_eq!(kept[0], before[0], "small initializers stay inline");
        let big = &kept[1];
        assert!(big.raw_data.is_empty());
        assert_eq!(big.data_location, Some(DataLocation::External as i32));
        assert_eq!(s.tensors.len(), 1);
        let t = s.tensors[0];
        // the range points at the raw bytes inside the file (the model bytes start at 100)
        let at = (t.offset - 100) as usize;
        assert_eq!(&bytes[at..at + t.len as usize], &before[1].raw_data[..]);
        let entry = |k: &str| {
            big.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        assert_eq!(entry("location").as_deref(), Some("m.onnx"));
        assert_eq!(entry("offset"), Some(t.offset.to_string()));
        assert_eq!(entry("length"), Some(t.len.to_string()));
        Ok(())
    }

    #[test]
    fn reads_check_the_checksum_and_malformed_bytes_are_errors() -> TractResult<()> {
        let bytes = model().encode_to_vec();
        let path =
            std::env::temp_dir().join(format!("edgebert-weights-{}.onnx", std::process::id()));
        std::fs::write(&path, &bytes)?;
        let s = skeleton(&bytes, 0, "m.onnx", MIN_EXTERNAL_BYTES).map_err(anyhow::Error::msg)?;
        let w = FileWeights::open(&path, &s)?;
        let t = s.tensors[0];
        let (at, len) = (t.offset as usize, t.len as usize);
        let mut buf = Vec::new();
        w.read_bytes_from_path(&mut buf, &path, at, Some(len))?;
        assert_eq!(&buf[..], &bytes[at..at + len]);
        // a range the skeleton did not make is refused
        assert!(w
            .read_bytes_from_path(&mut buf, &path, 0, Some(10))
            .is_err());
        // the file changed after the first read (the checksum it recorded)
        let mut changed = bytes.clone();
        changed[at + 5] ^= 1;
        std::fs::write(&path, &changed)?;
        let e = w.read_bytes_from_path(&mut buf, &path, at, Some(len));
        std::fs::remove_file(&path)?;
        let e = e.err().context("a changed file was read")?;
        assert!(
            e.to_string().contains("changed since the model was opened"),
            "{e}"
        );
        // truncated or garbled protobuf: an error, never a panic
        for cut in [1, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                skeleton(&bytes[..cut], 0, "m.onnx", MIN_EXTERNAL_BYTES).is_err(),
                "cut at {cut}"
            );
        }
        assert!(skeleton(&[0x0b, 0x01], 0, "m.onnx", MIN_EXTERNAL_BYTES).is_err());
        Ok(())
    }

    #[test]
    fn payload_checksum_joins_the_gaps_and_the_tensors_read() -> TractResult<()> {
        let mut m = model();
        if let Some(g) = m.graph.as_mut() {
            g.initializer
                .push(tensor("bigger", 3 * MIN_EXTERNAL_BYTES + 1));
            g.initializer.push(tensor("tail", 17));
        }
        let model_bytes = m.encode_to_vec();
        // a file with 24 bytes before the payload, as a bundle has
        let payload_start = 24u64;
        let mut file_bytes = vec![0xAB; payload_start as usize];
        file_bytes.extend_from_slice(b"header");
        let model_at = file_bytes.len() as u64;
        file_bytes.extend_from_slice(&model_bytes);
        let expected = crc32fast::hash(&file_bytes[payload_start as usize..]);
        let path =
            std::env::temp_dir().join(format!("edgebert-payload-{}.edgebert", std::process::id()));
        std::fs::write(&path, &file_bytes)?;
        let s = skeleton(&model_bytes, model_at, "m", MIN_EXTERNAL_BYTES)
            .map_err(anyhow::Error::msg)?;
        assert_eq!(s.tensors.len(), 2);
        let check = PayloadChecksum::of_gaps(&file_bytes, payload_start, &s.tensors, expected)
            .context("gaps")?;
        let w = FileWeights::open(&path, &s)?;
        // one tensor read as tract would, the other never: both count
        let t = s.tensors[1];
        let mut buf = Vec::new();
        w.read_bytes_from_path(&mut buf, &path, t.offset as usize, Some(t.len as usize))?;
        assert_eq!(check.check(&w)?, (expected, expected));
        // a changed byte in a gap or in a tensor shows
        let wrong = PayloadChecksum::of_gaps(&file_bytes, payload_start, &s.tensors, expected ^ 1)
            .context("gaps")?;
        assert_ne!(wrong.check(&w)?.0, wrong.check(&w)?.1);
        let mut changed = file_bytes.clone();
        changed[s.tensors[0].offset as usize + 3] ^= 4;
        std::fs::write(&path, &changed)?;
        let fresh = FileWeights::open(&path, &s)?;
        let (want, got) = check.check(&fresh)?;
        std::fs::remove_file(&path)?;
        assert_ne!(want, got);
        // tensors out of order or past the end: no gaps to hash
        let reversed: Vec<_> = s.tensors.iter().rev().copied().collect();
        assert!(PayloadChecksum::of_gaps(&file_bytes, payload_start, &reversed, 0).is_none());
        assert!(
            PayloadChecksum::of_gaps(&file_bytes[..100], payload_start, &s.tensors, 0).is_none()
        );
        Ok(())
    }
}
