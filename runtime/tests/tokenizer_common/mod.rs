//! Shared helpers for the tokenizer tests: locating /work/shared, a Hugging Face reference
//! pipeline built from the same vocab, the comparison, and the generated stress inputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edgebert_runtime::tokenizer::{SeqEncoding, Tokenizer, TokenizerConfig};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, TruncationParams};

/// `EDGEBERT_SHARED`; panics with how to set it when unset (the tests that call this are
/// `#[ignore]`d, so they run only with `--include-ignored`).
pub fn shared_dir(test: &str) -> PathBuf {
    match std::env::var_os("EDGEBERT_SHARED") {
        Some(d) => {
            // A relative path is read from the workspace root, where the README's command runs
            // (cargo runs each test in its own package's folder).
            let d = PathBuf::from(d);
            if d.is_relative() {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(d)
            } else {
                d
            }
        },
        None => panic!(
            "{test} needs EDGEBERT_SHARED: the folder holding data/emotion and models/all-MiniLM-L6-v2 (this test is ignored by default; run it with `EDGEBERT_SHARED=../shared cargo test --workspace -- --include-ignored`)"
        ),
    }
}

/// The committed tiny vocab.
pub fn fixture_vocab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/vocab.txt")
}

/// Texts of an emotion split (`text;label` lines; text = part before the last ';').
pub fn emotion_texts(shared: &Path, split: &str) -> Vec<String> {
    let path = shared.join("data/emotion").join(format!("{split}.txt"));
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    body.lines()
        .map(|l| l.rsplit_once(';').map_or(l, |(t, _)| t).to_string())
        .collect()
}

/// A Hugging Face BERT pipeline over `vocab_path` with the same settings as `config`
/// (special tokens [PAD] [UNK] [CLS] [SEP] [MASK] as added special tokens).
pub fn hf_from_vocab(vocab_path: &Path, config: &TokenizerConfig) -> tokenizers::Tokenizer {
    let wp = WordPiece::from_file(&vocab_path.to_string_lossy())
        .unk_token(config.unk_token.clone())
        .continuing_subword_prefix(config.continuing_subword_prefix.clone())
        .max_input_chars_per_word(config.max_input_chars_per_word)
        .build()
        .expect("WordPiece::from_file");
    let vocab = std::fs::read_to_string(vocab_path).expect("read vocab");
    let id = |t: &str| {
        vocab
            .lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| l.trim_end() == t)
            .expect("special token in vocab") as u32
    };
    let mut hf = tokenizers::Tokenizer::new(wp);
    hf.with_normalizer(Some(BertNormalizer::new(
        config.clean_text,
        config.handle_chinese_chars,
        config.strip_accents,
        config.lowercase,
    )))
    .expect("normalizer");
    hf.with_pre_tokenizer(Some(BertPreTokenizer));
    hf.with_post_processor(Some(BertProcessing::new(
        (config.sep_token.clone(), id(&config.sep_token)),
        (config.cls_token.clone(), id(&config.cls_token)),
    )));
    let mut specials = vec![
        config.pad_token.clone(),
        config.unk_token.clone(),
        config.cls_token.clone(),
        config.sep_token.clone(),
    ];
    if vocab.lines().any(|l| l.trim_end() == "[MASK]") {
        specials.push("[MASK]".into());
    }
    hf.add_special_tokens(specials.into_iter().map(|s| AddedToken::from(s, true)))
        .expect("special tokens");
    hf
}

