//! Embedding lookup whose gradient is computed by a deterministic CUDA kernel (feature `cuda`).
//!
//! candle's backward of `index_select` is `index_add` into a zeros table, and its CUDA kernel loops
//! over every token for each column: one launch of ~2 ms for a 4,096-token batch on an H100, 12% of
//! a 2-layer step's kernel time. Here the host groups the positions by token id (the ids are tiny)
//! and one block per distinct token sums its rows in position order, so results do not depend on
//! scheduling. On other devices (or with the kernels off) it is candle's `index_select`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::on_cuda_kernels;

/// Rows of `table` (`[vocab, hidden]`) for the flat u32 `ids` (`[n]`): `[n, hidden]`.
pub fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    if on_cuda_kernels(table)
        && ids.dtype() == DType::U32
        && ids.device().same_device(table.device())
    {
        table
            .contiguous()?
            .apply_op2(&ids.contiguous()?, EmbeddingOp)
    } else {
        table.index_select(ids, 0)
    }
}

struct EmbeddingOp;

fn out_shape(table: &Layout, ids: &Layout) -> Result<Shape> {
    let (_, h) = table.shape().dims2()?;
    Ok(Shape::from((ids.shape().elem_count(), h)))
}

impl CustomOp2 for EmbeddingOp {
    fn name(&self) -> &'static str {
        "edgebert-embedding"
    }

    fn cpu_fwd(
        &self,
        table: &CpuStorage,
        lt: &Layout,
        ids: &CpuStorage,
        li: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((table.index_select(ids, lt, li, 0)?, out_shape(lt, li)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        table: &candle_core::CudaStorage,
        lt: &Layout,
        ids: &candle_core::CudaStorage,
        li: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((table.index_select(ids, lt, li, 0)?, out_shape(lt, li)?))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if table.device().is_cuda() {
            return Ok((Some(super::cuda::embedding_bwd(table, ids, grad)?), None));
        }
        // Other devices never take this op (see `embedding`); candle's form, for completeness.
        let dtable = table.zeros_like()?.index_add(ids, grad, 0)?;
        Ok((Some(dtable), None))
    }
}
