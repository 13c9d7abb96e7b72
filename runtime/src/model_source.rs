//! Where a model comes from: a `model.edgebert` bundle, an export directory
//! (`model.onnx` + `config.json` + `vocab.txt`/`tokenizer.json`), a bare `.onnx` file inside
//! such a directory, or, for tokenizing only, a Hugging Face model directory.
//! Everything is normalised into an in-memory [`Bundle`] so the rest of the runtime has one
//! source of truth.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bundle::{Bundle, BundleHeader, PREAMBLE_LEN};
use crate::error::{Error, Result};
use crate::tokenizer::{Tokenizer, MAX_SEQ_LEN};

/// Model file names looked for in an export directory, in order of preference.
pub const MODEL_FILES: &[&str] = &[
    "model.edgebert",
    "model.onnx",
    "model.int8.onnx",
    "model.fp32.onnx",
];

/// What kind of path a model was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A `model.edgebert` file.
    Bundle,
    /// An export directory or a `.onnx` file inside one.
    ExportDir,
}

/// A model file's bytes: mapped read-only where the OS allows it (no copy into fresh memory:
/// reading a 91 MB fp32 bundle was a third of its cold start), read into memory otherwise.
#[derive(Debug)]
pub enum FileBytes {
    /// A read-only map of the whole file.
    Mapped(memmap2::Mmap),
    /// The file read into memory.
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

impl FileBytes {
    /// Maps `file` when `map`, or when it cannot be mapped or `map` is false, reads it. Pages
    /// of a map are read in when touched: a session touches the protobuf structure, not the
    /// large weights it reads later through [`crate::session::weights::FileWeights`].
    ///
    /// The map lives only while a model is opened (validated, then walked or copied). Like any
    /// mapped file, one truncated by another process during that window would fault; a file
    /// replaced by rename (how edgebert writes them) is not affected.
    pub fn open(file: &Path, map: bool) -> Result<FileBytes> {
        let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        if map {
            // SAFETY: a private read-only map of a regular file, dropped before the caller
            // returns the model it opened; see above for files changed while it is held.
            if let Ok(m) = unsafe { memmap2::MmapOptions::new().map(&f) } {
                return Ok(FileBytes::Mapped(m));
            }
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut bytes).map_err(|e| Error::io(file, e))?;
        Ok(FileBytes::Read(bytes))
    }

    /// The bytes from `at` on, owned (read bytes are shifted in place, mapped ones copied).
    fn into_tail(self, at: usize) -> Vec<u8> {
        match self {
            FileBytes::Read(mut v) => {
                v.drain(..at.min(v.len()));
                v
            }
            FileBytes::Mapped(m) => m.get(at..).unwrap_or_default().to_vec(),
        }
    }
}

/// A model file opened and validated without copying its bytes: the header, the file's bytes
/// with the ONNX model at `model_at..`, and where they came from ([`ModelSource::open_view`]).
#[derive(Debug)]
pub struct ModelView {
    /// The bundle header (or the one an export directory describes).
    pub header: BundleHeader,
    /// The whole file.
    pub bytes: FileBytes,
    /// Offset of the ONNX model bytes in `bytes` (0 for a `.onnx` file).
    pub model_at: usize,
    /// How the path was interpreted.
    pub kind: SourceKind,
    /// The file the bytes came from.
    pub model_file: PathBuf,
    /// Size of that file in bytes.
    pub file_size: u64,
    /// For a bundle, the checksum its payload (`bytes[PREAMBLE_LEN..]`) must have and that
    /// nothing has verified yet: the caller hashes the payload as it reads it, or calls
    /// [`ModelView::verify_checksum`]. `None` when verified or when there is no checksum (an
    /// `.onnx` file).
    pub pending_checksum: Option<u32>,
}

impl ModelView {
    /// The ONNX model bytes.
    pub fn model(&self) -> &[u8] {
        &self.bytes[self.model_at..]
    }

    /// Hashes the bundle payload and checks it against the header's checksum (a no-op when none
    /// is pending); a mismatch is [`Error::ChecksumMismatch`] naming the file.
    pub fn verify_checksum(&self) -> Result<()> {
        match self.pending_checksum {
            Some(expected) => {
                let actual = crc32fast::hash(self.bytes.get(PREAMBLE_LEN..).unwrap_or_default());
                checksum_result(&self.model_file, expected, actual)
            }
            None => Ok(()),
        }
    }
}

/// `Ok` when the payload checksum `actual` is the `expected` one, else the error naming `file`
/// that a bundle with a flipped bit gets.
pub fn checksum_result(file: &Path, expected: u32, actual: u32) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(with_path(
            file,
            Error::ChecksumMismatch { expected, actual },
        ))
    }
}

/// A model resolved from a user-supplied path.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// Header and ONNX bytes.
    pub bundle: Bundle,
    /// How the path was interpreted.
    pub kind: SourceKind,
    /// The file the model bytes came from.
    pub model_file: PathBuf,
    /// Size of that file in bytes.
    pub file_size: u64,
}

