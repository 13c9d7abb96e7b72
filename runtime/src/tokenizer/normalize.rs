//! BertNormalizer, streamed one char at a time: clean text, CJK spacing, NFD + drop Mn
//! (accent stripping), lowercase. Output goes to a [`CharSink`]; nothing is allocated.
//!
//! Canonical reordering (part of NFD) is done on a fixed-capacity buffer that only ever holds
//! the combining characters that survive accent stripping: a stable sort restricted to the
//! kept characters equals sorting first and filtering after, so the result is identical.

use super::chars::{
    combining_class, decompose_canonical, is_bert_whitespace, is_chinese_char, is_mark_nonspacing,
    is_removed_by_clean,
};

/// Longest word (in chars) the pipeline stores; `max_input_chars_per_word` may not exceed it.
pub const MAX_WORD_CHARS: usize = 128;

/// Marker in [`NormalizeOptions::ascii_map`] for a byte that clean_text removes.
pub(crate) const ASCII_REMOVED: u8 = 0xFF;

/// Receives normalized chars.
pub(crate) trait CharSink {
    /// One normalized char.
    fn push(&mut self, c: char);
}

/// The four BertNormalizer switches, with `strip_accents` already resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NormalizeOptions {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    pub strip_accents: bool,
    pub lowercase: bool,
}

impl NormalizeOptions {
    /// What each ASCII byte becomes: [`ASCII_REMOVED`] or the (possibly lowercased) byte.
    pub(crate) fn ascii_map(&self) -> [u8; 128] {
        let mut map = [ASCII_REMOVED; 128];
        for (b, slot) in map.iter_mut().enumerate() {
            let mut c = b as u8;
            if self.clean_text {
                if is_removed_by_clean(c as char) {
                    continue;
                }
                if is_bert_whitespace(c as char) {
                    c = b' ';
                }
            }
            if self.lowercase {
                c = c.to_ascii_lowercase();
            }
            *slot = c;
        }
        map
    }
}

/// Streaming normalizer state: the pending combining characters of the current NFD run.
pub(crate) struct Normalizer {
    opts: NormalizeOptions,
    pending: heapless::Vec<(u8, char), { MAX_WORD_CHARS + 1 }>,
}

impl Normalizer {
    /// A normalizer with nothing pending.
    pub(crate) fn new(opts: NormalizeOptions) -> Self {
        Self {
            opts,
            pending: heapless::Vec::new(),
        }
    }

    /// Normalizes one input char.
    #[inline]
    pub(crate) fn push<S: CharSink>(&mut self, c: char, sink: &mut S) {
        let mut c = c;
        if self.opts.clean_text {
            if is_removed_by_clean(c) {
                return;
            }
            if is_bert_whitespace(c) {
                c = ' ';
            }
        }
        if self.opts.handle_chinese_chars && is_chinese_char(c) {
            self.after_clean(' ', sink);
            self.after_clean(c, sink);
            self.after_clean(' ', sink);
        } else {
            self.after_clean(c, sink);
        }
    }

    /// Fast path for an ASCII byte already mapped through [`NormalizeOptions::ascii_map`]
    /// (ASCII never decomposes, has combining class 0 and lowercases to one byte).
    #[inline(always)]
    pub(crate) fn push_mapped_ascii<S: CharSink>(&mut self, mapped: u8, sink: &mut S) {
        if !self.pending.is_empty() {
            self.flush(sink);
        }
        sink.push(mapped as char);
    }

    #[inline]
    fn after_clean<S: CharSink>(&mut self, c: char, sink: &mut S) {
        if self.opts.strip_accents {
            decompose_canonical(c, |d| self.decomposed(d, sink));
        } else {
            self.emit(c, sink);
        }
    }

    #[inline]
    fn decomposed<S: CharSink>(&mut self, d: char, sink: &mut S) {
        let class = combining_class(d);
        if class == 0 {
            // A starter ends the reorderable run, even one that is stripped.
            self.flush(sink);
            if !is_mark_nonspacing(d) {
                self.emit(d, sink);
            }
        } else if !is_mark_nonspacing(d) {
            if self.pending.is_full() {
                // More kept marks than any word may hold: the word becomes [UNK] whatever
                // their order, so emitting this batch early cannot change the result.
                self.flush(sink);
            }
            // Cannot fail: the buffer was just emptied if it was full.
            let _ = self.pending.push((class, d));
        }
    }

