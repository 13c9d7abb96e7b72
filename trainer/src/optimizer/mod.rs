//! AdamW as PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments) with
//! transformers' parameter grouping (no decay for biases and LayerNorm weights), and global
//! gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
//!
//! On CPU the update is fused: one pass over each parameter's storage, in place, reading the
//! gradient and updating both moments (no temporary tensors). With the `cuda` feature, CUDA
//! parameters get the same fused update as one kernel launch each (the `cuda` module, with the `cuda` feature), and the gradient
//! norm costs one device-to-host read per step. Other devices (or `EDGEBERT_CUDA_KERNELS=0`) use
//! tensor ops.
#[cfg(feature = "cuda")]
mod cuda;

use crate::error::{Result, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Layout, Tensor, Var};
use std::cell::RefCell;
use std::collections::HashMap;

/// AdamW hyper-parameters (the learning rate comes per step from the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (applied as `p -= lr * wd * p`).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// transformers' rule: biases and LayerNorm parameters get no weight decay.
pub fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower.ends_with("bias") || lower.contains("layernorm") || lower.contains("layer_norm"))
}

enum Moments {
    Cpu {
        m: Vec<f32>,
        v: Vec<f32>,
    },
    #[cfg(feature = "cuda")]
    Cuda(cuda::CudaMoments),
    Dev {
        m: Tensor,
        v: Tensor,
    },
}

struct Param {
    name: String,
    var: Var,
    decay: bool,
    moments: Moments,
}

/// The optimizer: parameters sorted by name, their moments, and the step count.
pub struct AdamW {
    params: Vec<Param>,
    cfg: AdamWConfig,
    step: usize,
}

/// The scalars of one parameter's update (f32, as the fused kernels take them).
#[derive(Debug, Clone, Copy)]
struct StepScalars {
    lr: f32,
    decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2_sqrt: f32,
    grad_scale: f32,
}

struct FusedStep<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    k: StepScalars,
}

impl candle_core::InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-fused"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("adamw: only f32 parameters are supported");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("adamw: parameter or gradient is not contiguous");
        };
        let p = &mut p[p0..p1];
        let g = &g[g0..g1];
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != g.len() || p.len() != m.len() {
            candle_core::bail!("adamw: size mismatch {} {} {}", p.len(), g.len(), m.len());
        }
        let k = self.k;
        let step_size = k.lr / k.bc1;
        let shrink = 1.0 - k.lr * k.decay;
        let (b1, b2) = (k.beta1, k.beta2);
        for (((pv, &gv), mv), vv) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let gv = gv * k.grad_scale;
            *pv *= shrink;
            *mv = b1 * *mv + (1.0 - b1) * gv;
            *vv = b2 * *vv + (1.0 - b2) * gv * gv;
            let denom = vv.sqrt() / k.bc2_sqrt + k.eps;
            *pv -= step_size * *mv / denom;
        }
        Ok(())
    }
}

