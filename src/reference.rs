//! Numeric references shared by every family's CPU path: the f32 error bound γ_k, the f64
//! reference result type and its checker, and LAPACK's residual ratios.

use crate::activation::Activation;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// ε of LAPACK's driver-test ratios: 2⁻²³ (LAPACK's "precision" for f32).
pub const RATIO_EPS: f64 = 1.0 / 8_388_608.0;

/// Unit roundoff of f32, 2⁻²⁴.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// γ_k = k·u / (1 − k·u) with u = 2⁻²⁴: the classical bound on the relative error of a
/// length-k dot product in f32, whatever the summation order.
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * F32_UNIT_ROUNDOFF;
    if ku >= 1.0 {
        f64::INFINITY
    } else {
        ku / (1.0 - ku)
    }
}

/// The exact (f64) result of an op on f32 inputs, with what its error bound needs.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Result shape.
    pub shape: Vec<usize>,
    /// f64 values, after bias and activation.
    pub values: Vec<f64>,
    /// Σ|a·b| (+ |bias|) per element, before the activation.
    pub magnitudes: Vec<f64>,
    /// Terms summed per element: k (+1 with a bias).
    pub terms: usize,
    /// The activation applied.
    pub activation: Activation,
}

impl Reference {
    /// The largest error DESIGN.md allows at element `i`:
    /// L·γ_terms·magnitude (+ a few ulp and 1e-6 after a transcendental activation).
    pub fn bound(&self, i: usize) -> f64 {
        let lin = self.activation.lipschitz() * gamma(self.terms) * self.magnitudes[i]
            + self.terms as f64 * f64::from(f32::MIN_POSITIVE);
        let u = F32_UNIT_ROUNDOFF;
        match self.activation {
            Activation::None | Activation::Relu => lin + u * self.values[i].abs(),
            _ => lin + 4.0 * u * self.values[i].abs() + 1e-6,
        }
    }

    /// Checks `got` element by element: NaN where the reference is NaN, equal infinities,
    /// and |got − exact| within [`Reference::bound`] elsewhere. The error names the worst
    /// element.
    pub fn check(&self, got: &[f32]) -> Result<()> {
        check_against(&self.shape, got, &self.values, |i| self.bound(i))
    }

    /// [`Reference::check`] for a result stored in `dtype`: the bound plus half an ulp of that
    /// type at the bound's edge (the rounding of the f32 result; nothing more for float32).
    /// The reference must be computed on the operands as rounded to their types.
    pub fn check_in(&self, got: &[f32], dtype: DType) -> Result<()> {
        check_against_in(&self.shape, got, &self.values, |i| self.bound(i), dtype)
    }
}

/// [`check_against`] for a result stored in `dtype`: each bound plus half an ulp of that type
/// at the bound's edge (the rounding of the f32 result; nothing more for float32).
pub fn check_against_in(
    shape: &[usize],
    got: &[f32],
    values: &[f64],
    bound: impl Fn(usize) -> f64,
    dtype: DType,
) -> Result<()> {
    check_against(shape, got, values, |i| {
        let b = bound(i);
        b + half_ulp(dtype, values[i].abs() + b)
    })
}

/// Half an ulp of a value of magnitude `x` in `dtype` (0 for float32 and uint32): the most
/// that rounding an f32 result of that size to float16 (11 significant bits, subnormals from
/// 2⁻¹⁴) or bfloat16 (8 bits, f32's exponent range) changes it.
pub fn half_ulp(dtype: DType, x: f64) -> f64 {
    let (bits, min_exp) = match dtype {
        DType::F16 => (11, -14),
        DType::BF16 => (8, -126),
        _ => return 0.0,
    };
    if !x.is_finite() || x == 0.0 {
        return if x == 0.0 { 0.0 } else { f64::INFINITY };
    }
    let e = (x.log2().floor() as i32).max(min_exp);
    0.5 * 2f64.powi(e - (bits - 1))
}

