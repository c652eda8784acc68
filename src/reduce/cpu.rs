//! CPU reductions: the fast backend (rayon, f64 accumulation in eight lanes) and the f64
//! reference with the error bound each GPU result must meet.

use rayon::prelude::*;

use super::plan::{sum_terms, ReduceOp, ReducePlan};
use crate::error::{Error, Result};
use crate::reference::{gamma, F32_UNIT_ROUNDOFF};

/// The result of a CPU reduction.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// f32 values (every op but argmax/argmin).
    Values(Vec<f32>),
    /// u32 indices (argmax/argmin).
    Indices(Vec<u32>),
}

/// One lane of the reduced axis: `len` elements `stride` apart.
#[derive(Clone, Copy)]
struct Lane<'a> {
    xs: &'a [f32],
    base: usize,
    len: usize,
    stride: usize,
}

impl Lane<'_> {
    fn get(&self, k: usize) -> f32 {
        self.xs[self.base + k * self.stride]
    }

    /// Σ f(x) in f64: eight independent lanes (vectorisable), chunks in parallel when long.
    fn sum<F: Fn(f32) -> f64 + Sync>(&self, f: &F) -> f64 {
        if self.stride == 1 {
            let s = &self.xs[self.base..self.base + self.len];
            if s.len() >= 1 << 18 {
                return s.par_chunks(1 << 16).map(|c| sum8(c, f)).sum();
            }
            return sum8(s, f);
        }
        (0..self.len).map(|k| f(self.get(k))).sum()
    }

    /// (index, value) of the max (or min): first of ties, first NaN.
    fn extreme(&self, min: bool) -> (u32, f32) {
        if self.len == 0 {
            return (
                0,
                if min {
                    f32::INFINITY
                } else {
                    f32::NEG_INFINITY
                },
            );
        }
        let mut best = (0usize, self.get(0));
        for k in 1..self.len {
            if best.1.is_nan() {
                break;
            }
            let v = self.get(k);
            let better = if min { v < best.1 } else { v > best.1 };
            if v.is_nan() || better {
                best = (k, v);
            }
        }
        (best.0 as u32, best.1)
    }

    /// The max, as the exp shift of softmax: `finite_only` maps ±inf/NaN to 0.
    fn shift(&self, finite_only: bool) -> f64 {
        let m = f64::from(self.extreme(false).1);
        if finite_only && !m.is_finite() {
            0.0
        } else {
            m
        }
    }
}

fn sum8<F: Fn(f32) -> f64>(s: &[f32], f: &F) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    acc.iter().sum::<f64>() + tail
}

fn lanes<'a>(plan: &ReducePlan, xs: &'a [f32]) -> Vec<Lane<'a>> {
    (0..plan.outputs())
        .map(|q| Lane {
            xs,
            base: (q / plan.inner) * plan.len * plan.inner + q % plan.inner,
            len: plan.len,
            stride: plan.inner,
        })
        .collect()
}

/// The f64 value of a (non-arg, non-normalising) reduction of one lane.
fn lane_value(op: ReduceOp, lane: &Lane, ddof: usize) -> f64 {
    let n = lane.len as f64;
    match op {
        ReduceOp::Sum => lane.sum(&|v| f64::from(v)),
        ReduceOp::Mean => lane.sum(&|v| f64::from(v)) / n,
        ReduceOp::Norm => lane.sum(&|v| f64::from(v) * f64::from(v)).sqrt(),
        ReduceOp::Var => {
            let mean = lane.sum(&|v| f64::from(v)) / n;
            lane.sum(&|v| (f64::from(v) - mean).powi(2)) / (lane.len.saturating_sub(ddof)) as f64
        }
        ReduceOp::LogSumExp => {
            let sh = lane.shift(true);
            lane.sum(&|v| (f64::from(v) - sh).exp()).ln() + sh
        }
        ReduceOp::Max | ReduceOp::Min => f64::from(lane.extreme(op == ReduceOp::Min).1),
        _ => f64::NAN,
    }
}

