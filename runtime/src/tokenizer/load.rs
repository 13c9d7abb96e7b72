//! Loading tokenizers from disk (std only): `vocab.txt`, Hugging Face `tokenizer.json`
//! (BERT type only) and Hugging Face model directories.

use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

use serde_json::Value;

use super::{Tokenizer, TokenizerConfig, TokenizerError, MASK_TOKEN};

/// `null`, for absent fields.
static NULL: Value = Value::Null;

fn load_err(path: &Path, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Load {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|e| load_err(path, e.to_string()))
}

fn with_path(path: &Path, e: TokenizerError) -> TokenizerError {
    match e {
        TokenizerError::Load { .. } => e,
        other => load_err(path, other.to_string()),
    }
}

/// `Tokenizer::from_vocab_file`.
pub(super) fn from_vocab_file(
    path: &Path,
    config: TokenizerConfig,
) -> Result<Tokenizer, TokenizerError> {
    let text = read(path)?;
    Tokenizer::new(&text, config).map_err(|e| with_path(path, e))
}

/// The `"type"` of a tokenizer.json component, for messages.
fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Object(m) => match m.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => "an object without \"type\"".into(),
        },
        other => other.to_string(),
    }
}

fn expect_type(path: &Path, root: &Value, field: &str, want: &str) -> Result<(), TokenizerError> {
    let v = root.get(field).unwrap_or(&NULL);
    let got = type_name(v);
    if got == want {
        Ok(())
    } else {
        Err(load_err(
            path,
            format!(
                "field \"{field}\" has type {got}; only BERT tokenizers are supported \
                 ({field} type {want})"
            ),
        ))
    }
}

fn get_bool(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn get_str(v: &Value, key: &str, default: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
}

/// `Tokenizer::from_tokenizer_json`.
pub(super) fn from_tokenizer_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let text = read(path)?;
    let root: Value =
        serde_json::from_str(&text).map_err(|e| load_err(path, format!("invalid JSON: {e}")))?;
    expect_type(path, &root, "model", "WordPiece")?;
    expect_type(path, &root, "normalizer", "BertNormalizer")?;
    expect_type(path, &root, "pre_tokenizer", "BertPreTokenizer")?;
    let model = &root["model"];
    let norm = &root["normalizer"];
    let mut config = TokenizerConfig {
        lowercase: get_bool(norm, "lowercase", true),
        strip_accents: norm.get("strip_accents").and_then(Value::as_bool),
        handle_chinese_chars: get_bool(norm, "handle_chinese_chars", true),
        clean_text: get_bool(norm, "clean_text", true),
        unk_token: get_str(model, "unk_token", "[UNK]"),
        continuing_subword_prefix: get_str(model, "continuing_subword_prefix", "##"),
        max_input_chars_per_word: model
            .get("max_input_chars_per_word")
            .and_then(Value::as_u64)
            .map_or(100, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        ..TokenizerConfig::default()
    };
    // [CLS] $A [SEP] from the post-processor.
    let post = root.get("post_processor").unwrap_or(&NULL);
    match type_name(post).as_str() {
        "BertProcessing" => {
            let name = |k: &str| post[k][0].as_str().map(str::to_string);
            config.cls_token =
                name("cls").ok_or_else(|| load_err(path, "post_processor.cls missing"))?;
            config.sep_token =
                name("sep").ok_or_else(|| load_err(path, "post_processor.sep missing"))?;
        }
        "TemplateProcessing" => {
            let single = post["single"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let special = |p: &Value| p["SpecialToken"]["id"].as_str().map(str::to_string);
            let ok = single.len() == 3
                && single[1]["Sequence"]["id"].as_str() == Some("A")
                && special(&single[0]).is_some()
                && special(&single[2]).is_some();
            if !ok {
                return Err(load_err(
                    path,
                    "post_processor TemplateProcessing: only the single template \
                     [special] $A [special] is supported",
                ));
            }
            config.cls_token = special(&single[0]).unwrap_or_default();
            config.sep_token = special(&single[2]).unwrap_or_default();
        }
        other => {
            return Err(load_err(
                path,
                format!(
                    "field \"post_processor\" has type {other}; only BERT tokenizers are \
                     supported (BertProcessing or TemplateProcessing [CLS] $A [SEP])"
                ),
            ))
        }
    }
    if let Some(p) = root
        .get("padding")
        .and_then(|p| p.get("pad_token"))
        .and_then(Value::as_str)
    {
        config.pad_token = p.to_string();
    }
    // Vocab: token -> id map, written out as vocab.txt lines. Ids need not be dense (a
    // vocab.txt with duplicate lines yields gaps); a gap becomes an empty line, which no
    // word can match.
    let map = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| load_err(path, "model.vocab is missing or not an object"))?;
    let id_limit = map.len().saturating_mul(2).saturating_add(1024);
    let mut lines: Vec<Option<&str>> = Vec::with_capacity(map.len());
    for (tok, id) in map {
        let id = id
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < id_limit)
            .ok_or_else(|| {
                load_err(
                    path,
                    format!("model.vocab[{tok:?}] = {id} is not an id below {id_limit}"),
                )
            })?;
        if tok.contains('\n') || tok.trim_end() != tok {
            return Err(load_err(
                path,
                format!(
                    "model.vocab token {tok:?} (id {id}) has a line break or trailing whitespace"
                ),
            ));
        }
        if lines.len() <= id {
            lines.resize(id + 1, None);
        }
        if let Some(prev) = lines[id] {
            return Err(load_err(
                path,
                format!("model.vocab: id {id} used by {prev:?} and {tok:?}"),
            ));
        }
        lines[id] = Some(tok.as_str());
    }
    let mut vocab_txt = String::with_capacity(text.len() / 2);
    for tok in &lines {
        vocab_txt.push_str(tok.unwrap_or(""));
        vocab_txt.push('\n');
    }
    let tok = Tokenizer::new(&vocab_txt, config).map_err(|e| with_path(path, e))?;
    check_added_tokens(path, &root, &tok)?;
    Ok(tok)
}