impl AdamW {
    /// Creates the optimizer over named variables (e.g. a `VarMap`'s contents).
    pub fn new(vars: impl IntoIterator<Item = (String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let mut params = Vec::new();
        for (name, var) in vars {
            if var.dtype() != DType::F32 {
                return Err(TrainError::Options(format!(
                    "adamw: parameter {name} is {:?}; only f32 training is supported",
                    var.dtype()
                )));
            }
            let moments = if var.device().is_cpu() {
                let n = var.elem_count();
                Moments::Cpu {
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            } else if let Some(m) = cuda_moments(&var)? {
                m
            } else {
                Moments::Dev {
                    m: var.zeros_like()?,
                    v: var.zeros_like()?,
                }
            };
            params.push(Param {
                decay: decays(&name),
                name,
                var,
                moments,
            });
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(AdamW {
            params,
            cfg,
            step: 0,
        })
    }

    /// Number of optimizer steps taken.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Names of the parameters that get weight decay.
    pub fn decayed_names(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| p.decay)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// The global L2 norm of all gradients (parameters without a gradient count as zero).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        #[cfg(feature = "cuda")]
        if self
            .params
            .iter()
            .all(|p| matches!(p.moments, Moments::Cuda(_)))
        {
            let present: Vec<&Tensor> = self
                .params
                .iter()
                .filter_map(|p| grads.get(p.var.as_tensor()))
                .collect();
            return Ok(cuda::grad_norm(&present)?);
        }
        let mut sq = 0.0f64;
        for p in &self.params {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        Ok(sq.sqrt())
    }

    /// One AdamW step at learning rate `lr`, with gradients scaled by `grad_scale` (clipping).
    /// Parameters without a gradient are left untouched (as PyTorch does for `grad is None`).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let wd = if p.decay { c.weight_decay } else { 0.0 };
            let k = StepScalars {
                lr: lr as f32,
                decay: wd as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                bc1: bc1 as f32,
                bc2_sqrt: bc2.sqrt() as f32,
                grad_scale: grad_scale as f32,
            };
            match &mut p.moments {
                Moments::Cpu { m, v } => {
                    let g = g.contiguous()?;
                    let op = FusedStep {
                        m: RefCell::new(m.as_mut_slice()),
                        v: RefCell::new(v.as_mut_slice()),
                        k,
                    };
                    p.var.as_tensor().inplace_op2(&g, &op)?;
                }
                #[cfg(feature = "cuda")]
                Moments::Cuda(mv) => mv.step(&p.var, g, k)?,
                Moments::Dev { m, v } => {
                    let g = (g * grad_scale)?;
                    *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
                    let update = ((&*m / denom)? * (lr / bc1))?;
                    let shrunk = (p.var.as_tensor() * (1.0 - lr * wd))?;
                    p.var.set(&(shrunk - update)?)?;
                }
            }
        }
        Ok(())
    }

    /// The moments as tensors named `exp_avg.<param>` / `exp_avg_sq.<param>` (for checkpoints).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for p in &self.params {
            let (m, v) = match &p.moments {
                Moments::Cpu { m, v } => (
                    Tensor::from_slice(m, p.var.dims(), &candle_core::Device::Cpu)?,
                    Tensor::from_slice(v, p.var.dims(), &candle_core::Device::Cpu)?,
                ),
                #[cfg(feature = "cuda")]
                Moments::Cuda(mv) => mv.to_host(p.var.dims())?,
                Moments::Dev { m, v } => (m.clone(), v.clone()),
            };
            out.insert(format!("exp_avg.{}", p.name), m);
            out.insert(format!("exp_avg_sq.{}", p.name), v);
        }
        Ok(out)
    }

    /// Restores moments and the step count written by [`AdamW::state`].
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for p in &mut self.params {
            let get = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}.{}", p.name);
                let t = tensors.get(&key).ok_or_else(|| {
                    TrainError::Options(format!("optimizer state: missing tensor {key}"))
                })?;
                if t.dims() != p.var.dims() {
                    return Err(TrainError::Options(format!(
                        "optimizer state: tensor {key} has shape {:?}, parameter has {:?}",
                        t.dims(),
                        p.var.dims()
                    )));
                }
                Ok(t.to_dtype(DType::F32)?)
            };
            let (m, v) = (get("exp_avg")?, get("exp_avg_sq")?);
            p.moments = match p.moments {
                Moments::Cpu { .. } => Moments::Cpu {
                    m: m.flatten_all()?.to_vec1()?,
                    v: v.flatten_all()?.to_vec1()?,
                },
                #[cfg(feature = "cuda")]
                Moments::Cuda(_) => Moments::Cuda(cuda::CudaMoments::from_host(&p.var, &m, &v)?),
                Moments::Dev { .. } => Moments::Dev {
                    m: m.to_device(p.var.device())?,
                    v: v.to_device(p.var.device())?,
                },
            };
        }
        self.step = step;
        Ok(())
    }
}

