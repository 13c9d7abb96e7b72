//! Finite-difference checks of every op with a hand-written backward (LayerNorm w.r.t. input,
//! gamma and beta; softmax; exact GELU), in f64, plus agreement of the custom ops with their
//! composed (differentiable-candle-op) fallbacks used off-CPU.

use candle_core::{DType, Device, Tensor, Var};
use edgebert_models::ops::{
    gelu_erf, layer_norm, layer_norm_composed, softmax_last_dim, softmax_last_dim_composed,
};

const EPS: f64 = 1e-6;

fn randn(shape: &[usize], seed: u64, scale: f64) -> anyhow::Result<Tensor> {
    // Small deterministic LCG so the test does not depend on candle's unseedable CPU RNG.
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Central-difference gradient of `f` at `x`.
fn numeric_grad(
    x: &Tensor,
    f: &dyn Fn(&Tensor) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<f64>> {
    let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let mut g = Vec::with_capacity(base.len());
    for i in 0..base.len() {
        let mut p = base.clone();
        p[i] += EPS;
        let mut m = base.clone();
        m[i] -= EPS;
        let fp = f(&Tensor::from_vec(p, x.shape(), &Device::Cpu)?)?;
        let fm = f(&Tensor::from_vec(m, x.shape(), &Device::Cpu)?)?;
        g.push((fp - fm) / (2.0 * EPS));
    }
    Ok(g)
}

fn assert_close(what: &str, analytic: &Tensor, numeric: &[f64]) -> anyhow::Result<()> {
    let a: Vec<f64> = analytic.flatten_all()?.to_vec1()?;
    assert_eq!(a.len(), numeric.len(), "{what}: length");
    let scale = numeric.iter().fold(0f64, |m, x| m.max(x.abs()));
    assert!(scale > 1e-3, "{what}: degenerate gradient");
    for (i, (x, y)) in a.iter().zip(numeric).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6 * scale.max(1.0),
            "{what}[{i}]: analytic {x} vs numeric {y}"
        );
    }
    Ok(())
}

#[test]
fn layer_norm_backward_matches_finite_differences() -> anyhow::Result<()> {
    let eps = 1e-5;
    // Rows of different scale and offset; 3-D input as in the model.
    let x0 = (randn(&[2, 3, 7], 1, 2.0)? + 0.5)?;
    let g0 = (randn(&[7], 2, 0.5)? + 1.0)?;
    let b0 = randn(&[7], 3, 0.5)?;
    let w = randn(&[2, 3, 7], 4, 1.0)?;
    let loss = |x: &Tensor, g: &Tensor, b: &Tensor| -> anyhow::Result<f64> {
        Ok((layer_norm(x, g, b, eps)? * &w)?
            .sum_all()?
            .to_scalar::<f64>()?)
    };
    let (x, g, b) = (
        Var::from_tensor(&x0)?,
        Var::from_tensor(&g0)?,
        Var::from_tensor(&b0)?,
    );
    let y = layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), eps)?;
    let grads = (y * &w)?.sum_all()?.backward()?;
    let gx = grads
        .get(&x)
        .ok_or_else(|| anyhow::anyhow!("no grad for x"))?;
    let gg = grads
        .get(&g)
        .ok_or_else(|| anyhow::anyhow!("no grad for gamma"))?;
    let gb = grads
        .get(&b)
        .ok_or_else(|| anyhow::anyhow!("no grad for beta"))?;
    assert_close("dx", gx, &numeric_grad(&x0, &|x| loss(x, &g0, &b0))?)?;
    assert_close("dgamma", gg, &numeric_grad(&g0, &|g| loss(&x0, g, &b0))?)?;
    assert_close("dbeta", gb, &numeric_grad(&b0, &|b| loss(&x0, &g0, b))?)?;
    Ok(())
}

#[test]
fn layer_norm_large_input_uses_parallel_path_and_matches_composed() -> anyhow::Result<()> {
    // 64*32 rows of 384: above the parallel threshold; f32 as in training.
    let x0 = randn(&[64, 32, 384], 5, 3.0)?.to_dtype(DType::F32)?;
    let g0 = (randn(&[384], 6, 0.5)? + 1.0)?.to_dtype(DType::F32)?;
    let b0 = randn(&[384], 7, 0.5)?.to_dtype(DType::F32)?;
    let w = randn(&[64, 32, 384], 8, 1.0)?.to_dtype(DType::F32)?;
    let mut results = Vec::new();
    for composed in [false, true] {
        let (x, g, b) = (
            Var::from_tensor(&x0)?,
            Var::from_tensor(&g0)?,
            Var::from_tensor(&b0)?,
        );
        let y = if composed {
            layer_norm_composed(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-12)?
        } else {
            layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-12)?
        };
        let grads = (&y * &w)?.sum_all()?.backward()?;
        let get = |v: &Var| {
            grads
                .get(v)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("missing grad"))
        };
        results.push((y, get(&x)?, get(&g)?, get(&b)?));
    }
    let (a, c) = (&results[0], &results[1]);
    for (name, p, q, tol) in [
        ("y", &a.0, &c.0, 1e-5),
        ("dx", &a.1, &c.1, 1e-4),
        ("dgamma", &a.2, &c.2, 2e-2),
        ("dbeta", &a.3, &c.3, 2e-2),
    ] {
        let d = (p - q)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d <= tol, "{name}: custom vs composed differ by {d}");
    }
    Ok(())
}

