//! The fused AdamW update and the gradient norm on CUDA (`cuda/adamw.cu`, compiled to PTX by
//! build.rs). candle's tensor-op form costs ~16 launches and as many allocations per parameter
//! and step (~1,600 for DistilBERT-base), and the norm read one scalar per parameter back to the
//! host (~100 synchronisations per step); here it is one launch per parameter and one read.

use super::StepScalars;
use crate::error::Result;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, Device, Layout, Storage, Tensor, Var};
use std::cell::RefCell;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/adamw.ptx"));
const MODULE: &str = "edgebert_trainer_adamw";
/// Threads per block of every kernel here (the reductions assume 256).
const THREADS: u32 = 256;
/// Partial sums per gradient in the norm's first stage.
const NORM_BLOCKS: usize = 64;

fn cuda_device(t: &Tensor) -> candle_core::Result<CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d.clone()),
        d => candle_core::bail!("adamw: expected a CUDA tensor, got {d:?}"),
    }
}

fn grid(n: usize) -> LaunchConfig {
    let blocks = (n as u64).div_ceil(u64::from(THREADS)).clamp(1, 4096) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One parameter's first and second moments, on its device.
pub(super) struct CudaMoments {
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
}

impl CudaMoments {
    /// Zero moments shaped like `var`.
    pub(super) fn zeros(var: &Var) -> Result<Self> {
        let dev = cuda_device(var.as_tensor())?;
        let n = var.elem_count();
        Ok(CudaMoments {
            m: dev.alloc_zeros::<f32>(n)?,
            v: dev.alloc_zeros::<f32>(n)?,
        })
    }

    /// Moments restored from (checkpoint) tensors of `var`'s shape.
    pub(super) fn from_host(var: &Var, m: &Tensor, v: &Tensor) -> Result<Self> {
        let dev = cuda_device(var.as_tensor())?;
        let stream = dev.cuda_stream();
        let up = |t: &Tensor| -> Result<CudaSlice<f32>> {
            let host: Vec<f32> = t.flatten_all()?.to_vec1()?;
            Ok(stream.clone_htod(&host).w()?)
        };
        Ok(CudaMoments {
            m: up(m)?,
            v: up(v)?,
        })
    }

    /// The moments as host tensors of shape `dims` (for checkpoints).
    pub(super) fn to_host(&self, dims: &[usize]) -> Result<(Tensor, Tensor)> {
        let stream = self.m.stream().clone();
        let down = |s: &CudaSlice<f32>| -> Result<Tensor> {
            let host = stream.clone_dtoh(s).w()?;
            Ok(Tensor::from_vec(host, dims, &Device::Cpu)?)
        };
        Ok((down(&self.m)?, down(&self.v)?))
    }

    /// One fused AdamW update of `var` with gradient `grad`, in place.
    pub(super) fn step(&mut self, var: &Var, grad: &Tensor, k: StepScalars) -> Result<()> {
        let grad = grad.contiguous()?;
        let op = FusedStepCuda {
            m: RefCell::new(&mut self.m),
            v: RefCell::new(&mut self.v),
            k,
        };
        var.as_tensor().inplace_op2(&grad, &op)?;
        Ok(())
    }
}

struct FusedStepCuda<'a> {
    m: RefCell<&'a mut CudaSlice<f32>>,
    v: RefCell<&'a mut CudaSlice<f32>>,
    k: StepScalars,
}

impl candle_core::InplaceOp2 for FusedStepCuda<'_> {
    fn name(&self) -> &'static str {
        "adamw-fused-cuda"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("adamw-fused-cuda: CPU parameters take the CPU update")
    }

    fn cuda_fwd(
        &self,
        p: &mut CudaStorage,
        lp: &Layout,
        g: &CudaStorage,
        lg: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (lp.contiguous_offsets(), lg.contiguous_offsets())
        else {
            candle_core::bail!("adamw: parameter or gradient is not contiguous");
        };
        let dev = p.device.clone();
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        let n = p1 - p0;
        if g1 - g0 != n || m.len() != n || v.len() != n {
            candle_core::bail!("adamw: size mismatch {n} {} {}", g1 - g0, m.len());
        }
        if n == 0 {
            return Ok(());
        }
        let gv = g.as_cuda_slice::<f32>()?.slice(g0..g1);
        let mut pv = p.as_cuda_slice_mut::<f32>()?.slice_mut(p0..p1);
        let func = dev.get_or_load_custom_func("edgebert_adamw_f32", MODULE, PTX)?;
        let k = self.k;
        let mut b = func.builder();
        b.arg(&mut pv).arg(&gv).arg(&mut **m).arg(&mut **v).arg(&n);
        b.arg(&k.lr)
            .arg(&k.decay)
            .arg(&k.beta1)
            .arg(&k.beta2)
            .arg(&k.eps);
        b.arg(&k.bc1).arg(&k.bc2_sqrt).arg(&k.grad_scale);
        // SAFETY: argument types and count match the kernel's signature; p, m, v have n elements.
        unsafe { b.launch(grid(n)) }.w()?;
        Ok(())
    }
}

/// The global L2 norm of `grads` (CUDA f32 tensors): per gradient, `NORM_BLOCKS` partial sums of
/// squares; then one block sums them all in double, in a fixed order; one read back.
pub(super) fn grad_norm(grads: &[&Tensor]) -> candle_core::Result<f64> {
    let Some(first) = grads.first() else {
        return Ok(0.0);
    };
    let dev = cuda_device(first)?;
    let mut partial = dev.alloc_zeros::<f32>(grads.len() * NORM_BLOCKS)?;
    let sumsq = dev.get_or_load_custom_func("edgebert_sumsq_partial_f32", MODULE, PTX)?;
    for (i, g) in grads.iter().enumerate() {
        let g = g.contiguous()?;
        let (guard, layout) = g.storage_and_layout();
        let Storage::Cuda(s) = &*guard else {
            candle_core::bail!("grad_norm: expected a CUDA gradient");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("grad_norm: gradient is not contiguous");
        };
        let n = b - a;
        if n == 0 {
            continue;
        }
        let gv = s.as_cuda_slice::<f32>()?.slice(a..b);
        let mut out = partial.slice_mut(i * NORM_BLOCKS..(i + 1) * NORM_BLOCKS);
        let mut l = sumsq.builder();
        l.arg(&gv).arg(&n).arg(&mut out);
        let cfg = LaunchConfig {
            grid_dim: (NORM_BLOCKS as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types and count match the kernel's signature; `out` has one slot per block.
        unsafe { l.launch(cfg) }.w()?;
    }
    let mut total = dev.alloc_zeros::<f64>(1)?;
    let sum = dev.get_or_load_custom_func("edgebert_sum_f32", MODULE, PTX)?;
    let count = partial.len();
    let mut l = sum.builder();
    l.arg(&partial).arg(&count).arg(&mut total);
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: argument types and count match the kernel's signature.
    unsafe { l.launch(cfg) }.w()?;
    let host = dev.clone_dtoh(&total)?;
    Ok(host.first().copied().unwrap_or(0.0).max(0.0).sqrt())
}
