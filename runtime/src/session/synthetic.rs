//! Texts of an exact token count, for benchmarks.
use crate::error::{Error, Result};
use crate::tokenizer::{SeqEncoding, Tokenizer};

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