/// Softmax / log-softmax of one lane, in f64, written to `out` at the lane's positions.
fn normalize_lane(op: ReduceOp, lane: &Lane) -> Vec<f64> {
    let log = op == ReduceOp::LogSoftmax;
    let sh = lane.shift(log);
    let s = lane.sum(&|v| (f64::from(v) - sh).exp());
    (0..lane.len)
        .map(|k| {
            let t = f64::from(lane.get(k)) - sh;
            if log {
                t - s.ln()
            } else {
                t.exp() / s
            }
        })
        .collect()
}

/// The fast CPU backend: f64 accumulation, outputs in parallel (long lanes in parallel chunks).
pub fn fast(plan: &ReducePlan, xs: &[f32]) -> Output {
    let ls = lanes(plan, xs);
    if plan.op.is_arg() {
        if plan.len == 0 {
            return Output::Indices(vec![0; plan.outputs()]);
        }
        let min = plan.op == ReduceOp::Argmin;
        return Output::Indices(ls.par_iter().map(|l| l.extreme(min).0).collect());
    }
    if plan.op.is_normalization() {
        let mut out = vec![0.0f32; plan.elements()];
        let rows: Vec<Vec<f64>> = ls.par_iter().map(|l| normalize_lane(plan.op, l)).collect();
        for (l, r) in ls.iter().zip(rows) {
            for (k, v) in r.into_iter().enumerate() {
                out[l.base + k * l.stride] = v as f32;
            }
        }
        return Output::Values(out);
    }
    if plan.len == 0 {
        return Output::Values(vec![plan.empty_value(); plan.outputs()]);
    }
    Output::Values(
        ls.par_iter()
            .map(|l| lane_value(plan.op, l, plan.ddof) as f32)
            .collect(),
    )
}

/// The f64 result of a reduction with the error each element may have on the GPU.
#[derive(Clone, Debug)]
pub struct ReduceReference {
    /// Result shape.
    pub shape: Vec<usize>,
    /// f64 values (empty for argmax/argmin).
    pub values: Vec<f64>,
    /// Indices (argmax/argmin only).
    pub indices: Vec<u32>,
    /// Largest allowed |computed − exact| per element.
    pub bounds: Vec<f64>,
}

/// Relative error budget of exp(t) in f32 (WGSL allows 3 + 2|t| ulp) plus the rounding of t.
fn exp_rel(t: f64) -> f64 {
    let u = F32_UNIT_ROUNDOFF;
    (5.0 + 3.0 * t.abs()) * u
}

/// Accuracy of WGSL's log: 2⁻²¹ absolute on [0.5, 2], 3 ulp elsewhere.
fn log_abs(s: f64) -> f64 {
    2f64.powi(-21) + 3.0 * F32_UNIT_ROUNDOFF * s.ln().abs()
}