/// Checks `got` against exact f64 `values` with a per-element error bound: NaN exactly where
/// the reference is NaN, equal infinities (or an f32 overflow of a finite value within the
/// bound of f32::MAX, same sign), and |got − exact| ≤ bound elsewhere. The error names the
/// worst element. Every reference type of the CPU path checks through this.
pub fn check_against(
    shape: &[usize],
    got: &[f32],
    values: &[f64],
    bound: impl Fn(usize) -> f64,
) -> Result<()> {
    if got.len() != values.len() {
        return Err(Error::Verification(format!(
            "result has {} elements, reference {} (shape {shape:?})",
            got.len(),
            values.len()
        )));
    }
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &e)) in got.iter().zip(values).enumerate() {
        let g = f64::from(g);
        let b = bound(i);
        let bad = if e.is_nan() || g.is_nan() {
            e.is_nan() != g.is_nan()
        } else if e.is_infinite() || g.is_infinite() {
            // f32 may overflow where f64 did not.
            !(e == g
                || (g.is_infinite()
                    && g.signum() == e.signum()
                    && e.abs() + b >= f64::from(f32::MAX)))
        } else {
            (g - e).abs() > b
        };
        if bad {
            let ratio = if b > 0.0 {
                (g - e).abs() / b
            } else {
                f64::INFINITY
            };
            if worst.is_none_or(|(_, r)| ratio > r || ratio.is_nan()) {
                worst = Some((i, ratio));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, ratio)) => Err(Error::Verification(format!(
            "element {i} (flat index, result shape {shape:?}) is {} but the f64 reference is {} \
             (allowed error {:.3e}, {ratio:.1}× over)",
            got[i],
            values[i],
            bound(i)
        ))),
    }
}

/// The 1-norm (largest absolute column sum) of the `rows × cols` matrix whose (i, j) entry is
/// `f(i, j)`, in f64: what LAPACK's driver-test ratios measure with.
pub(crate) fn norm1(rows: usize, cols: usize, f: &dyn Fn(usize, usize) -> f64) -> f64 {
    (0..cols)
        .map(|j| (0..rows).map(|i| f(i, j).abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// LAPACK's driver-test residual ratio ‖A − (factors)‖₁/(‖A‖₁·dim·ε), ε = 2⁻²³, from the two
/// 1-norms; where ‖A‖ = 0 it is 0 for a zero residual and 1/ε otherwise.
pub(crate) fn residual_ratio(resid: f64, anorm: f64, dim: usize) -> f64 {
    let eps = RATIO_EPS;
    if anorm == 0.0 {
        if resid == 0.0 {
            0.0
        } else {
            1.0 / eps
        }
    } else {
        resid / (anorm * dim as f64 * eps)
    }
}

/// The exponent e that brings `max` into [0.5, 1) as max·2⁻ᵉ (0 for zero or non-finite
/// `max`), clamped so that 2^±e stays a normal f32: the power-of-two scaling the decompositions
/// apply before any square could overflow or underflow.
pub(crate) fn scale_exponent(max: f32) -> i32 {
    if max > 0.0 && max.is_finite() {
        (max.log2().floor() as i32 + 1).clamp(-125, 126)
    } else {
        0
    }
}

/// max|x| over `a` (0 when empty).
pub(crate) fn abs_max(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |acc, x| acc.max(x.abs()))
}

/// Flips each row of `rows` (width `p`) so that its largest-|·| entry is positive: the sign
/// convention of scikit-learn's PCA components (`svd_flip(u_based_decision=False)`).
pub(crate) fn flip_rows_largest_positive<T>(rows: &mut [T], p: usize)
where
    T: Copy + PartialOrd + Default + std::ops::Neg<Output = T>,
{
    let abs = |v: T| if v < T::default() { -v } else { v };
    for row in rows.chunks_mut(p.max(1)) {
        let big = row
            .iter()
            .copied()
            .fold(T::default(), |b, v| if abs(v) > abs(b) { v } else { b });
        if big < T::default() {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
}
