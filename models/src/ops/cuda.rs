//! CUDA kernels of the ops (feature `cuda`, f32): `cuda/ops.cu`, compiled to PTX by build.rs and
//! loaded once per device. One launch per forward or backward instead of candle's composed chain
//! (LayerNorm: 8 forward ops and about 25 backward ones, each a launch plus an allocation).
//!
//! `EDGEBERT_CUDA_KERNELS=0` turns them off (the composed candle ops run instead): the switch an
//! A/B measurement or a suspected kernel bug needs.

use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Shape, Storage, Tensor};
use std::sync::OnceLock;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/ops.ptx"));
const MODULE: &str = "edgebert_models_ops";
/// Rows (warps) per block of the row kernels.
const ROWS_PER_BLOCK: u32 = 4;
/// Rows per partial sum of LayerNorm's gamma/beta gradients.
const PARAM_CHUNK_ROWS: usize = 64;

/// Whether the custom kernels are used for `t` (a CUDA f32 tensor, and not switched off).
pub fn enabled_for(t: &Tensor) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    t.device().is_cuda()
        && t.dtype() == DType::F32
        && *ON.get_or_init(|| std::env::var("EDGEBERT_CUDA_KERNELS").as_deref() != Ok("0"))
}

fn view<'a>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, f32>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_cuda_slice::<f32>()?.slice(a..b)),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

fn rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((rows as u32).div_ceil(ROWS_PER_BLOCK), 1, 1),
        block_dim: (32, ROWS_PER_BLOCK, 1),
        shared_mem_bytes: 0,
    }
}

