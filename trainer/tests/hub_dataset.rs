//! Datasets by hub id against a local stand-in for the Hub: parquet split files (written here with
//! the parquet crate's writer) found through the card's configs, label names from its
//! `dataset_info`, other column names, the `refs/convert/parquet` fallback, the cache (and
//! offline use from it), and local parquet/jsonl files.
mod hub_server;

use edgebert_trainer::data::{load_dataset, DataOptions, DataSource};
use hub_server::Server;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The tests set process-wide variables (HF_HUB_CACHE, HF_HUB_OFFLINE): one at a time.
static ENV: Mutex<()> = Mutex::new(());

fn parquet_bytes(text_col: &str, label_col: &str, rows: &[(&str, i64)]) -> Vec<u8> {
    let schema = Arc::new(
        parse_message_type(&format!(
            "message schema {{ REQUIRED BYTE_ARRAY {text_col} (UTF8); REQUIRED INT64 {label_col}; }}"
        ))
        .expect("schema"),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    {
        let mut w = SerializedFileWriter::new(&mut buf, schema, props).expect("writer");
        let mut rg = w.next_row_group().expect("row group");
        let texts: Vec<ByteArray> = rows.iter().map(|(t, _)| ByteArray::from(*t)).collect();
        let labels: Vec<i64> = rows.iter().map(|(_, l)| *l).collect();
        let mut c = rg.next_column().expect("col").expect("text col");
        c.typed::<ByteArrayType>()
            .write_batch(&texts, None, None)
            .expect("texts");
        c.close().expect("close");
        let mut c = rg.next_column().expect("col").expect("label col");
        c.typed::<Int64Type>()
            .write_batch(&labels, None, None)
            .expect("labels");
        c.close().expect("close");
        rg.close().expect("close rg");
        w.close().expect("close file");
    }
    buf
}

const TRAIN: [(&str, i64); 4] = [
    ("i am so happy", 1),
    ("this is awful", 0),
    ("what a great day", 1),
    ("i want to cry", 0),
];
const VALIDATION: [(&str, i64); 2] = [("lovely", 1), ("terrible news", 0)];

fn serve_card_dataset(server: &Server, id: &str, commit: &str) {
    let mut st = server.state();
    st.dataset_info.insert(
        format!("{id}@main"),
        serde_json::json!({
            "id": id, "sha": commit,
            "siblings": [
                {"rfilename": ".gitattributes"}, {"rfilename": "README.md"},
                {"rfilename": "split/train-00000-of-00001.parquet"},
                {"rfilename": "split/validation-00000-of-00001.parquet"},
                {"rfilename": "unsplit/train-00000-of-00001.parquet"}
            ],
            "cardData": {
                "configs": [
                    {"config_name": "split", "default": true, "data_files": [
                        {"split": "train", "path": "split/train-*"},
                        {"split": "validation", "path": "split/validation-*"}]},
                    {"config_name": "unsplit", "data_files": [{"split": "train", "path": "unsplit/train-*"}]}
                ],
                "dataset_info": [{"config_name": "split", "features": [
                    {"name": "text", "dtype": "string"},
                    {"name": "label", "dtype": {"class_label": {"names": {"0": "negative", "1": "positive"}}}}
                ]}]
            }
        }),
    );
    st.dataset_files.insert(
        format!("{id}/{commit}/split/train-00000-of-00001.parquet"),
        parquet_bytes("text", "label", &TRAIN),
    );
    st.dataset_files.insert(
        format!("{id}/{commit}/split/validation-00000-of-00001.parquet"),
        parquet_bytes("text", "label", &VALIDATION),
    );
}

fn opts(url: &str, source: DataSource) -> DataOptions {
    DataOptions {
        source: DataSource {
            endpoint: Some(url.to_string()),
            ..source
        },
        ..Default::default()
    }
}

#[test]
fn hub_dataset_by_id_with_card_metadata_cache_and_offline() {
    let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("hub");
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_HOME", tmp.path().join("hf"));
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_TOKEN");
    std::env::set_var("EDGEBERT_HUB_BACKOFF_MS", "1");
    let server = Server::start("unused");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    serve_card_dataset(&server, "test-org/tiny-sentiment", commit);

    let ds = load_dataset(
        Path::new("test-org/tiny-sentiment"),
        &opts(&server.url, DataSource::default()),
    )
    .expect("hub dataset");
    println!(
        "labels {:?}, {} train / {} validation from {}",
        ds.labels,
        ds.train.examples.len(),
        ds.validation.examples.len(),
        ds.train.path.display()
    );
    assert_eq!(
        ds.labels,
        vec!["negative".to_string(), "positive".to_string()]
    );
    assert_eq!(
        ds.train.texts(),
        TRAIN.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(ds.train.labels(), vec![1, 0, 1, 0]);
    assert_eq!(ds.validation.labels(), vec![1, 0]);
    assert!(ds.test.is_none());
    let snap = cache.join(format!(
        "datasets--test-org--tiny-sentiment/snapshots/{commit}"
    ));
    assert!(snap.join("split/train-00000-of-00001.parquet").is_file());
    assert!(
        !snap.join("unsplit").exists(),
        "only the default config is downloaded"
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("datasets--test-org--tiny-sentiment/refs/main"))
            .expect("ref"),
        commit
    );
    let downloads = server.count("GET", "/datasets/");
    assert_eq!(downloads, 2);

    // Again: the files come from the cache.
    load_dataset(
        Path::new("test-org/tiny-sentiment"),
        &opts(&server.url, DataSource::default()),
    )
    .expect("cached");
    assert_eq!(
        server.count("GET", "/datasets/"),
        downloads,
        "no second download"
    );

    // Offline, with the server gone: the cache alone.
    drop(server);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let ds = load_dataset(
        Path::new("test-org/tiny-sentiment"),
        &opts("http://127.0.0.1:9", DataSource::default()),
    )
    .expect("offline");
    assert_eq!(ds.train.examples.len(), 4);
    let e = load_dataset(
        Path::new("test-org/not-cached"),
        &opts("http://127.0.0.1:9", DataSource::default()),
    )
    .expect_err("not cached");
    println!("{e}");
    assert!(e.to_string().contains("HF_HUB_OFFLINE is set"), "{e}");
    std::env::remove_var("HF_HUB_OFFLINE");
}

#[test]
fn parquet_conversion_fallback_other_columns_and_emotion_names() {
    let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().expect("tmp");
    std::env::set_var("HF_HUB_CACHE", tmp.path().join("hub"));
    std::env::set_var("HF_HOME", tmp.path().join("hf"));
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::set_var("EDGEBERT_HUB_BACKOFF_MS", "1");
    let server = Server::start("unused");
    {
        let mut st = server.state();
        // A script dataset: no data files on main, the Hub's parquet conversion has them.
        st.dataset_info.insert(
            "someone/emotion@main".into(),
            serde_json::json!({"sha": "aaaa", "siblings": [{"rfilename": "emotion.py"}]}),
        );
        st.dataset_info.insert(
            "someone/emotion@refs/convert/parquet".into(),
            serde_json::json!({"sha": "bbbb", "siblings": [
                {"rfilename": "default/train/0000.parquet"},
                {"rfilename": "default/train/0001.parquet"},
                {"rfilename": "default/validation/0000.parquet"}]}),
        );
        let rows = |r: &[(&str, i64)]| parquet_bytes("sentence", "y", r);
        st.dataset_files.insert(
            "someone/emotion/bbbb/default/train/0000.parquet".into(),
            rows(&TRAIN[..2]),
        );
        st.dataset_files.insert(
            "someone/emotion/bbbb/default/train/0001.parquet".into(),
            rows(&TRAIN[2..]),
        );
        st.dataset_files.insert(
            "someone/emotion/bbbb/default/validation/0000.parquet".into(),
            rows(&[
                ("so sad", 0),
                ("joyful", 1),
                ("furious", 3),
                ("surprise!", 5),
            ]),
        );
    }
    let source = DataSource {
        text_column: Some("sentence".into()),
        label_column: Some("y".into()),
        ..Default::default()
    };
    let ds = load_dataset(
        Path::new("someone/emotion"),
        &opts(&server.url, source.clone()),
    )
    .expect("converted parquet");
    println!(
        "labels {:?}, {} train (two shards)",
        ds.labels,
        ds.train.examples.len()
    );
    assert_eq!(ds.train.examples.len(), 4, "both shards");
    assert_eq!(
        ds.labels,
        ["sadness", "joy", "love", "anger", "fear", "surprise"]
            .map(String::from)
            .to_vec(),
        "no metadata: the known emotion names"
    );
    assert_eq!(ds.validation.labels(), vec![0, 1, 3, 5]);

    // The default column names are not in these files: the error says which columns exist.
    let e = load_dataset(
        Path::new("someone/emotion"),
        &opts(&server.url, DataSource::default()),
    )
    .expect_err("no text column");
    println!("{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("no column \"text\"") && msg.contains("sentence"),
        "{msg}"
    );
    assert!(msg.contains("--text-column"), "{msg}");

    // A missing dataset: the Hub's 404, named.
    let e = load_dataset(
        Path::new("someone/missing"),
        &opts(&server.url, DataSource::default()),
    )
    .expect_err("404");
    println!("{e}");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
}

#[test]
fn local_parquet_and_jsonl_with_other_columns() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("data");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(
        d.join("train.parquet"),
        parquet_bytes("sentence", "y", &TRAIN),
    )
    .expect("w");
    std::fs::write(
        d.join("validation.jsonl"),
        "{\"sentence\": \"lovely\", \"y\": 1}\n{\"sentence\": \"terrible\", \"y\": 0}\n",
    )
    .expect("w");
    let o = DataOptions {
        source: DataSource {
            text_column: Some("sentence".into()),
            label_column: Some("y".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let ds = load_dataset(&d, &o).expect("local parquet + jsonl");
    assert_eq!(
        ds.labels,
        vec!["LABEL_0".to_string(), "LABEL_1".to_string()]
    );
    assert_eq!(ds.train.labels(), vec![1, 0, 1, 0]);
    assert_eq!(ds.validation.texts(), vec!["lovely", "terrible"]);
}
