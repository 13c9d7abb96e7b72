//! The C API end to end: `tests/c/bad_input.c` compiled with the system `cc` against the static
//! library and run on the tiny BERT fixture; the same calls from Rust checked against the
//! reference logits and for allocations per call.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use edgebert_capi::*;
use edgebert_runtime::{Classification, Session, SessionOptions};

/// Counts allocations per thread, so tests running in parallel do not see each other's.
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's layout contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's layout contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        bump();
        // SAFETY: `p` came from `System` with `l`.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with `l`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The runtime's tiny BERT export (labels negative/neutral/positive, max_len 64).
fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-bert")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgebert-capi-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The static library cargo built for this test run: the newest `libedgebert_capi*.a` next to
/// the test binary (`deps/`) or one level up.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for dir in [deps, deps.parent().expect("profile dir")] {
        for e in std::fs::read_dir(dir).expect("read target dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("libedgebert_capi") && name.ends_with(".a") {
                let t = e.metadata().and_then(|m| m.modified()).expect("mtime");
                found.push((t, e.path()));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .expect("libedgebert_capi.a next to the test binary (crate-type staticlib)")
}

#[test]
fn bad_input_c_program_passes() {
    let dir = scratch("bad-input");
    let exe = dir.join("bad_input");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = Command::new("cc")
        .args(["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/bad_input.c"))
        .arg(static_lib())
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
            "-o",
        ])
        .arg(&exe)
        .output()
        .expect("run cc (a C compiler is needed for this test)");
    assert!(
        build.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).expect("scratch");
    let run = Command::new(&exe)
        .arg(tiny_bert())
        .arg(&corrupt)
        .output()
        .expect("run bad_input");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("bad_input.c: {stdout}");
    assert!(
        run.status.success(),
        "bad_input.c failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn open(path: &Path) -> *mut EdgebertHandle {
    open_with(path, None)
}

/// Opens `path` with the default options, or those with `threads` threads.
fn open_with(path: &Path, threads: Option<usize>) -> *mut EdgebertHandle {
    let c = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    let mut h = std::ptr::null_mut();
    let mut options = std::mem::MaybeUninit::<EdgebertOptions>::uninit();
    // SAFETY: `options` is written whole by edgebert_options_default before it is read.
    let mut options = unsafe {
        edgebert_options_default(options.as_mut_ptr());
        options.assume_init()
    };
    if let Some(threads) = threads {
        options.threads = threads;
    }
    // SAFETY: valid C string, options and out pointer.
    let st = unsafe { edgebert_open(c.as_ptr(), &options, &mut h) };
    assert_eq!(st, EdgebertStatus::EDGEBERT_OK, "open {}", path.display());
    h
}

fn classify(h: *mut EdgebertHandle, text: &str, probs: &mut [f32]) -> EdgebertResult {
    let mut r = EdgebertResult {
        label_id: 0,
        score: 0.0,
        tokens: 0,
        truncated: false,
        label_count: 0,
    };
    // SAFETY: text and buffers valid for the lengths given.
    let st = unsafe {
        edgebert_classify(
            h,
            text.as_ptr().cast::<c_char>(),
            text.len(),
            &mut r,
            probs.as_mut_ptr(),
            probs.len(),
        )
    };
    assert_eq!(st, EdgebertStatus::EDGEBERT_OK, "classify {text:?}");
    r
}

