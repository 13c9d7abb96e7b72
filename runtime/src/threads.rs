//! How many threads a session runs on, and the process's worker pools.
//!
//! One request (a text) is spread over the workers op by op: the int8 Linear over column blocks
//! (or row blocks when the columns do not share out evenly), attention over query rows, LayerNorm and GELU over rows, and with the `tract-threads`
//! feature (on by default, off in the device build) tract's own matmuls over their tiles
//! (tract's `multithread-mm` executor). Many requests ([`crate::Session::classify_many`]) take
//! one worker each. Every split falls on row, column-group or tile boundaries, so results are
//! bit-identical at any thread count.
//!
//! Pools are rayon pools, built once per process and per thread count and shared by every
//! session that asks for that count: no thread is spawned per request or per op. Workers spin
//! briefly after a task, then sleep.
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

/// The most threads a session accepts.
pub const MAX_THREADS: usize = 256;

/// The thread count used when none is given: one per physical core this process may run on
/// (ONNX Runtime's default), at least one.
pub fn default_threads() -> usize {
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    num_cpus::get_physical().clamp(1, allowed.max(1))
}

/// Checks a thread count: `1..=MAX_THREADS`.
pub fn check_threads(threads: usize) -> Result<usize> {
    if (1..=MAX_THREADS).contains(&threads) {
        Ok(threads)
    } else {
        Err(Error::InvalidArgument(format!(
            "threads must be between 1 and {MAX_THREADS}, got {threads}"
        )))
    }
}

/// Parses a thread count as a user typed it (`--threads`, `EDGEBERT_THREADS`).
pub fn parse_threads(text: &str) -> Result<usize> {
    let text = text.trim();
    match text.parse::<usize>() {
        Ok(n) => check_threads(n),
        Err(_) => Err(Error::InvalidArgument(format!(
            "threads must be a whole number between 1 and {MAX_THREADS}, got {text:?}"
        ))),
    }
}

/// Pools built so far, by thread count.
static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());

/// The process's pool of `threads` workers, built on first use; `None` for one thread (the
/// caller's thread runs everything, as with no pool at all).
pub(crate) fn pool(threads: usize) -> Result<Option<Arc<ThreadPool>>> {
    let threads = check_threads(threads)?;
    if threads == 1 {
        return Ok(None);
    }
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Some(pool.clone()));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("edgebert-{i}"))
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.push((threads, pool.clone()));
    Ok(Some(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_checked_and_parsed() {
        assert!(default_threads() >= 1);
        assert_eq!(parse_threads(" 3 ").ok(), Some(3));
        for bad in [
            "0",
            "-1",
            "two",
            "",
            "1.5",
            "257",
            "99999999999999999999999",
        ] {
            let err = parse_threads(bad).expect_err(bad).to_string();
            assert!(err.contains("threads"), "{bad}: {err}");
        }
        assert!(check_threads(0).is_err() && check_threads(MAX_THREADS + 1).is_err());
    }

    #[test]
    fn one_pool_per_count() -> Result<()> {
        assert!(pool(1)?.is_none());
        let (a, b) = (pool(3)?, pool(3)?);
        let (Some(a), Some(b)) = (a, b) else {
            panic!("3 threads have a pool");
        };
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 3);
        Ok(())
    }
}
