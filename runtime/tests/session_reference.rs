//! Session vs reference: the tiny BERT fixture's logits from onnxruntime/torch (reference.json)
//! must match tract's within 1e-4 for every text and bucket, including truncation; plus state
//! reuse, eager/lazy equivalence, bundles vs export directories, and load-time checks.
mod common;

use edgebert_runtime::{Bundle, Classification, Error, ModelSource, Session, SessionOptions};

const TOL: f32 = 1e-4;

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL,
            "{what}: logit {i} = {g}, reference {w}"
        );
    }
}

#[test]
fn logits_match_reference_for_every_case() {
    let (max_len, labels, cases) = common::reference();
    let mut session = Session::open(common::tiny_bert()).expect("open fixture");
    assert_eq!(session.max_len(), max_len);
    assert_eq!(session.labels(), labels.as_slice());
    assert!(
        cases.iter().any(|c| c.truncated),
        "fixture must include a truncated case"
    );
    for c in &cases {
        let r = session.classify(&c.text).expect("classify");
        assert_close(&r.logits, &c.logits, &c.text);
        assert_eq!(r.tokens, c.input_ids.len(), "{:?}: tokens", c.text);
        assert_eq!(r.truncated, c.truncated, "{:?}: truncated", c.text);
        let sum: f32 = r.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probs sum {sum}");
        let best = c
            .logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, l)| if *l > c.logits[b] { i } else { b });
        assert_eq!(r.label_id, best, "{:?}", c.text);
        assert_eq!(r.label, labels[best]);
        assert_eq!(r.score, r.probs[best]);
    }
}

/// The fused LayerNorm (the default) and tract's own expansion of it both match the reference,
/// and each other to f32 rounding, in every bucket.
#[test]
fn fused_layer_norm_and_tracts_expansion_agree() {
    let (_, _, cases) = common::reference();
    let open = |fuse_layer_norm| {
        Session::open_with(
            common::tiny_bert(),
            SessionOptions::default().with_fuse_layer_norm(fuse_layer_norm),
        )
        .expect("open fixture")
    };
    let (mut fused, mut tract) = (open(true), open(false));
    let mut differ = 0;
    for c in &cases {
        let a = fused.classify(&c.text).expect("fused");
        let b = tract.classify(&c.text).expect("tract");
        assert_close(&a.logits, &c.logits, &c.text);
        assert_close(&b.logits, &c.logits, &c.text);
        for (x, y) in a.logits.iter().zip(&b.logits) {
            assert!((x - y).abs() <= 1e-5, "{:?}: {x} vs {y}", c.text);
        }
        differ += usize::from(a.logits != b.logits);
    }
    // the two really are different code paths
    assert!(
        differ > 0,
        "fused and unfused gave identical bits on every case"
    );
}

#[test]
fn shared_symbolic_graph_equals_typing_per_bucket() {
    let (_, _, cases) = common::reference();
    let mut shared = Session::open(common::tiny_bert()).expect("open shared");
    assert!(
        !shared.shares_typed_graph(),
        "the first lazy plan types the parsed graph"
    );
    let mut per_bucket = Session::open_with(
        common::tiny_bert(),
        SessionOptions::default().with_shared_graph(false),
    )
    .expect("open per bucket");
    for c in &cases {
        let a = shared.classify(&c.text).expect("shared");
        let b = per_bucket.classify(&c.text).expect("per bucket");
        assert_close(&a.logits, &b.logits, &c.text);
        assert_eq!(a.label_id, b.label_id, "{:?}", c.text);
    }
    assert!(shared.buckets().iter().filter(|b| b.1).count() >= 3);
    assert!(
        shared.shares_typed_graph(),
        "later plans come from the symbolic graph"
    );
    assert!(!per_bucket.shares_typed_graph());

    let eager = Session::open_with(
        common::tiny_bert(),
        SessionOptions::default().with_eager(true),
    )
    .expect("open eager");
    assert!(
        eager.shares_typed_graph(),
        "eager builds every plan from the symbolic graph"
    );
}

#[test]
fn tokenizer_matches_hf_ids_of_reference() {
    let (max_len, _, cases) = common::reference();
    let session = Session::open(common::tiny_bert()).expect("open fixture");
    let mut enc = Box::<edgebert_runtime::tokenizer::SeqEncoding>::default();
    for c in &cases {
        session
            .tokenizer()
            .encode_into(&c.text, max_len, &mut enc)
            .expect("encode");
        assert_eq!(
            enc.input_ids.as_slice(),
            c.input_ids.as_slice(),
            "{:?}",
            c.text
        );
        assert_eq!(
            enc.attention_mask.as_slice(),
            c.attention_mask.as_slice(),
            "{:?}",
            c.text
        );
    }
}

#[test]
fn state_reuse_across_buckets_is_deterministic() {
    let (_, _, cases) = common::reference();
    let mut session = Session::open(common::tiny_bert()).expect("open");
    let first: Vec<Classification> = cases
        .iter()
        .map(|c| session.classify(&c.text).expect("classify"))
        .collect();
    // Interleave buckets in reverse order, twice: states are reused, results must not drift.
    for _ in 0..2 {
        for (c, want) in cases.iter().zip(&first).rev() {
            let got = session.classify(&c.text).expect("classify again");
            assert_eq!(&got, want, "{:?}", c.text);
        }
    }
    let built: Vec<usize> = session
        .buckets()
        .into_iter()
        .filter(|b| b.1)
        .map(|b| b.0)
        .collect();
    assert!(built.len() >= 3, "several buckets exercised: {built:?}");
}

