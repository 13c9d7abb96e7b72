//! BERT WordPiece tokenizer with Hugging Face parity and no heap allocation per call.
//!
//! Stages (one file each): `normalize` (BertNormalizer), `pretokenize` (BertPreTokenizer),
//! `wordpiece` (greedy longest-match-first), `vocab` (contiguous vocab + open-addressing index),
//! `load` (std only: vocab.txt / tokenizer.json / HF directory).

pub mod chars;
#[cfg(feature = "std")]
mod load;
mod normalize;
mod pretokenize;
mod tables;
mod vocab;
mod wordpiece;

use alloc::string::String;
use core::fmt;

pub use normalize::MAX_WORD_CHARS;
use normalize::{NormalizeOptions, Normalizer, ASCII_REMOVED};
use pretokenize::{PreTokenizer, Word, WordSink};
use vocab::{hash_bytes, Vocab};

/// Largest sequence length the runtime supports (BERT position embeddings).
pub const MAX_SEQ_LEN: usize = 512;

/// Normalization, special-token and WordPiece settings (Hugging Face BERT semantics).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenizerConfig {
    /// Lowercase the text (`do_lower_case`).
    pub lowercase: bool,
    /// Strip accents (NFD + drop Mn marks); `None` follows `lowercase`.
    pub strip_accents: Option<bool>,
    /// Put spaces around CJK ideographs so each becomes its own word.
    pub handle_chinese_chars: bool,
    /// Drop NUL/U+FFFD/control characters and map whitespace to ' '.
    pub clean_text: bool,
    /// Unknown token.
    pub unk_token: String,
    /// Classification token put first.
    pub cls_token: String,
    /// Separator token put last.
    pub sep_token: String,
    /// Padding token.
    pub pad_token: String,
    /// Prefix of word-continuation pieces (`##`).
    pub continuing_subword_prefix: String,
    /// Words longer than this many chars become `[UNK]`.
    pub max_input_chars_per_word: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            strip_accents: None,
            handle_chinese_chars: true,
            clean_text: true,
            unk_token: "[UNK]".into(),
            cls_token: "[CLS]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
            continuing_subword_prefix: "##".into(),
            max_input_chars_per_word: 100,
        }
    }
}

/// Token ids and attention mask of one input, in caller-owned fixed-capacity buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding<const N: usize> {
    /// `[CLS] tokens.. [SEP]`.
    pub input_ids: heapless::Vec<i64, N>,
    /// All ones (no padding is added).
    pub attention_mask: heapless::Vec<i64, N>,
    /// Whether tokens were dropped to fit `max_len`.
    pub truncated: bool,
}

impl<const N: usize> Encoding<N> {
    /// An empty encoding.
    pub const fn new() -> Self {
        Self {
            input_ids: heapless::Vec::new(),
            attention_mask: heapless::Vec::new(),
            truncated: false,
        }
    }

    /// Number of tokens (including `[CLS]` and `[SEP]`).
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the encoding holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Empties both buffers.
    pub fn clear(&mut self) {
        self.input_ids.clear();
        self.attention_mask.clear();
        self.truncated = false;
    }
}

impl<const N: usize> Default for Encoding<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// An encoding sized for the largest supported sequence.
pub type SeqEncoding = Encoding<MAX_SEQ_LEN>;

/// Everything that can go wrong building or running the tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A required special token is not in the vocabulary.
    MissingToken {
        /// Which role (`unk_token`, `cls_token`, ...).
        role: &'static str,
        /// The token text.
        token: String,
    },
    /// The vocabulary is empty or too large.
    InvalidVocab(String),
    /// A configuration value is out of the supported range.
    InvalidConfig(String),
    /// `max_len` cannot hold `[CLS]` and `[SEP]`.
    MaxLenTooSmall {
        /// The requested length (after clamping to the buffer capacity).
        max_len: usize,
    },
    /// A tokenizer file could not be read or parsed (std only).
    Load {
        /// The file at fault.
        path: String,
        /// What was wrong and what was expected.
        reason: String,
    },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingToken { role, token } => {
                write!(f, "tokenizer: {role} {token:?} is not in the vocabulary")
            }
            Self::InvalidVocab(why) => write!(f, "tokenizer: invalid vocabulary: {why}"),
            Self::InvalidConfig(why) => write!(f, "tokenizer: invalid config: {why}"),
            Self::MaxLenTooSmall { max_len } => write!(
                f,
                "tokenizer: max_len {max_len} cannot hold [CLS] and [SEP] (need at least 2)"
            ),
            Self::Load { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

impl core::error::Error for TokenizerError {}

/// Most special tokens (matched in raw text, as Hugging Face's added tokens) a tokenizer holds.
const MAX_SPECIAL: usize = 8;

/// BERT WordPiece tokenizer; immutable after construction, cheap to share.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    config: TokenizerConfig,
    vocab: Vocab,
    unk_id: u32,
    cls_id: u32,
    sep_id: u32,
    pad_id: u32,
    /// Ids of the tokens matched verbatim in the raw text before normalization
    /// (unk, cls, sep, pad and `[MASK]` when in the vocab), like HF special added tokens.
    specials: heapless::Vec<u32, MAX_SPECIAL>,
    /// `special_first[b]`: some special token starts with byte `b`.
    special_first: [bool; 256],
    opts: NormalizeOptions,
    ascii_map: [u8; 128],
    /// FNV state after hashing the continuation prefix.
    prefix_state: u64,
}

