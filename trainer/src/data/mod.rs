//! Data: reading `train`/`validation`/`test` files (.txt `text;label`, .csv, .jsonl, .parquet)
//! from a directory or a hub dataset id ([`hub`]), the label order, tokenization with the
//! `tokenizers` crate, and seeded, resumable, dynamically padded batches.
//!
//! Label order (the id of each label name), in priority:
//! 1. `--labels a,b,c` fixes it; file labels may then be names from that list or integer ids.
//! 2. Otherwise, for a hub dataset whose metadata names the classes (`class_label.names`), those
//!    names in their order.
//! 3. Otherwise, if every label in every split is a non-negative integer, the integers are the ids
//!    as is and the names are `LABEL_0..LABEL_{max}` (as transformers names them).
//! 4. Otherwise the sorted (byte order) unique label names of all splits get ids 0, 1, 2, ...
pub mod hub;
pub mod parquet_file;

use crate::error::{Result, TrainError};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One labelled text, label already mapped to its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The raw text.
    pub text: String,
    /// The label id.
    pub label: usize,
}

/// A text with its label as written in the file (before label ids are known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExample {
    /// The raw text.
    pub text: String,
    /// The label as written (name or integer id).
    pub label: String,
    /// 1-based line in the file (for error messages).
    pub line: usize,
}

/// A parsed file before label mapping.
#[derive(Debug, Clone)]
pub struct RawSplit {
    /// The file it came from.
    pub path: PathBuf,
    /// The parsed examples.
    pub examples: Vec<RawExample>,
    /// Malformed lines skipped (only with `skip_bad_lines`).
    pub skipped: usize,
}

/// One split with label ids.
#[derive(Debug, Clone)]
pub struct Split {
    /// The file it came from.
    pub path: PathBuf,
    /// The examples.
    pub examples: Vec<Example>,
    /// Malformed lines skipped (only with `skip_bad_lines`).
    pub skipped: usize,
}

impl Split {
    /// The label ids in order.
    pub fn labels(&self) -> Vec<usize> {
        self.examples.iter().map(|e| e.label).collect()
    }
    /// The texts in order.
    pub fn texts(&self) -> Vec<&str> {
        self.examples.iter().map(|e| e.text.as_str()).collect()
    }
}

/// Where data comes from beyond its path: the revision of a hub dataset, the column names of
/// csv/jsonl/parquet files, and the Hub endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataSource {
    /// Branch, tag or commit of a hub dataset (`--data-revision`); default `main`.
    pub revision: Option<String>,
    /// Text column of csv, jsonl and parquet files (`--text-column`); default `text`.
    pub text_column: Option<String>,
    /// Label column of csv, jsonl and parquet files (`--label-column`); default `label`.
    pub label_column: Option<String>,
    /// Hub endpoint (`--endpoint`); default `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
}

impl DataSource {
    /// The text column name.
    pub fn text(&self) -> &str {
        self.text_column.as_deref().unwrap_or("text")
    }
    /// The label column name.
    pub fn label(&self) -> &str {
        self.label_column.as_deref().unwrap_or("label")
    }
}

/// Options for reading data files.
#[derive(Debug, Clone, Default)]
pub struct DataOptions {
    /// Fixed label order (`--labels`); `None` derives it (see the module doc).
    pub labels: Option<Vec<String>>,
    /// Skip and count malformed lines instead of failing.
    pub skip_bad_lines: bool,
    /// Hub revision, column names, endpoint.
    pub source: DataSource,
    /// Show download progress bars.
    pub progress: bool,
}

/// A data directory: train, validation and optional test splits, and the label names by id.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Label names, index = id.
    pub labels: Vec<String>,
    /// The training split.
    pub train: Split,
    /// The validation split.
    pub validation: Split,
    /// The test split, when present.
    pub test: Option<Split>,
}

const EXTENSIONS: [&str; 4] = ["txt", "csv", "jsonl", "parquet"];

