//! WordPiece: greedy longest-match-first split of one word into vocab pieces, continuation
//! pieces carrying the prefix (`##`), exactly as `tokenizers`' `WordPiece::tokenize`.

use super::normalize::MAX_WORD_CHARS;
use super::vocab::{hash_byte, Vocab};

/// Splits `word` (valid UTF-8, at most [`MAX_WORD_CHARS`] chars) into piece ids, calling
/// `emit` for each. Returns `false` if some position has no matching piece: the caller then
/// replaces the whole word by `[UNK]` (ids already emitted must be discarded).
#[inline]
pub(crate) fn tokenize(
    vocab: &Vocab,
    prefix: &[u8],
    prefix_state: u64,
    word: &[u8],
    mut emit: impl FnMut(u32),
) -> bool {
    // Hash state after each char boundary of the current candidate, so every candidate
    // `word[start..end]` costs one table probe and no rehashing.
    let mut ends = [0u16; MAX_WORD_CHARS];
    let mut states = [0u64; MAX_WORD_CHARS];
    let max_tok = vocab.max_token_len();
    let len = word.len();
    let mut start = 0;
    while start < len {
        let (mut h, pre): (u64, &[u8]) = if start == 0 {
            (Vocab::seed(), &[])
        } else {
            (prefix_state, prefix)
        };
        let max_piece = max_tok.saturating_sub(pre.len());
        let mut n = 0;
        let mut i = start;
        while i < len && n < MAX_WORD_CHARS {
            h = hash_byte(h, word[i]);
            i += 1;
            if i == len || (word[i] & 0xC0) != 0x80 {
                if i - start > max_piece {
                    break;
                }
                ends[n] = i as u16;
                states[n] = h;
                n += 1;
            }
        }
        let mut found = None;
        while n > 0 {
            n -= 1;
            let end = ends[n] as usize;
            if let Some(id) = vocab.lookup_hashed(states[n], pre, &word[start..end]) {
                found = Some((end, id));
                break;
            }
        }
        match found {
            Some((end, id)) => {
                emit(id);
                start = end;
            }
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::hash_bytes;
    use alloc::vec::Vec;

    fn wp(vocab: &Vocab, word: &str) -> Option<Vec<u32>> {
        let ps = hash_bytes(Vocab::seed(), b"##");
        let mut ids = Vec::new();
        tokenize(vocab, b"##", ps, word.as_bytes(), |id| ids.push(id)).then_some(ids)
    }

    #[test]
    fn greedy_longest_match_first() {
        let v = Vocab::from_vocab_txt("[UNK]\nun\nunaff\n##aff\n##able\n##a\n##ffable\nu\n")
            .expect("test vocab");
        // "unaffable": longest first piece is "unaff", then "##able".
        assert_eq!(wp(&v, "unaffable"), Some(alloc::vec![2, 4]));
        assert_eq!(wp(&v, "un"), Some(alloc::vec![1]));
        // Greedy, no backtracking: "unaffx" fails at "x".
        assert_eq!(wp(&v, "unaffx"), None);
        assert_eq!(wp(&v, "zzz"), None);
    }

    #[test]
    fn multibyte_pieces() {
        let v = Vocab::from_vocab_txt("é\n##é\n##ü\nü\n").expect("test vocab");
        assert_eq!(wp(&v, "éüé"), Some(alloc::vec![0, 2, 1]));
        assert_eq!(wp(&v, "üx"), None);
    }
}