    #[inline]
    fn emit<S: CharSink>(&self, c: char, sink: &mut S) {
        if self.opts.lowercase {
            if c.is_ascii() {
                sink.push(c.to_ascii_lowercase());
            } else {
                for l in c.to_lowercase() {
                    sink.push(l);
                }
            }
        } else {
            sink.push(c);
        }
    }

    /// Emits the pending combining characters in canonical (stable, by class) order.
    fn flush<S: CharSink>(&mut self, sink: &mut S) {
        if self.pending.is_empty() {
            return;
        }
        let p = &mut self.pending[..];
        for i in 1..p.len() {
            let mut j = i;
            while j > 0 && p[j - 1].0 > p[j].0 {
                p.swap(j - 1, j);
                j -= 1;
            }
        }
        for k in 0..self.pending.len() {
            let c = self.pending[k].1;
            self.emit(c, sink);
        }
        self.pending.clear();
    }

    /// Ends a segment: emits whatever is pending.
    pub(crate) fn finish<S: CharSink>(&mut self, sink: &mut S) {
        self.flush(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    impl CharSink for String {
        fn push(&mut self, c: char) {
            String::push(self, c);
        }
    }

    fn norm(opts: NormalizeOptions, s: &str) -> String {
        let mut n = Normalizer::new(opts);
        let mut out = String::new();
        let map = opts.ascii_map();
        for c in s.chars() {
            if c.is_ascii() {
                let m = map[c as usize];
                if m != ASCII_REMOVED {
                    n.push_mapped_ascii(m, &mut out);
                }
            } else {
                n.push(c, &mut out);
            }
        }
        n.finish(&mut out);
        out
    }

    const UNCASED: NormalizeOptions = NormalizeOptions {
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: true,
        lowercase: true,
    };
    const CASED: NormalizeOptions = NormalizeOptions {
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: false,
        lowercase: false,
    };

    #[test]
    fn clean_text_removes_controls_and_maps_whitespace() {
        assert_eq!(
            norm(UNCASED, "a\u{0}b\u{FFFD}c\u{200B}d\te\u{3000}f"),
            "abcd e f"
        );
        let raw = NormalizeOptions {
            clean_text: false,
            ..CASED
        };
        assert_eq!(norm(raw, "a\u{200B}\tb"), "a\u{200B}\tb");
    }

    #[test]
    fn chinese_chars_get_spaces() {
        assert_eq!(norm(CASED, "ab中文c"), "ab 中  文 c");
        let off = NormalizeOptions {
            handle_chinese_chars: false,
            ..CASED
        };
        assert_eq!(norm(off, "ab中c"), "ab中c");
    }

    #[test]
    fn accents_are_stripped_and_text_lowercased() {
        assert_eq!(norm(UNCASED, "Héllo ÅNGSTRÖM Ǖ"), "hello angstrom u");
        assert_eq!(norm(CASED, "Héllo"), "Héllo");
        // Greek final sigma: per-char lowercasing, no final-sigma rule.
        assert_eq!(norm(UNCASED, "ΟΔΟΣ"), "οδοσ");
        // İ: stripping runs before lowercasing, so the dot is gone.
        assert_eq!(norm(UNCASED, "İ"), "i");
        let lower_only = NormalizeOptions {
            strip_accents: false,
            ..UNCASED
        };
        assert_eq!(norm(lower_only, "İ"), "i\u{307}");
    }

    #[test]
    fn kept_combining_marks_are_reordered_canonically() {
        // U+1D165 (Mc, class 216) and U+1D16D (Mc, class 226) survive stripping.
        assert_eq!(norm(UNCASED, "x\u{1D16D}\u{1D165}"), "x\u{1D165}\u{1D16D}");
        // A stripped starter (U+0900 is Mn with class 0) still splits the runs.
        assert_eq!(
            norm(UNCASED, "x\u{1D16D}\u{900}\u{1D165}"),
            "x\u{1D16D}\u{1D165}"
        );
    }
}
