//! Every code point: our generated Unicode tables agree with the crates `tokenizers` uses
//! (`unicode_categories` 0.1.1, `unicode-normalization-alignments` 0.1.12), and the facts
//! the streaming normalizer relies on hold.

use edgebert_runtime::tokenizer::chars;
use unicode_categories::UnicodeCategories;

fn all_chars() -> impl Iterator<Item = char> {
    (0..=0x10FFFFu32).filter_map(char::from_u32)
}

#[test]
fn categories_match_unicode_categories_crate() {
    let mut checked = 0;
    for c in all_chars() {
        let control = !matches!(c, '\t' | '\n' | '\r') && c.is_other();
        assert_eq!(
            chars::is_bert_control(c),
            control,
            "is_control {:04X}",
            c as u32
        );
        let punct = c.is_ascii_punctuation() || c.is_punctuation();
        assert_eq!(
            chars::is_bert_punctuation(c),
            punct,
            "punct {:04X}",
            c as u32
        );
        assert_eq!(
            chars::is_mark_nonspacing(c),
            c.is_mark_nonspacing(),
            "Mn {:04X}",
            c as u32
        );
        checked += 1;
    }
    assert_eq!(checked, 0x110000 - 0x800);
}

#[test]
fn nfd_data_matches_unicode_normalization_alignments() {
    use unicode_normalization_alignments::char as un;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for c in all_chars() {
        assert_eq!(
            chars::combining_class(c),
            un::canonical_combining_class(c),
            "ccc {:04X}",
            c as u32
        );
        ours.clear();
        theirs.clear();
        chars::decompose_canonical(c, |d| ours.push(d));
        un::decompose_canonical(c, |d| theirs.push(d));
        assert_eq!(ours, theirs, "NFD {:04X}", c as u32);
    }
}

/// The normalizer emits an overflowing run of kept combining marks early, relying on the
/// run staying inside one word: no such char (or its lowercase) splits words.
#[test]
fn kept_combining_marks_never_split_words() {
    let mut kept = 0;
    for c in all_chars() {
        if chars::combining_class(c) != 0 && !chars::is_mark_nonspacing(c) {
            kept += 1;
            for l in c.to_lowercase().chain(std::iter::once(c)) {
                assert!(
                    !l.is_whitespace() && !chars::is_bert_punctuation(l),
                    "{:04X}",
                    c as u32
                );
                assert!(!chars::is_chinese_char(l), "{:04X}", c as u32);
            }
        }
    }
    assert!(kept > 0);
}
