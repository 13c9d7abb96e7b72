//! LayerNorm over the last dimension with a hand-written backward (x, gamma, beta).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType, D};
use num_traits::Float;
use rayon::prelude::*;

use super::{check_dtype, cpu_slice, from_vec, takes_custom_op, with_cpu, PAR_MIN_ELEMS};

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` over the last dim of `x`, differentiable
/// w.r.t. all three inputs. Uses the custom op for f32/f64 on CPU and f32 on CUDA (feature
/// `cuda`), else [`layer_norm_composed`].
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if gamma.dims() != [d] || beta.dims() != [d] {
        candle_core::bail!(
            "layer_norm: gamma {:?} / beta {:?} must be [{d}]",
            gamma.dims(),
            beta.dims()
        );
    }
    if takes_custom_op(x) {
        x.contiguous()?.apply_op3(
            &gamma.contiguous()?,
            &beta.contiguous()?,
            LayerNormOp { eps },
        )
    } else {
        layer_norm_composed(x, gamma, beta, eps)
    }
}

/// LayerNorm from differentiable candle ops (any device); slower, same math.
pub fn layer_norm_composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xhat.broadcast_mul(gamma)?.broadcast_add(beta)
}

struct LayerNormOp {
    eps: f64,
}

fn fwd_rows<T: WithDType + Float>(x: &[T], g: &[T], b: &[T], eps: f64, out: &mut [T]) {
    let d = g.len();
    let eps = T::from_f64(eps);
    let n = T::from_f64(d as f64);
    let row = |(xr, yr): (&[T], &mut [T])| {
        let mut s = T::zero();
        for &v in xr {
            s += v;
        }
        let mean = s / n;
        let mut ss = T::zero();
        for &v in xr {
            let c = v - mean;
            ss += c * c;
        }
        let rstd = (ss / n + eps).sqrt().recip();
        for i in 0..d {
            yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
        }
    };
    if x.len() >= PAR_MIN_ELEMS {
        x.par_chunks(d).zip(out.par_chunks_mut(d)).for_each(row);
    } else {
        x.chunks(d).zip(out.chunks_mut(d)).for_each(row);
    }
}

/// Returns (dx, dgamma, dbeta).
fn bwd_rows<T: WithDType + Float>(
    x: &[T],
    g: &[T],
    dy: &[T],
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let d = g.len();
    let epsv = T::from_f64(eps);
    let n = T::from_f64(d as f64);
    let mut dx = vec![T::zero(); x.len()];
    // Per-row: dx, and per-row partial sums for dgamma/dbeta folded per chunk of rows.
    let row = |xr: &[T], dyr: &[T], dxr: &mut [T], dg: &mut [T], db: &mut [T]| {
        let mut s = T::zero();
        for &v in xr {
            s += v;
        }
        let mean = s / n;
        let mut ss = T::zero();
        for &v in xr {
            let c = v - mean;
            ss += c * c;
        }
        let rstd = (ss / n + epsv).sqrt().recip();
        let mut sum_dxhat = T::zero();
        let mut sum_dxhat_xhat = T::zero();
        for i in 0..d {
            let xhat = (xr[i] - mean) * rstd;
            let dxhat = dyr[i] * g[i];
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
            dg[i] += dyr[i] * xhat;
            db[i] += dyr[i];
        }
        let m1 = sum_dxhat / n;
        let m2 = sum_dxhat_xhat / n;
        for i in 0..d {
            let xhat = (xr[i] - mean) * rstd;
            dxr[i] = rstd * (dyr[i] * g[i] - m1 - xhat * m2);
        }
    };
    let rows = x.len() / d.max(1);
    if x.len() >= PAR_MIN_ELEMS {
        let chunk_rows = rows
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        let partials: Vec<(Vec<T>, Vec<T>)> = x
            .par_chunks(d * chunk_rows)
            .zip(dy.par_chunks(d * chunk_rows))
            .zip(dx.par_chunks_mut(d * chunk_rows))
            .map(|((xc, dyc), dxc)| {
                let mut dg = vec![T::zero(); d];
                let mut db = vec![T::zero(); d];
                for ((xr, dyr), dxr) in xc.chunks(d).zip(dyc.chunks(d)).zip(dxc.chunks_mut(d)) {
                    row(xr, dyr, dxr, &mut dg, &mut db);
                }
                (dg, db)
            })
            .collect();
        let mut dg = vec![T::zero(); d];
        let mut db = vec![T::zero(); d];
        for (pg, pb) in partials {
            for i in 0..d {
                dg[i] += pg[i];
                db[i] += pb[i];
            }
        }
        (dx, dg, db)
    } else {
        let mut dg = vec![T::zero(); d];
        let mut db = vec![T::zero(); d];
        for ((xr, dyr), dxr) in x.chunks(d).zip(dy.chunks(d)).zip(dx.chunks_mut(d)) {
            row(xr, dyr, dxr, &mut dg, &mut db);
        }
        (dx, dg, db)
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "edgebert-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        check_dtype(s1.dtype(), name)?;
        fn run<T: WithDType + Float>(
            op: &LayerNormOp,
            s: [(&CpuStorage, &Layout); 3],
        ) -> Result<CpuStorage> {
            let x = cpu_slice::<T>(s[0].0, s[0].1, "layer_norm")?;
            let g = cpu_slice::<T>(s[1].0, s[1].1, "layer_norm")?;
            let b = cpu_slice::<T>(s[2].0, s[2].1, "layer_norm")?;
            let mut out = vec![T::zero(); x.len()];
            if !g.is_empty() {
                fwd_rows(x, g, b, op.eps, &mut out);
            }
            Ok(T::to_cpu_storage_owned(out))
        }
        let args = [(s1, l1), (s2, l2), (s3, l3)];
        let out = match s1.dtype() {
            DType::F32 => run::<f32>(self, args)?,
            _ => run::<f64>(self, args)?,
        };
        Ok((out, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::layer_norm_fwd((s1, l1), (s2, l2), (s3, l3), self.eps)
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let (dx, dg, db) = super::cuda::layer_norm_bwd(x, gamma, grad, self.eps)?;
            return Ok((Some(dx), Some(dg), Some(db)));
        }
        if !x.device().is_cpu() {
            candle_core::bail!(
                "layer_norm custom op backward runs on CPU, or on CUDA with the `cuda` feature"
            );
        }
        fn run<T: WithDType + Float>(
            x: &Tensor,
            gamma: &Tensor,
            grad: &Tensor,
            eps: f64,
        ) -> Result<(Tensor, Tensor, Tensor)> {
            let (dx, dg, db) = with_cpu::<T, _>(x, "layer_norm bwd", |xs| {
                with_cpu::<T, _>(gamma, "layer_norm bwd", |gs| {
                    with_cpu::<T, _>(grad, "layer_norm bwd", |dys| Ok(bwd_rows(xs, gs, dys, eps)))
                })
            })?;
            Ok((
                from_vec(dx, x.shape().clone(), x)?,
                from_vec(dg, gamma.shape().clone(), gamma)?,
                from_vec(db, gamma.shape().clone(), gamma)?,
            ))
        }
        let (dx, dg, db) = match x.dtype() {
            DType::F32 => run::<f32>(x, gamma, grad, self.eps)?,
            DType::F64 => run::<f64>(x, gamma, grad, self.eps)?,
            d => candle_core::bail!("layer_norm bwd: unsupported dtype {d:?}"),
        };
        Ok((Some(dx), Some(dg), Some(db)))
    }
}
