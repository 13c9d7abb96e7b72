//! Multinomial logistic regression (softmax + cross-entropy, L2 on the weights but not the
//! intercepts, as scikit-learn's `LogisticRegression(C=..)`), fitted with L-BFGS in plain Rust f64.
//!
//! Objective: `mean_i CE(x_i, y_i) + ||W||^2 / (2 C n)`, which has the same minimizer as
//! sklearn's `C * sum_i CE + ||W||^2 / 2`.
use serde::{Deserialize, Serialize};

/// Fitting options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRegOptions {
    /// Inverse regularization strength (sklearn's `C`).
    pub c: f64,
    /// Maximum L-BFGS iterations (the book uses 3000).
    pub max_iter: usize,
    /// Stop when the largest absolute gradient entry falls below this.
    pub tol: f64,
    /// L-BFGS history length.
    pub history: usize,
}

impl Default for LogRegOptions {
    fn default() -> Self {
        LogRegOptions {
            c: 1.0,
            max_iter: 3000,
            tol: 1e-6,
            history: 10,
        }
    }
}

/// A fitted model: `scores = x W^T + b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    /// Weights, `[classes, dim]` row-major.
    pub weights: Vec<f64>,
    /// Intercepts, one per class.
    pub bias: Vec<f64>,
    /// Feature dimension.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
    /// Final objective value.
    pub objective: f64,
    /// Final max-abs gradient.
    pub grad_max: f64,
}

/// The data of one fit (features `[n, dim]` row-major).
struct Problem<'a> {
    x: &'a [f32],
    y: &'a [usize],
    n: usize,
    d: usize,
    k: usize,
    lambda: f64,
}

