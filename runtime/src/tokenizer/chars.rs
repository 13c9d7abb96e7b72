//! Character classes of the BERT pipeline, with exactly the definitions the `tokenizers`
//! crate uses (std `char::is_whitespace`, `unicode_categories` 0.1.1 sets, Unicode 9.0 NFD
//! data). Public so tests can check them against those crates for every code point.

use super::tables;

/// Binary search in sorted, disjoint inclusive ranges.
#[inline]
fn in_ranges(c: u32, ranges: &[(u32, u32)]) -> bool {
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                core::cmp::Ordering::Less
            } else if lo > c {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// BertNormalizer `is_whitespace`: `\t`, `\n`, `\r` or `char::is_whitespace`.
#[inline]
pub fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// BertNormalizer `is_control`: Cc, Cf or Co (as `unicode_categories` lists them), except `\t\n\r`.
#[inline]
pub fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && in_ranges(c as u32, tables::OTHER)
}

/// Whether BertNormalizer's clean step removes `c` (NUL, U+FFFD, controls).
#[inline]
pub fn is_removed_by_clean(c: char) -> bool {
    c == '\0' || c == '\u{FFFD}' || is_bert_control(c)
}

/// BertNormalizer `is_chinese_char`: the CJK ideograph blocks.
#[inline]
pub fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// BertPreTokenizer `is_bert_punc`: ASCII punctuation or a Unicode P* char.
#[inline]
pub fn is_bert_punctuation(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_punctuation()
    } else {
        in_ranges(c as u32, tables::PUNCTUATION)
    }
}

/// `unicode_categories::is_mark_nonspacing` (Mn).
#[inline]
pub fn is_mark_nonspacing(c: char) -> bool {
    (c as u32) >= 0x300 && in_ranges(c as u32, tables::MARK_NONSPACING)
}

/// Canonical combining class (Unicode 9.0).
#[inline]
pub fn combining_class(c: char) -> u8 {
    let c = c as u32;
    if c < 0x300 {
        return 0;
    }
    match tables::COMBINING_CLASS.binary_search_by(|&(lo, hi, _)| {
        if hi < c {
            core::cmp::Ordering::Less
        } else if lo > c {
            core::cmp::Ordering::Greater
        } else {
            core::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => tables::COMBINING_CLASS[i].2,
        Err(_) => 0,
    }
}

const S_BASE: u32 = 0xAC00;
const L_BASE: u32 = 0x1100;
const V_BASE: u32 = 0x1161;
const T_BASE: u32 = 0x11A7;
const V_COUNT: u32 = 21;
const T_COUNT: u32 = 28;
const N_COUNT: u32 = V_COUNT * T_COUNT;
const S_COUNT: u32 = 19 * N_COUNT;

/// Calls `emit` with the canonical full decomposition of `c` (Unicode 9.0, Hangul algorithmic),
/// or with `c` itself when it has none.
#[inline]
pub fn decompose_canonical(c: char, mut emit: impl FnMut(char)) {
    let cp = c as u32;
    if cp < 0xC0 {
        emit(c);
        return;
    }
    if (S_BASE..S_BASE + S_COUNT).contains(&cp) {
        let s = cp - S_BASE;
        let l = L_BASE + s / N_COUNT;
        let v = V_BASE + (s % N_COUNT) / T_COUNT;
        let t = T_BASE + s % T_COUNT;
        // The jamo ranges are valid scalar values, so these never fall back.
        emit(char::from_u32(l).unwrap_or(c));
        emit(char::from_u32(v).unwrap_or(c));
        if t != T_BASE {
            emit(char::from_u32(t).unwrap_or(c));
        }
        return;
    }
    if let Ok(i) = tables::DECOMP_KEYS.binary_search(&cp) {
        let a = tables::DECOMP_START[i] as usize;
        let b = tables::DECOMP_START[i + 1] as usize;
        for &d in &tables::DECOMP_CHARS[a..b] {
            emit(d);
        }
        return;
    }
    emit(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_control() {
        assert!(is_bert_whitespace('\t') && is_bert_whitespace('\u{3000}'));
        assert!(!is_bert_whitespace('a'));
        assert!(is_bert_control('\u{200B}') && is_bert_control('\u{7F}'));
        assert!(!is_bert_control('\n') && !is_bert_control('a'));
        // Private use (Co) counts as control, the whole ranges.
        assert!(is_bert_control('\u{E001}') && is_bert_control('\u{F0ABC}'));
        assert!(is_removed_by_clean('\0') && is_removed_by_clean('\u{FFFD}'));
    }

    #[test]
    fn punctuation_marks_cjk() {
        assert!(is_bert_punctuation('$') && is_bert_punctuation('¿') && is_bert_punctuation('、'));
        assert!(!is_bert_punctuation('a') && !is_bert_punctuation('€'));
        assert!(is_mark_nonspacing('\u{301}') && !is_mark_nonspacing('a'));
        assert!(is_chinese_char('中') && !is_chinese_char('あ'));
    }

    #[test]
    fn decomposition_and_classes() {
        let mut v = alloc::vec::Vec::new();
        decompose_canonical('é', |c| v.push(c));
        assert_eq!(v, ['e', '\u{301}']);
        v.clear();
        decompose_canonical('한', |c| v.push(c));
        assert_eq!(v, ['\u{1112}', '\u{1161}', '\u{11AB}']);
        v.clear();
        decompose_canonical('ǖ', |c| v.push(c));
        assert_eq!(v, ['u', '\u{308}', '\u{304}']);
        assert_eq!(combining_class('\u{301}'), 230);
        assert_eq!(combining_class('\u{323}'), 220);
        assert_eq!(combining_class('a'), 0);
    }
}
