//! Criterion: `Session::classify_into` latency per sequence bucket (16/32/64/128 tokens) on the
//! tiny BERT fixture, and on a MiniLM export when one is available (`EDGEBERT_BENCH_MODEL`, or
//! `$EDGEBERT_SHARED/models/all-MiniLM-L6-v2` if it holds an ONNX export); skipped otherwise.
//! Given an `edgebert-train export` directory, it benches the fp32 bundle (`model.fp32.edgebert`)
//! and the int8 one (`model.edgebert`, on this CPU's int8 path) per bucket in the same run.
//! Each at 1 thread and at the default count (one per physical core; `EDGEBERT_BENCH_THREADS`
//! for another): benchmark ids `classify/<model>/<threads>t/<tokens>`.
//! Also prints heap allocations per call (tokenizer + our code + tract), counted by a global allocator.
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edgebert_runtime::{synthetic_text, Classification, Session, SessionOptions};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SEQ_LENS: [usize; 4] = [16, 32, 64, 128];

fn models() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![(
        "tiny-bert".to_string(),
        root.join("runtime/tests/fixtures/tiny-bert"),
    )];
    let minilm = std::env::var_os("EDGEBERT_BENCH_MODEL")
        .map(PathBuf::from)
        .or_else(|| {
            let d =
                PathBuf::from(std::env::var_os("EDGEBERT_SHARED")?).join("models/all-MiniLM-L6-v2");
            ["model.edgebert", "model.onnx", "model.int8.onnx"]
                .iter()
                .any(|f| d.join(f).is_file())
                .then_some(d)
        });
    match minilm {
        // An `edgebert-train export` directory: its fp32 and int8 bundles side by side.
        Some(p)
            if p.join("model.fp32.edgebert").is_file() && p.join("model.edgebert").is_file() =>
        {
            v.push(("minilm-fp32".to_string(), p.join("model.fp32.edgebert")));
            v.push(("minilm-int8".to_string(), p.join("model.edgebert")));
        }
        Some(p) => v.push(("minilm".to_string(), p)),
        None => {
            eprintln!("SKIPPED minilm: set EDGEBERT_BENCH_MODEL to a MiniLM bundle or export dir")
        }
    }
    v
}

/// 1, and the default thread count (or `EDGEBERT_BENCH_THREADS`) when it is more.
fn thread_counts() -> Vec<usize> {
    let many = std::env::var("EDGEBERT_BENCH_THREADS")
        .ok()
        .and_then(|t| edgebert_runtime::threads::parse_threads(&t).ok())
        .unwrap_or_else(edgebert_runtime::threads::default_threads);
    if many > 1 {
        vec![1, many]
    } else {
        vec![1]
    }
}

fn classify_per_bucket(c: &mut Criterion) {
    for (name, path) in models() {
        for threads in thread_counts() {
            classify_model(c, &name, &path, threads);
        }
    }
}

fn classify_model(c: &mut Criterion, name: &str, path: &Path, threads: usize) {
    let options = SessionOptions::default().with_threads(threads);
    let mut session = match Session::open_with(path, options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED {name}: {e}");
            return;
        }
    };
    eprintln!(
        "{name}, {threads} threads: {}",
        session.int8_path().describe()
    );
    let mut group = c.benchmark_group(format!("classify/{name}/{threads}t"));
    let max_len = session.max_len();
    for s in SEQ_LENS.into_iter().filter(|&s| s <= max_len) {
        let text = match synthetic_text(session.tokenizer(), s) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("SKIPPED {name}/{s}: {e}");
                continue;
            }
        };
        let mut out = Classification::default();
        session.classify_into(&text, &mut out).expect("classify");
        let before = ALLOCS.load(Ordering::Relaxed);
        for _ in 0..100 {
            session.classify_into(&text, &mut out).expect("classify");
        }
        let per_call = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / 100.0;
        eprintln!(
            "{name} {threads}t seq_len {s}: {per_call:.2} heap allocations per classify call"
        );
        group.bench_with_input(BenchmarkId::from_parameter(s), &text, |b, text| {
            b.iter(|| session.classify_into(text, &mut out).expect("classify"))
        });
    }
    group.finish();
}

criterion_group!(benches, classify_per_bucket);
criterion_main!(benches);
