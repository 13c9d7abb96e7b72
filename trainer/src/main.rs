//! `edgebert-train`: the trainer CLI (extract, finetune, evaluate, export, push).
use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use edgebert_trainer::data::{parse_label_list, DataSource};
use edgebert_trainer::eval::{evaluate_dir, EvaluateOptions};
use edgebert_trainer::export::{export, ExportOpts};
use edgebert_trainer::extract::{extract, ExtractOptions};
use edgebert_trainer::finetune::{finetune, BestMetric, FinetuneOptions};
use edgebert_trainer::hub::card::{write_model_card, CardOptions};
use edgebert_trainer::hub::{push_folder, HubClient, PushOptions};
use edgebert_trainer::{Quantization, WeightRange};
use std::path::PathBuf;

/// Train text classifiers on the host: feature extraction + logistic regression, fine-tuning,
/// evaluation, and export to an edgebert runtime bundle.
#[derive(Parser)]
#[command(name = "edgebert-train", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Recipe 1: `[CLS]` features of a frozen encoder + logistic regression (and the majority baseline).
    Extract(ExtractArgs),
    /// Recipe 2: fine-tune encoder + classification head; writes a Hugging Face directory.
    Finetune(FinetuneArgs),
    /// Accuracy, weighted F1, per-class report and confusion matrix of a fine-tuned model on one file.
    Evaluate(EvaluateArgs),
    /// Write model.fp32.onnx, model.int8.onnx, model.edgebert, config.json and tokenizer files, then
    /// verify the bundle with the runtime against candle on the validation file.
    Export(ExportArgs),
    /// Upload a fine-tuned model directory (and its export) to a Hub model repo in one commit,
    /// with a generated model card (README.md).
    Push(PushArgs),
    /// Write (or refresh) the model card, README.md, of a fine-tuned directory from its run files
    /// and, with --export, the export's runtime numbers (what `push` writes before uploading).
    Card(CardArgs),
}

#[derive(Args)]
struct CardArgs {
    /// Fine-tuned model directory (written by `edgebert-train finetune`).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Export directory (`edgebert-train export --out`) whose export_report.json adds the runtime
    /// fp32 and int8 accuracy to the card.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Hub model repo (OWNER/NAME) named in the card's usage section.
    #[arg(long, value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// License id written into the model card's metadata.
    #[arg(long, default_value = "apache-2.0")]
    license: String,
    /// Hub id of the base model for the card's `base_model` (default: the run's --model when it
    /// was a hub id; a local directory has none).
    #[arg(long, value_name = "OWNER/NAME")]
    base_model: Option<String>,
}

#[derive(Args)]
struct DataArgs {
    /// Data directory with train and validation (optionally test) files: .txt (`text;label`, split
    /// on the last `;`), .csv (header with `text,label`), .jsonl (`{"text":..,"label":..}`) or
    /// .parquet; or a hub dataset id such as `dair-ai/emotion` (downloaded into the hub cache;
    /// `HF_HUB_OFFLINE=1` reads the cache only).
    #[arg(long)]
    data: PathBuf,
    /// Revision (branch, tag or commit) of a hub dataset given to --data.
    #[arg(long, default_value = "main")]
    data_revision: String,
    /// Column holding the texts in .csv, .jsonl and .parquet files.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Column holding the labels (names or integer ids) in .csv, .jsonl and .parquet files.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Hub endpoint for datasets by id and for --push-to-hub (default: HF_ENDPOINT, else
    /// https://huggingface.co).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Label order, e.g. `sadness,joy,love,anger,fear,surprise`. Default: integer labels are ids
    /// as is; otherwise names sorted in byte order.
    #[arg(long)]
    labels: Option<String>,
    /// Skip (and count) malformed lines instead of stopping at the first one.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Maximum tokens per text, including `[CLS]` and `[SEP]`; longer texts are truncated.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Device: auto, cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Use only the first N training examples.
    #[arg(long)]
    max_train_samples: Option<usize>,
    /// Hide progress bars and log lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ExtractArgs {
    /// Model: a local Hugging Face directory or a hub id.
    #[arg(long, default_value = "distilbert-base-uncased")]
    model: String,
    /// Output directory (features cache, metrics.json, confusion matrix).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Batch size of the frozen forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Inverse L2 strength of the logistic regression (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// L-BFGS iteration cap of the logistic regression.
    #[arg(long, default_value_t = 3000)]
    max_iter: usize,
}

