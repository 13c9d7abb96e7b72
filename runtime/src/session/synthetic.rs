//! Texts of an exact token count, for benchmarks.
use crate::error::{Error, Result};
use crate::tokenizer::{SeqEncoding, Tokenizer};

/// A text that encodes to exactly `tokens` tokens (with `[CLS]`/`[SEP]`): `tokens - 2` copies of
/// the first lowercase whole-word token of the vocabulary, or, in a vocabulary without one (test
/// fixtures), of the first other token that is one token on its own (punctuation). Used by
/// benchmarks.
pub fn synthetic_text(tok: &Tokenizer, tokens: usize) -> Result<String> {
    let mut enc = Box::<SeqEncoding>::default();
    let mut one_token =
        |t: &str| tok.encode_into(t, 8, &mut enc).is_ok() && enc.input_ids.len() == 3;
    let vocab = || (0..tok.vocab_size() as u32).filter_map(|id| tok.id_to_token(id));
    let lowercase_word = |t: &&str| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_lowercase());
    let special = |t: &str| t.starts_with('[') && t.ends_with(']');
    let plain = |t: &&str| !(t.starts_with("##") || special(t));
    let word = match vocab().filter(lowercase_word).find(|t| one_token(t)) {
        Some(word) => word,
        None => vocab()
            .filter(plain)
            .find(|t| one_token(t))
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "vocabulary has no token that encodes to one token alone to build a text from"
                        .into(),
                )
            })?,
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerConfig;

    fn tokenizer(vocab: &[&str]) -> Tokenizer {
        let mut lines = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        lines.extend_from_slice(vocab);
        Tokenizer::new(&lines.join("\n"), TokenizerConfig::default()).expect("test vocab")
    }

    fn ids(tok: &Tokenizer, text: &str) -> Vec<i64> {
        let mut enc = Box::<SeqEncoding>::default();
        tok.encode_into(text, 64, &mut enc).expect("encodes");
        enc.input_ids.to_vec()
    }

    #[test]
    fn a_lowercase_word_is_repeated_to_the_token_count() {
        let tok = tokenizer(&["!", "##ing", "Hello", "x", "word"]);
        let text = synthetic_text(&tok, 12).expect("a text");
        assert_eq!(text, ["word"; 10].join(" "));
        assert_eq!(ids(&tok, &text).len(), 12);
    }

    #[test]
    fn a_vocabulary_without_words_falls_back_to_punctuation() {
        let tok = tokenizer(&["[unused0]", "##s", "!"]);
        let text = synthetic_text(&tok, 9).expect("a text");
        assert_eq!(text, ["!"; 7].join(" "));
        assert_eq!(ids(&tok, &text).len(), 9);
    }

    #[test]
    fn a_vocabulary_of_special_tokens_only_is_an_error() {
        let tok = tokenizer(&["[unused0]", "##s"]);
        let err = synthetic_text(&tok, 9).expect_err("no text");
        assert!(err.to_string().contains("one token alone"), "{err}");
    }
}