/// Finds `DIR/<name>.{txt,csv,jsonl,parquet}`; `Ok(None)` when absent, an error when ambiguous.
pub fn find_split_file(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let found: Vec<PathBuf> = EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .filter(|p| p.is_file())
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(TrainError::data(
            dir,
            format!("several files for split {name:?}: {found:?}; keep one"),
        )),
    }
}

/// True when `--data` names a hub dataset: no such local path, and of the form `owner/name`.
pub fn is_hub_dataset(spec: &Path) -> bool {
    !spec.exists() && spec.to_str().is_some_and(crate::hub::looks_like_repo_id)
}

/// Reads several files (shards of one split) as one split.
fn read_files(paths: &[PathBuf], skip_bad_lines: bool, source: &DataSource) -> Result<RawSplit> {
    let mut out: Option<RawSplit> = None;
    for p in paths {
        let r = read_file_with(p, skip_bad_lines, source)?;
        match &mut out {
            None => out = Some(r),
            Some(o) => {
                o.examples.extend(r.examples);
                o.skipped += r.skipped;
            }
        }
    }
    out.ok_or_else(|| TrainError::Options("no files for a split".into()))
}

/// Loads a data directory or a hub dataset id (see the module doc for the label order).
pub fn load_dataset(dir: &Path, opts: &DataOptions) -> Result<Dataset> {
    let (train, validation, test, hub_labels) = if is_hub_dataset(dir) {
        let id = dir.to_string_lossy();
        let ds = hub::resolve(&id, &opts.source, opts.progress)?;
        let get = |s: &str| -> Result<Option<RawSplit>> {
            match ds.splits.get(s) {
                Some(files) => Ok(Some(read_files(files, opts.skip_bad_lines, &opts.source)?)),
                None => Ok(None),
            }
        };
        let need = |s: &str| -> Result<RawSplit> {
            get(s)?.ok_or_else(|| TrainError::data(dir, format!("no {s} split")))
        };
        (
            need("train")?,
            need("validation")?,
            get("test")?,
            ds.label_names.clone(),
        )
    } else {
        if !dir.is_dir() {
            return Err(TrainError::data(
                dir,
                "not a directory (--data expects a directory with train and validation files, \
                 or a hub dataset id such as dair-ai/emotion)",
            ));
        }
        let need = |name: &str| -> Result<PathBuf> {
            find_split_file(dir, name)?.ok_or_else(|| {
                TrainError::data(
                    dir,
                    format!(
                        "no {name}.txt, {name}.csv, {name}.jsonl or {name}.parquet in the data directory"
                    ),
                )
            })
        };
        let read = |p: &Path| read_file_with(p, opts.skip_bad_lines, &opts.source);
        let train = read(&need("train")?)?;
        let validation = read(&need("validation")?)?;
        let test = match find_split_file(dir, "test")? {
            Some(p) => Some(read(&p)?),
            None => None,
        };
        (train, validation, test, None)
    };
    let mut all: Vec<&RawSplit> = vec![&train, &validation];
    if let Some(t) = &test {
        all.push(t);
    }
    let labels = match (&opts.labels, hub_labels) {
        (Some(l), _) => validate_label_list(l)?,
        (None, Some(names)) if names_cover_ids(&names, &all) => names,
        (None, _) => derive_labels(&all),
    };
    Ok(Dataset {
        train: map_labels(&train, &labels)?,
        validation: map_labels(&validation, &labels)?,
        test: match &test {
            Some(t) => Some(map_labels(t, &labels)?),
            None => None,
        },
        labels,
    })
}

/// True when every label is a name from `names` or an integer id below `names.len()`.
fn names_cover_ids(names: &[String], splits: &[&RawSplit]) -> bool {
    splits.iter().flat_map(|s| &s.examples).all(|e| {
        names.contains(&e.label) || e.label.parse::<usize>().is_ok_and(|i| i < names.len())
    })
}

/// Loads one file and maps its labels onto a known label list (e.g. a trained model's `id2label`).
pub fn load_file_with_labels(
    path: &Path,
    labels: &[String],
    skip_bad_lines: bool,
) -> Result<Split> {
    let raw = read_file(path, skip_bad_lines)?;
    map_labels(&raw, labels)
}

