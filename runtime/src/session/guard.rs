//! The one place third-party code (tract) runs on untrusted data: a panic becomes an error.
//!
//! The release and `edge` profiles unwind (`panic = "unwind"`), so every build gives the same
//! one-line error for a model that makes tract panic.
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
