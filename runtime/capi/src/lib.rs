//! C API of the edgebert runtime: open a model, classify and tokenize text into caller-owned
//! buffers, read labels and error messages. The header is `include/edgebert.h` (cbindgen).
//!
//! Every entry point runs inside `catch_unwind` and returns an [`EdgebertStatus`]; no panic
//! crosses into C (a library built with `panic = "abort"` aborts instead, see docs/c-api.md).
//! Handles are registry tokens, not pointers: a closed or made-up handle is reported as
//! [`EdgebertStatus::EDGEBERT_ERR_INVALID_HANDLE`], never dereferenced.
#![allow(non_camel_case_types)]

mod registry;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use edgebert_runtime::tokenizer::SeqEncoding;
use edgebert_runtime::{Classification, Error, Int8Mode, Session, SessionOptions};

use registry::Registry;

/// Status of every call: `EDGEBERT_OK` (0) or the kind of failure; the message is
/// [`edgebert_last_error_message`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgebertStatus {
    /// Success.
    EDGEBERT_OK = 0,
    /// A required pointer argument is NULL.
    EDGEBERT_ERR_NULL_ARGUMENT = 1,
    /// The text (or path) is not valid UTF-8.
    EDGEBERT_ERR_INVALID_UTF8 = 2,
    /// An output buffer is too small; the needed size was written where the call documents.
    EDGEBERT_ERR_BUFFER_TOO_SMALL = 3,
    /// The handle is NULL, closed, or was never returned by `edgebert_open`.
    EDGEBERT_ERR_INVALID_HANDLE = 4,
    /// Reading the model failed (missing file, permission, I/O error).
    EDGEBERT_ERR_IO = 5,
    /// The model is corrupt or unsupported, or running it failed.
    EDGEBERT_ERR_MODEL = 6,
    /// An argument is out of range (an option, a label id, a length, a NUL byte inside text).
    EDGEBERT_ERR_INVALID_ARGUMENT = 7,
    /// The library panicked (a bug); the handle it happened on refuses further calls except
    /// `edgebert_close`.
    EDGEBERT_ERR_PANIC = 8,
}

use EdgebertStatus::*;

/// How an int8 model runs (the values of [`EdgebertOptions::int8_mode`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgebertInt8Mode {
    /// The fastest exact path for this CPU (the default).
    EDGEBERT_INT8_AUTO = 0,
    /// tract's integer kernels.
    EDGEBERT_INT8_NATIVE = 1,
    /// Weights dequantized to fp32 at load.
    EDGEBERT_INT8_DEQUANTIZE = 2,
    /// edgebert's own int8 kernel.
    EDGEBERT_INT8_KERNEL = 3,
}

/// Options of [`edgebert_open`]. Fill with [`edgebert_options_default`], then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgebertOptions {
    /// `sizeof(EdgebertOptions)`, set by `edgebert_options_default`; other values are refused.
    pub struct_size: usize,
    /// Cap on tokens per text including `[CLS]` and `[SEP]`: 0 = the model's max_len, else
    /// at least 2 (larger than the model's is clamped to it).
    pub max_len: usize,
    /// Threads one text is spread over: 0 = the runtime's default (one per physical core),
    /// else 1..=256. Results are identical at every count.
    pub threads: usize,
    /// An `EdgebertInt8Mode` value.
    pub int8_mode: i32,
    /// Nonzero: build every sequence-length plan at open (slower open, even latency).
    pub eager: i32,
}

/// One classification, written by [`edgebert_classify`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgebertResult {
    /// Index of the most probable label.
    pub label_id: usize,
    /// Its probability.
    pub score: f32,
    /// Tokens fed to the model, with `[CLS]` and `[SEP]`.
    pub tokens: usize,
    /// Whether the text was cut to max_len tokens.
    pub truncated: bool,
    /// Number of labels: the probabilities written, or the capacity needed on
    /// `EDGEBERT_ERR_BUFFER_TOO_SMALL`.
    pub label_count: usize,
}