#[derive(Args)]
struct FinetuneArgs {
    /// Model to start from: a local Hugging Face directory or a hub id.
    #[arg(long, default_value = "distilbert-base-uncased")]
    model: String,
    /// Output directory (Hugging Face layout, plus checkpoints/).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Training epochs.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-5)]
    lr: f64,
    /// Training batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 128)]
    eval_batch_size: usize,
    /// Decoupled weight decay (not applied to biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Fraction of the steps spent warming the learning rate up linearly from 0.
    #[arg(long, default_value_t = 0.0)]
    warmup_ratio: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Use only the first N validation examples for the per-epoch evaluation.
    #[arg(long)]
    max_eval_samples: Option<usize>,
    /// Batch examples of similar length together (less padding, faster).
    #[arg(long)]
    group_by_length: bool,
    /// Seed for the head initialisation, data order and dropout (CPU runs are repeatable).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Continue exactly from OUT/checkpoints/latest (same flags required).
    #[arg(long)]
    resume: bool,
    /// Log loss, learning rate and samples/s every N optimizer steps.
    #[arg(long, default_value_t = 50)]
    logging_steps: usize,
    /// Also write a checkpoint every N optimizer steps (one is always written per epoch).
    #[arg(long)]
    save_steps: Option<usize>,
    /// Metric that selects the epoch whose weights are saved.
    #[arg(long, value_enum, default_value = "f1")]
    best_metric: BestMetric,
    /// Stop after this many epochs without improvement of --best-metric.
    #[arg(long)]
    patience: Option<usize>,
    /// Number of highest-loss validation examples written to error_analysis.jsonl.
    #[arg(long, default_value_t = 100)]
    error_samples: usize,
    /// Write a checkpoint and stop after this optimizer step (as Ctrl-C would).
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
    /// After training, push the output directory (best model, model card) to this Hub model repo
    /// (OWNER/NAME, created when missing) in one commit; needs HF_TOKEN or the token file.
    #[arg(long, value_name = "OWNER/NAME")]
    push_to_hub: Option<String>,
}