/// [`load_file_with_labels`] with the column names of `source`.
pub fn load_file_with_source(
    path: &Path,
    labels: &[String],
    skip_bad_lines: bool,
    source: &DataSource,
) -> Result<Split> {
    let raw = read_file_with(path, skip_bad_lines, source)?;
    map_labels(&raw, labels)
}

/// Parses `--labels a,b,c`.
pub fn parse_label_list(s: &str) -> Result<Vec<String>> {
    validate_label_list(
        &s.split(',')
            .map(|x| x.trim().to_string())
            .collect::<Vec<_>>(),
    )
}

fn validate_label_list(l: &[String]) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    for name in l {
        if name.is_empty() {
            return Err(TrainError::Options("--labels: empty label name".into()));
        }
        if !seen.insert(name.as_str()) {
            return Err(TrainError::Options(format!(
                "--labels: label {name:?} appears twice"
            )));
        }
    }
    if l.len() < 2 {
        return Err(TrainError::Options(
            "--labels: need at least two labels".into(),
        ));
    }
    Ok(l.to_vec())
}

/// The documented deterministic label order for labels read from files.
pub fn derive_labels(splits: &[&RawSplit]) -> Vec<String> {
    let raw = splits
        .iter()
        .flat_map(|s| s.examples.iter().map(|e| e.label.as_str()));
    let ids: Option<Vec<usize>> = raw.clone().map(|l| l.parse::<usize>().ok()).collect();
    match ids {
        Some(ids) if !ids.is_empty() => {
            let max = ids.iter().copied().max().unwrap_or(0);
            (0..=max.max(1)).map(|i| format!("LABEL_{i}")).collect()
        }
        _ => raw
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}

fn map_labels(raw: &RawSplit, labels: &[String]) -> Result<Split> {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut examples = Vec::with_capacity(raw.examples.len());
    for e in &raw.examples {
        let id = match index.get(e.label.as_str()) {
            Some(&i) => i,
            None => match e.label.parse::<usize>() {
                Ok(i) if i < labels.len() => i,
                _ => {
                    return Err(TrainError::BadLine {
                        path: raw.path.clone(),
                        line: e.line,
                        msg: format!(
                            "label {:?} is neither one of {labels:?} nor an id below {}",
                            e.label,
                            labels.len()
                        ),
                    })
                }
            },
        };
        examples.push(Example {
            text: e.text.clone(),
            label: id,
        });
    }
    Ok(Split {
        path: raw.path.clone(),
        examples,
        skipped: raw.skipped,
    })
}

/// Reads one data file by extension (.txt, .csv, .jsonl, .parquet), columns `text` and `label`.
pub fn read_file(path: &Path, skip_bad_lines: bool) -> Result<RawSplit> {
    read_file_with(path, skip_bad_lines, &DataSource::default())
}

/// Reads one data file by extension, with the column names of `source` (csv, jsonl, parquet).
pub fn read_file_with(path: &Path, skip_bad_lines: bool, source: &DataSource) -> Result<RawSplit> {
    let (text_col, label_col) = (source.text(), source.label());
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = if ext == "parquet" {
        Vec::new()
    } else {
        std::fs::read(path).map_err(|e| TrainError::io(path, e))?
    };
    let mut out = RawSplit {
        path: path.to_path_buf(),
        examples: Vec::new(),
        skipped: 0,
    };
    let mut accept =
        |line: usize, r: std::result::Result<(String, String), String>| -> Result<()> {
            match r {
                Ok((text, label)) => {
                    out.examples.push(RawExample { text, label, line });
                    Ok(())
                }
                Err(msg) if skip_bad_lines => {
                    let _ = msg;
                    out.skipped += 1;
                    Ok(())
                }
                Err(msg) => Err(TrainError::BadLine {
                    path: path.to_path_buf(),
                    line,
                    msg,
                }),
            }
        };
    match ext.as_str() {
        "txt" | "jsonl" => {
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                TrainError::BadLine {
                    path: path.to_path_buf(),
                    line,
                    msg: "invalid UTF-8".into(),
                }
            })?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let r = if ext == "txt" {
                    parse_txt_line(line)
                } else {
                    parse_jsonl_fields(line, text_col, label_col)
                };
                accept(i + 1, r)?;
            }
        }
        "csv" => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(bytes.as_slice());
            let headers = rdr
                .headers()
                .map_err(|e| TrainError::BadLine {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: format!("cannot read the CSV header: {e}"),
                })?
                .clone();
            let col = |name: &str| headers.iter().position(|h| h.trim() == name);
            let (Some(ti), Some(li)) = (col(text_col), col(label_col)) else {
                return Err(TrainError::BadLine {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: format!(
                        "the CSV header must name columns {text_col:?} and {label_col:?} (found {:?}; \
                         other names: --text-column, --label-column)",
                        headers.iter().collect::<Vec<_>>()
                    ),
                });
            };
            let mut record = csv::StringRecord::new();
            loop {
                let line_guess = rdr.position().line() as usize;
                match rdr.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record
                            .position()
                            .map(|p| p.line() as usize)
                            .unwrap_or(line_guess);
                        if record.iter().all(|f| f.trim().is_empty()) {
                            continue;
                        }
                        let r = match (record.get(ti), record.get(li)) {
                            (Some(t), Some(l)) => check_fields(t, l),
                            _ => Err(format!(
                                "expected {} fields (header), found {}",
                                headers.len(),
                                record.len()
                            )),
                        };
                        accept(line, r)?;
                    }
                    Err(e) => {
                        let line = e
                            .position()
                            .map(|p| p.line() as usize)
                            .unwrap_or(line_guess);
                        if !skip_bad_lines || e.is_io_error() {
                            return Err(TrainError::BadLine {
                                path: path.to_path_buf(),
                                line,
                                msg: format!("CSV: {e}"),
                            });
                        }
                        accept(line, Err(e.to_string()))?;
                    }
                }
            }
        }
        "parquet" => {
            for (row, r) in parquet_file::read_rows(path, text_col, label_col)? {
                accept(row, r.map_err(|m| format!("row {row}: {m}")))?;
            }
        }
        _ => {
            return Err(TrainError::data(
                path,
                "unknown data format: use .txt (text;label), .csv (text,label), .jsonl or .parquet",
            ))
        }
    }
    if out.examples.is_empty() {
        return Err(TrainError::data(path, "no examples in file"));
    }
    Ok(out)
}

