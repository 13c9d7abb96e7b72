//! `edgebert bench`: classify latency at one sequence length, with heap allocations per call
//! counted by the binary's global allocator (ours and tract's together, plus the tokenizer
//! alone); or throughput over a text file.
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use edgebert_runtime::tokenizer::SeqEncoding;
use edgebert_runtime::{synthetic_text, Classification, Int8Mode, Session, SessionOptions};

use super::alloc_counter::allocations;
use super::Format;

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// "1 thread", "4 threads".
fn threads_label(n: usize) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

/// What the latency benchmark runs.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Tokens per input.
    pub seq_len: usize,
    /// Timed calls.
    pub iters: usize,
    /// Untimed calls first.
    pub warmup: usize,
    /// Session threads.
    pub threads: usize,
}

/// Runs the latency benchmark and prints one result.
pub fn run(path: &Path, latency: Latency, format: Format, int8: Int8Mode) -> Result<()> {
    let Latency {
        seq_len,
        iters,
        warmup,
        threads,
    } = latency;
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let t0 = Instant::now();
    let options = SessionOptions::default()
        .with_int8(int8)
        .with_threads(threads);
    let mut session = Session::open_with(path, options)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    if seq_len < 2 || seq_len > session.max_len() {
        bail!(
            "--seq-len {seq_len} is outside 2..={} (the model's max_len)",
            session.max_len()
        );
    }
    let text = synthetic_text(session.tokenizer(), seq_len)?;
    let t1 = Instant::now();
    let bucket = session.prepare(seq_len)?;
    let plan_ms = t1.elapsed().as_secs_f64() * 1e3;
    let mut c = Classification::default();
    for _ in 0..warmup.max(1) {
        session.classify_into(&text, &mut c)?;
    }
    let mut times = Vec::with_capacity(iters);
    let a0 = allocations();
    for _ in 0..iters {
        let t = Instant::now();
        session.classify_into(&text, &mut c)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let allocs = (allocations() - a0) as f64 / iters as f64;
    // The tokenizer alone, same text, same count.
    let mut enc = Box::<SeqEncoding>::default();
    let a1 = allocations();
    for _ in 0..iters {
        session.tokenizer().encode_into(&text, seq_len, &mut enc)?;
    }
    let tok_allocs = (allocations() - a1) as f64 / iters as f64;
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let v = serde_json::json!({
        "seq_len": seq_len,
        "bucket": bucket,
        "iters": iters,
        "p50_ms": percentile(&times, 0.50),
        "p95_ms": percentile(&times, 0.95),
        "p99_ms": percentile(&times, 0.99),
        "mean_ms": mean,
        "min_ms": times.first().copied().unwrap_or(f64::NAN),
        "allocs_per_call": allocs,
        "tokenizer_allocs_per_call": tok_allocs,
        "load_ms": load_ms,
        "plan_ms": plan_ms,
        "int8_path": session.int8_path().describe(),
        "threads": session.threads(),
    });
    match format {
        Format::Json => println!("{v}"),
        Format::Text => {
            println!(
                "seq_len {seq_len} (bucket {bucket}), {iters} iters, {}: p50 {:.3} ms  p95 {:.3} ms  p99 {:.3} ms  mean {:.3} ms  min {:.3} ms",
                threads_label(session.threads()),
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&times, 0.99),
                mean,
                times.first().copied().unwrap_or(f64::NAN)
            );
            println!("allocs/call {allocs:.1} (tokenizer alone {tok_allocs:.1}); load {load_ms:.1} ms, plan build {plan_ms:.1} ms");
        }
    }
    Ok(())
}

/// Reads `file` as one text per line (UTF-8; the error names the line).
fn read_lines(file: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!("{}: line {line} is not valid UTF-8", file.display())
    })?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect();
    if lines.is_empty() {
        bail!("{}: no lines to classify", file.display());
    }
    Ok(lines)
}

/// Classifies every line of `file` once untimed (every plan built) and once timed, shared
/// between `threads` threads, and prints sequences per second.
pub fn throughput(
    path: &Path,
    file: &Path,
    threads: usize,
    format: Format,
    int8: Int8Mode,
) -> Result<()> {
    let texts = read_lines(file)?;
    let options = SessionOptions::default()
        .with_int8(int8)
        .with_threads(threads);
    let mut session = Session::open_with(path, options)?;
    let check = |results: Vec<edgebert_runtime::Result<Classification>>| -> Result<usize> {
        let mut tokens = 0;
        for (i, r) in results.into_iter().enumerate() {
            tokens += r
                .with_context(|| format!("{} line {}", file.display(), i + 1))?
                .tokens;
        }
        Ok(tokens)
    };
    check(session.classify_many(&texts))?;
    let t = Instant::now();
    let tokens = check(session.classify_many(&texts))?;
    let seconds = t.elapsed().as_secs_f64();
    let v = serde_json::json!({
        "file": file.display().to_string(),
        "sequences": texts.len(),
        "tokens": tokens,
        "seconds": seconds,
        "sequences_per_s": texts.len() as f64 / seconds,
        "threads": session.threads(),
        "int8_path": session.int8_path().describe(),
    });
    match format {
        Format::Json => println!("{v}"),
        Format::Text => println!(
            "{} sequences ({tokens} tokens) in {seconds:.3} s on {}: {:.1} sequences/s",
            texts.len(),
            threads_label(session.threads()),
            texts.len() as f64 / seconds
        ),
    }
    Ok(())
}
