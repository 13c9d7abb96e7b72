//! Softmax over the last dimension with a hand-written backward.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType, D};
use num_traits::Float;
use rayon::prelude::*;

use super::{check_dtype, cpu_slice, from_vec, takes_custom_op, with_cpu, PAR_MIN_ELEMS};

/// Numerically stable softmax over the last dim, differentiable. Uses the custom op for f32/f64
/// on CPU and f32 on CUDA (feature `cuda`), else [`softmax_last_dim_composed`].
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if takes_custom_op(x) {
        x.contiguous()?.apply_op1(SoftmaxOp)
    } else {
        softmax_last_dim_composed(x)
    }
}

/// Softmax from differentiable candle ops (any device).
pub fn softmax_last_dim_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

struct SoftmaxOp;

fn fwd_rows<T: WithDType + Float>(x: &[T], d: usize, out: &mut [T]) {
    let row = |(xr, yr): (&[T], &mut [T])| {
        let mut m = T::neg_infinity();
        for &v in xr {
            if v > m {
                m = v;
            }
        }
        let mut s = T::zero();
        for (y, &v) in yr.iter_mut().zip(xr) {
            let e = (v - m).exp();
            *y = e;
            s += e;
        }
        let inv = s.recip();
        for y in yr.iter_mut() {
            *y *= inv;
        }
    };
    if x.len() >= PAR_MIN_ELEMS {
        x.par_chunks(d).zip(out.par_chunks_mut(d)).for_each(row);
    } else {
        x.chunks(d).zip(out.chunks_mut(d)).for_each(row);
    }
}

/// dx = y * (dy - sum(dy * y)) per row.
fn bwd_rows<T: WithDType + Float>(y: &[T], dy: &[T], d: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    let row = |((yr, dyr), dxr): ((&[T], &[T]), &mut [T])| {
        let mut s = T::zero();
        for (&a, &b) in yr.iter().zip(dyr) {
            s += a * b;
        }
        for i in 0..yr.len() {
            dxr[i] = yr[i] * (dyr[i] - s);
        }
    };
    if y.len() >= PAR_MIN_ELEMS {
        y.par_chunks(d)
            .zip(dy.par_chunks(d))
            .zip(dx.par_chunks_mut(d))
            .for_each(row);
    } else {
        y.chunks(d)
            .zip(dy.chunks(d))
            .zip(dx.chunks_mut(d))
            .for_each(row);
    }
    dx
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "edgebert-softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        check_dtype(s.dtype(), self.name())?;
        let d = l.dims().last().copied().unwrap_or(1);
        fn run<T: WithDType + Float>(s: &CpuStorage, l: &Layout, d: usize) -> Result<CpuStorage> {
            let x = cpu_slice::<T>(s, l, "softmax")?;
            let mut out = vec![T::zero(); x.len()];
            if d > 0 {
                fwd_rows(x, d, &mut out);
            }
            Ok(T::to_cpu_storage_owned(out))
        }
        let out = match s.dtype() {
            DType::F32 => run::<f32>(s, l, d)?,
            _ => run::<f64>(s, l, d)?,
        };
        Ok((out, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::softmax_fwd(s, l)
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if res.device().is_cuda() {
            return Ok(Some(super::cuda::softmax_bwd(res, grad)?));
        }
        if !res.device().is_cpu() {
            candle_core::bail!(
                "softmax custom op backward runs on CPU, or on CUDA with the `cuda` feature"
            );
        }
        let d = res.dim(D::Minus1)?;
        if d == 0 {
            return Ok(Some(grad.zeros_like()?));
        }
        fn run<T: WithDType + Float>(res: &Tensor, grad: &Tensor, d: usize) -> Result<Tensor> {
            let dx = with_cpu::<T, _>(res, "softmax bwd", |ys| {
                with_cpu::<T, _>(grad, "softmax bwd", |dys| Ok(bwd_rows(ys, dys, d)))
            })?;
            from_vec(dx, res.shape().clone(), res)
        }
        let dx = match res.dtype() {
            DType::F32 => run::<f32>(res, grad, d)?,
            DType::F64 => run::<f64>(res, grad, d)?,
            dt => candle_core::bail!("softmax bwd: unsupported dtype {dt:?}"),
        };
        Ok(Some(dx))
    }
}
