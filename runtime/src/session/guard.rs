//! The one place third-party code (tract) runs on untrusted data: a panic becomes an error.
//!
//! Builds that unwind (release, dev, the C library's `edge-lib`) return that error. The device
//! binary's `edge` profile aborts on panic to stay small; there the `edgebert` CLI's panic hook
//! prints one error line instead (`cli/panic.rs`), and CI runs the bad-input suite against that
//! build to show that no bad input gets this far.
use std::panic::{catch_unwind, AssertUnwindSafe};

use tract_onnx::prelude::TractResult;

use crate::error::{Error, Result};

/// Runs third-party code on untrusted data, turning a panic into an error.
pub(crate) fn guarded<T>(context: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::model(context, e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::model(context, format!("tract panicked: {msg}")))
        }
    }
}