#[test]
fn softmax_backward_matches_finite_differences() -> anyhow::Result<()> {
    let x0 = randn(&[2, 2, 3, 5], 11, 3.0)?;
    let w = randn(&[2, 2, 3, 5], 12, 1.0)?;
    let loss = |x: &Tensor| -> anyhow::Result<f64> {
        Ok((softmax_last_dim(x)? * &w)?.sum_all()?.to_scalar::<f64>()?)
    };
    let x = Var::from_tensor(&x0)?;
    let grads = (softmax_last_dim(x.as_tensor())? * &w)?
        .sum_all()?
        .backward()?;
    let gx = grads
        .get(&x)
        .ok_or_else(|| anyhow::anyhow!("no grad for x"))?;
    assert_close("softmax dx", gx, &numeric_grad(&x0, &loss)?)?;
    // Same forward and backward as the composed fallback.
    let xc = Var::from_tensor(&x0)?;
    let yc = softmax_last_dim_composed(xc.as_tensor())?;
    let gc = (&yc * &w)?.sum_all()?.backward()?;
    let gxc = gc
        .get(&xc)
        .ok_or_else(|| anyhow::anyhow!("no grad for composed x"))?;
    let dy = (softmax_last_dim(&x0)? - yc)?
        .abs()?
        .max_all()?
        .to_scalar::<f64>()?;
    let dg = (gx - gxc)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(
        dy < 1e-12 && dg < 1e-12,
        "custom vs composed: y {dy}, grad {dg}"
    );
    Ok(())
}

#[test]
fn softmax_handles_masked_rows_and_large_values() -> anyhow::Result<()> {
    let x = Tensor::new(
        &[[1000f32, 0.0, f32::MIN], [f32::MIN, 2.0, 2.0]],
        &Device::Cpu,
    )?;
    let y: Vec<Vec<f32>> = softmax_last_dim(&x)?.to_vec2()?;
    assert_eq!(y[0], vec![1.0, 0.0, 0.0]);
    assert!((y[1][1] - 0.5).abs() < 1e-7 && y[1][0] == 0.0);
    Ok(())
}

#[test]
fn gelu_backward_matches_finite_differences_and_candles_gelu() -> anyhow::Result<()> {
    // Spans both tails and zero; 3-D as in the model.
    let x0 = randn(&[2, 3, 9], 11, 4.0)?;
    let w = randn(&[2, 3, 9], 12, 1.0)?;
    let loss = |x: &Tensor| -> anyhow::Result<f64> {
        Ok((gelu_erf(x)? * &w)?.sum_all()?.to_scalar::<f64>()?)
    };
    let x = Var::from_tensor(&x0)?;
    let grads = (gelu_erf(x.as_tensor())? * &w)?.sum_all()?.backward()?;
    let gx = grads
        .get(&x)
        .ok_or_else(|| anyhow::anyhow!("no grad for x"))?;
    assert_close("gelu dx", gx, &numeric_grad(&x0, &loss)?)?;

    // In f64 the forward is candle's formula exactly; the gradient agrees with candle's composed
    // one (which rounds 1/sqrt(2 pi) to 0.398942).
    let xc = Var::from_tensor(&x0)?;
    let yc = xc.as_tensor().gelu_erf()?;
    let gc = (&yc * &w)?.sum_all()?.backward()?;
    let gxc = gc
        .get(&xc)
        .ok_or_else(|| anyhow::anyhow!("no grad for candle's x"))?;
    let dy = (gelu_erf(&x0)? - yc)?
        .abs()?
        .max_all()?
        .to_scalar::<f64>()?;
    let dg = (gx - gxc)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(
        dy == 0.0 && dg < 1e-6,
        "custom vs candle: y {dy}, grad {dg}"
    );
    Ok(())
}

#[test]
fn gelu_large_f32_input_uses_parallel_path_and_matches_candle() -> anyhow::Result<()> {
    // Above the parallel threshold, not a multiple of the chunk size, non-contiguous input.
    let x = randn(&[70, 613], 13, 5.0)?.to_dtype(DType::F32)?.t()?;
    let w = randn(&[613, 70], 14, 1.0)?.to_dtype(DType::F32)?;
    let ours = Var::from_tensor(&x)?;
    let theirs = Var::from_tensor(&x)?;
    let y = gelu_erf(ours.as_tensor())?;
    let yc = theirs.as_tensor().gelu_erf()?;
    // f32 uses a rational erf (|error| < 5e-7), so y = x Φ(x) may differ by up to ~2.5e-7 |x|.
    let dy = ((&y - &yc)?.abs()? / x.abs()?.maximum(1.0)?)?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(
        dy < 5e-7,
        "custom vs candle forward, relative to max(1, |x|): {dy}"
    );
    let g = (y * &w)?.sum_all()?.backward()?;
    let gc = (yc * &w)?.sum_all()?.backward()?;
    let (g, gc) = (
        g.get(&ours).ok_or_else(|| anyhow::anyhow!("no grad"))?,
        gc.get(&theirs).ok_or_else(|| anyhow::anyhow!("no grad"))?,
    );
    let dg = (g - gc)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(dg < 1e-5, "custom vs candle grad: {dg}");
    Ok(())
}