fn check_fields(text: &str, label: &str) -> std::result::Result<(String, String), String> {
    let label = label.trim();
    if text.trim().is_empty() {
        return Err("empty text".into());
    }
    if label.is_empty() {
        return Err("empty label".into());
    }
    Ok((text.to_string(), label.to_string()))
}

/// Parses `text;label`, splitting on the last `;`.
pub fn parse_txt_line(line: &str) -> std::result::Result<(String, String), String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    match line.rsplit_once(';') {
        Some((text, label)) => check_fields(text, label),
        None => Err("expected `text;label` (no ';' on the line)".into()),
    }
}

/// Parses `{"text": ..., "label": ...}` (label a string or a non-negative integer).
pub fn parse_jsonl_line(line: &str) -> std::result::Result<(String, String), String> {
    parse_jsonl_fields(line, "text", "label")
}

/// Parses a JSON line with the text in field `text_col` and the label in `label_col`.
pub fn parse_jsonl_fields(
    line: &str,
    text_col: &str,
    label_col: &str,
) -> std::result::Result<(String, String), String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let text = match v.get(text_col) {
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return Err(format!("field {text_col:?} must be a string")),
        None => return Err(format!("missing field {text_col:?}")),
    };
    let label = match v.get(label_col) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        Some(_) => {
            return Err(format!(
                "field {label_col:?} must be a string or a non-negative integer"
            ))
        }
        None => return Err(format!("missing field {label_col:?}")),
    };
    check_fields(text, &label)
}

