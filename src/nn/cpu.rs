//! CPU training ops: activation backward, losses, row sums and optimizer updates — the CPU
//! backend's path and the reference the GPU kernels are tested against.

use rayon::prelude::*;

use super::plan::OptimizerKind;
use crate::activation::Activation;

/// d act / dz at `z` (f64).
pub fn act_grad_f64(act: Activation, z: f64) -> f64 {
    let pdf = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    match act {
        Activation::None => 1.0,
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Gelu => 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2)) + z * pdf(z),
        Activation::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let u = k * (z + 0.044715 * z * z * z);
            let t = u.tanh();
            0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * z * z)
        }
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s)
        }
        Activation::Tanh => 1.0 - z.tanh().powi(2),
    }
}

/// `dy ⊙ act'(z)`.
pub fn act_backward(z: &[f32], dy: &[f32], act: Activation) -> Vec<f32> {
    z.par_iter()
        .zip(dy)
        .map(|(&z, &d)| (f64::from(d) * act_grad_f64(act, f64::from(z))) as f32)
        .collect()
}

/// `scale · Σ_rows x[r, j]` for each column j of a row-major `rows × cols` array (f64 sums).
pub fn col_sum(x: &[f32], rows: usize, cols: usize, scale: f64) -> Vec<f32> {
    let mut acc = vec![0.0f64; cols];
    for row in x.chunks(cols.max(1)).take(rows) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
    acc.into_iter().map(|a| (scale * a) as f32).collect()
}

/// Mean (or summed, by `scale`) squared error, f64-accumulated, and on request its gradient
/// `2·scale·(p − t)`. `scale` is 1/N for the mean (NaN when N = 0, as PyTorch).
pub fn mse(p: &[f32], t: &[f32], scale: f64, grad: bool) -> (f32, Option<Vec<f32>>) {
    let s: f64 = p
        .par_iter()
        .zip(t)
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum();
    let g = grad.then(|| {
        p.par_iter()
            .zip(t)
            .map(|(&a, &b)| (2.0 * scale * (f64::from(a) - f64::from(b))) as f32)
            .collect()
    });
    ((scale * s) as f32, g)
}

/// Targets of [`cross_entropy`].
#[derive(Clone, Copy, Debug)]
pub enum CeTargets<'a> {
    /// One class index per row.
    Classes(&'a [u32]),
    /// Probabilities, row-major like the logits.
    Probabilities(&'a [f32]),
}

/// Cross-entropy with logits (`rows × cols`), f64 inside: `scale · Σ_rows (lse·Σt − Σ t·x)`,
/// and on request the gradient `scale · (softmax·Σt − t)`. An out-of-range class gives NaN.
pub fn cross_entropy(
    x: &[f32],
    rows: usize,
    cols: usize,
    targets: CeTargets,
    scale: f64,
    grad: bool,
) -> (f32, Option<Vec<f32>>) {
    let mut total = 0.0f64;
    let mut g = grad.then(|| vec![0.0f32; rows * cols]);
    for r in 0..rows {
        if cols == 0 {
            break;
        }
        let row = &x[r * cols..(r + 1) * cols];
        let mx = row.iter().fold(f64::NEG_INFINITY, |m, &v| {
            let v = f64::from(v);
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        });
        let se: f64 = row.iter().map(|&v| (f64::from(v) - mx).exp()).sum();
        let lse = se.ln();
        let t_at = |j: usize| -> f64 {
            match targets {
                CeTargets::Classes(c) => f64::from(u8::from(c[r] as usize == j)),
                CeTargets::Probabilities(p) => f64::from(p[r * cols + j]),
            }
        };
        let bad = matches!(targets, CeTargets::Classes(c) if c[r] as usize >= cols);
        let (tsum, tx) = (0..cols).fold((0.0, 0.0), |(s, sx), j| {
            let t = t_at(j);
            (s + t, sx + t * (f64::from(row[j]) - mx))
        });
        total += if bad { f64::NAN } else { lse * tsum - tx };
        if let Some(g) = g.as_mut() {
            for j in 0..cols {
                let sm = (f64::from(row[j]) - mx).exp() / se;
                g[r * cols + j] = if bad {
                    f32::NAN
                } else {
                    (scale * (sm * tsum - t_at(j))) as f32
                };
            }
        }
    }
    // An empty batch: the mean is NaN (scale = 1/0), the sum 0, as PyTorch.
    ((scale * total) as f32, g)
}

/// One optimizer update: returns the new parameter and state (velocity, or Adam's m and v).
pub fn optimizer_step(
    kind: OptimizerKind,
    t: i32,
    p: &[f32],
    g: &[f32],
    state: &[Vec<f32>],
) -> (Vec<f32>, Vec<Vec<f32>>) {
    match kind {
        OptimizerKind::Sgd {
            lr,
            momentum,
            weight_decay,
        } => {
            let v: Vec<f32> = state[0]
                .iter()
                .zip(g)
                .zip(p)
                .map(|((&v, &g), &p)| momentum * v + (g + weight_decay * p))
                .collect();
            let np = p.iter().zip(&v).map(|(&p, &v)| p - lr * v).collect();
            (np, vec![v])
        }
        OptimizerKind::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
            let mut m = state[0].clone();
            let mut v = state[1].clone();
            let mut np = p.to_vec();
            for i in 0..p.len() {
                let gi = g[i] + weight_decay * p[i];
                m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
                v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                np[i] = p[i] - lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            }
            (np, vec![m, v])
        }
    }
}
