//! The vocabulary: all tokens in one contiguous byte buffer plus an open-addressing hash
//! index, so `"##" + piece` can be looked up without building the string.

use alloc::string::String;
use alloc::vec::Vec;

use super::TokenizerError;

const FNV_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Feeds bytes into an FNV-1a state; hashing `a` then `b` equals hashing `a ++ b`.
#[inline(always)]
pub(crate) fn hash_bytes(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state = (state ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    state
}

/// Feeds one byte into an FNV-1a state.
#[inline(always)]
pub(crate) fn hash_byte(state: u64, b: u8) -> u64 {
    (state ^ u64::from(b)).wrapping_mul(FNV_PRIME)
}

/// Token table with id = position, lookups by exact string or by (prefix, piece).
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    /// All tokens back to back.
    data: Vec<u8>,
    /// Token `i` is `data[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    /// Open-addressing slots holding `id + 1`; 0 = empty. Length is a power of two.
    slots: Vec<u32>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
    /// Longest token in bytes (no substring longer than this can match).
    max_token_len: usize,
}

impl Vocab {
    /// Parses `vocab.txt` exactly like `tokenizers`' `WordPiece::read_bytes`: one token per
    /// line, trailing whitespace trimmed, id = line index, a later duplicate wins the lookup.
    pub(crate) fn from_vocab_txt(text: &str) -> Result<Self, TokenizerError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        if body.is_empty() && !text.ends_with('\n') {
            return Err(TokenizerError::InvalidVocab("vocab.txt is empty".into()));
        }
        let n_lines = body.split('\n').count();
        if n_lines >= u32::MAX as usize / 2 {
            return Err(TokenizerError::InvalidVocab("too many tokens".into()));
        }
        let mut data = Vec::with_capacity(body.len());
        let mut offsets = Vec::with_capacity(n_lines + 1);
        offsets.push(0u32);
        let mut max_token_len = 0;
        for line in body.split('\n') {
            let tok = line.trim_end();
            data.extend_from_slice(tok.as_bytes());
            max_token_len = max_token_len.max(tok.len());
            let end = u32::try_from(data.len()).map_err(|_| {
                TokenizerError::InvalidVocab("vocab.txt is larger than 4 GiB".into())
            })?;
            offsets.push(end);
        }
        let n = offsets.len() - 1;
        // Load factor <= 0.5 keeps probe chains short.
        let n_slots = (n * 2).next_power_of_two().max(16);
        let mut vocab = Self {
            data,
            offsets,
            slots: alloc::vec![0; n_slots],
            shift: 64 - n_slots.trailing_zeros(),
            max_token_len,
        };
        for id in 0..n as u32 {
            vocab.insert(id);
        }
        Ok(vocab)
    }

    fn insert(&mut self, id: u32) {
        let (lo, hi) = (
            self.offsets[id as usize] as usize,
            self.offsets[id as usize + 1] as usize,
        );
        let h = hash_bytes(FNV_SEED, &self.data[lo..hi]);
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                self.slots[i] = id + 1;
                return;
            }
            if self.token_bytes(slot - 1) == &self.data[lo..hi] {
                // Same token on a later line: the later id wins, as in a HashMap insert.
                self.slots[i] = id + 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Longest token in bytes.
    #[inline]
    pub(crate) fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The FNV state to start hashing a token from.
    #[inline]
    pub(crate) fn seed() -> u64 {
        FNV_SEED
    }

    /// Bytes of token `id` (panics on a bad id; callers pass ids from this vocab).
    #[inline(always)]
    fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Token text of `id`.
    pub(crate) fn token(&self, id: u32) -> Option<&str> {
        if (id as usize) < self.len() {
            // Tokens are whole `&str` lines, so the slice is valid UTF-8.
            core::str::from_utf8(self.token_bytes(id)).ok()
        } else {
            None
        }
    }

    /// Id of exactly `token`.
    pub(crate) fn get(&self, token: &str) -> Option<u32> {
        let h = hash_bytes(FNV_SEED, token.as_bytes());
        self.lookup_hashed(h, &[], token.as_bytes())
    }

    /// Id of `prefix ++ piece`, given `hash == hash_bytes(hash_bytes(seed, prefix), piece)`.
    #[inline]
    pub(crate) fn lookup_hashed(&self, hash: u64, prefix: &[u8], piece: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let want = prefix.len() + piece.len();
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            let id = slot - 1;
            let (lo, hi) = (
                self.offsets[id as usize] as usize,
                self.offsets[id as usize + 1] as usize,
            );
            if hi - lo == want {
                let tok = &self.data[lo..hi];
                if &tok[..prefix.len()] == prefix && &tok[prefix.len()..] == piece {
                    return Some(id);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Tokens back as `vocab.txt` text (one per line, newline-terminated).
    pub(crate) fn to_vocab_txt(&self) -> String {
        let mut s = String::with_capacity(self.data.len() + self.len());
        for id in 0..self.len() as u32 {
            s.push_str(self.token(id).unwrap_or(""));
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_ids_and_duplicates() {
        let v = Vocab::from_vocab_txt("[PAD]\nhello \r\n##lo\nhello\n\nx").expect("test vocab");
        assert_eq!(v.len(), 6);
        assert_eq!(v.get("[PAD]"), Some(0));
        // Trailing whitespace is trimmed; the later duplicate wins.
        assert_eq!(v.get("hello"), Some(3));
        assert_eq!(v.token(1), Some("hello"));
        assert_eq!(v.get(""), Some(4));
        assert_eq!(v.get("x"), Some(5));
        assert_eq!(v.get("nope"), None);
        assert_eq!(v.token(6), None);
        assert_eq!(v.max_token_len(), 5);
    }

    #[test]
    fn prefixed_lookup_without_building_the_string() {
        let v = Vocab::from_vocab_txt("a\n##lo\nlo\n").expect("test vocab");
        let h = hash_bytes(hash_bytes(Vocab::seed(), b"##"), b"lo");
        assert_eq!(v.lookup_hashed(h, b"##", b"lo"), Some(1));
        let h2 = hash_bytes(Vocab::seed(), b"lo");
        assert_eq!(v.lookup_hashed(h2, b"", b"lo"), Some(2));
        let mut st = Vocab::seed();
        for &b in b"##l" {
            st = hash_byte(st, b);
        }
        assert_eq!(v.lookup_hashed(st, b"##", b"l"), None);
    }

    #[test]
    fn vocab_txt_round_trips() {
        let v = Vocab::from_vocab_txt("a\nb\n\nc").expect("test vocab");
        let t = v.to_vocab_txt();
        assert_eq!(t, "a\nb\n\nc\n");
        let w = Vocab::from_vocab_txt(&t).expect("test vocab");
        assert_eq!(w.len(), 4);
        assert_eq!(w.get("c"), Some(3));
    }

    #[test]
    fn empty_vocab_is_an_error() {
        assert!(Vocab::from_vocab_txt("").is_err());
    }

    #[test]
    fn many_tokens_all_found() {
        let mut s = String::new();
        for i in 0..5000 {
            s.push_str(&alloc::format!("t{i}\n"));
        }
        let v = Vocab::from_vocab_txt(&s).expect("test vocab");
        for i in 0..5000u32 {
            assert_eq!(v.get(&alloc::format!("t{i}")), Some(i));
        }
    }
}
