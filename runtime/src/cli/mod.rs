//! Argument parsing and dispatch for the `edgebert` binary. Output is JSON lines on stdout;
//! every failure is one line on stderr and exit code 2 (clap's usage errors also use 2).
pub mod alloc_counter;
mod bench;
mod input;
mod inspect;
mod panic;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use edgebert_runtime::tokenizer::SeqEncoding;
use edgebert_runtime::{open_tokenizer, Classification, Int8Mode, Session, SessionOptions};

const INPUT_HELP: &str = "\
INPUT:
  Each TEXT argument is one input. Without TEXT, every line of stdin is one input
  (a trailing \\n or \\r\\n is removed). An empty line is a valid input: it is encoded as
  [CLS] [SEP] and classified like any other text. A line that is not valid UTF-8 is an
  error naming its line number, unless --lossy replaces bad bytes with U+FFFD.

EXIT STATUS:
  0 success, 2 any error (bad arguments, missing or corrupt model, invalid input); the
  error is one line on stderr.";

/// The text `edgebert --version` prints: the version, the build's features and the kernels this
/// CPU selects.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimized"
        };
        format!(
            "{} ({profile} build; features: std, cli)\nkernels: {}",
            env!("CARGO_PKG_VERSION"),
            edgebert_kernels::dispatch::describe()
        )
    })
}

/// Run a BERT text classifier on the device: tokenize, classify, benchmark, inspect.
#[derive(Debug, Parser)]
#[command(name = "edgebert", version = version(), about, after_help = INPUT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print token ids and attention mask for each input, one JSON object per line.
    #[command(after_help = INPUT_HELP)]
    Tokenize(TokenizeArgs),
    /// Classify each input; JSON lines with label, label_id, score, probs, logits, tokens, truncated.
    #[command(after_help = INPUT_HELP)]
    Classify(ClassifyArgs),
    /// Measure classify latency at one sequence length (p50/p95/p99/mean/min, allocations per
    /// call), or throughput over a text file (--throughput).
    Bench(BenchArgs),
    /// Describe a model: labels, max_len, sizes, op histogram, checksum.
    Inspect(InspectArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
struct TokenizeArgs {
    /// Model bundle (model.edgebert), export directory, Hugging Face model directory
    /// (tokenizer.json or vocab.txt), or a vocab.txt / tokenizer.json file.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Maximum tokens per input including `[CLS]` and `[SEP]` (default: the model's max_len, at most 512).
    #[arg(long, value_name = "N")]
    max_len: Option<usize>,
    /// Replace invalid UTF-8 in stdin lines with U+FFFD instead of failing.
    #[arg(long)]
    lossy: bool,
    /// Texts to tokenize; none: read one text per stdin line.
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,
}

#[derive(Debug, Args)]
struct ClassifyArgs {
    /// Model bundle (model.edgebert) or export directory (model.onnx + config.json + vocab.txt/tokenizer.json).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Output format: json (one object per input) or text (label, score, tokens per line).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Replace invalid UTF-8 in stdin lines with U+FFFD instead of failing.
    #[arg(long)]
    lossy: bool,
    /// Build every sequence-length plan at start instead of on first use (slower start, even latency).
    #[arg(long)]
    eager: bool,
    /// Cap on tokens per input (default and maximum: the model's max_len); longer texts are truncated.
    #[arg(long, value_name = "N")]
    max_len: Option<usize>,
    /// int8 models: `auto` uses edgebert's int8 kernel on x86-64 CPUs with AVX-512 VNNI, on
    /// AVX2 ones when the codes are 7-bit (the exporter's default), and on every aarch64 CPU
    /// (i8mm, dotprod or NEON), and dequantizes the weights to fp32 at load elsewhere;
    /// `native`/`kernel`/`dequantize` force one.
    #[arg(long, value_enum, default_value_t = Int8Arg::Auto)]
    int8: Int8Arg,
    #[command(flatten)]
    threads: ThreadsArg,
    /// Texts to classify; none: read one text per stdin line.
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Model bundle or export directory.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Tokens per input including `[CLS]` and `[SEP]` (2..=max_len); the text is built to hit it
    /// exactly. Required unless --throughput is given.
    #[arg(long, value_name = "S", required_unless_present = "throughput")]
    seq_len: Option<usize>,
    /// Timed classify calls.
    #[arg(long, value_name = "N", default_value_t = 100)]
    iters: usize,
    /// Untimed calls before timing.
    #[arg(long, value_name = "N", default_value_t = 10)]
    warmup: usize,
    /// Output format: text (default) or json (one object).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// int8 models: auto, native (tract's integer kernels), dequantize (fp32 weights at load) or
    /// kernel (edgebert's own int8 kernel); see classify.
    #[arg(long, value_enum, default_value_t = Int8Arg::Auto)]
    int8: Int8Arg,
    #[command(flatten)]
    threads: ThreadsArg,
    /// Measure throughput instead: classify every line of FILE (one text per line, UTF-8),
    /// shared between the threads, and report sequences per second (--seq-len is not used).
    #[arg(long, value_name = "FILE", conflicts_with = "seq_len")]
    throughput: Option<PathBuf>,
}

/// `--threads`, shared by `classify` and `bench`.
#[derive(Debug, Args)]
struct ThreadsArg {
    /// Threads (default: one per physical core; also EDGEBERT_THREADS): one text is spread
    /// over them, and many inputs are shared between them. Results are identical at any count.
    #[arg(
        long,
        value_name = "N",
        env = "EDGEBERT_THREADS",
        allow_hyphen_values = true
    )]
    threads: Option<String>,
}

