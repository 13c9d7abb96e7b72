//! One op's work spread over the worker pool of the plan that runs it.
//!
//! A session runs a multi-threaded plan on a worker of its pool ([`crate::threads`]) inside
//! [`with_pool`]; an op reads the pool back here ([`current_pool`]) and splits its output on row
//! boundaries, so every row is computed as on one thread, by the same code, in the same order.
use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;
use rayon::ThreadPool;
use tract_onnx::prelude::TractResult;

thread_local! {
    /// The pool of the plan running on this thread.
    static CURRENT: RefCell<Option<Arc<ThreadPool>>> = const { RefCell::new(None) };
}

/// Runs `f` with `pool` as the running plan's pool on this thread (the previous one back
/// afterwards, also when `f` panics).
pub(crate) fn with_pool<R>(pool: &Arc<ThreadPool>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<ThreadPool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0.take());
        }
    }
    let _restore = Restore(CURRENT.replace(Some(pool.clone())));
    f()
}

/// The pool of the running plan, when it has more than one thread.
pub fn current_pool() -> Option<Arc<ThreadPool>> {
    CURRENT
        .with_borrow(|pool| pool.clone())
        .filter(|pool| pool.current_num_threads() > 1)
}

/// Elements below which [`par_rows`] runs on the calling thread.
pub const MIN_PARALLEL_ELEMENTS: usize = 32768;

/// `f(first_row, block)` over `out` (rows of `row_len` elements) in blocks of whole rows, one
/// per thread of the running plan's pool, or once over all of `out` without a pool, with
/// fewer than two rows or under [`MIN_PARALLEL_ELEMENTS`] elements.
pub fn par_rows<T: Send>(
    out: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) -> TractResult<()> + Sync + Send,
) -> TractResult<()> {
    let row_len = row_len.max(1);
    let rows = out.len() / row_len;
    match current_pool() {
        Some(pool) if rows >= 2 && out.len() >= MIN_PARALLEL_ELEMENTS => {
            let block = block_rows(rows, pool.current_num_threads(), 1);
            pool.install(|| {
                out.par_chunks_mut(block * row_len)
                    .enumerate()
                    .try_for_each(|(i, chunk)| f(i * block, chunk))
            })
        }
        _ => f(0, out),
    }
}

/// Rows per block when `rows` rows are spread over `threads`: at most one block per thread,
/// each a whole number of `granule` rows (the last block takes what is left).
pub fn block_rows(rows: usize, threads: usize, granule: usize) -> usize {
    let granule = granule.max(1);
    rows.div_ceil(threads.max(1)).div_ceil(granule) * granule
}

#[cfg(test)]
mod tests {
    use super::block_rows;

    #[test]
    fn blocks_cover_every_row_in_at_most_one_block_per_thread() {
        for rows in 1..70 {
            for threads in 1..9 {
                for granule in [1, 4, 8] {
                    let block = block_rows(rows, threads, granule);
                    assert!(block.is_multiple_of(granule) && block >= 1);
                    assert!(
                        rows.div_ceil(block) <= threads,
                        "{rows} {threads} {granule}"
                    );
                }
            }
        }
        assert_eq!(block_rows(16, 2, 4), 8);
        assert_eq!(block_rows(10, 3, 4), 4);
        assert_eq!(block_rows(3, 2, 4), 4);
    }
}