#[derive(Args)]
struct PushArgs {
    /// Fine-tuned model directory (written by `edgebert-train finetune`).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Export directory (`edgebert-train export --out`) whose model.edgebert, model.fp32.edgebert,
    /// model.int8.onnx, model.fp32.onnx and export_report.json are pushed too (default: those
    /// files in the model directory, when present).
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Hub model repo, OWNER/NAME; created when missing.
    #[arg(long, value_name = "OWNER/NAME")]
    repo: String,
    /// Branch to commit to (created when missing).
    #[arg(long, default_value = "main")]
    revision: String,
    /// Create the repo private (an existing repo keeps its visibility).
    #[arg(long)]
    private: bool,
    /// Commit title.
    #[arg(long, default_value = "Upload edgebert model")]
    commit_message: String,
    /// License id written into the model card's metadata.
    #[arg(long, default_value = "apache-2.0")]
    license: String,
    /// Hub id of the base model for the card's `base_model` (default: the run's --model when it
    /// was a hub id; a local directory has none).
    #[arg(long, value_name = "OWNER/NAME")]
    base_model: Option<String>,
    /// Hub endpoint (default: HF_ENDPOINT, else https://huggingface.co).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum QuantizeArg {
    /// int8 weights (per-channel scales), dynamically quantized activations.
    Int8,
    /// fp32 throughout.
    None,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum WeightRangeArg {
    /// 7-bit codes in [-63, 63]: no saturation in any u8×s8 kernel.
    Reduced,
    /// 8-bit codes in [-127, 127].
    Full,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
struct EvaluateArgs {
    /// Fine-tuned model directory (config.json with id2label, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: String,
    /// Data file (.txt, .csv or .jsonl) with labels as names or ids.
    #[arg(long)]
    data: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Maximum tokens per text.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Skip (and count) malformed lines.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Also draw the confusion matrix into this PNG (label names on both axes, row-normalised
    /// cells, the model and data file in the title).
    #[arg(long, value_name = "PNG")]
    confusion_matrix: Option<PathBuf>,
    /// Write example counts instead of row-normalised fractions into the PNG's cells.
    #[arg(long, requires = "confusion_matrix")]
    counts: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// Fine-tuned model directory.
    #[arg(long)]
    model: String,
    /// Export directory.
    #[arg(long)]
    out: PathBuf,
    /// Data file to verify the bundle on (default: the validation file of the training run).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Bundle max_len (tokens including `[CLS]`/`[SEP]`).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Weights of the shipped model: `int8` writes model.int8.onnx (int8 weights, dynamically
    /// quantized activations) and makes model.edgebert carry it, keeping the fp32 bundle as
    /// model.fp32.edgebert; `none` makes model.edgebert the fp32 model.
    #[arg(long, value_enum, default_value = "int8")]
    quantize: QuantizeArg,
    /// Code range of the int8 Linear weights: `reduced` (7-bit, codes in [-63, 63]) cannot
    /// saturate the int16 pair sums of u8×s8 kernels on x86 CPUs with AVX2 but no VNNI
    /// (onnxruntime's `reduce_range`); `full` ([-127, 127]) halves the rounding error for engines
    /// known to run on VNNI or ARM dot-product hardware. edgebert's runtime is exact either way.
    #[arg(long, value_enum, default_value = "reduced")]
    weight_range: WeightRangeArg,
    /// Skip the runtime-vs-candle verification.
    #[arg(long)]
    skip_verify: bool,
    /// Verify on the first N examples only.
    #[arg(long)]
    max_verify_samples: Option<usize>,
    /// Hide progress.
    #[arg(long)]
    quiet: bool,
}

fn source(d: &DataArgs) -> DataSource {
    DataSource {
        revision: Some(d.data_revision.clone()),
        text_column: Some(d.text_column.clone()),
        label_column: Some(d.label_column.clone()),
        endpoint: d.endpoint.clone(),
    }
}

/// Writes the model card and pushes; prints what was committed.
fn push(
    client: &HubClient,
    o: &PushOptions,
    license: &str,
    base_model: Option<String>,
) -> anyhow::Result<()> {
    let card = CardOptions {
        license: license.to_string(),
        repo: Some(o.repo.clone()),
        export_dir: o.export_dir.clone(),
        base_model,
    };
    match write_model_card(&o.model_dir, &card).context("model card")? {
        Some(p) => println!("wrote {}", p.display()),
        None => println!(
            "kept {} (not generated by edgebert-train)",
            o.model_dir.join("README.md").display()
        ),
    }
    let s = push_folder(client, o).with_context(|| format!("push to {}", o.repo))?;
    for f in &s.files {
        let how = match (f.mode.as_str(), f.uploaded) {
            ("lfs", true) => "lfs, uploaded",
            ("lfs", false) => "lfs, already on the Hub",
            _ => "regular",
        };
        println!("  {} ({} bytes, {how})", f.path, f.size);
    }
    println!(
        "committed {} files ({} LFS objects uploaded) to {}: {}",
        s.files.len(),
        s.lfs_uploaded(),
        o.repo,
        s.commit_url
    );
    Ok(())
}

fn labels(s: &Option<String>) -> anyhow::Result<Option<Vec<String>>> {
    Ok(match s {
        Some(s) => Some(parse_label_list(s)?),
        None => None,
    })
}

/// Runs the command; any error is one line on stderr and exit code 2 (never a panic).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The context chain on one line; a cause whose text an outer message already
            // includes (library errors print their source) is not repeated.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("edgebert-train: {msg}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<()> {
    // `--version`: version, features and the kernels this CPU selects (`-V`: the version only).
    let long_version: &'static str =
        Box::leak(edgebert_trainer::version::long_version().into_boxed_str());
    let cli = Cli::from_arg_matches(&Cli::command().long_version(long_version).get_matches())?;
    edgebert_trainer::tune_allocator();
    match cli.cmd {
        Cmd::Extract(a) => {
            let o = ExtractOptions {
                model: a.model,
                source: source(&a.data),
                data: a.data.data,
                out: a.out,
                labels: labels(&a.data.labels)?,
                skip_bad_lines: a.data.skip_bad_lines,
                max_len: a.data.max_len,
                batch_size: a.batch_size,
                device: a.data.device,
                c: a.c,
                max_iter: a.max_iter,
                max_train_samples: a.data.max_train_samples,
                progress: !a.data.quiet,
            };
            let s = extract(&o).context("extract failed")?;
            println!(
                "logistic regression: accuracy {:.4}  weighted F1 {:.4}",
                s.logistic_regression.accuracy, s.logistic_regression.weighted_f1
            );
            println!(
                "majority baseline:   accuracy {:.4}  weighted F1 {:.4}",
                s.majority_baseline.accuracy, s.majority_baseline.weighted_f1
            );
            println!("{}", s.logistic_regression.metrics.report());
            println!("wrote {}", o.out.join("metrics.json").display());
        }
        Cmd::Finetune(a) => {
            // A push is checked before training, not after it.
            let hub = match &a.push_to_hub {
                Some(repo) => {
                    let mut c = HubClient::from_env(a.data.endpoint.as_deref());
                    c.progress = !a.data.quiet;
                    c.require_token().context("--push-to-hub")?;
                    if !edgebert_trainer::hub::looks_like_repo_id(repo) {
                        anyhow::bail!("--push-to-hub {repo:?}: expected OWNER/NAME");
                    }
                    Some((c, repo.clone()))
                }
                None => None,
            };
            let o = FinetuneOptions {
                model: a.model,
                source: source(&a.data),
                data: a.data.data,
                out: a.out,
                labels: labels(&a.data.labels)?,
                skip_bad_lines: a.data.skip_bad_lines,
                epochs: a.epochs,
                lr: a.lr,
                batch_size: a.batch_size,
                eval_batch_size: a.eval_batch_size,
                weight_decay: a.weight_decay,
                warmup_ratio: a.warmup_ratio,
                max_grad_norm: a.max_grad_norm,
                max_train_samples: a.data.max_train_samples,
                max_eval_samples: a.max_eval_samples,
                max_len: a.data.max_len,
                group_by_length: a.group_by_length,
                seed: a.seed,
                device: a.data.device,
                resume: a.resume,
                logging_steps: a.logging_steps,
                save_steps: a.save_steps,
                best_metric: a.best_metric,
                patience: a.patience,
                error_samples: a.error_samples,
                progress: !a.data.quiet,
                stop_after_steps: a.stop_after_steps,
            };
            let s = finetune(&o).context("finetune failed")?;
            println!(
                "validation: accuracy {:.4}  weighted F1 {:.4}  loss {:.4}  (best epoch {:?}, {:.1} samples/s, {:.0} s training)",
                s.validation.accuracy,
                s.validation.weighted_f1,
                s.validation_loss,
                s.best_epoch,
                s.train_samples_per_second,
                s.train_seconds
            );
            println!("{}", s.validation.report());
            println!("wrote {}", o.out.display());
            if let Some((client, repo)) = hub {
                let po = PushOptions {
                    model_dir: o.out.clone(),
                    export_dir: None,
                    repo,
                    revision: "main".into(),
                    private: false,
                    commit_message: format!(
                        "edgebert-train finetune: validation accuracy {:.4}, weighted F1 {:.4}",
                        s.validation.accuracy, s.validation.weighted_f1
                    ),
                };
                push(&client, &po, "apache-2.0", None)?;
            }
        }
        Cmd::Card(a) => {
            let card = CardOptions {
                license: a.license,
                repo: a.repo,
                export_dir: a.export,
                base_model: a.base_model,
            };
            match write_model_card(&a.model, &card).context("model card")? {
                Some(p) => println!("wrote {}", p.display()),
                None => anyhow::bail!(
                    "{} was not generated by edgebert-train; left as it is",
                    a.model.join("README.md").display()
                ),
            }
        }
        Cmd::Push(a) => {
            let mut client = HubClient::from_env(a.endpoint.as_deref());
            client.progress = !a.quiet;
            let o = PushOptions {
                model_dir: a.model,
                export_dir: a.export,
                repo: a.repo,
                revision: a.revision,
                private: a.private,
                commit_message: a.commit_message,
            };
            push(&client, &o, &a.license, a.base_model)?;
        }
        Cmd::Evaluate(a) => {
            let o = EvaluateOptions {
                max_len: a.max_len,
                batch_size: a.batch_size,
                skip_bad_lines: a.skip_bad_lines,
                device: a.device,
                progress: a.format == Format::Text,
            };
            let r = evaluate_dir(&a.model, &a.data, &o).context("evaluate failed")?;
            if a.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} on {}: accuracy {:.4}  weighted F1 {:.4}  loss {:.4}  ({} examples, {} lines skipped)\n",
                    r.model, r.data, r.metrics.accuracy, r.metrics.weighted_f1, r.loss, r.metrics.n, r.skipped_lines
                );
                println!("{}", r.metrics.report());
            }
            if let Some(png) = &a.confusion_matrix {
                use edgebert_trainer::plot;
                let labels: Vec<String> = r
                    .metrics
                    .per_class
                    .iter()
                    .map(|c| c.label.clone())
                    .collect();
                let split = a
                    .data
                    .file_stem()
                    .map_or_else(|| r.data.clone(), |s| s.to_string_lossy().into_owned());
                let values = if a.counts {
                    plot::CellValues::Counts
                } else {
                    plot::CellValues::RowNormalized
                };
                let title = plot::confusion_title(&a.model, "fine-tuned", &split);
                plot::confusion_png_with(&r.metrics.confusion, &labels, &title, values, png)?;
                eprintln!("wrote {}", png.display());
            }
        }
        Cmd::Export(a) => {
            let o = ExportOpts {
                model: a.model,
                out: a.out,
                data: a.data,
                max_len: a.max_len,
                quantize: match a.quantize {
                    QuantizeArg::Int8 => Quantization::Int8,
                    QuantizeArg::None => Quantization::None,
                },
                weight_range: match a.weight_range {
                    WeightRangeArg::Reduced => WeightRange::Reduced,
                    WeightRangeArg::Full => WeightRange::Full,
                },
                skip_verify: a.skip_verify,
                max_verify_samples: a.max_verify_samples,
                progress: !a.quiet,
            };
            let s = export(&o).context("export failed")?;
            for f in &s.files {
                println!("wrote {}", f.display());
            }
            if let Some(v) = &s.fp32 {
                println!(
                    "verified fp32 bundle: runtime accuracy {:.4} = candle {:.4} (within 0.1 pt) on {} examples",
                    v.runtime_accuracy, v.candle_accuracy, v.n
                );
            }
            if let Some(v) = &s.int8 {
                println!(
                    "int8 bundle: runtime accuracy {:.4} (fp32 candle {:.4}), label agreement with candle fp32 {:.4}",
                    v.runtime_accuracy, v.candle_accuracy, v.agreement
                );
            }
        }
    }
    Ok(())
}
