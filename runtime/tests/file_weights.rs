//! Sessions opened from a file read their large initializers from it when a plan needs them
//! (`session::weights`): every plan — the first from the graph parsed at open, later ones from
//! a fresh parse or the shared symbolic graph — gives exactly the logits of the same model held
//! in memory, for an export directory and a bundle; and a file changed after opening is an
//! error naming it, never silently different weights.
mod common;

use edgebert_runtime::model_source::ModelSource;
use edgebert_runtime::session::weights::skeleton;
use edgebert_runtime::session::{Session, SessionOptions};

/// Every tensor of at least 1 KiB read from the file (the tiny fixture has no 64 KiB one).
fn from_file(shared_graph: bool) -> SessionOptions {
    SessionOptions {
        file_weights_min_bytes: 1024,
        shared_graph,
        ..Default::default()
    }
}

fn in_memory() -> SessionOptions {
    SessionOptions {
        file_weights_min_bytes: usize::MAX,
        ..Default::default()
    }
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
    for path in [dir.join("model.onnx"), bundle] {
        for shared_graph in [true, false] {
            let mut s = Session::open_with(&path, from_file(shared_graph)).expect("open");
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
    let mut s = Session::open_with(&dir, from_file(true)).expect("open");
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