/// The mask token also treated as special when present in the vocab.
pub const MASK_TOKEN: &str = "[MASK]";

impl Tokenizer {
    /// Builds a tokenizer from `vocab.txt` contents (one token per line, id = line index).
    pub fn new(vocab_txt: &str, config: TokenizerConfig) -> Result<Self, TokenizerError> {
        if config.max_input_chars_per_word > MAX_WORD_CHARS {
            return Err(TokenizerError::InvalidConfig(alloc::format!(
                "max_input_chars_per_word = {} exceeds the supported {MAX_WORD_CHARS}",
                config.max_input_chars_per_word
            )));
        }
        let vocab = Vocab::from_vocab_txt(vocab_txt)?;
        let id_of = |role: &'static str, token: &str| {
            if token.is_empty() {
                return Err(TokenizerError::InvalidConfig(alloc::format!(
                    "{role} is empty"
                )));
            }
            vocab
                .get(token)
                .ok_or_else(|| TokenizerError::MissingToken {
                    role,
                    token: token.into(),
                })
        };
        let unk_id = id_of("unk_token", &config.unk_token)?;
        let cls_id = id_of("cls_token", &config.cls_token)?;
        let sep_id = id_of("sep_token", &config.sep_token)?;
        let pad_id = id_of("pad_token", &config.pad_token)?;
        let mut specials = heapless::Vec::<u32, MAX_SPECIAL>::new();
        let mask_id = vocab.get(MASK_TOKEN);
        for id in [
            Some(pad_id),
            Some(unk_id),
            Some(cls_id),
            Some(sep_id),
            mask_id,
        ]
        .into_iter()
        .flatten()
        {
            if !specials.contains(&id) {
                // At most five distinct ids, below MAX_SPECIAL.
                let _ = specials.push(id);
            }
        }
        let mut special_first = [false; 256];
        for &id in &specials {
            if let Some(&b) = vocab.token(id).and_then(|t| t.as_bytes().first()) {
                special_first[b as usize] = true;
            }
        }
        let opts = NormalizeOptions {
            clean_text: config.clean_text,
            handle_chinese_chars: config.handle_chinese_chars,
            strip_accents: config.strip_accents.unwrap_or(config.lowercase),
            lowercase: config.lowercase,
        };
        let prefix_state = hash_bytes(Vocab::seed(), config.continuing_subword_prefix.as_bytes());
        Ok(Self {
            ascii_map: opts.ascii_map(),
            opts,
            vocab,
            unk_id,
            cls_id,
            sep_id,
            pad_id,
            specials,
            special_first,
            prefix_state,
            config,
        })
    }

    /// Loads `vocab.txt` from disk.
    #[cfg(feature = "std")]
    pub fn from_vocab_file(
        path: &std::path::Path,
        config: TokenizerConfig,
    ) -> Result<Self, TokenizerError> {
        load::from_vocab_file(path, config)
    }

    /// Loads a BERT-type Hugging Face `tokenizer.json` (normalizer BertNormalizer,
    /// pre_tokenizer BertPreTokenizer, model WordPiece); other types are an error naming the type.
    #[cfg(feature = "std")]
    pub fn from_tokenizer_json(path: &std::path::Path) -> Result<Self, TokenizerError> {
        load::from_tokenizer_json(path)
    }

    /// Loads from a Hugging Face model directory: `tokenizer.json` if present, else
    /// `vocab.txt` (+ `tokenizer_config.json` `do_lower_case` etc. if present).
    #[cfg(feature = "std")]
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Self, TokenizerError> {
        load::from_hf_dir(dir)
    }

    /// The configuration in use.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Number of ids (vocab.txt lines).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The vocabulary as `vocab.txt` text; `new(&t.vocab_txt(), t.config().clone())` rebuilds `t`.
    pub fn vocab_txt(&self) -> String {
        self.vocab.to_vocab_txt()
    }

    /// Id of an exact token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token)
    }

    /// Token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.vocab.token(id)
    }

    /// Id of `[PAD]` (the configured pad token).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of `[CLS]` (the configured cls token).
    pub fn cls_id(&self) -> u32 {
        self.cls_id
    }

    /// Id of `[SEP]` (the configured sep token).
    pub fn sep_id(&self) -> u32 {
        self.sep_id
    }

    /// Id of `[UNK]` (the configured unk token).
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Writes `[CLS] tokens.. [SEP]` into `out`, truncated to `max_len` (clamped to `N`)
    /// keeping `[SEP]`; mask all ones; no padding; no heap allocation.
    ///
    /// Special tokens (`[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]`) written in the text are
    /// kept as single tokens, as Hugging Face does. Errors only if `max_len` (after clamping)
    /// is below 2; `out` is then left empty.
    pub fn encode_into<const N: usize>(
        &self,
        text: &str,
        max_len: usize,
        out: &mut Encoding<N>,
    ) -> Result<(), TokenizerError> {
        out.clear();
        let limit = max_len.min(N);
        if limit < 2 {
            return Err(TokenizerError::MaxLenTooSmall { max_len: limit });
        }
        let mut emitter = Emitter {
            tok: self,
            ids: &mut out.input_ids,
            cap: limit - 1,
            truncated: false,
        };
        emitter.push_id(self.cls_id);
        let mut pre = PreTokenizer::new(emitter);
        let mut norm = Normalizer::new(self.opts);
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.special_first[b as usize] {
                if let Some((len, id)) = self.match_special(&bytes[i..]) {
                    norm.finish(&mut pre);
                    pre.end_word();
                    pre.sink.push_id(id);
                    if pre.sink.truncated {
                        break;
                    }
                    i += len;
                    continue;
                }
            }
            if b < 0x80 {
                let m = self.ascii_map[b as usize];
                if m != ASCII_REMOVED {
                    norm.push_mapped_ascii(m, &mut pre);
                }
                i += 1;
            } else {
                // `i` is on a char boundary: it only ever advances by whole chars.
                let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else {
                    break;
                };
                norm.push(c, &mut pre);
                i += c.len_utf8();
            }
            if pre.sink.truncated {
                break;
            }
        }
        if !pre.sink.truncated {
            norm.finish(&mut pre);
            pre.end_word();
        }
        let truncated = pre.sink.truncated;
        // cap = limit - 1 leaves exactly one slot for [SEP].
        let _ = out.input_ids.push(i64::from(self.sep_id));
        out.truncated = truncated;
        for _ in 0..out.input_ids.len() {
            let _ = out.attention_mask.push(1);
        }
        Ok(())
    }

    /// Longest special token that `rest` starts with: (byte length, id).
    #[inline]
    fn match_special(&self, rest: &[u8]) -> Option<(usize, u32)> {
        let mut best: Option<(usize, u32)> = None;
        for &id in &self.specials {
            let t = self.vocab.token(id).unwrap_or("").as_bytes();
            if !t.is_empty() && rest.starts_with(t) && best.is_none_or(|(l, _)| t.len() > l) {
                best = Some((t.len(), id));
            }
        }
        best
    }
}

