//! The `model.edgebert` single-file bundle: layout, writer (atomic) and validating reader.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"EDGEBERT"` |
//! | 8 | 4 | format version ([`FORMAT_VERSION`]) |
//! | 12 | 8 | payload length in bytes |
//! | 20 | 4 | CRC-32 (IEEE) of the payload |
//! | 24 | n | payload |
//!
//! Payload: `u32` header length, the postcard-encoded [`BundleHeader`], then the model bytes
//! (ONNX). Postcard is not self-describing, so any change to [`BundleHeader`] bumps
//! [`FORMAT_VERSION`]; a reader refuses versions newer than its own with
//! [`Error::UnsupportedVersion`].
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::{Tokenizer, TokenizerConfig, MAX_SEQ_LEN};

/// The 8 bytes every bundle starts with.
pub const MAGIC: &[u8; 8] = b"EDGEBERT";
/// The bundle format version this runtime writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed preamble before the payload.
pub const PREAMBLE_LEN: usize = 24;
/// Quantization tags a header may carry.
pub const QUANTIZATIONS: &[&str] = &["none", "int8"];
/// Model formats a header may carry.
pub const MODEL_FORMATS: &[&str] = &["onnx"];

/// Everything the device needs besides the network weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleHeader {
    /// Class labels in label-id order.
    pub labels: Vec<String>,
    /// Tokenizer settings (lowercasing, accents, special tokens...).
    pub tokenizer: TokenizerConfig,
    /// The WordPiece vocabulary, `vocab.txt` format (one token per line, id = line number).
    pub vocab: String,
    /// Maximum sequence length including `[CLS]` and `[SEP]`; longer inputs are truncated.
    pub max_len: u32,
    /// Names of the model's graph inputs (`input_ids`, `attention_mask`, optionally `token_type_ids`).
    pub input_names: Vec<String>,
    /// Name of the logits output.
    pub output_name: String,
    /// `"none"` or `"int8"`.
    pub quantization: String,
    /// `"onnx"`.
    pub model_format: String,
    /// Free-form provenance: producer, source checkpoint, training metrics...
    pub metadata: BTreeMap<String, String>,
}

impl BundleHeader {
    /// Checks every field for internal consistency; the error names the field at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadHeader(m));
        if self.labels.is_empty() {
            return bad("field \"labels\" is empty".into());
        }
        if let Some(i) = self.labels.iter().position(|l| l.is_empty()) {
            return bad(format!("field \"labels\"[{i}] is an empty string"));
        }
        if self.max_len < 2 || self.max_len as usize > MAX_SEQ_LEN {
            return bad(format!(
                "field \"max_len\" = {} is outside 2..={MAX_SEQ_LEN}",
                self.max_len
            ));
        }
        if self.vocab.trim().is_empty() {
            return bad("field \"vocab\" is empty".into());
        }
        if !self.input_names.iter().any(|n| n == "input_ids") {
            return bad(format!(
                "field \"input_names\" = {:?} lacks \"input_ids\"",
                self.input_names
            ));
        }
        if self.output_name.is_empty() {
            return bad("field \"output_name\" is empty".into());
        }
        if !QUANTIZATIONS.contains(&self.quantization.as_str()) {
            return bad(format!(
                "field \"quantization\" = {:?} is not one of {QUANTIZATIONS:?}",
                self.quantization
            ));
        }
        if !MODEL_FORMATS.contains(&self.model_format.as_str()) {
            return bad(format!(
                "field \"model_format\" = {:?} is not one of {MODEL_FORMATS:?}",
                self.model_format
            ));
        }
        Ok(())
    }

    /// Builds the tokenizer this header describes.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Ok(Tokenizer::new(&self.vocab, self.tokenizer.clone())?)
    }
}

/// A loaded (or to-be-written) bundle: header plus model bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// Labels, tokenizer, shapes and provenance.
    pub header: BundleHeader,
    /// The network, in `header.model_format` (ONNX protobuf bytes).
    pub model: Vec<u8>,
}

