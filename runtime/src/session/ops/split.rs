//! One op's work spread over the worker pool of the plan that runs it.
//!
//! A session runs a multi-threaded plan on a worker of its pool with tract's executor set to
//! that pool ([`crate::threads`]); an op reads it back here and splits its output on row
//! boundaries, so every row is computed as on one thread, by the same code, in the same order.
use std::sync::Arc;

use rayon::ThreadPool;
use tract_onnx::tract_core::tract_linalg::multithread::{current_tract_executor, Executor};

/// The pool of the running plan, when it has more than one thread.
pub fn current_pool() -> Option<Arc<ThreadPool>> {
    match current_tract_executor() {
        Executor::MultiThread(pool) if pool.current_num_threads() > 1 => Some(pool),
        _ => None,
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
