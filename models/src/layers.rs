//! Building blocks shared by the architectures: linear, embedding lookup, LayerNorm, activation,
//! dropout with our own seeded RNG, the post-LN transformer block, and the parameter table
//! (names, shapes, fresh init).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::config::{Activation, ModelConfig};
use crate::error::{Error, Result};
use crate::ops;

/// Seeded RNG for dropout masks (candle's CPU device cannot be seeded). On the CPU the masks come
/// from this generator. On an accelerator they are drawn on the device (copying CPU-drawn masks
/// cost more than the whole training step: tens of millions of floats per DistilBERT-base step),
/// from a device generator seeded once per `DropoutRng` by this one — so runs stay repeatable and
/// resumable on the same device, but CPU and GPU masks differ.
#[derive(Debug, Clone)]
pub struct DropoutRng {
    rng: StdRng,
    device_seeded: bool,
}

impl DropoutRng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            device_seeded: false,
        }
    }

    /// A `shape`-sized mask of `0` (prob `p`) and `1/(1-p)` values.
    pub fn mask(
        &mut self,
        shape: &[usize],
        p: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let scale = (1.0 / (1.0 - p)) as f32;
        if !device.is_cpu() {
            if !self.device_seeded {
                device.set_seed(self.rng.random::<u64>())?;
                self.device_seeded = true;
            }
            let keep = Tensor::rand(0f32, 1f32, shape, device)?.ge(p)?;
            let m = keep.to_dtype(DType::F32)?.affine(scale as f64, 0.0)?;
            return Ok(if dtype == DType::F32 {
                m
            } else {
                m.to_dtype(dtype)?
            });
        }
        let n: usize = shape.iter().product();
        let p32 = p as f32;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if self.rng.random::<f32>() < p32 {
                    0.0
                } else {
                    scale
                }
            })
            .collect();
        let t = Tensor::from_vec(v, shape, &Device::Cpu)?;
        let t = if dtype == DType::F32 {
            t
        } else {
            t.to_dtype(dtype)?
        };
        Ok(t.to_device(device)?)
    }
}

/// Inverted dropout: active only when `rng` is `Some` (training) and `p > 0`.
pub fn dropout(x: &Tensor, p: f64, rng: &mut Option<&mut DropoutRng>) -> Result<Tensor> {
    match rng {
        Some(r) if p > 0.0 => {
            let m = r.mask(x.dims(), p, x.dtype(), x.device())?;
            Ok(x.mul(&m)?)
        }
        _ => Ok(x.clone()),
    }
}

/// Applies the FFN activation.
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Gelu => ops::gelu_erf(x)?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
    })
}

/// `y = x W^T + b` with `W` of shape `[out, in]` (PyTorch layout), for `[.., in]` inputs.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Linear {
    /// Applies the layer to `[n, in]` or `[b, s, in]` input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = dims.last().copied().unwrap_or(0);
        let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
        let x2 = if dims.len() == 2 {
            x.clone()
        } else {
            x.reshape((rows, inner))?
        };
        let y = x2.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        if dims.len() == 2 {
            Ok(y)
        } else {
            let mut out = dims;
            let last = out.len() - 1;
            out[last] = self.weight.dim(0)?;
            Ok(y.reshape(out)?)
        }
    }
}

/// LayerNorm with learned `weight` (gamma) and `bias` (beta), differentiable.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Gamma `[hidden]`.
    pub weight: Tensor,
    /// Beta `[hidden]`.
    pub bias: Tensor,
    /// Epsilon.
    pub eps: f64,
}

impl LayerNorm {
    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
}