fn not_a_model(path: &Path, reason: impl Into<String>) -> Error {
    Error::NotAModel {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn metadata(path: &Path) -> Result<std::fs::Metadata> {
    std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
        _ => Error::io(path, e),
    })
}

fn regular_file(path: &Path) -> Result<u64> {
    let md = metadata(path)?;
    if !md.is_file() {
        return Err(not_a_model(
            path,
            "not a regular file (expected a model.edgebert bundle, a .onnx file or an export directory)",
        ));
    }
    if md.len() == 0 {
        return Err(not_a_model(path, "file is empty"));
    }
    Ok(md.len())
}

fn find_model_file(dir: &Path) -> Result<PathBuf> {
    MODEL_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            not_a_model(
                dir,
                format!(
                    "directory holds no model (looked for {})",
                    MODEL_FILES.join(", ")
                ),
            )
        })
}

impl ModelSource {
    /// Resolves `path` (bundle file, export directory, or `.onnx` file in an export directory).
    pub fn open(path: impl AsRef<Path>) -> Result<ModelSource> {
        // Read, not mapped: the bytes are kept, and a map plus a copy would hold them twice.
        let ModelView {
            header,
            bytes,
            model_at,
            kind,
            model_file,
            file_size,
            pending_checksum: _,
        } = ModelSource::view(path.as_ref(), false)?;
        let model = bytes.into_tail(model_at);
        Ok(ModelSource {
            bundle: Bundle { header, model },
            kind,
            model_file,
            file_size,
        })
    }

    /// [`ModelSource::open`] without copying the model bytes: the file stays mapped in the
    /// returned view (the same checks, the same errors).
    pub fn open_view(path: impl AsRef<Path>) -> Result<ModelView> {
        ModelSource::view(path.as_ref(), true)
    }

    /// [`ModelSource::open_view`], with the file mapped (`map`) or read.
    fn view(path: &Path, map: bool) -> Result<ModelView> {
        let md = metadata(path)?;
        let file = if md.is_dir() {
            find_model_file(path)?
        } else {
            path.to_path_buf()
        };
        let file_size = regular_file(&file)?;
        let is_onnx = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        if is_onnx {
            let dir = match file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let bytes = FileBytes::open(&file, map)?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let header = export_dir_header(&dir, &name)?;
            checked(&header, &bytes).map_err(|e| match e {
                Error::BadHeader(m) => Error::Config {
                    path: dir.clone(),
                    message: m,
                },
                other => other,
            })?;
            return Ok(ModelView {
                header,
                bytes,
                model_at: 0,
                kind: SourceKind::ExportDir,
                model_file: file,
                file_size,
                pending_checksum: None,
            });
        }
        let bytes = FileBytes::open(&file, map)?;
        if !Bundle::has_magic(&bytes) && bytes.len() >= 8 {
            // Give a hint beyond "bad magic" for the common mistakes.
            if bytes.first() == Some(&0x08) {
                return Err(not_a_model(
                    &file,
                    "looks like an ONNX protobuf without a .onnx extension; rename it or pass its export directory",
                ));
            }
        }
        // A mapped view leaves the payload checksum to its reader, which hashes the weights
        // as it reads them instead of in a pass of their own; any error found before that
        // comes from the full check, which names a checksum mismatch first.
        let unverified = if map {
            Bundle::parse_unverified(&bytes)
                .and_then(|(header, at, crc)| {
                    checked(&header, &bytes[at..]).map(|()| (header, at, Some(crc)))
                })
                .ok()
        } else {
            None
        };
        let (header, model_at, pending_checksum) = match unverified {
            Some(parsed) => parsed,
            None => Bundle::parse(&bytes)
                .and_then(|(header, at)| checked(&header, &bytes[at..]).map(|()| (header, at)))
                .map(|(header, at)| (header, at, None))
                .map_err(|e| with_path(&file, e))?,
        };
        Ok(ModelView {
            header,
            bytes,
            model_at,
            kind: SourceKind::Bundle,
            model_file: file,
            file_size,
            pending_checksum,
        })
    }
}

/// What [`Bundle::new`] checks: a valid header and some model bytes.
fn checked(header: &BundleHeader, model: &[u8]) -> Result<()> {
    header.validate()?;
    if model.is_empty() {
        return Err(Error::BadHeader("model bytes are empty".into()));
    }
    Ok(())
}

/// Prefixes bundle-format errors with the file they came from.
fn with_path(path: &Path, e: Error) -> Error {
    match e {
        e @ (Error::BadMagic { .. }
        | Error::BundleTruncated { .. }
        | Error::UnsupportedVersion { .. }
        | Error::ChecksumMismatch { .. }
        | Error::LengthMismatch { .. }
        | Error::BadHeader(_)) => Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
        e => e,
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
        _ => Error::io(path, e),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })
}