/// An open model (opaque; never dereferenced, see the header's note on handles).
pub struct EdgebertHandle {
    _opaque: [u8; 0],
}

/// What one handle owns: the session and the buffers reused by every call.
struct State {
    session: Session,
    out: Classification,
    enc: Box<SeqEncoding>,
}

/// A registered handle.
struct Handle {
    state: Mutex<State>,
    /// Message of the last failed call on this handle.
    last_error: Mutex<CString>,
}

static HANDLES: Registry<Handle> = Registry::new();

/// A failure: status and message.
struct Failure {
    status: EdgebertStatus,
    message: String,
}

impl Failure {
    fn new(status: EdgebertStatus, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Io { .. } | Error::NotFound(_) => EDGEBERT_ERR_IO,
            Error::InvalidArgument(_) => EDGEBERT_ERR_INVALID_ARGUMENT,
            _ => EDGEBERT_ERR_MODEL,
        };
        Failure::new(status, e.to_string())
    }
}

type CallResult = Result<(), Failure>;

thread_local! {
    /// Message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// The copy `edgebert_last_error_message` returned last on this thread.
    static RETURNED: RefCell<CString> = RefCell::new(CString::default());
}

/// A message as a C string (a NUL inside it becomes a space).
fn c_message(message: &str) -> CString {
    CString::new(message.replace('\0', " ")).unwrap_or_default()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one entry point: catches panics, records a failure's message on this thread and on
/// `handle` (when the failure happened on one), returns the status.
fn ffi(handle: Option<&Handle>, f: impl FnOnce() -> CallResult) -> EdgebertStatus {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return EDGEBERT_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure::new(
            EDGEBERT_ERR_PANIC,
            format!("edgebert panicked: {}", panic_message(payload.as_ref())),
        ),
    };
    // Recording must not unwind either (it only allocates a message).
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let msg = c_message(&failure.message);
        if let Some(h) = handle {
            *lock(&h.last_error) = msg.clone();
        }
        let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = msg);
    }));
    failure.status
}

/// Runs `f` on the state of the handle `token` with its mutex held.
fn with_handle(
    token: *const EdgebertHandle,
    f: impl FnOnce(&mut State) -> CallResult,
) -> EdgebertStatus {
    let key = token as usize;
    let Some(handle) = catch_unwind(move || HANDLES.get(key)).ok().flatten() else {
        return ffi(None, || {
            Err(Failure::new(
                EDGEBERT_ERR_INVALID_HANDLE,
                format!("handle {token:p} is not open (NULL, closed, or never returned by edgebert_open)"),
            ))
        });
    };
    let h: &Handle = &handle;
    ffi(Some(h), || {
        let mut state = h.state.lock().map_err(|_| {
            Failure::new(
                EDGEBERT_ERR_PANIC,
                "this handle is unusable: an earlier call on it panicked; close it",
            )
        })?;
        f(&mut state)
    })
}

/// The text `ptr[..len]` as `&str`: non-NULL, valid UTF-8, no NUL byte inside.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes.
unsafe fn text_arg<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            EDGEBERT_ERR_NULL_ARGUMENT,
            format!("{what} is NULL"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            EDGEBERT_ERR_INVALID_ARGUMENT,
            format!("{what}_len {len} is larger than any buffer can be"),
        ));
    }
    // SAFETY: the caller guarantees `len` readable bytes at the non-NULL `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(Failure::new(
            EDGEBERT_ERR_INVALID_ARGUMENT,
            format!("{what} has a NUL byte at offset {at} of {what}_len {len}: pass the text's length in bytes"),
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            EDGEBERT_ERR_INVALID_UTF8,
            format!("{what} is not valid UTF-8: {e}"),
        )
    })
}

fn null(what: &str) -> Failure {
    Failure::new(EDGEBERT_ERR_NULL_ARGUMENT, format!("{what} is NULL"))
}