/// A `tokenizers` tokenizer with its fixed padding/truncation turned off; truncation to
/// `max_len` is done here (keeping the final `[SEP]`), padding per batch in [`make_batch`].
pub struct TextEncoder {
    tok: tokenizers::Tokenizer,
    path: PathBuf,
    /// Maximum sequence length including special tokens.
    pub max_len: usize,
    /// Id used to pad batches.
    pub pad_id: u32,
}

impl TextEncoder {
    /// Loads `tokenizer.json`, disabling its padding and truncation.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(TrainError::Options(format!(
                "--max-len {max_len}: must be at least 2"
            )));
        }
        let mut tok =
            tokenizers::Tokenizer::from_file(path).map_err(|e| TrainError::Tokenizer {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        let pad_id = tok
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tok.token_to_id("[PAD]"))
            .unwrap_or(0);
        tok.with_padding(None);
        tok.with_truncation(None)
            .map_err(|e| TrainError::Tokenizer {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        Ok(TextEncoder {
            tok,
            path: path.to_path_buf(),
            max_len,
            pad_id,
        })
    }

    /// Loads `DIR/tokenizer.json`.
    pub fn from_model_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let p = dir.join("tokenizer.json");
        if !p.is_file() {
            return Err(TrainError::Tokenizer {
                path: p,
                msg: "missing (the model directory needs a tokenizer.json)".into(),
            });
        }
        Self::from_file(&p, max_len)
    }

    /// Encodes texts to ids with special tokens, truncated to `max_len` (the last token kept).
    pub fn encode_all(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs =
            self.tok
                .encode_batch(texts.to_vec(), true)
                .map_err(|e| TrainError::Tokenizer {
                    path: self.path.clone(),
                    msg: e.to_string(),
                })?;
        Ok(encs
            .into_iter()
            .map(|e| truncate(e.get_ids(), self.max_len))
            .collect())
    }
}

/// Truncates an encoded sequence to `max_len`, keeping its last token (the `[SEP]`).
pub fn truncate(ids: &[u32], max_len: usize) -> Vec<u32> {
    if ids.len() <= max_len {
        return ids.to_vec();
    }
    let mut v = ids[..max_len - 1].to_vec();
    if let Some(&last) = ids.last() {
        v.push(last);
    }
    v
}

/// A tokenized split.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Token ids per example (unpadded).
    pub ids: Vec<Vec<u32>>,
    /// Label id per example.
    pub labels: Vec<usize>,
}

impl Encoded {
    /// Tokenizes a split.
    pub fn new(enc: &TextEncoder, split: &Split) -> Result<Self> {
        Ok(Encoded {
            ids: enc.encode_all(&split.texts())?,
            labels: split.labels(),
        })
    }
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Keeps the first `n` examples.
    pub fn truncate(&mut self, n: usize) {
        self.ids.truncate(n);
        self.labels.truncate(n);
    }
}

/// A dynamically padded batch, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Example indices (into the [`Encoded`] split) of the rows.
    pub indices: Vec<usize>,
    /// Token ids, padded with the pad id.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Label ids.
    pub labels: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns: the longest sequence in the batch.
    pub seq_len: usize,
}

/// Pads the chosen examples to the longest one among them.
pub fn make_batch(data: &Encoded, indices: &[usize], pad_id: u32) -> Batch {
    let seq_len = indices
        .iter()
        .map(|&i| data.ids[i].len())
        .max()
        .unwrap_or(0);
    let mut ids = Vec::with_capacity(indices.len() * seq_len);
    let mut mask = Vec::with_capacity(indices.len() * seq_len);
    for &i in indices {
        let row = &data.ids[i];
        ids.extend_from_slice(row);
        mask.extend(std::iter::repeat_n(1u32, row.len()));
        ids.extend(std::iter::repeat_n(pad_id, seq_len - row.len()));
        mask.extend(std::iter::repeat_n(0u32, seq_len - row.len()));
    }
    Batch {
        indices: indices.to_vec(),
        ids,
        mask,
        labels: indices.iter().map(|&i| data.labels[i] as u32).collect(),
        batch: indices.len(),
        seq_len,
    }
}