impl Problem<'_> {
    /// Objective and gradient at `p` = [W (k*d) | b (k)].
    fn eval(&self, p: &[f64], g: &mut [f64]) -> f64 {
        let (d, k) = (self.d, self.k);
        g.iter_mut().for_each(|v| *v = 0.0);
        let (w, b) = p.split_at(k * d);
        let mut loss = 0.0;
        let mut z = vec![0.0f64; k];
        for i in 0..self.n {
            let xi = &self.x[i * d..(i + 1) * d];
            for c in 0..k {
                let wc = &w[c * d..(c + 1) * d];
                z[c] = b[c]
                    + wc.iter()
                        .zip(xi)
                        .map(|(a, &x)| a * f64::from(x))
                        .sum::<f64>();
            }
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
            let lse = m + s.ln();
            loss += lse - z[self.y[i]];
            for c in 0..k {
                let coef = (z[c] - lse).exp() - f64::from(u8::from(c == self.y[i]));
                let gc = &mut g[c * d..(c + 1) * d];
                for (gv, &x) in gc.iter_mut().zip(xi) {
                    *gv += coef * f64::from(x);
                }
                g[k * d + c] += coef;
            }
        }
        let inv_n = 1.0 / self.n as f64;
        g.iter_mut().for_each(|v| *v *= inv_n);
        let mut reg = 0.0;
        for (gv, &wv) in g[..k * d].iter_mut().zip(w) {
            *gv += self.lambda * wv;
            reg += wv * wv;
        }
        loss * inv_n + 0.5 * self.lambda * reg
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

impl LogisticRegression {
    /// Fits on features `x` (`[y.len(), dim]` row-major) and labels `y < classes`.
    pub fn fit(
        x: &[f32],
        dim: usize,
        y: &[usize],
        classes: usize,
        opts: &LogRegOptions,
    ) -> crate::Result<Self> {
        let n = y.len();
        if n == 0 || dim == 0 || x.len() != n * dim {
            return Err(crate::TrainError::Options(format!(
                "logistic regression: {} features for {n} examples of dim {dim}",
                x.len()
            )));
        }
        if let Some(bad) = y.iter().find(|&&l| l >= classes) {
            return Err(crate::TrainError::Options(format!(
                "logistic regression: label {bad} >= {classes} classes"
            )));
        }
        let prob = Problem {
            x,
            y,
            n,
            d: dim,
            k: classes,
            lambda: 1.0 / (opts.c * n as f64),
        };
        let np = classes * dim + classes;
        let mut p = vec![0.0f64; np];
        let mut g = vec![0.0f64; np];
        let mut f = prob.eval(&p, &mut g);
        let mut s_hist: Vec<Vec<f64>> = Vec::new();
        let mut y_hist: Vec<Vec<f64>> = Vec::new();
        let mut iterations = 0;
        let mut converged = max_abs(&g) < opts.tol;
        let mut g_new = vec![0.0f64; np];
        let mut p_new = vec![0.0f64; np];
        while !converged && iterations < opts.max_iter {
            iterations += 1;
            // Two-loop recursion: direction = -H g.
            let mut q = g.clone();
            let mut alphas = Vec::with_capacity(s_hist.len());
            for (s, yv) in s_hist.iter().zip(&y_hist).rev() {
                let rho = 1.0 / dot(yv, s);
                let a = rho * dot(s, &q);
                q.iter_mut().zip(yv).for_each(|(qv, yy)| *qv -= a * yy);
                alphas.push((a, rho));
            }
            let gamma = match (s_hist.last(), y_hist.last()) {
                (Some(s), Some(yv)) => dot(s, yv) / dot(yv, yv),
                _ => 1.0 / max_abs(&g).max(1.0),
            };
            q.iter_mut().for_each(|v| *v *= gamma);
            for ((s, yv), (a, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
                let b = rho * dot(yv, &q);
                q.iter_mut().zip(s).for_each(|(qv, sv)| *qv += (a - b) * sv);
            }
            let mut dir: Vec<f64> = q.into_iter().map(|v| -v).collect();
            let mut slope = dot(&g, &dir);
            if slope >= 0.0 {
                // Not a descent direction: restart from steepest descent.
                s_hist.clear();
                y_hist.clear();
                dir = g.iter().map(|v| -v).collect();
                slope = dot(&g, &dir);
            }
            // Backtracking line search (Armijo).
            let mut step = 1.0;
            let mut f_new;
            loop {
                for ((pn, pv), dv) in p_new.iter_mut().zip(&p).zip(&dir) {
                    *pn = pv + step * dv;
                }
                f_new = prob.eval(&p_new, &mut g_new);
                if f_new <= f + 1e-4 * step * slope || step < 1e-12 {
                    break;
                }
                step *= 0.5;
            }
            if step < 1e-12 {
                // No progress possible at this precision.
                converged = max_abs(&g) < opts.tol * 10.0;
                break;
            }
            let s: Vec<f64> = p_new.iter().zip(&p).map(|(a, b)| a - b).collect();
            let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
            if dot(&s, &yv) > 1e-12 * dot(&yv, &yv).max(1e-300) {
                s_hist.push(s);
                y_hist.push(yv);
                if s_hist.len() > opts.history {
                    s_hist.remove(0);
                    y_hist.remove(0);
                }
            }
            std::mem::swap(&mut p, &mut p_new);
            std::mem::swap(&mut g, &mut g_new);
            f = f_new;
            converged = max_abs(&g) < opts.tol;
        }
        let grad_max = max_abs(&g);
        let bias = p.split_off(classes * dim);
        Ok(LogisticRegression {
            weights: p,
            bias,
            dim,
            classes,
            iterations,
            converged,
            objective: f,
            grad_max,
        })
    }

    /// Scores `[n, classes]` for features `[n, dim]`.
    pub fn decision(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() / self.dim.max(1) * self.classes);
        for xi in x.chunks(self.dim.max(1)) {
            for c in 0..self.classes {
                let wc = &self.weights[c * self.dim..(c + 1) * self.dim];
                let z = self.bias[c]
                    + wc.iter()
                        .zip(xi)
                        .map(|(a, &v)| a * f64::from(v))
                        .sum::<f64>();
                out.push(z as f32);
            }
        }
        out
    }

    /// Predicted class per row.
    pub fn predict(&self, x: &[f32]) -> Vec<usize> {
        crate::metrics::argmax_rows(&self.decision(x), self.classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn blobs(n: usize, d: usize, k: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..k * d).map(|_| rng.random_range(-3.0..3.0)).collect();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % k;
            y.push(c);
            for j in 0..d {
                x.push(centers[c * d + j] + spread * rng.random_range(-1.0f32..1.0));
            }
        }
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = blobs(30, 4, 3, 2.0, 1);
        let prob = Problem {
            x: &x,
            y: &y,
            n: 30,
            d: 4,
            k: 3,
            lambda: 0.05,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let p: Vec<f64> = (0..15).map(|_| rng.random_range(-0.5..0.5)).collect();
        let mut g = vec![0.0; 15];
        prob.eval(&p, &mut g);
        let mut scratch = vec![0.0; 15];
        for i in 0..15 {
            let h = 1e-6;
            let mut a = p.clone();
            a[i] += h;
            let fa = prob.eval(&a, &mut scratch);
            a[i] -= 2.0 * h;
            let fb = prob.eval(&a, &mut scratch);
            let num = (fa - fb) / (2.0 * h);
            assert!(
                (num - g[i]).abs() < 1e-6,
                "param {i}: numeric {num} analytic {}",
                g[i]
            );
        }
    }

    #[test]
    fn converges_on_separable_data() {
        let (x, y) = blobs(300, 8, 4, 0.5, 3);
        let m = LogisticRegression::fit(&x, 8, &y, 4, &LogRegOptions::default()).expect("fit");
        assert!(
            m.converged,
            "not converged: grad {} after {}",
            m.grad_max, m.iterations
        );
        assert!(m.grad_max < 1e-6);
        let acc = m.predict(&x).iter().zip(&y).filter(|(a, b)| a == b).count();
        assert_eq!(acc, 300);
    }

    #[test]
    fn overlapping_data_reaches_a_stationary_point() {
        let (x, y) = blobs(400, 5, 3, 4.0, 4);
        let m = LogisticRegression::fit(&x, 5, &y, 3, &LogRegOptions::default()).expect("fit");
        assert!(m.converged);
        // The optimum is unique (strictly convex in W, convex in b): re-check the gradient from scratch.
        let prob = Problem {
            x: &x,
            y: &y,
            n: 400,
            d: 5,
            k: 3,
            lambda: 1.0 / 400.0,
        };
        let mut p = m.weights.clone();
        p.extend_from_slice(&m.bias);
        let mut g = vec![0.0; p.len()];
        let f = prob.eval(&p, &mut g);
        assert!(max_abs(&g) < 1e-6 && (f - m.objective).abs() < 1e-9);
        let acc = m.predict(&x).iter().zip(&y).filter(|(a, b)| a == b).count();
        assert!(acc > 200 && acc < 400, "acc {acc}");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(
            LogisticRegression::fit(&[1.0; 5], 2, &[0, 1], 2, &LogRegOptions::default()).is_err()
        );
        assert!(
            LogisticRegression::fit(&[1.0; 4], 2, &[0, 2], 2, &LogRegOptions::default()).is_err()
        );
    }
}
