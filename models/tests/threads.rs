//! The runtime gives bit-identical results at 1, 2, 3 and 7 threads: int8 through edgebert's
//! kernel, tract's integer kernels and dequantized weights, and fp32; one text at a time and
//! many texts shared between the threads; on models whose widths are not multiples of the
//! kernels' panels (72 features, 148 in the feed-forward), at every sequence bucket. The int8
//! Linears split by rows at 2 and 7 threads and by column blocks at 3 (72 = 3 groups of 32).

mod onnx_common;

use std::path::Path;

use edgebert_models::config::ModelConfig;
use edgebert_models::onnx::{export_classifier, ExportOptions, Quantization};
use edgebert_runtime::tokenizer::Tokenizer;
use edgebert_runtime::{
    open_tokenizer, BundleWriter, Classification, Int8Mode, Session, SessionOptions,
};
use onnx_common::*;
use tract_onnx::tract_core::tract_linalg::multithread;

/// A BERT or DistilBERT config with odd widths (1,000 embedding rows, for the runtime fixture's 319-token vocabulary).
fn odd_config(model_type: &str) -> ModelConfig {
    let json = match model_type {
        "bert" => {
            r#"{"model_type":"bert","vocab_size":1000,"hidden_size":72,"num_hidden_layers":2,
               "num_attention_heads":3,"intermediate_size":148,"hidden_act":"gelu",
               "max_position_embeddings":160,"type_vocab_size":2,"layer_norm_eps":1e-12,
               "id2label":{"0":"a","1":"b","2":"c","3":"d","4":"e"}}"#
        }
        _ => {
            r#"{"model_type":"distilbert","vocab_size":1000,"dim":72,"n_layers":2,"n_heads":3,
               "hidden_dim":148,"activation":"gelu","max_position_embeddings":160,
               "id2label":{"0":"a","1":"b","2":"c","3":"d","4":"e"}}"#
        }
    };
    ModelConfig::from_json_str(json, Path::new("<odd>")).expect("config parses")
}

/// Texts of 0 to about 150 words of the vocabulary (every bucket up to 128, and truncation).
fn texts(tok: &Tokenizer) -> Vec<String> {
    let words: Vec<String> = (0..tok.vocab_size() as u32)
        .filter_map(|id| tok.id_to_token(id))
        .filter(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_lowercase()))
        .map(str::to_owned)
        .collect();
    assert!(words.len() > 50, "{} words", words.len());
    [0, 1, 5, 11, 29, 47, 61, 100, 126, 150, 3, 17]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n)
                .map(|j| words[(i * 31 + j * 7) % words.len()].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn classify_all(session: &mut Session, texts: &[String]) -> Vec<Classification> {
    texts
        .iter()
        .map(|t| session.classify(t).expect("classify"))
        .collect()
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    // tract splits even the smallest matmul and element-wise op over the threads, so that
    // these small models take every parallel path.
    multithread::set_threading_panel_threshold(0);
    multithread::set_threading_element_threshold(0);
    let fixture = repo_root().join("runtime/tests/fixtures/tiny-bert");
    let (tok, _) = open_tokenizer(&fixture).expect("fixture tokenizer");
    let texts = texts(&tok);
    let labels: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    for model_type in ["bert", "distilbert"] {
        let cfg = odd_config(model_type);
        let weights = random_weights(&cfg, labels.len(), 11);
        for (quantize, modes) in [
            (
                Quantization::Int8,
                &[Int8Mode::Kernel, Int8Mode::Native, Int8Mode::Dequantize][..],
            ),
            (Quantization::None, &[Int8Mode::Auto][..]),
        ] {
            let options = ExportOptions {
                quantize,
                labels: labels.clone(),
                ..Default::default()
            };
            let bytes = export_classifier(&cfg, &weights, &options).expect("export");
            let bundle = BundleWriter::new(&tok, labels.clone(), bytes)
                .max_len(128)
                .quantization(if quantize == Quantization::Int8 {
                    "int8"
                } else {
                    "none"
                })
                .build()
                .expect("bundle");
            for &int8 in modes {
                let open = |threads: usize| {
                    let options = SessionOptions::default()
                        .with_int8(int8)
                        .with_threads(threads);
                    Session::from_bundle(bundle.clone(), options).expect("session")
                };
                let mut one = open(1);
                assert_eq!(one.threads(), 1);
                let want = classify_all(&mut one, &texts);
                assert!(want.iter().any(|c| c.truncated) && want.iter().any(|c| c.tokens == 2));
                for threads in [2, 3, 7] {
                    let tag = format!("{model_type} {quantize:?} {int8:?} at {threads} threads");
                    let mut session = open(threads);
                    assert_eq!(session.threads(), threads, "{tag}");
                    assert_eq!(
                        classify_all(&mut session, &texts),
                        want,
                        "{tag}: one by one"
                    );
                    let many: Vec<Classification> = session
                        .classify_many(&texts)
                        .into_iter()
                        .map(|r| r.expect("classify_many"))
                        .collect();
                    assert_eq!(many, want, "{tag}: classify_many");
                }
                let many: Vec<Classification> = one
                    .classify_many(&texts)
                    .into_iter()
                    .map(|r| r.expect("classify_many"))
                    .collect();
                assert_eq!(
                    many, want,
                    "{model_type} {int8:?}: classify_many on one thread"
                );
            }
        }
    }
}

#[test]
fn thread_counts_out_of_range_are_clear_errors() {
    let fixture = repo_root().join("runtime/tests/fixtures/tiny-bert");
    let (tok, _) = open_tokenizer(&fixture).expect("fixture tokenizer");
    let cfg = odd_config("bert");
    let labels: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let bytes = export_classifier(&cfg, &random_weights(&cfg, 5, 3), &ExportOptions::default())
        .expect("export");
    let bundle = BundleWriter::new(&tok, labels, bytes)
        .build()
        .expect("bundle");
    for threads in [0, 257, usize::MAX] {
        let err = Session::from_bundle(
            bundle.clone(),
            SessionOptions::default().with_threads(threads),
        )
        .expect_err("refused");
        assert!(
            err.to_string()
                .contains("threads must be between 1 and 256"),
            "{err}"
        );
    }
}