/// Receives words, runs WordPiece and appends ids, tracking the truncation budget.
struct Emitter<'a, const N: usize> {
    tok: &'a Tokenizer,
    ids: &'a mut heapless::Vec<i64, N>,
    /// Ids allowed before `[SEP]`.
    cap: usize,
    truncated: bool,
}

impl<const N: usize> Emitter<'_, N> {
    #[inline]
    fn push_id(&mut self, id: u32) {
        if self.ids.len() < self.cap {
            let _ = self.ids.push(i64::from(id));
        } else {
            self.truncated = true;
        }
    }
}

impl<const N: usize> WordSink for Emitter<'_, N> {
    #[inline]
    fn word(&mut self, word: &Word) {
        if self.truncated {
            return;
        }
        let tok = self.tok;
        if word.chars() > tok.config.max_input_chars_per_word {
            self.push_id(tok.unk_id);
            return;
        }
        let start = self.ids.len();
        let cap = self.cap;
        let ids = &mut *self.ids;
        let mut overflow = false;
        let ok = wordpiece::tokenize(
            &tok.vocab,
            tok.config.continuing_subword_prefix.as_bytes(),
            tok.prefix_state,
            word.bytes(),
            |id| {
                if ids.len() < cap {
                    let _ = ids.push(i64::from(id));
                } else {
                    overflow = true;
                }
            },
        );
        if ok {
            self.truncated |= overflow;
        } else {
            self.ids.truncate(start);
            self.push_id(tok.unk_id);
        }
    }
}