/// The added tokens must be exactly the ones `Tokenizer` treats as special (matched in raw
/// text): otherwise results would silently differ from Hugging Face.
fn check_added_tokens(path: &Path, root: &Value, tok: &Tokenizer) -> Result<(), TokenizerError> {
    let empty = Vec::new();
    let added = root
        .get("added_tokens")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut seen = Vec::new();
    for a in added {
        let content = a["content"].as_str().unwrap_or("");
        let id = a["id"].as_u64();
        let plain = !get_bool(a, "single_word", false)
            && !get_bool(a, "lstrip", false)
            && !get_bool(a, "rstrip", false)
            && !get_bool(a, "normalized", false);
        let known = tok
            .token_to_id(content)
            .filter(|i| tok.specials.contains(i) && Some(u64::from(*i)) == id);
        if !plain || known.is_none() {
            return Err(load_err(
                path,
                format!(
                    "added_tokens: {content:?} (id {id:?}) is not supported; edgebert treats \
                     exactly the unk/cls/sep/pad tokens and {MASK_TOKEN} as special \
                     (special, not normalized, no strip/single_word)"
                ),
            ));
        }
        seen.push(known.unwrap_or(0));
    }
    for &id in &tok.specials {
        if !seen.contains(&id) {
            return Err(load_err(
                path,
                format!(
                    "added_tokens lacks {:?}: edgebert would treat it as special, Hugging Face not",
                    tok.id_to_token(id).unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

/// `Tokenizer::from_hf_dir`.
pub(super) fn from_hf_dir(dir: &Path) -> Result<Tokenizer, TokenizerError> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return from_tokenizer_json(&json);
    }
    let vocab = dir.join("vocab.txt");
    if !vocab.is_file() {
        return Err(load_err(
            dir,
            "no tokenizer.json or vocab.txt in this directory",
        ));
    }
    let mut config = TokenizerConfig::default();
    let cfg_path = dir.join("tokenizer_config.json");
    if cfg_path.is_file() {
        let v: Value = serde_json::from_str(&read(&cfg_path)?)
            .map_err(|e| load_err(&cfg_path, format!("invalid JSON: {e}")))?;
        config.lowercase = get_bool(&v, "do_lower_case", config.lowercase);
        config.handle_chinese_chars =
            get_bool(&v, "tokenize_chinese_chars", config.handle_chinese_chars);
        config.strip_accents = v.get("strip_accents").and_then(Value::as_bool);
        for (key, slot) in [
            ("unk_token", &mut config.unk_token),
            ("cls_token", &mut config.cls_token),
            ("sep_token", &mut config.sep_token),
            ("pad_token", &mut config.pad_token),
        ] {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                *slot = s.to_string();
            }
        }
    }
    from_vocab_file(&vocab, config)
}