fn take<'a>(bytes: &'a [u8], at: usize, len: usize, what: &'static str) -> Result<&'a [u8]> {
    let end = at.checked_add(len);
    match end.and_then(|end| bytes.get(at..end)) {
        Some(s) => Ok(s),
        None => Err(Error::BundleTruncated {
            what,
            needed: (at as u64).saturating_add(len as u64),
            available: bytes.len() as u64,
        }),
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

impl Bundle {
    /// Builds a bundle from its parts after validating the header.
    pub fn new(header: BundleHeader, model: Vec<u8>) -> Result<Bundle> {
        header.validate()?;
        if model.is_empty() {
            return Err(Error::BadHeader("model bytes are empty".into()));
        }
        Ok(Bundle { header, model })
    }

    /// Reads and validates a bundle file.
    pub fn read(path: impl AsRef<Path>) -> Result<Bundle> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Bundle::from_vec(bytes)
    }

    /// True when `bytes` starts with the bundle magic (cheap sniffing, no validation).
    pub fn has_magic(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// Parses and validates a bundle held in memory: magic, version, length, checksum, header.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle> {
        let (header, model_at) = Bundle::parse(bytes)?;
        Bundle::new(header, bytes[model_at..].to_vec())
    }

    /// Like [`Bundle::from_bytes`], but keeps the model bytes in `bytes`' own buffer (the
    /// preamble and header are cut off in place) instead of copying them: a load of a large
    /// bundle neither allocates nor page-faults a second copy.
    pub fn from_vec(mut bytes: Vec<u8>) -> Result<Bundle> {
        let (header, model_at) = Bundle::parse(&bytes)?;
        bytes.drain(..model_at);
        Bundle::new(header, bytes)
    }

    /// Validates `bytes` and returns the header and the offset of the model bytes.
    pub(crate) fn parse(bytes: &[u8]) -> Result<(BundleHeader, usize)> {
        Bundle::parse_with(bytes, true).map(|(header, at, _)| (header, at))
    }

    /// Like [`Bundle::parse`], but leaves the payload checksum to the caller: returns the header,
    /// the offset of the model bytes and the checksum the payload (`bytes[PREAMBLE_LEN..]`)
    /// must have. A caller that reads the payload anyway can hash it as it goes
    /// ([`crate::session::weights::PayloadChecksum`]) instead of in a pass of its own. On an error
    /// here the caller should fall back to [`Bundle::parse`], whose errors name a checksum
    /// mismatch first.
    pub(crate) fn parse_unverified(bytes: &[u8]) -> Result<(BundleHeader, usize, u32)> {
        Bundle::parse_with(bytes, false)
    }

    fn parse_with(bytes: &[u8], verify: bool) -> Result<(BundleHeader, usize, u32)> {
        let magic = take(bytes, 0, 8, "magic").map_err(|_| Error::BadMagic {
            found: escape(&bytes[..bytes.len().min(8)]),
        })?;
        if magic != MAGIC {
            return Err(Error::BadMagic {
                found: escape(magic),
            });
        }
        let version = le_u32(take(bytes, 8, 4, "format version")?);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let declared = le_u64(take(bytes, 12, 8, "payload length")?);
        let expected = le_u32(take(bytes, 20, 4, "checksum")?);
        let available = (bytes.len() - PREAMBLE_LEN) as u64;
        if declared > available {
            return Err(Error::BundleTruncated {
                what: "payload",
                needed: declared.saturating_add(PREAMBLE_LEN as u64),
                available: bytes.len() as u64,
            });
        }
        if declared < available {
            return Err(Error::LengthMismatch {
                declared,
                available,
            });
        }
        let payload = &bytes[PREAMBLE_LEN..];
        if verify {
            let actual = crc32fast::hash(payload);
            if actual != expected {
                return Err(Error::ChecksumMismatch { expected, actual });
            }
        }
        let header_len = le_u32(take(payload, 0, 4, "header length")?) as usize;
        let header_bytes = take(payload, 4, header_len, "header")?;
        let header: BundleHeader = postcard::from_bytes(header_bytes)
            .map_err(|e| Error::BadHeader(format!("cannot decode: {e}")))?;
        Ok((header, PREAMBLE_LEN + 4 + header_len, expected))
    }

    /// Encodes the bundle into its on-disk bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.header.validate()?;
        let header = postcard::to_allocvec(&self.header)
            .map_err(|e| Error::BadHeader(format!("cannot encode: {e}")))?;
        let header_len = u32::try_from(header.len())
            .map_err(|_| Error::BadHeader(format!("header is {} bytes (> 4 GiB)", header.len())))?;
        let payload_len = 4 + header.len() + self.model.len();
        let mut out = Vec::with_capacity(PREAMBLE_LEN + payload_len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload_len as u64).to_le_bytes());
        out.extend_from_slice(&[0; 4]); // checksum, patched below
        out.extend_from_slice(&header_len.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.model);
        let crc = crc32fast::hash(&out[PREAMBLE_LEN..]);
        out[20..24].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// CRC-32 of the encoded payload (what the file's preamble stores).
    pub fn checksum(&self) -> Result<u32> {
        let bytes = self.to_bytes()?;
        Ok(le_u32(&bytes[20..24]))
    }

    /// Writes the bundle atomically: a temporary file in the same directory, fsync, rename.
    /// A reader never sees a half-written bundle at `path`.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path.file_name().ok_or_else(|| Error::NotAModel {
            path: path.to_path_buf(),
            reason: "bundle path has no file name".into(),
        })?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })?;
        // Persist the rename itself; failure to sync a directory is not fatal on all filesystems.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Builds the tokenizer the header describes.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        self.header.tokenizer()
    }
}