/// The runtime options for `o`, or why they are refused.
fn session_options(o: &EdgebertOptions) -> Result<SessionOptions, Failure> {
    let invalid = |m: String| Failure::new(EDGEBERT_ERR_INVALID_ARGUMENT, m);
    if o.struct_size != std::mem::size_of::<EdgebertOptions>() {
        return Err(invalid(format!(
            "options.struct_size is {}, expected sizeof(EdgebertOptions) = {}: initialize options with edgebert_options_default",
            o.struct_size,
            std::mem::size_of::<EdgebertOptions>()
        )));
    }
    if o.max_len == 1 {
        return Err(invalid(
            "options.max_len is 1: it must be 0 (the model's) or at least 2 ([CLS] and [SEP])"
                .into(),
        ));
    }
    let threads = match o.threads {
        0 => edgebert_runtime::threads::default_threads(),
        n if n > edgebert_runtime::threads::MAX_THREADS => {
            return Err(invalid(format!(
                "options.threads is {n}: it must be 0 (one per physical core) or 1..={}",
                edgebert_runtime::threads::MAX_THREADS
            )))
        }
        n => n,
    };
    let int8 = match o.int8_mode {
        0 => Int8Mode::Auto,
        1 => Int8Mode::Native,
        2 => Int8Mode::Dequantize,
        3 => Int8Mode::Kernel,
        m => {
            return Err(invalid(format!(
                "options.int8_mode is {m}: expected an EdgebertInt8Mode value (0..=3)"
            )))
        }
    };
    Ok(SessionOptions::default()
        .with_int8(int8)
        .with_max_len((o.max_len != 0).then_some(o.max_len))
        .with_eager(o.eager != 0)
        .with_threads(threads))
}

fn default_options() -> EdgebertOptions {
    EdgebertOptions {
        struct_size: std::mem::size_of::<EdgebertOptions>(),
        max_len: 0,
        threads: 0,
        int8_mode: EdgebertInt8Mode::EDGEBERT_INT8_AUTO as i32,
        eager: 0,
    }
}

