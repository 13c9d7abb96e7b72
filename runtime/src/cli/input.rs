//! Inputs for `tokenize` / `classify`: TEXT arguments, or stdin one line per input with
//! strict UTF-8 (error names the line) or `--lossy` replacement; one at a time, or in blocks
//! of what is already there (a file piped in fills whole blocks, a line typed at a prompt is a
//! block of its own).
use std::io::BufRead;
use std::sync::mpsc;

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

/// Calls `f` on blocks of at most `block` inputs, in order (every input in exactly one block);
/// stops at the first error, after the inputs before it. Stdin is read on a thread of its own:
/// a block is the lines already read, at least one, so an interactive line is answered at once.
pub fn for_each_block(
    texts: &[String],
    lossy: bool,
    block: usize,
    mut f: impl FnMut(&[(InputRef, String)]) -> Result<()>,
) -> Result<()> {
    let block = block.max(1);
    if !texts.is_empty() {
        let inputs: Vec<(InputRef, String)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let at = InputRef {
                    number: i + 1,
                    from_stdin: false,
                };
                (at, t.clone())
            })
            .collect();
        return inputs.chunks(block).try_for_each(&mut f);
    }
    if block == 1 {
        return for_each_input(texts, lossy, |at, text| f(&[(at, text.to_owned())]));
    }
    let (send, receive) = mpsc::sync_channel::<Result<(InputRef, String)>>(2 * block);
    std::thread::spawn(move || {
        let read = for_each_input(&[], lossy, |at, text| {
            send.send(Ok((at, text.to_owned())))
                .map_err(|_| anyhow::anyhow!("stdin reader stopped"))
        });
        if let Err(e) = read {
            let _ = send.send(Err(e));
        }
    });
    let mut inputs = Vec::with_capacity(block);
    // The first input of a block waits; the rest are what is already there.
    while let Ok(first) = receive.recv() {
        let mut failure = None;
        let mut item = Some(first);
        while let Some(next) = item.take() {
            match next {
                Ok(input) => inputs.push(input),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if inputs.len() < block {
                item = receive.try_recv().ok();
            }
        }
        if !inputs.is_empty() {
            f(&inputs)?;
            inputs.clear();
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(())
}