/// Checks ids (`[b, s]`, u32/i64, within vocab) and mask (`[b, s]`), returning ids as u32 and
/// the mask as `dtype` on the ids' device.
pub fn check_inputs(
    input_ids: &Tensor,
    attention_mask: &Tensor,
    vocab_size: usize,
    max_positions: usize,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let (b, s) = input_ids.dims2().map_err(|_| {
        Error::Input(format!(
            "input_ids must be [batch, seq], got {:?}",
            input_ids.dims()
        ))
    })?;
    if attention_mask.dims() != [b, s] {
        return Err(Error::Input(format!(
            "attention_mask {:?} must match input_ids [{b}, {s}]",
            attention_mask.dims()
        )));
    }
    if b == 0 || s == 0 {
        return Err(Error::Input(format!("empty batch [{b}, {s}]")));
    }
    if s > max_positions {
        return Err(Error::Input(format!(
            "sequence length {s} exceeds max_position_embeddings {max_positions}"
        )));
    }
    let ids = match input_ids.dtype() {
        DType::U32 => input_ids.clone(),
        DType::I64 => {
            let min = input_ids.min_all()?.to_scalar::<i64>()?;
            if min < 0 {
                return Err(Error::Input(format!("input_ids contain negative id {min}")));
            }
            input_ids.to_dtype(DType::U32)?
        }
        d => {
            return Err(Error::Input(format!(
                "input_ids dtype {d:?} (expected u32 or i64)"
            )))
        }
    };
    let max = ids.max_all()?.to_scalar::<u32>()?;
    if max as usize >= vocab_size {
        return Err(Error::Input(format!(
            "input id {max} is outside vocab_size {vocab_size}"
        )));
    }
    let mask = attention_mask.to_dtype(dtype)?;
    Ok((ids, mask))
}

/// Additive attention bias `[b, 1, 1, s]`: 0 for tokens, the dtype's lowest value for padding.
pub fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let min = match mask.dtype() {
        DType::F64 => f64::MIN,
        DType::F32 => f32::MIN as f64,
        DType::F16 => -65504.0,
        _ => -3.0e38,
    };
    let bias = ((mask.ones_like()? - mask)? * min)?;
    Ok(bias.reshape((b, 1, 1, s))?)
}

/// Multi-head attention core: `softmax(q k^T / sqrt(d) + bias) v` with dropout on the weights.
/// `q, k, v` are `[b, s, hidden]`; returns `[b, s, hidden]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    num_heads: usize,
    dropout_p: f64,
    rng: &mut Option<&mut DropoutRng>,
) -> Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let dh = h / num_heads;
    let split = |t: &Tensor| -> Result<Tensor> {
        Ok(t.reshape((b, s, num_heads, dh))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let q = (split(q)? * (1.0 / (dh as f64).sqrt()))?;
    let k = split(k)?;
    let v = split(v)?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
    let probs = ops::softmax_last_dim(&scores)?;
    let probs = dropout(&probs, dropout_p, rng)?;
    let ctx = probs.matmul(&v)?;
    Ok(ctx.transpose(1, 2)?.reshape((b, s, h))?)
}

/// The post-LN transformer block BERT and DistilBERT share: self-attention, output projection,
/// residual + LayerNorm, then `Linear -> activation -> Linear`, residual + LayerNorm. Only the
/// parameter names differ (each architecture builds it), and whether hidden dropout follows the
/// attention's output projection (BERT: yes; DistilBERT: no).
#[derive(Debug, Clone)]
pub struct PostLnBlock {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Attention output projection.
    pub attn_out: Linear,
    /// LayerNorm after the attention residual.
    pub attn_ln: LayerNorm,
    /// FFN expansion (`hidden -> intermediate`).
    pub ffn_in: Linear,
    /// FFN contraction (`intermediate -> hidden`).
    pub ffn_out: Linear,
    /// LayerNorm after the FFN residual.
    pub out_ln: LayerNorm,
    /// Hidden dropout on the attention output projection before the residual.
    pub attn_out_dropout: bool,
}

impl PostLnBlock {
    /// Applies the block to `[b, s, hidden]` with the additive attention `bias`
    /// ([`attention_bias`]); dropout only when `rng` is given.
    pub fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        cfg: &ModelConfig,
        rng: &mut Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        let ctx = attention(
            &self.q.forward(x)?,
            &self.k.forward(x)?,
            &self.v.forward(x)?,
            bias,
            cfg.num_heads,
            cfg.attention_dropout,
            rng,
        )?;
        let mut a = self.attn_out.forward(&ctx)?;
        if self.attn_out_dropout {
            a = dropout(&a, cfg.hidden_dropout, rng)?;
        }
        let a = self.attn_ln.forward(&(a + x)?)?;
        let ff = activate(&self.ffn_in.forward(&a)?, cfg.activation)?;
        let ff = dropout(&self.ffn_out.forward(&ff)?, cfg.hidden_dropout, rng)?;
        self.out_ln.forward(&(ff + &a)?)
    }
}

