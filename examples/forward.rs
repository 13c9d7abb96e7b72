//! Forward pass of a DistilBERT/BERT checkpoint from the command line, for checking numbers
//! against transformers by hand:
//!
//! `cargo run --release --example forward -- --model DIR_OR_HUB_ID TEXT...`
//!
//! Prints one JSON line per text with `cls_hidden` (the [CLS] last hidden state) and, when the
//! checkpoint has a classification head, `logits`.

use anyhow::{Context, Result};
use clap::Parser;
use edgebert_models::candle_core::{self, Device, Tensor};
use edgebert_models::{LoadOptions, ModelFiles, SequenceClassifier};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Model, Tokenizer};

#[derive(Parser)]
#[command(about = "Print [CLS] hidden states and logits of a DistilBERT/BERT checkpoint")]
struct Args {
    /// Local HF directory or hub id (org/name[@revision]).
    #[arg(long)]
    model: String,
    /// Truncate inputs to this many tokens.
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    /// Texts to run.
    #[arg(required = true)]
    texts: Vec<String>,
}

/// tokenizer.json when present, else a BERT WordPiece tokenizer from vocab.txt (uncased).
fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer> {
    if let Some(path) = &files.tokenizer_json {
        let mut tok =
            Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // One text at a time: no padding to a fixed length, truncation is done below.
        tok.with_padding(None);
        tok.with_truncation(None)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(tok);
    }
    let vocab = files.vocab.as_ref().with_context(|| {
        format!(
            "{}: neither tokenizer.json nor vocab.txt",
            files.dir.display()
        )
    })?;
    let vocab_str = vocab.to_str().context("vocab path is not UTF-8")?;
    let wp = WordPiece::from_file(vocab_str)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow::anyhow!("{}: {e}", vocab.display()))?;
    let cls = wp.token_to_id("[CLS]").context("vocab.txt lacks [CLS]")?;
    let sep = wp.token_to_id("[SEP]").context("vocab.txt lacks [SEP]")?;
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(tok)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::Cpu;
    let files = ModelFiles::resolve(&args.model)?;
    let (model, _vars) = SequenceClassifier::load_with(&files, &LoadOptions::default(), &device)?;
    let tokenizer = load_tokenizer(&files)?;
    let max_len = args.max_len.min(model.config().max_position_embeddings);
    for text in &args.texts {
        let enc = tokenizer
            .encode(text.as_str(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.len() > max_len {
            // Keep the final [SEP].
            let last = ids[ids.len() - 1];
            ids.truncate(max_len);
            ids[max_len - 1] = last;
        }
        let n = ids.len();
        let ids_t = Tensor::from_vec(ids.clone(), (1, n), &device)?;
        let mask = Tensor::ones((1, n), candle_core::DType::U32, &device)?;
        let cls: Vec<f32> = model.cls_hidden(&ids_t, &mask)?.squeeze(0)?.to_vec1()?;
        let mut line = serde_json::json!({ "text": text, "input_ids": ids, "cls_hidden": cls });
        if model.has_trained_head() {
            let logits: Vec<f32> = model.forward(&ids_t, &mask, None)?.squeeze(0)?.to_vec1()?;
            line["logits"] = serde_json::json!(logits);
            line["labels"] = serde_json::json!(model.config().id2label);
        }
        println!("{line}");
    }
    Ok(())
}