#[test]
fn c_api_matches_the_session() {
    let h = open(&tiny_bert());
    let mut session = Session::open(tiny_bert()).expect("session");
    let mut want = Classification::default();
    let texts = [
        "",
        "i feel happy today",
        "I really HATE this movie, it's the worst!",
        "Café über 中文 naïve résumé",
        &"what a wonderful morning ".repeat(10),
    ];
    for text in texts {
        let mut probs = [0f32; 3];
        let got = classify(h, text, &mut probs);
        session.classify_into(text, &mut want).expect("classify");
        assert_eq!(got.label_id, want.label_id, "{text:?}");
        assert_eq!(got.score, want.score, "{text:?}");
        assert_eq!(got.tokens, want.tokens, "{text:?}");
        assert_eq!(got.truncated, want.truncated, "{text:?}");
        assert_eq!(&probs[..], &want.probs[..], "{text:?}");
        let mut logits = [0f32; 3];
        let mut n = 0;
        // SAFETY: buffers valid for the lengths given.
        let st = unsafe { edgebert_last_logits(h, logits.as_mut_ptr(), 3, &mut n) };
        assert_eq!(st, EdgebertStatus::EDGEBERT_OK);
        assert_eq!(&logits[..n], &want.logits[..], "{text:?}");

        let mut ids = [0i64; 64];
        let (mut n_ids, mut truncated) = (0usize, false);
        // SAFETY: buffers valid for the lengths given.
        let st = unsafe {
            edgebert_tokenize(
                h,
                text.as_ptr().cast::<c_char>(),
                text.len(),
                ids.as_mut_ptr(),
                ids.len(),
                &mut n_ids,
                &mut truncated,
            )
        };
        assert_eq!(st, EdgebertStatus::EDGEBERT_OK);
        assert_eq!(n_ids, want.tokens, "{text:?}");
        assert_eq!(truncated, want.truncated, "{text:?}");
    }
    assert_eq!(edgebert_close(h), EdgebertStatus::EDGEBERT_OK);
}

#[test]
fn classify_allocates_no_more_than_the_session() {
    const N: usize = 50;
    let text = "i feel happy today and every day";
    // One thread on both sides: with a pool, each request queues one job in rayon's injector,
    // which takes a new block every 63 jobs, at a phase that differs between the two loops.
    let h = open_with(&tiny_bert(), Some(1));
    let mut probs = [0f32; 3];
    let mut session = Session::open_with(tiny_bert(), SessionOptions::default().with_threads(1))
        .expect("session");
    let mut out = Classification::default();
    // Warm both: the bucket's plan is built on the first call.
    for _ in 0..3 {
        classify(h, text, &mut probs);
        session.classify_into(text, &mut out).expect("classify");
    }
    let before = allocs();
    for _ in 0..N {
        classify(h, text, &mut probs);
    }
    let capi = allocs() - before;
    let before = allocs();
    for _ in 0..N {
        session.classify_into(text, &mut out).expect("classify");
    }
    let rust = allocs() - before;
    println!(
        "allocations per call: C API {:.1}, Session::classify_into {:.1} (inside tract)",
        capi as f64 / N as f64,
        rust as f64 / N as f64
    );
    assert!(
        capi <= rust,
        "the C API adds allocations: {capi} against {rust} over {N} calls"
    );

    let mut ids = [0i64; 64];
    let mut n = 0usize;
    let before = allocs();
    for _ in 0..N {
        // SAFETY: buffers valid for the lengths given.
        let st = unsafe {
            edgebert_tokenize(
                h,
                text.as_ptr().cast::<c_char>(),
                text.len(),
                ids.as_mut_ptr(),
                ids.len(),
                &mut n,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EdgebertStatus::EDGEBERT_OK);
    }
    assert_eq!(allocs() - before, 0, "edgebert_tokenize allocates");
    assert_eq!(edgebert_close(h), EdgebertStatus::EDGEBERT_OK);
}

#[test]
fn close_while_another_thread_classifies_is_safe() {
    let h = open(&tiny_bert()) as usize;
    let worker = std::thread::spawn(move || {
        let mut ok = 0;
        let mut invalid = 0;
        for _ in 0..200 {
            let mut r = EdgebertResult {
                label_id: 0,
                score: 0.0,
                tokens: 0,
                truncated: false,
                label_count: 0,
            };
            let text = "i feel happy today";
            // SAFETY: text valid for its length; no probabilities wanted.
            let st = unsafe {
                edgebert_classify(
                    h as *mut EdgebertHandle,
                    text.as_ptr().cast::<c_char>(),
                    text.len(),
                    &mut r,
                    std::ptr::null_mut(),
                    0,
                )
            };
            match st {
                EdgebertStatus::EDGEBERT_OK => ok += 1,
                EdgebertStatus::EDGEBERT_ERR_INVALID_HANDLE => invalid += 1,
                other => panic!("unexpected status {other:?}"),
            }
        }
        (ok, invalid)
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        edgebert_close(h as *mut EdgebertHandle),
        EdgebertStatus::EDGEBERT_OK
    );
    let (ok, invalid) = worker.join().expect("worker");
    assert_eq!(ok + invalid, 200);
    println!("classify calls before close: {ok}, after: {invalid}");
}