/// Builds the f64 reference of `plan` on `xs` (the f32 inputs) with its error bounds.
///
/// Bounds (u = 2⁻²⁴, k = [`sum_terms`]`(len)`, floors for lavapipe's flushed subnormals):
/// sum γ_k·Σ|x|; mean that over n; norm (γ_{k+1} + 2u)·‖x‖ + √(n·f32::MIN_POSITIVE); var from
/// the mean's bound δ through Σ(2|x−μ|e + e²) + γ_{k+3}·Σ(|x−μ|+δ)², e = δ + u(|x−μ|+δ);
/// logsumexp, softmax and log-softmax from exp's and log's WGSL accuracy, plus 1e-6.
pub fn reference(plan: &ReducePlan, xs: &[f32]) -> ReduceReference {
    let u = F32_UNIT_ROUNDOFF;
    let min_pos = f64::from(f32::MIN_POSITIVE);
    let n = plan.len as f64;
    let k = sum_terms(plan.len);
    let g = gamma(k);
    let ls = lanes(plan, xs);
    let mut r = ReduceReference {
        shape: plan.out_shape.clone(),
        values: Vec::new(),
        indices: Vec::new(),
        bounds: Vec::new(),
    };
    if plan.op.is_arg() {
        let min = plan.op == ReduceOp::Argmin;
        r.indices = ls.iter().map(|l| l.extreme(min).0).collect();
        return r;
    }
    if plan.op.is_normalization() {
        let log = plan.op == ReduceOp::LogSoftmax;
        r.values = vec![0.0; plan.elements()];
        r.bounds = vec![0.0; plan.elements()];
        for l in &ls {
            let sh = l.shift(log);
            let s = l.sum(&|v| (f64::from(v) - sh).exp());
            let rho = (l.sum(&|v| {
                let t = f64::from(v) - sh;
                t.exp() * exp_rel(t)
            }) / s
                + g)
                * 1.01;
            for kk in 0..l.len {
                let t = f64::from(l.get(kk)) - sh;
                let i = l.base + kk * l.stride;
                let (v, b) = if log {
                    let v = t - s.ln();
                    (v, u * t.abs() * 1.01 + rho + log_abs(s) + 2.0 * u * v.abs())
                } else {
                    let v = t.exp() / s;
                    (v, v * (exp_rel(t) + rho + 2.0 * u))
                };
                r.values[i] = v;
                r.bounds[i] = b + 1e-6;
            }
        }
        return r;
    }
    if plan.len == 0 {
        r.values = vec![f64::from(plan.empty_value()); plan.outputs()];
        r.bounds = vec![0.0; plan.outputs()];
        return r;
    }
    for l in &ls {
        let v = lane_value(plan.op, l, plan.ddof);
        let abs_sum = l.sum(&|x| f64::from(x).abs());
        let floor = n * min_pos;
        let b = match plan.op {
            ReduceOp::Sum => g * abs_sum + floor + u * v.abs(),
            ReduceOp::Mean => (g * abs_sum + floor) / n + 2.0 * u * v.abs(),
            ReduceOp::Norm => (gamma(k + 1) + 2.0 * u) * v + (n * min_pos).sqrt(),
            ReduceOp::Var => {
                let mu = l.sum(&|x| f64::from(x)) / n;
                let delta = (g * abs_sum + floor) / n + 2.0 * u * mu.abs();
                let err = l.sum(&|x| {
                    let a = (f64::from(x) - mu).abs() + delta;
                    let e = delta + u * a;
                    2.0 * (a - delta) * e + e * e + gamma(k + 3) * a * a * 1.01
                });
                let div = l.len.saturating_sub(plan.ddof) as f64;
                (err + floor) / div + u * v.abs()
            }
            ReduceOp::LogSumExp => {
                let sh = l.shift(true);
                let s = l.sum(&|x| (f64::from(x) - sh).exp());
                let rho = (l.sum(&|x| {
                    let t = f64::from(x) - sh;
                    t.exp() * exp_rel(t)
                }) / s
                    + g)
                    * 1.01;
                rho + log_abs(s) + 2.0 * u * (v.abs() + sh.abs()) + 1e-6
            }
            _ => 0.0,
        };
        r.values.push(v);
        r.bounds.push(b);
    }
    r
}

impl ReduceReference {
    /// Checks f32 results: NaN where the reference is NaN, equal infinities (or an f32
    /// overflow of a huge finite value), |got − exact| within the bound elsewhere. The error
    /// names the worst element.
    pub fn check(&self, got: &[f32]) -> Result<()> {
        crate::reference::check_against(&self.shape, got, &self.values, |i| self.bounds[i])
    }

    /// [`Self::check`] for a result stored in `dtype` (plus half an ulp of that type).
    pub fn check_in(&self, got: &[f32], dtype: crate::DType) -> crate::error::Result<()> {
        crate::reference::check_against_in(
            &self.shape,
            got,
            &self.values,
            |i| self.bounds[i],
            dtype,
        )
    }

    /// Checks argmax/argmin indices: they must be equal.
    pub fn check_indices(&self, got: &[u32]) -> Result<()> {
        if got != self.indices.as_slice() {
            let i = got
                .iter()
                .zip(&self.indices)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(self.indices.len()));
            return Err(Error::Verification(format!(
                "index result differs at element {i} (result shape {:?}): got {:?}, expected {:?}",
                self.shape,
                got.get(i),
                self.indices.get(i)
            )));
        }
        Ok(())
    }
}