fn escape(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Builder for bundles; the trainer's export step uses it.
///
/// ```no_run
/// # use edgebert_runtime::{bundle::BundleWriter, tokenizer::Tokenizer};
/// # fn f(tok: &Tokenizer, onnx: Vec<u8>) -> edgebert_runtime::Result<()> {
/// BundleWriter::new(tok, vec!["neg".into(), "pos".into()], onnx)
///     .max_len(128)
///     .quantization("int8")
///     .metadata("producer", "edgebert-train 0.1.0")
///     .write_to("model.edgebert")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BundleWriter {
    header: BundleHeader,
    model: Vec<u8>,
}

impl BundleWriter {
    /// Starts a bundle for `tokenizer`, `labels` (label-id order) and ONNX `model` bytes.
    /// Defaults: `max_len` 512, inputs `input_ids` + `attention_mask`, output `logits`,
    /// quantization `"none"`, format `"onnx"`, metadata `producer` = this crate.
    pub fn new(tokenizer: &Tokenizer, labels: Vec<String>, model: Vec<u8>) -> BundleWriter {
        let mut metadata = BTreeMap::new();
        metadata.insert(
            "producer".to_string(),
            concat!("edgebert-runtime ", env!("CARGO_PKG_VERSION")).to_string(),
        );
        BundleWriter {
            header: BundleHeader {
                labels,
                tokenizer: tokenizer.config().clone(),
                vocab: tokenizer.vocab_txt(),
                max_len: MAX_SEQ_LEN as u32,
                input_names: vec!["input_ids".into(), "attention_mask".into()],
                output_name: "logits".into(),
                quantization: "none".into(),
                model_format: "onnx".into(),
                metadata,
            },
            model,
        }
    }

    /// Maximum sequence length (with `[CLS]`/`[SEP]`), at most [`MAX_SEQ_LEN`].
    pub fn max_len(mut self, max_len: u32) -> Self {
        self.header.max_len = max_len;
        self
    }

    /// Graph input names, in any order (`input_ids` required).
    pub fn input_names(mut self, names: Vec<String>) -> Self {
        self.header.input_names = names;
        self
    }

    /// Graph output holding the logits.
    pub fn output_name(mut self, name: impl Into<String>) -> Self {
        self.header.output_name = name.into();
        self
    }

    /// `"none"` or `"int8"`.
    pub fn quantization(mut self, q: impl Into<String>) -> Self {
        self.header.quantization = q.into();
        self
    }

    /// Adds one provenance entry (replacing an existing key).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.header.metadata.insert(key.into(), value.into());
        self
    }

    /// Validates and returns the bundle.
    pub fn build(self) -> Result<Bundle> {
        Bundle::new(self.header, self.model)
    }

    /// Validates and writes the bundle atomically to `path`; returns it.
    pub fn write_to(self, path: impl AsRef<Path>) -> Result<Bundle> {
        let bundle = self.build()?;
        bundle.write_to(path)?;
        Ok(bundle)
    }
}
