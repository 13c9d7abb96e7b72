//! Sessions opened from a file read their large initializers from it when a plan needs them
//! (`session::weights`): every plan — the first from the graph parsed at open, later ones from
//! a fresh parse or the shared symbolic graph — gives exactly the logits of the same model held
//! in memory, for an export directory and a bundle; and a file changed after opening is an
//! error naming it, never silently different weights.
mod common;

use edgebert_runtime::internals::skeleton;
use edgebert_runtime::{ModelSource, Session, SessionOptions};

/// Every tensor of at least 1 KiB read from the file (the tiny fixture has no 64 KiB one).
fn from_file(shared_graph: bool) -> SessionOptions {
    SessionOptions::default()
        .with_file_weights_min_bytes(1024)
        .with_shared_graph(shared_graph)
}

fn in_memory() -> SessionOptions {
    SessionOptions::default().with_file_weights_min_bytes(usize::MAX)
}

#[test]
fn every_plan_from_file_weights_equals_the_in_memory_model() {
    let (_, _, cases) = common::reference();
    let dir = common::scratch("file-weights");
    common::copy_dir(&common::tiny_bert(), &dir);
    let bundle = dir.join("model.edgebert");
    ModelSource::open(common::tiny_bert())
        .expect("fixture")
        .bundle
        .write_to(&bundle)
        .expect("write bundle");

    let mut reference = Session::open_with(common::tiny_bert(), in_memory()).expect("open");
    assert_eq!(reference.file_weights(), (0, 0));
    assert!(!reference.maps_embedding());
    for path in [dir.join("model.onnx"), bundle] {
        for (shared_graph, map_embedding) in [(true, true), (false, true), (true, false)] {
            let options = from_file(shared_graph).with_map_embedding(map_embedding);
            let mut s = Session::open_with(&path, options).expect("open");
            assert_eq!(s.maps_embedding(), map_embedding);
            let (n, bytes) = s.file_weights();
            assert!(
                n >= 5 && bytes > 20_000,
                "{n} tensors, {bytes} B from the file"
            );
            for c in &cases {
                let a = s.classify(&c.text).expect("from file");
                let b = reference.classify(&c.text).expect("in memory");
                assert_eq!(a.logits, b.logits, "{path:?} {:?}", c.text);
            }
            assert!(s.buckets().iter().filter(|b| b.1).count() >= 3);
            assert_eq!(s.shares_typed_graph(), shared_graph);
        }
    }
}

#[test]
fn a_file_changed_after_opening_is_an_error_not_other_weights() {
    let dir = common::scratch("file-weights-changed");
    common::copy_dir(&common::tiny_bert(), &dir);
    let file = dir.join("model.onnx");
    // Every weight read (the mapped embedding is not re-read: see the test below).
    let options = from_file(true).with_map_embedding(false);
    let mut s = Session::open_with(&dir, options).expect("open");
    s.classify("hello")
        .expect("first plan, from the graph parsed at open");

    let mut bytes = std::fs::read(&file).expect("read");
    let sk = skeleton(&bytes, 0, "model.onnx", 1024).expect("skeleton");
    let largest = sk
        .tensors
        .iter()
        .max_by_key(|t| t.len)
        .expect("external tensors");
    bytes[(largest.offset + largest.len / 2) as usize] ^= 0x40;
    std::fs::write(&file, &bytes).expect("write");

    let long = "hello world ".repeat(20);
    let e = s
        .classify(&long)
        .expect_err("a later plan must not use the changed weights");
    let msg = e.to_string();
    assert!(msg.contains("changed since the model was opened"), "{msg}");
    assert!(msg.contains("model.onnx"), "{msg}");
    // the plan already built still runs
    s.classify("hello").expect("first plan");
}

#[test]
fn a_bundle_with_a_flipped_bit_fails_to_open_wherever_the_bit_is() {
    // The bundle checksum is verified piecewise: the bytes between the weights at open, each
    // weight as it is read, the mapped embedding by a background hash. A flip in each is found.
    let dir = common::scratch("file-weights-flip");
    let bundle = dir.join("model.edgebert");
    let source = ModelSource::open(common::tiny_bert()).expect("fixture");
    let model_len = source.bundle.model.len();
    source.bundle.write_to(&bundle).expect("write bundle");
    let good = std::fs::read(&bundle).expect("read");
    let model_at = good.len() - model_len;
    let sk =
        skeleton(&good[model_at..], model_at as u64, "model.edgebert", 1024).expect("skeleton");
    let largest = sk.tensors.iter().max_by_key(|t| t.len).expect("tensors");
    let smallest = sk.tensors.iter().min_by_key(|t| t.len).expect("tensors");
    let first_gap = sk.tensors[0].offset as usize - 1;
    let opened = Session::open_with(&bundle, from_file(true)).expect("intact bundle");
    assert!(
        opened.maps_embedding(),
        "the largest tensor is the mapped embedding"
    );
    drop(opened);
    for (what, at) in [
        (
            "the mapped embedding",
            (largest.offset + largest.len / 2) as usize,
        ),
        ("a weight tract reads", (smallest.offset + 1) as usize),
        ("the bytes between weights", first_gap),
        ("the header", 24 + 4 + 3),
        ("the header's last byte", model_at - 1),
        ("the last byte", good.len() - 1),
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x08;
        std::fs::write(&bundle, &bad).expect("write");
        let e = Session::open_with(&bundle, from_file(true))
            .err()
            .unwrap_or_else(|| panic!("a flip in {what} (byte {at}) went unnoticed"));
        let msg = e.to_string();
        assert!(msg.contains("checksum"), "{what}: {msg}");
        assert!(msg.contains("model.edgebert"), "{what}: {msg}");
    }
}

#[test]
fn the_mapped_embedding_rejects_token_ids_outside_it() {
    use edgebert_runtime::internals::MappedMatrix;
    let path = common::scratch("mapped-matrix").join("m.bin");
    let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut file_bytes = vec![7u8; 5];
    file_bytes.extend_from_slice(&bytes);
    std::fs::write(&path, &file_bytes).expect("write");
    let file = std::fs::File::open(&path).expect("open");
    let dt = tract_onnx::prelude::DatumType::F32;
    // sizes that disagree with the byte count are refused
    assert!(MappedMatrix::map(&file, 5, 48, dt, 4, 4).is_err());
    let m = MappedMatrix::map(&file, 5, 48, dt, 4, 3).expect("map");
    assert_eq!(m.rows(), 4);
    let mut out = vec![0u8; 2 * 12];
    m.gather(&[2, -1], &mut out).expect("rows 2 and 3");
    let got: Vec<f32> = out
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    for bad in [4, -5, i64::MAX, i64::MIN] {
        let e = m
            .gather(&[0, bad], &mut out)
            .expect_err("outside the matrix");
        assert!(e.to_string().contains("outside the 4 rows"), "{e}");
    }
}
