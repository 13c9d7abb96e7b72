//! Tokenizer throughput: edgebert's allocation-free `encode_into` vs the `tokenizers` crate's
//! `encode` (and `encode_fast`) on the same sentences, one thread.
//!
//! Uses all-MiniLM-L6-v2's tokenizer.json and the emotion validation sentences from
//! `EDGEBERT_SHARED`; without it, the committed fixture vocab and a built-in sentence list.
//! Run: `cargo bench --bench tokenizer -- --warm-up-time 1 --measurement-time 3`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgebert_runtime::tokenizer::{SeqEncoding, Tokenizer, TokenizerConfig};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, TruncationParams};

const FALLBACK_SENTENCES: &[&str] = &[
    "i feel like a faithful servant",
    "im feeling quite sad and sorry for myself but ill snap out of it soon",
    "i feel like i am still looking at a blank canvas blank pieces of paper",
    "i was feeling a little vain when i did this one",
    "i cant walk into a shop anywhere where i do not feel uncomfortable",
    "i felt anger when at the end of a telephone call",
    "i explain why i clung to a relationship with a boy who was in many ways immature and uncommitted",
    "i like to have the same breathless feeling as a reader eager to see what will happen next",
    "i jest i feel grumpy tired and pre menstrual which i probably am but then again its only been a week and im about as fit as a walrus on vacation for the summer",
    "i don t feel particularly agitated",
];

/// (ours, reference, sentences, description)
fn setup() -> (Tokenizer, tokenizers::Tokenizer, Vec<String>, String) {
    if let Some(shared) = std::env::var_os("EDGEBERT_SHARED").map(PathBuf::from) {
        let dir = shared.join("models/all-MiniLM-L6-v2");
        let json = dir.join("tokenizer.json");
        // vocab.txt + the uncased BERT defaults are MiniLM's settings (the parity check below
        // and the tokenizer_parity tests confirm); `new` keeps this bench free of the std loaders.
        let vocab = std::fs::read_to_string(dir.join("vocab.txt")).expect("vocab.txt");
        let ours = Tokenizer::new(&vocab, TokenizerConfig::default()).expect("edgebert tokenizer");
        let hf = tokenizers::Tokenizer::from_file(&json).expect("tokenizers tokenizer");
        let body = std::fs::read_to_string(shared.join("data/emotion/validation.txt"))
            .expect("emotion validation.txt");
        let texts = body
            .lines()
            .map(|l| l.rsplit_once(';').map_or(l, |(t, _)| t).to_string())
            .collect();
        return (ours, hf, texts, "MiniLM vocab, emotion validation".into());
    }
    eprintln!("EDGEBERT_SHARED unset: fixture vocab and built-in sentences");
    let vocab =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/tests/fixtures/tokenizer/vocab.txt");
    let text = std::fs::read_to_string(&vocab).expect("fixture vocab");
    let ours = Tokenizer::new(&text, TokenizerConfig::default()).expect("fixture");
    let wp = WordPiece::from_file(&vocab.to_string_lossy())
        .build()
        .expect("wordpiece");
    let mut hf = tokenizers::Tokenizer::new(wp);
    hf.with_normalizer(Some(BertNormalizer::default()))
        .expect("normalizer");
    hf.with_pre_tokenizer(Some(BertPreTokenizer));
    let id = |t: &str| ours.token_to_id(t).expect("special");
    hf.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), id("[SEP]")),
        ("[CLS]".into(), id("[CLS]")),
    )));
    hf.add_special_tokens(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(|s| AddedToken::from(s, true)),
    )
    .expect("special tokens");
    let texts = FALLBACK_SENTENCES.iter().map(|s| s.to_string()).collect();
    (ours, hf, texts, "fixture vocab, built-in sentences".into())
}

fn bench_tokenizer(c: &mut Criterion) {
    let (ours, mut hf, texts, what) = setup();
    hf.with_padding(None);
    hf.with_truncation(Some(TruncationParams {
        max_length: 512,
        ..Default::default()
    }))
    .expect("truncation");
    // Same output on both sides before timing anything.
    let mut enc = SeqEncoding::new();
    for t in &texts {
        ours.encode_into(t, 512, &mut enc).expect("encode");
        let r = hf.encode(t.as_str(), true).expect("hf encode");
        let theirs: Vec<i64> = r.get_ids().iter().map(|&i| i64::from(i)).collect();
        assert_eq!(enc.input_ids.as_slice(), theirs.as_slice(), "{t:?}");
    }
    let mut g = c.benchmark_group(format!("tokenizer ({what}, {} sentences)", texts.len()));
    g.throughput(Throughput::Elements(texts.len() as u64));
    g.bench_function("edgebert encode_into", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                ours.encode_into(std::hint::black_box(t), 512, &mut enc)
                    .expect("encode");
                n += enc.input_ids.len();
            }
            n
        })
    });
    g.bench_function("tokenizers encode", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                n += hf
                    .encode(std::hint::black_box(t.as_str()), true)
                    .expect("encode")
                    .len();
            }
            n
        })
    });
    g.bench_function("tokenizers encode_fast", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                n += hf
                    .encode_fast(std::hint::black_box(t.as_str()), true)
                    .expect("encode")
                    .len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_tokenizer);
criterion_main!(benches);