/// Sets `max_length` truncation (and no padding) on a reference tokenizer.
pub fn hf_set_max_len(hf: &mut tokenizers::Tokenizer, max_len: usize) {
    hf.with_padding(None);
    hf.with_truncation(Some(TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .expect("truncation");
}

/// Compares ids, mask and the truncation flag; `Err` describes the first difference.
pub fn compare(
    ours: &Tokenizer,
    hf: &tokenizers::Tokenizer,
    text: &str,
    max_len: usize,
    enc: &mut SeqEncoding,
) -> Result<(), String> {
    ours.encode_into(text, max_len, enc)
        .map_err(|e| format!("ours failed: {e}"))?;
    let r = hf
        .encode(text, true)
        .map_err(|e| format!("hf failed: {e}"))?;
    let hf_ids: Vec<i64> = r.get_ids().iter().map(|&i| i64::from(i)).collect();
    let hf_mask: Vec<i64> = r
        .get_attention_mask()
        .iter()
        .map(|&i| i64::from(i))
        .collect();
    let hf_trunc = !r.get_overflowing().is_empty();
    if enc.input_ids.as_slice() != hf_ids.as_slice()
        || enc.attention_mask.as_slice() != hf_mask.as_slice()
        || enc.truncated != hf_trunc
    {
        let short: String = text.chars().take(200).collect();
        return Err(format!(
            "mismatch for {short:?} ({} bytes):\n ours {:?} (truncated {})\n   hf {:?} (truncated {hf_trunc})\n   hf tokens {:?}",
            text.len(),
            &enc.input_ids[..enc.input_ids.len().min(60)],
            enc.truncated,
            &hf_ids[..hf_ids.len().min(60)],
            &r.get_tokens()[..r.get_tokens().len().min(60)],
        ));
    }
    Ok(())
}

/// SplitMix64: a tiny seeded RNG so the random inputs are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn in_range(&mut self, lo: u32, hi: u32) -> char {
        loop {
            let c = lo + self.below(u64::from(hi - lo + 1)) as u32;
            if let Some(ch) = char::from_u32(c) {
                return ch;
            }
        }
    }
    /// One char from a mix weighted towards the classes the pipeline treats specially.
    pub fn char(&mut self) -> char {
        match self.below(100) {
            0..=29 => self.in_range(0x20, 0x7E),
            30..=34 => self.in_range(0x00, 0x1F),
            35..=39 => [
                ' ', ' ', '\t', '\n', '\u{A0}', '\u{3000}', '\u{2028}', '\u{85}',
            ][self.below(8) as usize],
            40..=51 => self.in_range(0x80, 0x24F),
            52..=61 => match self.below(4) {
                0 => self.in_range(0x300, 0x36F),
                1 => self.in_range(0x1DC0, 0x1DFF),
                2 => self.in_range(0x20D0, 0x20FF),
                _ => self.in_range(0x1D165, 0x1D172),
            },
            62..=67 => self.in_range(0x370, 0x3FF),
            68..=73 => match self.below(4) {
                0 => self.in_range(0x4E00, 0x9FFF),
                1 => self.in_range(0xAC00, 0xD7A3),
                2 => self.in_range(0x3040, 0x30FF),
                _ => self.in_range(0xF900, 0xFAFF),
            },
            74..=78 => match self.below(3) {
                0 => self.in_range(0x1F300, 0x1FAFF),
                1 => '\u{200D}',
                _ => '\u{FE0F}',
            },
            79..=83 => self.in_range(0x2000, 0x2BFF),
            84..=87 => self.in_range(0xFF00, 0xFFEF),
            88..=89 => self.in_range(0x0590, 0x08FF),
            _ => self.in_range(0, 0x10FFFF),
        }
    }
    /// A random string of 0..max_chars chars, sometimes with special tokens spliced in.
    pub fn string(&mut self, max_chars: u64) -> String {
        let n = self.below(max_chars + 1);
        let mut s = String::new();
        for _ in 0..n {
            if self.below(200) == 0 {
                s.push_str(
                    ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[mask]"]
                        [self.below(6) as usize],
                );
            } else {
                s.push(self.char());
            }
        }
        s
    }
}

