//! Differentiable ops that candle-nn lacks a backward for (LayerNorm and softmax over the last
//! dimension) or whose candle backward is a long chain of tensor ops (exact GELU). Each has a
//! fast CPU custom op with a hand-written backward, and a fallback built from differentiable
//! candle ops used on other devices. With the `cuda` feature, f32 tensors on a CUDA device use
//! the kernels of the `cuda` module (with the `cuda` feature) instead (one launch per forward or backward).

#[cfg(feature = "cuda")]
pub mod cuda;
mod embedding;
mod gelu;
mod layer_norm;
mod softmax;

pub use embedding::embedding;
pub use gelu::gelu_erf;
pub use layer_norm::{layer_norm, layer_norm_composed};
pub use softmax::{softmax_last_dim, softmax_last_dim_composed};

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Storage, Tensor, WithDType};

/// Rows at or above this many elements in total are processed in parallel.
const PAR_MIN_ELEMS: usize = 1 << 14;

/// Whether `t` takes the custom op: f32/f64 on the CPU, or f32 on CUDA with the kernels on.
fn takes_custom_op(t: &Tensor) -> bool {
    (t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)) || on_cuda_kernels(t)
}

/// Whether `t` is a CUDA f32 tensor and the CUDA kernels are on.
fn on_cuda_kernels(t: &Tensor) -> bool {
    #[cfg(feature = "cuda")]
    {
        cuda::enabled_for(t)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = t;
        false
    }
}

/// Borrows a contiguous CPU storage as a slice.
fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// Runs `f` on the contiguous CPU data of `t` (made contiguous first if needed).
fn with_cpu<T: WithDType, R>(t: &Tensor, op: &str, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (guard, layout) = t.storage_and_layout();
    match &*guard {
        Storage::Cpu(cpu) => f(cpu_slice::<T>(cpu, layout, op)?),
        _ => candle_core::bail!("{op}: CPU storage expected"),
    }
}

/// Builds a tensor from a vec on the device of `like`.
fn from_vec<T: WithDType>(v: Vec<T>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(v, shape.into(), like.device())
}

fn check_dtype(dtype: DType, op: &str) -> Result<()> {
    match dtype {
        DType::F32 | DType::F64 => Ok(()),
        d => candle_core::bail!("{op}: unsupported dtype {d:?} on CPU (f32, f64)"),
    }
}