/// How the training order of one epoch is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderOptions {
    /// Examples per batch.
    pub batch_size: usize,
    /// The run's seed.
    pub seed: u64,
    /// Group similar lengths (transformers' `group_by_length`: shuffled mega-batches of 50
    /// batches, each sorted by length, longest first).
    pub group_by_length: bool,
}

/// The batches (example indices) of training epoch `epoch` (0-based). A pure function of its
/// arguments, so a resumed run rebuilds the same order and skips the batches already done.
pub fn epoch_batches(lengths: &[usize], epoch: usize, o: &OrderOptions) -> Vec<Vec<usize>> {
    let bs = o.batch_size.max(1);
    let mut rng =
        ChaCha8Rng::seed_from_u64(o.seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    if o.group_by_length {
        for mega in order.chunks_mut(bs * 50) {
            mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        }
        let mut batches: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        batches.shuffle(&mut rng);
        batches
    } else {
        order.chunks(bs).map(<[usize]>::to_vec).collect()
    }
}

/// Evaluation batches: examples sorted by length (less padding); results are mapped back
/// through [`Batch::indices`].
pub fn eval_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_splits_on_last_semicolon() {
        assert_eq!(
            parse_txt_line("a;b;c;joy"),
            Ok(("a;b;c".to_string(), "joy".to_string()))
        );
        assert!(parse_txt_line("no label").is_err());
        assert!(parse_txt_line("text;").is_err());
        assert!(parse_txt_line(";joy").is_err());
    }

    #[test]
    fn jsonl_accepts_names_and_ids() {
        assert_eq!(
            parse_jsonl_line(r#"{"text":"hi","label":3}"#),
            Ok(("hi".to_string(), "3".to_string()))
        );
        assert_eq!(
            parse_jsonl_line(r#"{"text":"hi","label":"joy"}"#),
            Ok(("hi".to_string(), "joy".to_string()))
        );
        assert!(parse_jsonl_line(r#"{"text":"hi","label":-1}"#).is_err());
        assert!(parse_jsonl_line(r#"{"label":"joy"}"#).is_err());
    }

    #[test]
    fn truncation_keeps_last_token() {
        assert_eq!(truncate(&[101, 1, 2, 3, 102], 4), vec![101, 1, 2, 102]);
        assert_eq!(truncate(&[101, 1, 102], 4), vec![101, 1, 102]);
    }

    #[test]
    fn batches_pad_to_longest() {
        let data = Encoded {
            ids: vec![vec![1, 2, 3], vec![4], vec![5, 6]],
            labels: vec![0, 1, 2],
        };
        let b = make_batch(&data, &[1, 0], 0);
        assert_eq!(b.seq_len, 3);
        assert_eq!(b.ids, vec![4, 0, 0, 1, 2, 3]);
        assert_eq!(b.mask, vec![1, 0, 0, 1, 1, 1]);
        assert_eq!(b.labels, vec![1, 0]);
    }

    #[test]
    fn epoch_order_is_seeded_and_covers_everything() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 61 + 2).collect();
        for group in [false, true] {
            let o = OrderOptions {
                batch_size: 8,
                seed: 42,
                group_by_length: group,
            };
            let a = epoch_batches(&lengths, 0, &o);
            assert_eq!(a, epoch_batches(&lengths, 0, &o));
            assert_ne!(a, epoch_batches(&lengths, 1, &o));
            let mut all: Vec<usize> = a.concat();
            all.sort_unstable();
            assert_eq!(all, (0..1000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn grouped_batches_have_less_padding() {
        let lengths: Vec<usize> = (0..2000).map(|i| (i * 7919) % 61 + 2).collect();
        let pad = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let m = b.iter().map(|&i| lengths[i]).max().unwrap_or(0);
                    b.iter().map(|&i| m - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let mut o = OrderOptions {
            batch_size: 16,
            seed: 1,
            group_by_length: false,
        };
        let plain = pad(&epoch_batches(&lengths, 0, &o));
        o.group_by_length = true;
        let grouped = pad(&epoch_batches(&lengths, 0, &o));
        assert!(grouped * 4 < plain, "grouped {grouped} plain {plain}");
    }
}
