//! BertPreTokenizer, streamed: whitespace ends a word, each punctuation char is a word of
//! its own. Words collect in a fixed-capacity buffer and go to a [`WordSink`].

use super::chars::is_bert_punctuation;
use super::normalize::{CharSink, MAX_WORD_CHARS};

/// Bytes a stored word can take (every char is at most 4 UTF-8 bytes).
const WORD_BYTES: usize = MAX_WORD_CHARS * 4;

/// One pre-tokenized word; only its first [`MAX_WORD_CHARS`] chars are stored.
pub(crate) struct Word {
    bytes: [u8; WORD_BYTES],
    len: usize,
    chars: usize,
}

impl Word {
    const fn new() -> Self {
        Self {
            bytes: [0; WORD_BYTES],
            len: 0,
            chars: 0,
        }
    }

    /// Length in chars (counted in full, even past what is stored).
    #[inline]
    pub(crate) fn chars(&self) -> usize {
        self.chars
    }

    /// UTF-8 bytes of the word; complete when `chars() <= MAX_WORD_CHARS`.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    #[inline(always)]
    fn push(&mut self, c: char) {
        if self.chars < MAX_WORD_CHARS {
            let n = c.len_utf8();
            c.encode_utf8(&mut self.bytes[self.len..self.len + n]);
            self.len += n;
        }
        self.chars += 1;
    }

    #[inline(always)]
    fn push_ascii(&mut self, b: u8) {
        if self.chars < MAX_WORD_CHARS {
            self.bytes[self.len] = b;
            self.len += 1;
        }
        self.chars += 1;
    }

    #[inline(always)]
    fn clear(&mut self) {
        self.len = 0;
        self.chars = 0;
    }
}

/// Receives finished words.
pub(crate) trait WordSink {
    /// One non-empty word.
    fn word(&mut self, word: &Word);
}

/// Splits the normalized char stream into words.
pub(crate) struct PreTokenizer<W: WordSink> {
    word: Word,
    /// Where words go.
    pub(crate) sink: W,
}

impl<W: WordSink> PreTokenizer<W> {
    /// A pre-tokenizer with an empty word buffer.
    pub(crate) fn new(sink: W) -> Self {
        Self {
            word: Word::new(),
            sink,
        }
    }

    /// Ends the current word, if any (also used at special-token and text boundaries).
    #[inline]
    pub(crate) fn end_word(&mut self) {
        if self.word.chars > 0 {
            self.sink.word(&self.word);
            self.word.clear();
        }
    }
}

impl<W: WordSink> CharSink for PreTokenizer<W> {
    #[inline(always)]
    fn push(&mut self, c: char) {
        if c.is_ascii() {
            let b = c as u8;
            if b.is_ascii_alphanumeric() {
                self.word.push_ascii(b);
            } else if c.is_whitespace() {
                self.end_word();
            } else if b.is_ascii_punctuation() {
                self.end_word();
                self.word.push_ascii(b);
                self.end_word();
            } else {
                self.word.push_ascii(b);
            }
        } else if c.is_whitespace() {
            self.end_word();
        } else if is_bert_punctuation(c) {
            self.end_word();
            self.word.push(c);
            self.end_word();
        } else {
            self.word.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    struct Collect(Vec<String>);
    impl WordSink for Collect {
        fn word(&mut self, w: &Word) {
            self.0
                .push(String::from_utf8(w.bytes().to_vec()).unwrap_or_default());
        }
    }

    fn split(s: &str) -> Vec<String> {
        let mut p = PreTokenizer::new(Collect(Vec::new()));
        for c in s.chars() {
            p.push(c);
        }
        p.end_word();
        p.sink.0
    }

    #[test]
    fn whitespace_and_punctuation() {
        assert_eq!(
            split("Hey friend!     How are you?!?"),
            ["Hey", "friend", "!", "How", "are", "you", "?", "!", "?"]
        );
        assert_eq!(split("a\u{A0}b\u{2003}c"), ["a", "b", "c"]);
        assert_eq!(split("«quote»—dash"), ["«", "quote", "»", "—", "dash"]);
        // Symbols (S*) are not punctuation and stay inside words, except ASCII ones.
        assert_eq!(split("a€b a$b"), ["a€b", "a", "$", "b"]);
        assert!(split("   ").is_empty());
    }

    #[test]
    fn long_words_are_counted_past_the_buffer() {
        let long: String = core::iter::repeat_n('é', MAX_WORD_CHARS + 50).collect();
        let mut p = PreTokenizer::new(LenSink(0, 0));
        for c in long.chars() {
            p.push(c);
        }
        p.end_word();
        assert_eq!(p.sink.0, MAX_WORD_CHARS + 50);
        assert_eq!(p.sink.1, MAX_WORD_CHARS * 2);
    }

    struct LenSink(usize, usize);
    impl WordSink for LenSink {
        fn word(&mut self, w: &Word) {
            self.0 = w.chars();
            self.1 = w.bytes().len();
        }
    }
}