/// Embedding rows for `[b, s]` u32 ids: `[b, s, hidden]`.
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, s) = ids.dims2()?;
    let h = table.dim(D::Minus1)?;
    let flat = ids.flatten_all()?;
    Ok(ops::embedding(table, &flat)?.reshape((b, s, h))?)
}

/// Position-embedding rows `0..s`: `[1, s, hidden]`.
pub fn positions(table: &Tensor, s: usize) -> Result<Tensor> {
    Ok(table.narrow(0, 0, s)?.unsqueeze(0)?)
}

/// How a fresh parameter is initialised (as transformers' `_init_weights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal(0, std).
    Normal,
    /// Normal(0, std) with the padding row zeroed.
    NormalPad(Option<u32>),
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// One parameter the architecture needs.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// HF name (canonical, with the `distilbert.`/`bert.` prefix for encoder weights).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Fresh init.
    pub init: Init,
    /// Part of the task head (may be absent from a base checkpoint).
    pub head: bool,
}

impl ParamSpec {
    /// A spec entry.
    pub fn new(name: impl Into<String>, shape: &[usize], init: Init, head: bool) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            init,
            head,
        }
    }
}

/// Pushes the weight + bias specs of a linear layer.
pub fn linear_specs(out: &mut Vec<ParamSpec>, name: &str, o: usize, i: usize, head: bool) {
    out.push(ParamSpec::new(
        format!("{name}.weight"),
        &[o, i],
        Init::Normal,
        head,
    ));
    out.push(ParamSpec::new(
        format!("{name}.bias"),
        &[o],
        Init::Zeros,
        head,
    ));
}

/// Pushes the gamma + beta specs of a LayerNorm.
pub fn layer_norm_specs(out: &mut Vec<ParamSpec>, name: &str, d: usize) {
    out.push(ParamSpec::new(
        format!("{name}.weight"),
        &[d],
        Init::Ones,
        false,
    ));
    out.push(ParamSpec::new(
        format!("{name}.bias"),
        &[d],
        Init::Zeros,
        false,
    ));
}

/// Draws a fresh tensor for `spec` from `rng`.
pub fn init_tensor(
    spec: &ParamSpec,
    std: f64,
    rng: &mut StdRng,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let v: Vec<f32> = match spec.init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal | Init::NormalPad(_) => {
            let normal = Normal::new(0.0f32, std as f32)
                .map_err(|e| Error::Input(format!("initializer_range {std}: {e}")))?;
            let mut v: Vec<f32> = (0..n).map(|_| normal.sample(rng)).collect();
            if let (Init::NormalPad(Some(pad)), Some(&cols)) = (spec.init, spec.shape.last()) {
                let start = pad as usize * cols;
                if let Some(row) = v.get_mut(start..start + cols) {
                    row.iter_mut().for_each(|x| *x = 0.0);
                }
            }
            v
        }
    };
    Ok(Tensor::from_vec(v, spec.shape.as_slice(), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// Read access to the model's variables by HF name.
pub struct Params<'a> {
    /// The variables.
    pub vars: &'a HashMap<String, Var>,
}

impl Params<'_> {
    /// The variable's tensor (sharing storage, so training updates are seen).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| Error::Input(format!("variable \"{name}\" is not in the VarMap")))
    }

    /// A linear layer `name.weight`/`name.bias`.
    pub fn linear(&self, name: &str) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{name}.weight"))?,
            bias: self.get(&format!("{name}.bias"))?,
        })
    }

    /// A LayerNorm `name.weight`/`name.bias`.
    pub fn layer_norm(&self, name: &str, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.weight"))?,
            bias: self.get(&format!("{name}.bias"))?,
            eps,
        })
    }
}
