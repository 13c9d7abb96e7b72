//! Data loading: the three formats, label order rules, malformed lines (file:line), skipping.
use edgebert_trainer::data::{load_dataset, load_file_with_labels, parse_label_list, DataOptions};
use edgebert_trainer::TrainError;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn txt_names_sorted_by_default_and_fixed_by_labels_flag() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        "train.txt",
        "i feel great;joy\nso sad; really;sadness\n\nscared;fear\n",
    );
    write(d.path(), "validation.txt", "happy;joy\n");
    let ds = load_dataset(d.path(), &DataOptions::default()).expect("load");
    assert_eq!(ds.labels, vec!["fear", "joy", "sadness"]);
    assert_eq!(ds.train.examples[1].text, "so sad; really");
    assert_eq!(ds.train.labels(), vec![1, 2, 0]);
    let fixed = DataOptions {
        labels: Some(parse_label_list("sadness,joy,love,anger,fear,surprise").expect("labels")),
        ..Default::default()
    };
    let ds = load_dataset(d.path(), &fixed).expect("load");
    assert_eq!(ds.train.labels(), vec![1, 0, 4]);
    assert!(ds.test.is_none());
}

#[test]
fn integer_labels_are_ids() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        "train.jsonl",
        "{\"text\":\"a\",\"label\":2}\n{\"text\":\"b\",\"label\":0}\n",
    );
    write(
        d.path(),
        "validation.jsonl",
        "{\"text\":\"c\",\"label\":\"1\"}\n",
    );
    write(d.path(), "test.jsonl", "{\"text\":\"d\",\"label\":1}\n");
    let ds = load_dataset(d.path(), &DataOptions::default()).expect("load");
    assert_eq!(ds.labels, vec!["LABEL_0", "LABEL_1", "LABEL_2"]);
    assert_eq!(ds.train.labels(), vec![2, 0]);
    assert_eq!(ds.test.expect("test split").labels(), vec![1]);
}

#[test]
fn csv_with_quotes_and_extra_columns() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        "train.csv",
        "id,text,label\n1,\"hello, world\",joy\n2,\"said \"\"no\"\"\",anger\n",
    );
    write(d.path(), "validation.csv", "text,label\nok,joy\n");
    let ds = load_dataset(d.path(), &DataOptions::default()).expect("load");
    assert_eq!(ds.train.examples[0].text, "hello, world");
    assert_eq!(ds.train.examples[1].text, "said \"no\"");
    assert_eq!(ds.labels, vec!["anger", "joy"]);
}

#[test]
fn malformed_lines_name_file_and_line() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        "train.txt",
        "good;joy\nno separator here\nalso good;sadness\n",
    );
    write(d.path(), "validation.txt", "fine;joy\n");
    let err = load_dataset(d.path(), &DataOptions::default()).expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, TrainError::BadLine { line: 2, .. }), "{msg}");
    assert!(msg.contains("train.txt:2"), "{msg}");

    let ds = load_dataset(
        d.path(),
        &DataOptions {
            skip_bad_lines: true,
            ..Default::default()
        },
    )
    .expect("skip");
    assert_eq!(ds.train.skipped, 1);
    assert_eq!(ds.train.examples.len(), 2);
}

#[test]
fn malformed_jsonl_and_csv_lines() {
    let d = tempfile::tempdir().expect("tmp");
    let f = d.path().join("v.jsonl");
    std::fs::write(&f, "{\"text\":\"a\",\"label\":\"joy\"}\n{\"text\":\"b\"}\n").expect("write");
    let e =
        load_file_with_labels(&f, &["joy".into(), "sad".into()], false).expect_err("missing label");
    assert!(
        e.to_string().contains("v.jsonl:2") && e.to_string().contains("label"),
        "{e}"
    );

    let f = d.path().join("v.csv");
    std::fs::write(&f, "text,label\na,joy\nb\n").expect("write");
    let e = load_file_with_labels(&f, &["joy".into(), "sad".into()], false).expect_err("short row");
    assert!(e.to_string().contains("v.csv:3"), "{e}");
    let s = load_file_with_labels(&f, &["joy".into(), "sad".into()], true).expect("skip");
    assert_eq!((s.examples.len(), s.skipped), (1, 1));

    let f = d.path().join("u.txt");
    std::fs::write(&f, "x;joy\ny;angry\n").expect("write");
    let e =
        load_file_with_labels(&f, &["joy".into(), "sad".into()], false).expect_err("unknown label");
    assert!(
        e.to_string().contains("u.txt:2") && e.to_string().contains("angry"),
        "{e}"
    );
}

#[test]
fn missing_split_and_bad_label_list() {
    let d = tempfile::tempdir().expect("tmp");
    write(d.path(), "train.txt", "a;joy\n");
    let e = load_dataset(d.path(), &DataOptions::default()).expect_err("no validation");
    assert!(e.to_string().contains("validation"), "{e}");
    assert!(parse_label_list("a,b,a").is_err());
    assert!(parse_label_list("a").is_err());
}

#[test]
#[ignore = "needs EDGEBERT_SHARED (the shared data and MiniLM)"]
fn emotion_files_parse() {
    let shared = std::env::var_os("EDGEBERT_SHARED").unwrap_or_else(|| {
        panic!(
            "emotion_files_parse needs EDGEBERT_SHARED: the folder holding data/emotion and models/all-MiniLM-L6-v2 (this test is ignored by default; run it with `EDGEBERT_SHARED=../shared cargo test --workspace -- --include-ignored`)"
        )
    });
    // A relative path is read from the workspace root, where the README's command runs.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(shared);
    let dir = Path::new(&shared).join("data/emotion");
    let ds = load_dataset(&dir, &DataOptions::default()).expect("emotion");
    assert_eq!(ds.train.examples.len(), 16000);
    assert_eq!(ds.validation.examples.len(), 2000);
    assert_eq!(
        ds.labels,
        vec!["anger", "fear", "joy", "love", "sadness", "surprise"]
    );
}