/// Writes the default options into `*options` (max_len 0, threads 0, int8 auto, lazy plans).
///
/// # Safety
/// `options` must be NULL or point to writable memory for an `EdgebertOptions`.
#[no_mangle]
pub unsafe extern "C" fn edgebert_options_default(options: *mut EdgebertOptions) -> EdgebertStatus {
    ffi(None, || {
        if options.is_null() {
            return Err(null("options"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { options.write(default_options()) };
        Ok(())
    })
}

/// Opens a model bundle (`model.edgebert`) or export directory at the NUL-terminated `path`
/// and writes its handle to `*handle` (NULL on failure). `options` may be NULL (defaults).
/// Close the handle with [`edgebert_close`]. On failure the message is
/// `edgebert_last_error_message(NULL)` on this thread.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `options` NULL or a valid
/// `EdgebertOptions`; `handle` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgebert_open(
    path: *const c_char,
    options: *const EdgebertOptions,
    handle: *mut *mut EdgebertHandle,
) -> EdgebertStatus {
    ffi(None, || {
        if handle.is_null() {
            return Err(null("handle"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { handle.write(std::ptr::null_mut()) };
        if path.is_null() {
            return Err(null("path"));
        }
        // SAFETY: non-NULL and NUL-terminated per the contract.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        let path = path_from_bytes(bytes)?;
        let opts = if options.is_null() {
            default_options()
        } else {
            // SAFETY: non-NULL and valid per the contract.
            unsafe { options.read() }
        };
        let session = Session::open_with(&path, session_options(&opts)?)?;
        let state = State {
            session,
            out: Classification::default(),
            enc: Box::default(),
        };
        let token = HANDLES.insert(Arc::new(Handle {
            state: Mutex::new(state),
            last_error: Mutex::new(CString::default()),
        }));
        // SAFETY: as above.
        unsafe { handle.write(token as *mut EdgebertHandle) };
        Ok(())
    })
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf, Failure> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf, Failure> {
    std::str::from_utf8(bytes).map(PathBuf::from).map_err(|e| {
        Failure::new(
            EDGEBERT_ERR_INVALID_UTF8,
            format!("path is not valid UTF-8: {e}"),
        )
    })
}

/// Closes `handle` and frees its model. A NULL, already closed or unknown handle gives
/// `EDGEBERT_ERR_INVALID_HANDLE` and changes nothing. A call running on the handle in another
/// thread finishes first; the model is freed when it returns.
#[no_mangle]
pub extern "C" fn edgebert_close(handle: *mut EdgebertHandle) -> EdgebertStatus {
    ffi(None, || {
        match HANDLES.remove(handle as usize) {
        Some(h) => {
            drop(h);
            Ok(())
        }
        None => Err(Failure::new(
            EDGEBERT_ERR_INVALID_HANDLE,
            format!("handle {handle:p} is not open (NULL, already closed, or never returned by edgebert_open)"),
        )),
    }
    })
}

/// Classifies the UTF-8 text `text[0..text_len]` and writes the result to `*result` and the
/// probabilities, in label-id order, to `probs[0..label_count]`. `probs` may be NULL when
/// `probs_cap` is 0 (probabilities not wanted); otherwise `probs_cap` must be at least
/// `edgebert_label_count`, else `EDGEBERT_ERR_BUFFER_TOO_SMALL` with
/// `result->label_count` set to the capacity needed. An empty text is classified as
/// `[CLS] [SEP]`; a text longer than max_len tokens is truncated (`result->truncated`).
/// Once the text's sequence-length plan is built, a call allocates nothing beyond what the
/// inference engine allocates inside itself.
///
/// # Safety
/// `text` must be NULL or point to `text_len` readable bytes; `result` NULL or writable;
/// `probs` NULL or writable for `probs_cap` floats.
#[no_mangle]
pub unsafe extern "C" fn edgebert_classify(
    handle: *const EdgebertHandle,
    text: *const c_char,
    text_len: usize,
    result: *mut EdgebertResult,
    probs: *mut f32,
    probs_cap: usize,
) -> EdgebertStatus {
    with_handle(handle, |state| {
        if result.is_null() {
            return Err(null("result"));
        }
        // SAFETY: `text_len` readable bytes per the contract.
        let text = unsafe { text_arg(text, text_len, "text") }?;
        let labels = state.session.labels().len();
        if probs.is_null() && probs_cap != 0 {
            return Err(null("probs (with probs_cap > 0)"));
        }
        if !probs.is_null() && probs_cap < labels {
            // SAFETY: non-NULL and writable per the contract.
            unsafe {
                result.write(EdgebertResult {
                    label_id: 0,
                    score: 0.0,
                    tokens: 0,
                    truncated: false,
                    label_count: labels,
                })
            };
            return Err(Failure::new(
                EDGEBERT_ERR_BUFFER_TOO_SMALL,
                format!("probs_cap {probs_cap} is below the {labels} labels"),
            ));
        }
        let State { session, out, .. } = state;
        session.classify_into(text, out)?;
        if !probs.is_null() {
            let n = out.probs.len().min(probs_cap);
            // SAFETY: `probs` is writable for `probs_cap` >= `n` floats per the contract.
            unsafe { std::ptr::copy_nonoverlapping(out.probs.as_ptr(), probs, n) };
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe {
            result.write(EdgebertResult {
                label_id: out.label_id,
                score: out.score,
                tokens: out.tokens,
                truncated: out.truncated,
                label_count: out.probs.len(),
            })
        };
        Ok(())
    })
}

/// Copies the raw logits of the last successful `edgebert_classify` on `handle` into
/// `logits[0..label_count]` and writes `label_count` to `*written` (also on
/// `EDGEBERT_ERR_BUFFER_TOO_SMALL`, when `logits_cap` is below it). Before any
/// classification `*written` is 0.
///
/// # Safety
/// `logits` must be NULL or writable for `logits_cap` floats; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgebert_last_logits(
    handle: *const EdgebertHandle,
    logits: *mut f32,
    logits_cap: usize,
    written: *mut usize,
) -> EdgebertStatus {
    with_handle(handle, |state| {
        if written.is_null() {
            return Err(null("written"));
        }
        let src = &state.out.logits;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { written.write(src.len()) };
        if logits_cap < src.len() {
            return Err(Failure::new(
                EDGEBERT_ERR_BUFFER_TOO_SMALL,
                format!("logits_cap {logits_cap} is below the {} logits", src.len()),
            ));
        }
        if logits.is_null() {
            return Err(null("logits"));
        }
        // SAFETY: writable for `logits_cap` >= `src.len()` floats per the contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), logits, src.len()) };
        Ok(())
    })
}

/// Writes the number of labels of the model to `*count`.
///
/// # Safety
/// `count` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgebert_label_count(
    handle: *const EdgebertHandle,
    count: *mut usize,
) -> EdgebertStatus {
    with_handle(handle, |state| {
        if count.is_null() {
            return Err(null("count"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { count.write(state.session.labels().len()) };
        Ok(())
    })
}

/// Copies the name of label `id` as a NUL-terminated UTF-8 string into `buf[0..cap]` and
/// writes its length in bytes, without the NUL, to `*name_len`. When `cap` is below
/// `*name_len + 1` (e.g. `buf` NULL and `cap` 0, to ask for the size), nothing is copied,
/// `*name_len` is still written and the status is `EDGEBERT_ERR_BUFFER_TOO_SMALL`. An `id` not
/// below `edgebert_label_count` gives `EDGEBERT_ERR_INVALID_ARGUMENT`. The copy is the
/// caller's: it stays valid after the handle is closed.
///
/// # Safety
/// `buf` must be NULL or writable for `cap` bytes; `name_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgebert_label_name(
    handle: *const EdgebertHandle,
    id: usize,
    buf: *mut c_char,
    cap: usize,
    name_len: *mut usize,
) -> EdgebertStatus {
    with_handle(handle, |state| {
        if name_len.is_null() {
            return Err(null("name_len"));
        }
        let labels = state.session.labels();
        let Some(name) = labels.get(id) else {
            return Err(Failure::new(
                EDGEBERT_ERR_INVALID_ARGUMENT,
                format!(
                    "label id {id} is out of range: the model has {} labels",
                    labels.len()
                ),
            ));
        };
        let bytes = name.as_bytes();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { name_len.write(bytes.len()) };
        if cap <= bytes.len() {
            return Err(Failure::new(
                EDGEBERT_ERR_BUFFER_TOO_SMALL,
                format!(
                    "label {id} needs {} bytes with its NUL, cap is {cap}",
                    bytes.len() + 1
                ),
            ));
        }
        if buf.is_null() {
            return Err(null("buf"));
        }
        // SAFETY: writable for `cap` > `bytes.len()` bytes per the contract.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
            buf.add(bytes.len()).write(0);
        }
        Ok(())
    })
}

/// Writes the model's max_len (tokens per text including `[CLS]` and `[SEP]`; longer texts
/// are truncated) to `*max_len`.
///
/// # Safety
/// `max_len` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgebert_max_len(
    handle: *const EdgebertHandle,
    max_len: *mut usize,
) -> EdgebertStatus {
    with_handle(handle, |state| {
        if max_len.is_null() {
            return Err(null("max_len"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { max_len.write(state.session.max_len()) };
        Ok(())
    })
}

/// Tokenizes `text[0..text_len]` as the model sees it: writes `[CLS] ids.. [SEP]` (at most
/// max_len ids) to `ids[0..*n_ids]`, and whether tokens were dropped to `*truncated` (which
/// may be NULL). When `ids_cap` is below the count, nothing is copied, `*n_ids` holds the
/// count needed and the status is `EDGEBERT_ERR_BUFFER_TOO_SMALL`; a capacity of max_len
/// always suffices. Allocates nothing.
///
/// # Safety
/// `text` must be NULL or point to `text_len` readable bytes; `ids` NULL or writable for
/// `ids_cap` values; `n_ids` and `truncated` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgebert_tokenize(
    handle: *const EdgebertHandle,
    text: *const c_char,
    text_len: usize,
    ids: *mut i64,
    ids_cap: usize,
    n_ids: *mut usize,
    truncated: *mut bool,
) -> EdgebertStatus {
    with_handle(handle, |state| {
        if n_ids.is_null() {
            return Err(null("n_ids"));
        }
        // SAFETY: `text_len` readable bytes per the contract.
        let text = unsafe { text_arg(text, text_len, "text") }?;
        let State { session, enc, .. } = state;
        session
            .tokenizer()
            .encode_into(text, session.max_len(), enc)
            .map_err(|e| Failure::from(Error::from(e)))?;
        let n = enc.input_ids.len();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { n_ids.write(n) };
        if !truncated.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { truncated.write(enc.truncated) };
        }
        if ids_cap < n {
            return Err(Failure::new(
                EDGEBERT_ERR_BUFFER_TOO_SMALL,
                format!("ids_cap {ids_cap} is below the {n} token ids"),
            ));
        }
        if ids.is_null() {
            return Err(null("ids"));
        }
        // SAFETY: writable for `ids_cap` >= `n` values per the contract.
        unsafe { std::ptr::copy_nonoverlapping(enc.input_ids.as_ptr(), ids, n) };
        Ok(())
    })
}

/// The message of the last failed call: on `handle`, or, with `handle` NULL (or not open), on
/// the calling thread (the only place `edgebert_open`'s failures are recorded). Never NULL:
/// "" when nothing failed. The string is a copy owned by the library, valid on this thread
/// until its next `edgebert_last_error_message` call; do not free it.
#[no_mangle]
pub extern "C" fn edgebert_last_error_message(handle: *const EdgebertHandle) -> *const c_char {
    static EMPTY: &CStr = c"";
    let key = handle as usize;
    let copy = catch_unwind(move || {
        let msg = match HANDLES.get(key) {
            Some(h) => lock(&h.last_error).clone(),
            None => LAST_ERROR
                .try_with(|e| e.borrow().clone())
                .unwrap_or_default(),
        };
        RETURNED
            .try_with(|r| {
                let mut r = r.borrow_mut();
                *r = msg;
                r.as_ptr()
            })
            .ok()
    });
    match copy {
        Ok(Some(p)) => p,
        _ => EMPTY.as_ptr(),
    }
}

/// A static, NUL-terminated name for a status value ("EDGEBERT_OK", ...; "unknown status" for
/// other values).
#[no_mangle]
pub extern "C" fn edgebert_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match status {
        0 => c"EDGEBERT_OK",
        1 => c"EDGEBERT_ERR_NULL_ARGUMENT",
        2 => c"EDGEBERT_ERR_INVALID_UTF8",
        3 => c"EDGEBERT_ERR_BUFFER_TOO_SMALL",
        4 => c"EDGEBERT_ERR_INVALID_HANDLE",
        5 => c"EDGEBERT_ERR_IO",
        6 => c"EDGEBERT_ERR_MODEL",
        7 => c"EDGEBERT_ERR_INVALID_ARGUMENT",
        8 => c"EDGEBERT_ERR_PANIC",
        _ => c"unknown status",
    };
    name.as_ptr()
}

/// The library version, a static NUL-terminated string ("0.1.0").
#[no_mangle]
pub extern "C" fn edgebert_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"",
        };
    VERSION.as_ptr()
}