fn elementwise_config(n: usize) -> LaunchConfig {
    let threads = 256u32;
    let blocks = (n as u64).div_ceil(u64::from(threads)).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `(rows, cols)` of a shape whose last dimension is `cols`.
fn rows_cols(shape: &Shape) -> Result<(usize, usize)> {
    let cols = shape.dims().last().copied().unwrap_or(1);
    let rows = shape.elem_count().checked_div(cols).unwrap_or(0);
    if rows > i32::MAX as usize || cols > i32::MAX as usize {
        candle_core::bail!("cuda op: shape {shape:?} too large");
    }
    Ok((rows, cols))
}

fn wrap(
    slice: candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>,
    dev: &CudaDevice,
) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

fn to_tensor(s: CudaStorage, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(Storage::Cuda(s), shape, BackpropOp::none(), false)
}

/// Runs `f` on the CUDA storages of contiguous copies of `ts`.
fn with_storages<R, const N: usize>(
    ts: [&Tensor; N],
    op: &str,
    f: impl FnOnce([(&CudaStorage, &Layout); N]) -> Result<R>,
) -> Result<R> {
    let owned: Vec<Tensor> = ts.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let mut parts = Vec::with_capacity(N);
    for (g, l) in &guards {
        match &**g {
            Storage::Cuda(s) => parts.push((s, *l)),
            _ => candle_core::bail!("{op}: CUDA storage expected"),
        }
    }
    let parts: [(&CudaStorage, &Layout); N] = parts
        .try_into()
        .map_err(|_| candle_core::Error::Msg(format!("{op}: operand count")))?;
    f(parts)
}

/// LayerNorm forward over the last dim (storage level, for `CustomOp3::cuda_fwd`).
pub fn layer_norm_fwd(
    x: (&CudaStorage, &Layout),
    gamma: (&CudaStorage, &Layout),
    beta: (&CudaStorage, &Layout),
    eps: f64,
) -> Result<(CudaStorage, Shape)> {
    let dev = &x.0.device;
    let (rows, cols) = rows_cols(x.1.shape())?;
    let (xv, gv, bv) = (
        view(x.0, x.1, "layer_norm")?,
        view(gamma.0, gamma.1, "layer_norm")?,
        view(beta.0, beta.1, "layer_norm")?,
    );
    // SAFETY: every element is written by the kernel below.
    let y = unsafe { dev.alloc::<f32>(rows * cols) }?;
    if rows > 0 {
        let func = dev.get_or_load_custom_func("edgebert_layer_norm_fwd_f32", MODULE, PTX)?;
        let (r, c, e) = (rows as i32, cols as i32, eps as f32);
        let mut b = func.builder();
        b.arg(&xv).arg(&gv).arg(&bv).arg(&y).arg(&r).arg(&c).arg(&e);
        // SAFETY: argument types and count match the kernel's signature.
        unsafe { b.launch(rows_config(rows)) }.w()?;
    }
    Ok((wrap(y, dev), x.1.shape().clone()))
}

/// LayerNorm backward: `(dx, dgamma, dbeta)`.
pub fn layer_norm_bwd(
    x: &Tensor,
    gamma: &Tensor,
    dy: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let shape = x.shape().clone();
    let (rows, cols) = rows_cols(&shape)?;
    let chunks = rows.div_ceil(PARAM_CHUNK_ROWS).max(1);
    let (dx, partial) = with_storages([x, gamma, dy], "layer_norm bwd", |[xs, gs, dys]| {
        let dev = &xs.0.device;
        let (xv, gv, dyv) = (
            view(xs.0, xs.1, "layer_norm bwd")?,
            view(gs.0, gs.1, "layer_norm bwd")?,
            view(dys.0, dys.1, "layer_norm bwd")?,
        );
        // SAFETY: dx and stats are fully written by the first kernel, partial by the second.
        let dx = unsafe { dev.alloc::<f32>(rows * cols) }?;
        let stats = unsafe { dev.alloc::<f32>((2 * rows).max(1)) }?;
        let partial = dev.alloc_zeros::<f32>(2 * chunks * cols)?;
        if rows > 0 && cols > 0 {
            let (r, c, e) = (rows as i32, cols as i32, eps as f32);
            let func = dev.get_or_load_custom_func("edgebert_layer_norm_bwd_f32", MODULE, PTX)?;
            let mut b = func.builder();
            b.arg(&xv).arg(&gv).arg(&dyv).arg(&dx).arg(&stats);
            b.arg(&r).arg(&c).arg(&e);
            // SAFETY: argument types and count match the kernel's signature.
            unsafe { b.launch(rows_config(rows)) }.w()?;
            let func =
                dev.get_or_load_custom_func("edgebert_layer_norm_bwd_params_f32", MODULE, PTX)?;
            let chunk_rows = PARAM_CHUNK_ROWS as i32;
            let mut b = func.builder();
            b.arg(&xv).arg(&dyv).arg(&stats).arg(&partial);
            b.arg(&r).arg(&c).arg(&chunk_rows);
            let cfg = LaunchConfig {
                grid_dim: ((cols as u32).div_ceil(128), chunks as u32, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: argument types and count match the kernel's signature.
            unsafe { b.launch(cfg) }.w()?;
        }
        Ok((wrap(dx, dev), wrap(partial, dev)))
    })?;
    let dx = to_tensor(dx, shape);
    // [2, chunks, cols] summed over chunks: row 0 = dgamma, row 1 = dbeta.
    let sums = to_tensor(partial, (2, chunks, cols)).sum(1)?;
    Ok((dx, sums.get(0)?, sums.get(1)?))
}

/// Softmax over the last dim (storage level, for `CustomOp1::cuda_fwd`).
pub fn softmax_fwd(x: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &x.device;
    let (rows, cols) = rows_cols(l.shape())?;
    let xv = view(x, l, "softmax")?;
    // SAFETY: every element is written by the kernel below.
    let y = unsafe { dev.alloc::<f32>(rows * cols) }?;
    if rows > 0 && cols > 0 {
        let func = dev.get_or_load_custom_func("edgebert_softmax_fwd_f32", MODULE, PTX)?;
        let (r, c) = (rows as i32, cols as i32);
        let mut b = func.builder();
        b.arg(&xv).arg(&y).arg(&r).arg(&c);
        // SAFETY: argument types and count match the kernel's signature.
        unsafe { b.launch(rows_config(rows)) }.w()?;
    }
    Ok((wrap(y, dev), l.shape().clone()))
}

/// Softmax backward from its output `y`: `y * (dy - sum(dy * y))` per row.
pub fn softmax_bwd(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let shape = y.shape().clone();
    let (rows, cols) = rows_cols(&shape)?;
    let dx = with_storages([y, dy], "softmax bwd", |[ys, dys]| {
        let dev = &ys.0.device;
        let (yv, dyv) = (
            view(ys.0, ys.1, "softmax bwd")?,
            view(dys.0, dys.1, "softmax bwd")?,
        );
        // SAFETY: every element is written by the kernel below.
        let dx = unsafe { dev.alloc::<f32>(rows * cols) }?;
        if rows > 0 && cols > 0 {
            let func = dev.get_or_load_custom_func("edgebert_softmax_bwd_f32", MODULE, PTX)?;
            let (r, c) = (rows as i32, cols as i32);
            let mut b = func.builder();
            b.arg(&yv).arg(&dyv).arg(&dx).arg(&r).arg(&c);
            // SAFETY: argument types and count match the kernel's signature.
            unsafe { b.launch(rows_config(rows)) }.w()?;
        }
        Ok(wrap(dx, dev))
    })?;
    Ok(to_tensor(dx, shape))
}

/// Exact GELU forward (storage level, for `CustomOp1::cuda_fwd`).
pub fn gelu_erf_fwd(x: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &x.device;
    let n = l.shape().elem_count();
    let xv = view(x, l, "gelu")?;
    // SAFETY: every element is written by the kernel below.
    let y = unsafe { dev.alloc::<f32>(n) }?;
    if n > 0 {
        let func = dev.get_or_load_custom_func("edgebert_gelu_erf_fwd_f32", MODULE, PTX)?;
        let mut b = func.builder();
        b.arg(&xv).arg(&y).arg(&n);
        // SAFETY: argument types and count match the kernel's signature.
        unsafe { b.launch(elementwise_config(n)) }.w()?;
    }
    Ok((wrap(y, dev), l.shape().clone()))
}

/// Exact GELU backward: `dy * (Φ(x) + x φ(x))`.
pub fn gelu_erf_bwd(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let shape = x.shape().clone();
    let n = shape.elem_count();
    let dx = with_storages([x, dy], "gelu bwd", |[xs, dys]| {
        let dev = &xs.0.device;
        let (xv, dyv) = (
            view(xs.0, xs.1, "gelu bwd")?,
            view(dys.0, dys.1, "gelu bwd")?,
        );
        // SAFETY: every element is written by the kernel below.
        let dx = unsafe { dev.alloc::<f32>(n) }?;
        if n > 0 {
            let func = dev.get_or_load_custom_func("edgebert_gelu_erf_bwd_f32", MODULE, PTX)?;
            let mut b = func.builder();
            b.arg(&xv).arg(&dyv).arg(&dx).arg(&n);
            // SAFETY: argument types and count match the kernel's signature.
            unsafe { b.launch(elementwise_config(n)) }.w()?;
        }
        Ok(wrap(dx, dev))
    })?;
    Ok(to_tensor(dx, shape))
}

/// Embedding gradient `[vocab, hidden]` of `table` for the flat u32 `ids` and `dy` (`[n, hidden]`):
/// positions grouped by id on the host (a stable sort: each row sums its positions in order),
/// then one block per distinct id.
pub fn embedding_bwd(table: &Tensor, ids: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (vocab, cols) = table.dims2()?;
    let host_ids: Vec<u32> = ids.flatten_all()?.to_vec1()?;
    let n = host_ids.len();
    if dy.elem_count() != n * cols {
        candle_core::bail!(
            "embedding bwd: gradient {:?} for {n} ids of width {cols}",
            dy.shape()
        );
    }
    if let Some(bad) = host_ids.iter().find(|&&i| i as usize >= vocab) {
        candle_core::bail!("embedding bwd: id {bad} outside the table's {vocab} rows");
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&p| host_ids[p as usize]);
    let (mut uniq, mut offsets) = (Vec::new(), vec![0u32]);
    for (k, &p) in order.iter().enumerate() {
        let id = host_ids[p as usize];
        if uniq.last() != Some(&id) {
            if !uniq.is_empty() {
                offsets.push(k as u32);
            }
            uniq.push(id);
        }
    }
    offsets.push(n as u32);
    let dt = with_storages([dy], "embedding bwd", |[dys]| {
        let dev = &dys.0.device;
        let dyv = view(dys.0, dys.1, "embedding bwd")?;
        let out = dev.alloc_zeros::<f32>(vocab * cols)?;
        if !uniq.is_empty() && cols > 0 {
            let stream = dev.cuda_stream();
            let ids_d = stream.clone_htod(&uniq).w()?;
            let offsets_d = stream.clone_htod(&offsets).w()?;
            let pos_d = stream.clone_htod(&order).w()?;
            let func = dev.get_or_load_custom_func("edgebert_embedding_bwd_f32", MODULE, PTX)?;
            let c = cols as i32;
            let mut b = func.builder();
            b.arg(&dyv)
                .arg(&ids_d)
                .arg(&offsets_d)
                .arg(&pos_d)
                .arg(&out)
                .arg(&c);
            let cfg = LaunchConfig {
                grid_dim: (uniq.len() as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: argument types and count match the kernel's signature; every id < vocab.
            unsafe { b.launch(cfg) }.w()?;
        }
        Ok(wrap(out, dev))
    })?;
    Ok(to_tensor(dt, (vocab, cols)))
}
