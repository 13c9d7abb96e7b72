//! The whole story on emotion: feature extraction → fine-tuning → export → classification with
//! the edge runtime.
//!
//! ```text
//! cargo run --release --example emotion -- --model ../shared/models/all-MiniLM-L6-v2 \
//!     --data ../shared/data/emotion --out runs/emotion
//! ```
//! Without local copies, `--model` and `--data` default to hub ids (`distilbert-base-uncased`,
//! `dair-ai/emotion`), downloaded once into the hub cache.
//! Leaves `OUT/extract/` (recipe 1), `OUT/finetuned/` (Hugging Face layout) and
//! `OUT/export/model.edgebert` (the int8 model; plus `model.fp32.edgebert`, `model.fp32.onnx`,
//! `model.int8.onnx`).
use anyhow::Context;
use clap::Parser;
use edgebert_runtime::Session;
use edgebert_trainer::export::{export, ExportOpts};
use edgebert_trainer::extract::{extract, ExtractOptions};
use edgebert_trainer::finetune::{finetune, FinetuneOptions};
use edgebert_trainer::hub::card::{write_model_card, CardOptions};
use std::path::PathBuf;

/// Hub label order of emotion (the book's).
const LABELS: [&str; 6] = ["sadness", "joy", "love", "anger", "fear", "surprise"];

/// Run both recipes on emotion, export, and classify a few sentences on the runtime.
#[derive(Parser)]
struct Args {
    /// Model: local Hugging Face directory or hub id.
    #[arg(long, default_value = "distilbert-base-uncased")]
    model: String,
    /// Emotion data: a directory (train.txt, validation.txt: `text;label`; or .csv/.jsonl/.parquet)
    /// or a hub dataset id.
    #[arg(long, default_value = "dair-ai/emotion")]
    data: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "runs/emotion")]
    out: PathBuf,
    /// Fine-tuning epochs (the documented recipe: 5).
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Peak learning rate (the documented recipe: 1e-4 with 10% warm-up).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Warm-up fraction.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// Use only the first N training examples (quick runs).
    #[arg(long)]
    max_train_samples: Option<usize>,
    /// Device: auto, cpu, cuda[:N].
    #[arg(long, default_value = "auto")]
    device: String,
    /// Skip recipe 1 (feature extraction).
    #[arg(long)]
    skip_extract: bool,
    /// Continue an interrupted fine-tuning run.
    #[arg(long)]
    resume: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    edgebert_trainer::tune_allocator();
    let labels: Vec<String> = LABELS.iter().map(|s| s.to_string()).collect();

    if !a.skip_extract {
        eprintln!("== recipe 1: feature extraction + logistic regression");
        let e = extract(&ExtractOptions {
            model: a.model.clone(),
            data: a.data.clone(),
            out: a.out.join("extract"),
            labels: Some(labels.clone()),
            device: a.device.clone(),
            max_train_samples: a.max_train_samples,
            ..Default::default()
        })
        .context("feature extraction")?;
        println!(
            "recipe 1: logistic regression accuracy {:.4} weighted F1 {:.4} (majority baseline {:.4} / {:.4})",
            e.logistic_regression.accuracy,
            e.logistic_regression.weighted_f1,
            e.majority_baseline.accuracy,
            e.majority_baseline.weighted_f1
        );
    }

    eprintln!("== recipe 2: fine-tuning");
    let finetuned = a.out.join("finetuned");
    let f = finetune(&FinetuneOptions {
        model: a.model.clone(),
        data: a.data.clone(),
        out: finetuned.clone(),
        labels: Some(labels),
        epochs: a.epochs,
        lr: a.lr,
        batch_size: a.batch_size,
        warmup_ratio: a.warmup_ratio,
        max_train_samples: a.max_train_samples,
        group_by_length: true,
        device: a.device.clone(),
        resume: a.resume,
        ..Default::default()
    })
    .context("fine-tuning")?;
    println!(
        "recipe 2: validation accuracy {:.4} weighted F1 {:.4} ({:.1} samples/s, {:.0} s)",
        f.validation.accuracy,
        f.validation.weighted_f1,
        f.train_samples_per_second,
        f.train_seconds
    );

    eprintln!("== export");
    let export_dir = a.out.join("export");
    let x = export(&ExportOpts {
        model: finetuned.display().to_string(),
        out: export_dir.clone(),
        ..Default::default()
    })
    .context("export")?;
    if let Some(v) = &x.fp32 {
        println!(
            "export: runtime accuracy {:.4} = candle {:.4} on {} validation texts",
            v.runtime_accuracy, v.candle_accuracy, v.n
        );
    }
    if let Some(v) = &x.int8 {
        println!(
            "export: int8 runtime accuracy {:.4} (fp32 candle {:.4}), label agreement {:.4}",
            v.runtime_accuracy, v.candle_accuracy, v.agreement
        );
    }

    // the model card, now with the export's runtime numbers
    let card = CardOptions {
        export_dir: Some(export_dir.clone()),
        ..Default::default()
    };
    if let Some(p) = write_model_card(&finetuned, &card).context("model card")? {
        println!("model card: {}", p.display());
    }

    eprintln!("== classify with the edge runtime");
    let bundle = export_dir.join("model.edgebert");
    let mut session =
        Session::open(&bundle).with_context(|| format!("open {}", bundle.display()))?;
    for text in [
        "i feel so lonely since you left",
        "what a wonderful surprise, i am thrilled",
        "i am terrified of what tomorrow brings",
        "this makes me furious",
        "i adore you more every day",
    ] {
        let c = session.classify(text)?;
        println!("{:>9} {:.3}  {text}", c.label, c.score);
    }
    Ok(())
}