/// Hand-picked hard cases: accents and combining marks, CJK, emoji/ZWJ, controls and NUL,
/// RTL, full-width forms, Greek final sigma, long words, special tokens in text.
pub fn stress_inputs() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "Hello, World!",
        "Café naïve résumé façade jalapeño",
        "e\u{301}\u{302}\u{323}\u{31B} o\u{308}\u{304}",
        "Z\u{334}\u{321}\u{322}\u{31B}\u{324}a\u{337}l\u{338}g\u{336}o\u{335} t\u{35F}\u{361}e\u{489}xt",
        "Tiếng Việt có dấu: Hà Nội, Đà Nẵng",
        "ǅemal ǈubljana ǋ Å Ω K ﬁne ﬀ Ⅻ ⅰ ½",
        "한국어 텍스트 \u{1100}\u{1161}\u{11A8} 가각",
        "हिन्दी भाषा நன்றி ภาษาไทย",
        "مَرْحَبًا بِالْعَالَمِ",
        "中文字符测试，日本語のテキスト。",
        "混合English和中文mixed",
        "𠀀𠀁𪜀 豈更 㐀",
        "👨\u{200D}👩\u{200D}👧\u{200D}👦 family",
        "🏳\u{FE0F}\u{200D}🌈 👍🏽 🇺🇸 1\u{FE0F}\u{20E3} 🤷\u{200D}♀\u{FE0F}",
        "emoji🙂inside😀words",
        "a\u{0}b\u{0}\u{0}c",
        "\u{1}\u{2}\u{1F}\u{7F}\u{80}\u{85}\u{9F} ctrl",
        "zero\u{200B}width\u{200C}join\u{200D}er\u{FEFF}bom",
        "\u{E000}\u{E001}\u{F8FF}\u{F0000}\u{F0001} private",
        "replacement \u{FFFD} char",
        "tab\tnew\nline\r\nform\u{C}vt\u{B}",
        "\u{1C}\u{1D}\u{1E}\u{1F} info separators",
        "line\u{2028}para\u{2029}end",
        "שלום עולם",
        "مرحبا بالعالم",
        "\u{202E}abc\u{202C} \u{200F}rtl\u{200E}",
        "ＡＢＣ１２３！？ ｈｅｌｌｏ，ｗｏｒｌｄ ｶﾀｶﾅ",
        "ΟΔΟΣ Σίσυφος ΣΑΣ ΣΑΣ. ὈΔΥΣΣΕΎΣ ς σ Σ",
        "İstanbul ı I ß ẞ ǰ ΐ \u{345} Ꭰ 𐐀 Ა",
        "x\u{1D16D}\u{1D165} \u{1D160}\u{1D15F} y\u{1E944}\u{1E945}\u{1E94A}",
        "\u{11938} \u{16121} \u{0F73} \u{0F75} \u{0F81}",
        "[CLS] hello [SEP] [MASK]ed [UNK][PAD] x[SEP]y [[MASK]] [mask] [CLS",
        "don't can't won't it's e-mail U.S.A. 3.14 $5 #tag @user",
        "¡Hola! ¿Qué tal? «quote» „deutsch“ — – … ·",
        "€100 £50 ¥1000 ₹ ₿ © ® ™ ° ± × ÷",
        "http://example.com/path?q=1&r=2#frag",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [99, 100, 101, 127, 128, 129, 500] {
        v.push("a".repeat(n));
        v.push("é".repeat(n));
        v.push(format!("x {} y", "ab".repeat(n / 2 + 1)));
    }
    // Accent marks do not count once stripped: 100 letters + 50 marks.
    v.push("e\u{301}".repeat(50) + &"a".repeat(50));
    // A run of combining marks that survive stripping, longer than a word buffer.
    v.push(format!("x{}", "\u{1E944}\u{1E94A}".repeat(100)));
    v.push(format!("q {}", "\u{1D16D}\u{1D165}".repeat(70)));
    v.push("unaffable unbelievable supercalifragilisticexpialidocious".into());
    v.push("word ".repeat(600));
    v
}

/// About 1 MB inputs (truncation path): prose, one giant word, CJK, emoji.
pub fn huge_inputs() -> Vec<String> {
    let mb = 1 << 20;
    let prose = "i feel like a faithful servant, don't you? Café! ";
    vec![
        prose.repeat(mb / prose.len() + 1),
        "a".repeat(mb),
        "中".repeat(mb / 3),
        "👨\u{200D}👩\u{200D}👧 ".repeat(mb / 20),
        " ".repeat(mb) + "tail",
    ]
}
