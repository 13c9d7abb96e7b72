//! Zero heap allocations per `encode_into` call, measured with a counting global allocator
//! over the emotion validation set (when `EDGEBERT_SHARED` is set), the stress set, seeded
//! random strings and ~1 MB inputs.

mod tokenizer_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use edgebert_runtime::tokenizer::{SeqEncoding, Tokenizer, TokenizerConfig};
use tokenizer_common::{emotion_texts, fixture_vocab, shared_dir, Rng};

/// Counts allocations (alloc, alloc_zeroed, realloc) per thread, so tests running in
/// parallel do not see each other's allocations.
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Encodes every input and returns (allocations during the calls, tokens produced).
fn count_allocs(tok: &Tokenizer, inputs: &[String]) -> (usize, usize) {
    let mut enc = SeqEncoding::new();
    let mut tokens = 0;
    // One warm-up call outside the count (nothing lazy is expected; this keeps it honest).
    tok.encode_into("warm up", 512, &mut enc).expect("encode");
    let before = allocs();
    for s in inputs {
        tok.encode_into(s, 512, &mut enc).expect("encode");
        tokens += enc.input_ids.len();
    }
    let after = allocs();
    (after - before, tokens)
}

fn generated() -> Vec<String> {
    let mut v = tokenizer_common::stress_inputs();
    v.extend(tokenizer_common::huge_inputs());
    let mut rng = Rng::new(42);
    v.extend((0..3000).map(|_| rng.string(80)));
    v
}

#[test]
fn encode_into_never_allocates_fixture() {
    let vocab = std::fs::read_to_string(fixture_vocab()).expect("fixture vocab");
    let tok = Tokenizer::new(&vocab, TokenizerConfig::default()).expect("fixture");
    let inputs = generated();
    let (n_allocs, tokens) = count_allocs(&tok, &inputs);
    assert!(tokens > inputs.len() * 2, "encodings suspiciously short");
    // Sanity check that the counter works at all.
    let before = allocs();
    let v: Vec<u8> = Vec::with_capacity(16);
    drop(std::hint::black_box(v));
    assert!(allocs() > before, "counting allocator not active");
    assert_eq!(
        n_allocs,
        0,
        "{n_allocs} allocations over {} encode calls",
        inputs.len()
    );
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn encode_into_never_allocates_minilm_validation() {
    let shared = shared_dir("encode_into_never_allocates_minilm_validation");
    // MiniLM = vocab.txt + uncased BERT defaults (tokenizer_parity shows tokenizer.json agrees).
    let vocab = std::fs::read_to_string(shared.join("models/all-MiniLM-L6-v2/vocab.txt"))
        .expect("MiniLM vocab.txt");
    let tok = Tokenizer::new(&vocab, TokenizerConfig::default()).expect("MiniLM tokenizer");
    let mut inputs = emotion_texts(&shared, "validation");
    assert_eq!(inputs.len(), 2000);
    inputs.extend(generated());
    let (n_allocs, tokens) = count_allocs(&tok, &inputs);
    eprintln!(
        "{} encode calls, {tokens} tokens, {n_allocs} heap allocations",
        inputs.len()
    );
    assert_eq!(
        n_allocs,
        0,
        "{n_allocs} allocations over {} encode calls",
        inputs.len()
    );
}
