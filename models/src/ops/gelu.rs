//! GELU in its exact (erf) form with a one-pass backward.
//!
//! candle's own `gelu_erf` computes the forward in one pass, but its backward is composed from
//! about a dozen elementwise tensor ops (square, negate, exp, erf, scalings, sums), each writing a
//! fresh activation-sized tensor: for a DistilBERT-base FFN at batch 64 × 32 that is ~25 MB per
//! op, per layer, per step. Here the derivative `Φ(x) + x φ(x)` is computed and multiplied by
//! the incoming gradient in a single pass.

use candle_core::backend::BackendStorage;
use candle_core::cpu::erf::erf_f64;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

use super::{check_dtype, cpu_slice, from_vec, takes_custom_op, with_cpu, PAR_MIN_ELEMS};

/// `x Φ(x) = 0.5 x (1 + erf(x / √2))`, differentiable. Uses the custom op for f32/f64 on CPU
/// (candle's `gelu_erf` formula with a vectorizable erf in f32, one-pass backward) and f32 on CUDA (feature
/// `cuda`), else candle's `gelu_erf`.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if takes_custom_op(x) {
        x.contiguous()?.apply_op1(GeluErfOp)
    } else {
        x.gelu_erf()
    }
}

/// Scalar math per float type (f32: the runtime's erf, [`edgebert_kernels::gelu::erf`], so a
/// model trains and runs with the same GELU; f64: candle's erf).
trait GeluFloat: WithDType + Float + Send + Sync {
    fn erf(self) -> Self;
    fn lit(v: f64) -> Self;
}

impl GeluFloat for f32 {
    fn erf(self) -> f32 {
        edgebert_kernels::gelu::erf(self)
    }
    fn lit(v: f64) -> f32 {
        v as f32
    }
}

impl GeluFloat for f64 {
    fn erf(self) -> f64 {
        erf_f64(self)
    }
    fn lit(v: f64) -> f64 {
        v
    }
}

/// Elements per parallel work item.
const CHUNK: usize = 4096;

fn forward<T: GeluFloat>(x: &[T]) -> Vec<T> {
    let (half, one) = (T::lit(0.5), T::one());
    let inv_sqrt2 = T::lit(std::f64::consts::FRAC_1_SQRT_2);
    let mut out = vec![T::zero(); x.len()];
    let body = |(xs, ys): (&[T], &mut [T])| {
        for (y, &v) in ys.iter_mut().zip(xs) {
            *y = ((v * inv_sqrt2).erf() + one) * half * v;
        }
    };
    if x.len() >= PAR_MIN_ELEMS {
        x.par_chunks(CHUNK)
            .zip(out.par_chunks_mut(CHUNK))
            .for_each(body);
    } else {
        body((x, &mut out));
    }
    out
}

/// `dy × (Φ(x) + x φ(x))` with `Φ(x) = 0.5 (1 + erf(x / √2))`, `φ(x) = exp(-x² / 2) / √(2π)`.
fn backward<T: GeluFloat>(x: &[T], dy: &[T]) -> Vec<T> {
    let (half, one) = (T::lit(0.5), T::one());
    let inv_sqrt2 = T::lit(std::f64::consts::FRAC_1_SQRT_2);
    let inv_sqrt_2pi =
        T::lit(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
    let mut dx = vec![T::zero(); x.len()];
    let body = |((xs, gs), ds): ((&[T], &[T]), &mut [T])| {
        for ((d, &v), &g) in ds.iter_mut().zip(xs).zip(gs) {
            let cdf = ((v * inv_sqrt2).erf() + one) * half;
            let pdf = (-(v * v) * half).exp() * inv_sqrt_2pi;
            *d = g * (cdf + v * pdf);
        }
    };
    if x.len() >= PAR_MIN_ELEMS {
        x.par_chunks(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .zip(dx.par_chunks_mut(CHUNK))
            .for_each(body);
    } else {
        body(((x, dy), &mut dx));
    }
    dx
}

struct GeluErfOp;

impl CustomOp1 for GeluErfOp {
    fn name(&self) -> &'static str {
        "edgebert-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        check_dtype(s.dtype(), self.name())?;
        let out = match s.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(forward(cpu_slice::<f32>(s, l, "gelu")?)),
            _ => f64::to_cpu_storage_owned(forward(cpu_slice::<f64>(s, l, "gelu")?)),
        };
        Ok((out, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::gelu_erf_fwd(s, l)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if arg.device().is_cuda() {
            return Ok(Some(super::cuda::gelu_erf_bwd(arg, grad)?));
        }
        if !arg.device().is_cpu() {
            candle_core::bail!(
                "gelu custom op backward runs on CPU, or on CUDA with the `cuda` feature"
            );
        }
        fn run<T: GeluFloat>(arg: &Tensor, grad: &Tensor) -> Result<Tensor> {
            let dx = with_cpu::<T, _>(arg, "gelu bwd", |xs| {
                with_cpu::<T, _>(grad, "gelu bwd", |dys| Ok(backward(xs, dys)))
            })?;
            from_vec(dx, arg.shape().clone(), arg)
        }
        let dx = match arg.dtype() {
            DType::F32 => run::<f32>(arg, grad)?,
            DType::F64 => run::<f64>(arg, grad)?,
            dt => candle_core::bail!("gelu bwd: unsupported dtype {dt:?}"),
        };
        Ok(Some(dx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_erf_is_the_runtimes_and_within_5e7_of_f64_erf() {
        let mut worst = (0.0f64, 0.0f32);
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5; // [-10, 10] in steps of 5e-5
            let ours = GeluFloat::erf(x);
            assert_eq!(
                ours.to_bits(),
                edgebert_kernels::gelu::erf(x).to_bits(),
                "training and inference erf differ at {x}"
            );
            let err = (f64::from(ours) - erf_f64(f64::from(x))).abs();
            if err > worst.0 {
                worst = (err, x);
            }
        }
        assert!(worst.0 < 5e-7, "max |error| {:.3e} at {}", worst.0, worst.1);
        assert_eq!(GeluFloat::erf(0.0f32), 0.0);
        // exactly ±1 where erf rounds to ±1 in f32
        assert_eq!(GeluFloat::erf(f32::INFINITY), 1.0);
        assert_eq!(GeluFloat::erf(-1e30f32), -1.0);
        // NaN in, NaN out, as erff does.
        assert!(GeluFloat::erf(f32::NAN).is_nan());
    }
}