/// Labels in id order from a Hugging Face `config.json` (`id2label`, else `num_labels`).
pub fn labels_from_config(path: &Path, config: &serde_json::Value) -> Result<Vec<String>> {
    let cfg_err = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    if let Some(map) = config.get("id2label").and_then(|v| v.as_object()) {
        let mut by_id = BTreeMap::new();
        for (k, v) in map {
            let id: usize = k
                .parse()
                .map_err(|_| cfg_err(format!("field \"id2label\": key {k:?} is not an integer")))?;
            let label = v
                .as_str()
                .ok_or_else(|| cfg_err(format!("field \"id2label\"[{k:?}] is not a string")))?;
            by_id.insert(id, label.to_string());
        }
        if by_id.is_empty() {
            return Err(cfg_err("field \"id2label\" is empty".into()));
        }
        for (expect, id) in by_id.keys().enumerate() {
            if *id != expect {
                return Err(cfg_err(format!(
                    "field \"id2label\" is missing id {expect} (ids must be 0..{})",
                    by_id.len()
                )));
            }
        }
        return Ok(by_id.into_values().collect());
    }
    match config.get("num_labels").and_then(|v| v.as_u64()) {
        Some(n) if n > 0 && n < 1_000_000 => Ok((0..n).map(|i| format!("LABEL_{i}")).collect()),
        _ => Err(cfg_err(
            "neither \"id2label\" nor \"num_labels\" present".into(),
        )),
    }
}

/// Builds the bundle header for an export directory (`config.json` + tokenizer files).
pub fn export_dir_header(dir: &Path, model_file_name: &str) -> Result<BundleHeader> {
    let cfg_path = dir.join("config.json");
    let config = read_json(&cfg_path)?;
    let labels = labels_from_config(&cfg_path, &config)?;
    let max_pos = config
        .get("max_position_embeddings")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| Error::Config {
            path: cfg_path.clone(),
            message: "field \"max_position_embeddings\" missing or not an integer".into(),
        })?;
    let mut max_len = max_pos.min(MAX_SEQ_LEN as u64);
    if let Ok(tc) = read_json(&dir.join("tokenizer_config.json")) {
        if let Some(m) = tc.get("model_max_length").and_then(|v| v.as_u64()) {
            if m >= 2 {
                max_len = max_len.min(m);
            }
        }
    }
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    let quantization = if model_file_name.contains("int8") {
        "int8"
    } else {
        "none"
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("source".to_string(), dir.display().to_string());
    metadata.insert("model_file".to_string(), model_file_name.to_string());
    if let Some(t) = config.get("model_type").and_then(|v| v.as_str()) {
        metadata.insert("model_type".to_string(), t.to_string());
    }
    Ok(BundleHeader {
        labels,
        tokenizer: tokenizer.config().clone(),
        vocab: tokenizer.vocab_txt(),
        max_len: max_len as u32,
        input_names: vec!["input_ids".into(), "attention_mask".into()],
        output_name: "logits".into(),
        quantization: quantization.into(),
        model_format: "onnx".into(),
        metadata,
    })
}

/// Loads only a tokenizer and its maximum length, from a bundle, an export directory, a
/// Hugging Face model directory (`tokenizer.json` or `vocab.txt`), or a `vocab.txt` /
/// `tokenizer.json` file.
pub fn open_tokenizer(path: impl AsRef<Path>) -> Result<(Tokenizer, usize)> {
    let path = path.as_ref();
    let md = metadata(path)?;
    if md.is_dir() {
        let has_tok = path.join("tokenizer.json").is_file() || path.join("vocab.txt").is_file();
        if !has_tok {
            if let Ok(file) = find_model_file(path) {
                let src = ModelSource::open(file)?;
                return Ok((src.bundle.tokenizer()?, src.bundle.header.max_len as usize));
            }
            return Err(not_a_model(
                path,
                "directory holds neither tokenizer.json, vocab.txt nor a model",
            ));
        }
        let tok = Tokenizer::from_hf_dir(path)?;
        let mut max_len = MAX_SEQ_LEN as u64;
        for (file, key) in [
            ("config.json", "max_position_embeddings"),
            ("tokenizer_config.json", "model_max_length"),
        ] {
            if let Ok(v) = read_json(&path.join(file)) {
                if let Some(m) = v.get(key).and_then(|v| v.as_u64()) {
                    if m >= 2 {
                        max_len = max_len.min(m);
                    }
                }
            }
        }
        return Ok((tok, max_len as usize));
    }
    regular_file(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.ends_with(".json") {
        return Ok((Tokenizer::from_tokenizer_json(path)?, MAX_SEQ_LEN));
    }
    if name.ends_with(".txt") {
        return Ok((
            Tokenizer::from_vocab_file(path, Default::default())?,
            MAX_SEQ_LEN,
        ));
    }
    let src = ModelSource::open(path)?;
    Ok((src.bundle.tokenizer()?, src.bundle.header.max_len as usize))
}