#[test]
fn lazy_builds_on_demand_and_eager_builds_all() {
    let mut lazy = Session::open(common::tiny_bert()).expect("lazy");
    assert!(lazy.buckets().iter().all(|b| !b.1), "nothing built at load");
    lazy.classify("i feel happy today").expect("classify");
    assert_eq!(lazy.buckets().iter().filter(|b| b.1).count(), 1);
    assert!(lazy.buckets()[0].1, "6 tokens use the 8-token bucket");

    let eager = Session::open_with(
        common::tiny_bert(),
        SessionOptions::default().with_eager(true),
    )
    .expect("eager");
    assert!(
        eager.buckets().iter().all(|b| b.1),
        "every bucket built at load"
    );
}

#[test]
fn classify_batch_equals_one_by_one() {
    let (_, _, cases) = common::reference();
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let mut s = Session::open(common::tiny_bert()).expect("open");
    let batch = s.classify_batch(&texts).expect("batch");
    assert_eq!(batch.len(), texts.len());
    for (t, b) in texts.iter().zip(&batch) {
        assert_eq!(&s.classify(t).expect("one"), b);
    }
}

#[test]
fn max_len_option_truncates_further() {
    let mut s = Session::open_with(
        common::tiny_bert(),
        SessionOptions::default().with_max_len(Some(8)),
    )
    .expect("open");
    assert_eq!(s.max_len(), 8);
    let r = s
        .classify("what a wonderful morning with my friends and family")
        .expect("classify");
    assert_eq!(r.tokens, 8);
    assert!(r.truncated);
}

#[test]
fn bundle_and_export_dir_give_identical_results() {
    let src = ModelSource::open(common::tiny_bert()).expect("export dir");
    let dir = common::scratch("session-bundle");
    let path = dir.join("model.edgebert");
    src.bundle.write_to(&path).expect("write bundle");
    let mut from_dir = Session::open(common::tiny_bert()).expect("dir");
    let mut from_bundle = Session::open(&path).expect("bundle");
    let mut from_mem = Session::from_bundle(
        Bundle::read(&path).expect("read"),
        SessionOptions::default(),
    )
    .expect("mem");
    for text in ["i feel happy today", "", "I really HATE this movie"] {
        let a = from_dir.classify(text).expect("a");
        assert_eq!(a, from_bundle.classify(text).expect("b"));
        assert_eq!(a, from_mem.classify(text).expect("c"));
    }
    // A directory holding only the bundle also works.
    let mut from_bundle_dir = Session::open(&dir).expect("dir with bundle");
    assert_eq!(
        from_bundle_dir.classify("x").expect("d"),
        from_dir.classify("x").expect("e")
    );
}

#[test]
fn embedding_rows_are_found_and_checked() {
    let s = Session::open(common::tiny_bert()).expect("open");
    let (name, rows) = s.embedding_rows().expect("word embedding found in graph");
    assert_eq!(rows as usize, s.tokenizer().vocab_size());
    assert!(name.contains("word_embeddings"), "{name}");

    // Same vocab, ONNX with 50 fewer embedding rows.
    let dir = common::scratch("vocab-mismatch");
    common::copy_dir(&common::tiny_bert(), &dir);
    std::fs::copy(
        common::fixture("tiny-bert-small-vocab").join("model.onnx"),
        dir.join("model.onnx"),
    )
    .expect("copy");
    let err = Session::open(&dir).expect_err("mismatch must fail at load");
    match &err {
        Error::VocabMismatch {
            onnx, tokenizer, ..
        } => assert_eq!(*onnx + 50, *tokenizer),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn bad_model_paths_are_clear_errors() {
    let empty = common::scratch("empty-dir");
    let err = Session::open(&empty).expect_err("empty dir");
    assert!(err.to_string().contains("holds no model"), "{err}");
    let err = Session::open("/dev/null").expect_err("/dev/null");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = Session::open(empty.join("nope")).expect_err("missing");
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    // Export dir whose ONNX is garbage.
    let dir = common::scratch("garbage-onnx");
    common::copy_dir(&common::tiny_bert(), &dir);
    std::fs::write(
        dir.join("model.onnx"),
        b"\x08\x01garbage that is not a protobuf model \xff\xff",
    )
    .expect("write");
    let err = Session::open(&dir).expect_err("garbage onnx");
    assert!(matches!(err, Error::Model { .. }), "{err:?}");
    // Export dir without config.json.
    let dir = common::scratch("no-config");
    common::copy_dir(&common::tiny_bert(), &dir);
    std::fs::remove_file(dir.join("config.json")).expect("rm");
    let err = Session::open(&dir).expect_err("no config");
    assert!(err.to_string().contains("config.json"), "{err}");
    // config.json whose id2label disagrees with the graph's logits.
    let dir = common::scratch("label-count");
    common::copy_dir(&common::tiny_bert(), &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("cfg");
    let mut v: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    v["id2label"] = serde_json::json!({"0": "a", "1": "b"});
    std::fs::write(dir.join("config.json"), v.to_string()).expect("write");
    let mut s = Session::open(&dir).expect("labels are only checked when a plan is built");
    let err = s.classify("hello").expect_err("2 labels vs 3 logits");
    assert!(err.to_string().contains("labels"), "{err}");
}