/// `--int8` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Int8Arg {
    /// edgebert's int8 kernel on x86-64 with AVX-512 VNNI, or AVX2 when the model's codes are
    /// 7-bit, and on every aarch64 CPU; dequantized fp32 weights elsewhere.
    Auto,
    /// Always tract's integer kernels (MatMulInteger).
    Native,
    /// Always dequantize int8 weights to fp32 at load.
    Dequantize,
    /// Always edgebert's own int8 Linear kernel (AVX-512 VNNI, AVX2, i8mm, dotprod or NEON; else
    /// a slow portable loop).
    Kernel,
}

impl From<Int8Arg> for Int8Mode {
    fn from(a: Int8Arg) -> Int8Mode {
        match a {
            Int8Arg::Auto => Int8Mode::Auto,
            Int8Arg::Native => Int8Mode::Native,
            Int8Arg::Dequantize => Int8Mode::Dequantize,
            Int8Arg::Kernel => Int8Mode::Kernel,
        }
    }
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Model bundle or export directory.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Output format: text (default) or json (one object).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Parses arguments, runs the command, returns the process exit code.
pub fn main() -> i32 {
    panic::install();
    edgebert_runtime::memory::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            let msg = format!("{e:#}").replace(['\n', '\r'], " ");
            let _ = writeln!(std::io::stderr(), "edgebert: error: {msg}");
            2
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tokenize(a) => tokenize(a),
        Command::Classify(a) => classify(a),
        Command::Bench(a) => {
            let threads = resolve_threads(a.threads.threads.as_deref())?;
            match (&a.throughput, a.seq_len) {
                (Some(file), _) => {
                    bench::throughput(&a.model, file, threads, a.format, a.int8.into())
                }
                (None, Some(seq_len)) => bench::run(
                    &a.model,
                    bench::Latency {
                        seq_len,
                        iters: a.iters,
                        warmup: a.warmup,
                        threads,
                    },
                    a.format,
                    a.int8.into(),
                ),
                (None, None) => anyhow::bail!("--seq-len or --throughput is required"),
            }
        }
        Command::Inspect(a) => inspect::run(&a.model, a.format),
    }
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    let (tok, model_max) = open_tokenizer(&a.model)?;
    let max_len = a.max_len.unwrap_or(model_max);
    if max_len < 2 {
        anyhow::bail!("--max-len {max_len} cannot hold [CLS] and [SEP] (need at least 2)");
    }
    let mut enc = Box::<SeqEncoding>::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = String::new();
    input::for_each_input(&a.texts, a.lossy, |n, text| {
        tok.encode_into(text, max_len, &mut enc)
            .with_context(|| n.describe())?;
        line.clear();
        line.push_str("{\"input_ids\":");
        push_i64s(&mut line, &enc.input_ids);
        line.push_str(",\"attention_mask\":");
        push_i64s(&mut line, &enc.attention_mask);
        line.push_str(",\"truncated\":");
        line.push_str(if enc.truncated { "true" } else { "false" });
        line.push('}');
        writeln!(out, "{line}")?;
        if n.from_stdin {
            out.flush()?;
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

fn push_i64s(s: &mut String, v: &[i64]) {
    use std::fmt::Write as _;
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
}

/// The `--threads` value (or EDGEBERT_THREADS), checked; the default when absent.
fn resolve_threads(arg: Option<&str>) -> Result<usize> {
    match arg {
        None => Ok(edgebert_runtime::threads::default_threads()),
        Some(text) => edgebert_runtime::threads::parse_threads(text)
            .context("--threads (or EDGEBERT_THREADS)"),
    }
}

/// Inputs classified together when there are several threads: enough per thread to keep
/// them busy, few enough that results stream out.
const BLOCK_PER_THREAD: usize = 32;

fn classify(a: ClassifyArgs) -> Result<()> {
    let threads = resolve_threads(a.threads.threads.as_deref())?;
    let options = SessionOptions::default()
        .with_eager(a.eager)
        .with_max_len(a.max_len)
        .with_int8(a.int8.into())
        .with_threads(threads);
    if a.max_len.is_some_and(|m| m < 2) {
        anyhow::bail!("--max-len must be at least 2 ([CLS] and [SEP])");
    }
    let mut session = Session::open_with(&a.model, options)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut c = Classification::default();
    let block = if threads > 1 {
        threads * BLOCK_PER_THREAD
    } else {
        1
    };
    input::for_each_block(&a.texts, a.lossy, block, |inputs| {
        if let [(n, text)] = inputs {
            session
                .classify_into(text, &mut c)
                .with_context(|| n.describe())?;
            write_classification(&mut out, a.format, &c)?;
        } else {
            let texts: Vec<&str> = inputs.iter().map(|(_, t)| t.as_str()).collect();
            for ((n, _), result) in inputs.iter().zip(session.classify_many(&texts)) {
                let c = result.with_context(|| n.describe())?;
                write_classification(&mut out, a.format, &c)?;
            }
        }
        if inputs.first().is_some_and(|(n, _)| n.from_stdin) {
            out.flush()?;
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// One result as `--format` asks.
fn write_classification(out: &mut impl Write, format: Format, c: &Classification) -> Result<()> {
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "label": c.label,
                "label_id": c.label_id,
                "score": c.score,
                "probs": c.probs,
                "logits": c.logits,
                "tokens": c.tokens,
                "truncated": c.truncated,
            });
            writeln!(out, "{v}")?;
        }
        Format::Text => {
            let trunc = if c.truncated { ", truncated" } else { "" };
            writeln!(
                out,
                "{}\t{:.4}\t({} tokens{trunc})",
                c.label, c.score, c.tokens
            )?;
        }
    }
    Ok(())
}
