//! Inputs for `tokenize` / `classify`: TEXT arguments, or stdin one line per input with
//! strict UTF-8 (error names the line) or `--lossy` replacement.
use std::io::BufRead;

use anyhow::{bail, Result};

/// Where an input came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct InputRef {
    /// 1-based argument or line number.
    pub number: usize,
    /// Whether it is a stdin line (else a TEXT argument).
    pub from_stdin: bool,
}

impl InputRef {
    /// "stdin line 3" / "argument 2".
    pub fn describe(&self) -> String {
        if self.from_stdin {
            format!("stdin line {}", self.number)
        } else {
            format!("TEXT argument {}", self.number)
        }
    }
}

/// Calls `f` on every input in order; stops at the first error.
pub fn for_each_input(
    texts: &[String],
    lossy: bool,
    mut f: impl FnMut(InputRef, &str) -> Result<()>,
) -> Result<()> {
    if !texts.is_empty() {
        for (i, t) in texts.iter().enumerate() {
            f(
                InputRef {
                    number: i + 1,
                    from_stdin: false,
                },
                t,
            )?;
        }
        return Ok(());
    }
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut buf = Vec::new();
    let mut number = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let at = InputRef {
            number,
            from_stdin: true,
        };
        match std::str::from_utf8(&buf) {
            Ok(text) => f(at, text)?,
            Err(e) if lossy => {
                let _ = e;
                let text = String::from_utf8_lossy(&buf);
                f(at, &text)?
            }
            Err(e) => bail!(
                "stdin line {number}: invalid UTF-8 at byte {} (pass --lossy to replace invalid bytes with U+FFFD)",
                e.valid_up_to()
            ),
        }
    }
}