/// Fused CUDA moments for `var` when it is an f32 CUDA parameter and the kernels are on.
fn cuda_moments(var: &Var) -> Result<Option<Moments>> {
    #[cfg(feature = "cuda")]
    if edgebert_models::ops::cuda::enabled_for(var.as_tensor()) {
        return Ok(Some(Moments::Cuda(cuda::CudaMoments::zeros(var)?)));
    }
    let _ = var;
    Ok(None)
}

/// The factor `clip_grad_norm_` multiplies gradients by: `min(1, max_norm / (norm + 1e-6))`.
pub fn clip_scale(total_norm: f64, max_norm: f64) -> f64 {
    (max_norm / (total_norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Reference AdamW, literally as torch.optim.AdamW documents it, on scalars.
    fn reference(p0: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
        for (t, g) in grads.iter().enumerate() {
            let t = (t + 1) as i32;
            p -= lr * wd * p;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mhat = m / (1.0 - b1.powi(t));
            let vhat = v / (1.0 - b2.powi(t));
            p -= lr * mhat / (vhat.sqrt() + eps);
        }
        p
    }

    #[test]
    fn grouping_follows_transformers() {
        assert!(decays("bert.encoder.layer.0.attention.self.query.weight"));
        assert!(!decays("bert.encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        assert!(!decays(
            "distilbert.transformer.layer.0.sa_layer_norm.weight"
        ));
        assert!(decays("classifier.weight"));
    }

    #[test]
    fn fused_cpu_step_matches_reference() -> Result<()> {
        // loss = sum(a * w) + sum(w^2)/2 ; grad = a + w
        let w = Var::from_slice(&[0.5f32, -1.0, 2.0], 3, &Device::Cpu)?;
        let b = Var::from_slice(&[0.1f32, 0.2, 0.3], 3, &Device::Cpu)?;
        let a = Tensor::from_slice(&[1.0f32, -2.0, 0.5], 3, &Device::Cpu)?;
        let mut opt = AdamW::new(
            vec![
                ("w.weight".to_string(), w.clone()),
                ("w.bias".to_string(), b.clone()),
            ],
            AdamWConfig {
                weight_decay: 0.1,
                ..Default::default()
            },
        )?;
        let mut gw_hist: Vec<Vec<f64>> = vec![vec![]; 3];
        for _ in 0..5 {
            let loss = ((w.as_tensor() * &a)?.sum_all()?
                + (w.as_tensor().sqr()?.sum_all()? * 0.5)?
                + b.as_tensor().sum_all()?)?;
            let grads = loss.backward()?;
            let gw: Vec<f32> = grads.get(w.as_tensor()).expect("grad").to_vec1()?;
            for (h, g) in gw_hist.iter_mut().zip(gw) {
                h.push(f64::from(g));
            }
            opt.step(&grads, 0.01, 1.0)?;
        }
        let got: Vec<f32> = w.as_tensor().to_vec1()?;
        for (i, p0) in [0.5, -1.0, 2.0].into_iter().enumerate() {
            let want = reference(p0, &gw_hist[i], 0.01, 0.1);
            assert!(
                (f64::from(got[i]) - want).abs() < 1e-5,
                "w[{i}] {} vs {want}",
                got[i]
            );
        }
        // bias: constant grad 1, no decay
        let gotb: Vec<f32> = b.as_tensor().to_vec1()?;
        let want = reference(0.1, &[1.0; 5], 0.01, 0.0);
        assert!((f64::from(gotb[0]) - want).abs() < 1e-5);
        // state round-trip
        let st = opt.state()?;
        let mut opt2 = AdamW::new(
            vec![
                ("w.weight".to_string(), w.clone()),
                ("w.bias".to_string(), b.clone()),
            ],
            AdamWConfig::default(),
        )?;
        opt2.load_state(&st, 5)?;
        assert_eq!(opt2.step_count(), 5);
        let st2 = opt2.state()?;
        assert_eq!(
            st["exp_avg_sq.w.weight"].to_vec1::<f32>()?,
            st2["exp_avg_sq.w.weight"].to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn clip_scale_like_torch() {
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
        assert!((clip_scale(4.0, 1.0) - 1.0 / (4.0 + 1e-6)).abs() < 1e-12);
    }
}
