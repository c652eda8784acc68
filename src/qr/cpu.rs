//! CPU QR decomposition: faer's blocked Householder (the CPU backend), Householder in f64 (the
//! GPU path's fallback for rank-deficient input, and a reference), the small dense kernels the GPU's CholeskyQR runs on the host
//! (Cholesky, triangular inverse and product, all f64), and the driver-test ratios the tests
//! judge every QR by.

use crate::error::{Error, Result};
use crate::reference::norm1;

/// Reduced Householder QR of the row-major m×n matrix `a`, computed in f64: (Q m×k, R k×n),
/// row-major, k = min(m, n), with R's diagonal made non-negative (row i of R and column i of Q
/// negated where LAPACK's R would have R_ii < 0). Q has orthonormal columns whatever the rank
/// of `a`: where a column of `a` lies in the span of the previous ones, R_ii is (near) zero and
/// Q's column i is the reflectors' completion of the basis.
pub fn householder(a: &[f32], m: usize, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    check_input(a, m, n)?;
    let k = m.min(n);
    let mut w: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
    // Reflectors v_j (length m − j) with H_j = I − τ_j v_j v_jᵀ.
    let mut refl: Vec<(Vec<f64>, f64)> = Vec::with_capacity(k);
    for j in 0..k {
        let x: Vec<f64> = (j..m).map(|i| w[i * n + j]).collect();
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            refl.push((vec![0.0; m - j], 0.0));
            continue;
        }
        let alpha = if x[0] >= 0.0 { -norm } else { norm };
        let mut v = x;
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|t| t * t).sum();
        let tau = if vv > 0.0 { 2.0 / vv } else { 0.0 };
        for c in j..n {
            let d: f64 = (j..m).map(|i| v[i - j] * w[i * n + c]).sum();
            for i in j..m {
                w[i * n + c] -= tau * d * v[i - j];
            }
        }
        refl.push((v, tau));
    }
    // Q = H_0 ⋯ H_{k−1} · I[:, :k], applied from the last reflector.
    let mut q = vec![0.0f64; m * k];
    for i in 0..k {
        q[i * k + i] = 1.0;
    }
    for j in (0..k).rev() {
        let (v, tau) = &refl[j];
        if *tau == 0.0 {
            continue;
        }
        for c in 0..k {
            let d: f64 = (j..m).map(|i| v[i - j] * q[i * k + c]).sum();
            for i in j..m {
                q[i * k + c] -= tau * d * v[i - j];
            }
        }
    }
    let mut r = vec![0.0f32; k * n];
    let mut qo = vec![0.0f32; m * k];
    for i in 0..k {
        let sign = if w[i * n + i] < 0.0 { -1.0 } else { 1.0 };
        for c in i..n {
            r[i * n + c] = (sign * w[i * n + c]) as f32;
        }
        for row in 0..m {
            qo[row * k + i] = (sign * q[row * k + i]) as f32;
        }
    }
    Ok((qo, r))
}

/// Reduced QR of the row-major m×n matrix `a` with faer (blocked Householder, f32, threads):
/// the CPU backend's fast path. Same conventions as [`householder`]: (Q m×k, R k×n) row-major,
/// R's diagonal non-negative, Q orthonormal whatever the rank.
pub fn fast(a: &[f32], m: usize, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    check_input(a, m, n)?;
    let k = m.min(n);
    if k == 0 {
        return Ok((vec![0.0; m * k], vec![0.0; k * n]));
    }
    let mat = faer::Mat::<f32>::from_fn(m, n, |i, j| a[i * n + j]);
    let qr = mat.qr();
    let (q, r) = (qr.compute_thin_Q(), qr.thin_R());
    let mut qo = vec![0.0f32; m * k];
    let mut ro = vec![0.0f32; k * n];
    for i in 0..k {
        let sign = if r[(i, i)] < 0.0 { -1.0 } else { 1.0 };
        for c in i..n {
            ro[i * n + c] = sign * r[(i, c)];
        }
        for row in 0..m {
            qo[row * k + i] = sign * q[(row, i)];
        }
    }
    Ok((qo, ro))
}

/// `a` must hold m·n finite values.
fn check_input(a: &[f32], m: usize, n: usize) -> Result<()> {
    if a.len() != m * n {
        return Err(Error::Shape(format!(
            "qr: {} values for a {m}×{n} matrix",
            a.len()
        )));
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(non_finite(m, n));
    }
    Ok(())
}

/// The error for input with NaN or infinite values.
pub(crate) fn non_finite(m: usize, n: usize) -> Error {
    Error::InvalidArgument(format!(
        "qr: the {m}×{n} input holds NaN or infinite values"
    ))
}

/// Upper Cholesky factor R (row-major n×n, RᵀR = G + shift·I) of the symmetric n×n matrix
/// `g` (its upper triangle is used), with the smallest pivot R_jj² relative to the largest
/// diagonal entry of G + shift·I; `None` when a pivot is not positive (or not finite).
pub fn cholesky_upper(g: &[f64], n: usize, shift: f64) -> Option<(Vec<f64>, f64)> {
    let mut r = vec![0.0f64; n * n];
    let dmax = (0..n).map(|j| g[j * n + j] + shift).fold(0.0f64, f64::max);
    let mut min_pivot = f64::INFINITY;
    for j in 0..n {
        let d = g[j * n + j] + shift - (0..j).map(|i| r[i * n + j] * r[i * n + j]).sum::<f64>();
        if d.is_nan() || d <= 0.0 || d.is_infinite() {
            return None;
        }
        min_pivot = min_pivot.min(d);
        let rjj = d.sqrt();
        r[j * n + j] = rjj;
        for c in j + 1..n {
            let s = g[j * n + c] - (0..j).map(|i| r[i * n + j] * r[i * n + c]).sum::<f64>();
            r[j * n + c] = s / rjj;
        }
    }
    let rel = if dmax > 0.0 { min_pivot / dmax } else { 0.0 };
    Some((r, rel))
}

/// The inverse of the row-major upper-triangular n×n matrix `r` (non-zero diagonal).
pub fn upper_inverse(r: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0.0f64; n * n];
    // Column c of R⁻¹ by back substitution.
    for c in 0..n {
        for i in (0..=c).rev() {
            let rhs = if i == c { 1.0 } else { 0.0 };
            let s: f64 = (i + 1..=c).map(|t| r[i * n + t] * x[t * n + c]).sum();
            x[i * n + c] = (rhs - s) / r[i * n + i];
        }
    }
    x
}

/// The largest singular value of the row-major n×n matrix `x`, from below: `iterations` steps
/// of the power method on XᵀX from a fixed generic vector (within a few percent for the
/// matrices it serves; an estimate, never above the true value).
pub fn norm2_estimate(x: &[f64], n: usize, iterations: usize) -> f64 {
    // A start with a component along every singular vector of a generic matrix.
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + (i as f64 * 0.618_034).fract())
        .collect();
    let mut sigma = 0.0;
    for _ in 0..iterations {
        let nv = v.iter().map(|t| t * t).sum::<f64>().sqrt();
        if nv == 0.0 || !nv.is_finite() {
            break;
        }
        v.iter_mut().for_each(|t| *t /= nv);
        let y: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| x[i * n + j] * v[j]).sum())
            .collect();
        sigma = y.iter().map(|t| t * t).sum::<f64>().sqrt();
        v = (0..n)
            .map(|j| (0..n).map(|i| x[i * n + j] * y[i]).sum())
            .collect();
    }
    sigma
}

/// The product of two row-major upper-triangular n×n matrices.
pub fn upper_product(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            c[i * n + j] = (i..=j).map(|t| a[i * n + t] * b[t * n + j]).sum();
        }
    }
    c
}

/// LAPACK's QR driver-test ratios in the 1-norm (f64): ‖A − QR‖/(‖A‖·max(m,n)·ε) and
/// ‖I − QᵀQ‖/(m·ε), ε = 2⁻²³. Where ‖A‖ = 0 the first ratio is 0 if the residual is 0 and 1/ε
/// otherwise. Factors are row-major: Q m×k, R k×n.
pub fn ratios(a: &[f32], m: usize, n: usize, q: &[f32], r: &[f32]) -> [f64; 2] {
    let eps = crate::reference::RATIO_EPS;
    let k = m.min(n);
    let an = norm1(m, n, &|i, j| f64::from(a[i * n + j]));
    let resid = norm1(m, n, &|i, j| {
        let qr: f64 = (0..k)
            .map(|t| f64::from(q[i * k + t]) * f64::from(r[t * n + j]))
            .sum();
        f64::from(a[i * n + j]) - qr
    });
    let r0 = crate::reference::residual_ratio(resid, an, m.max(n));
    let qq = norm1(k, k, &|i, j| {
        let d = if i == j { 1.0 } else { 0.0 };
        d - (0..m)
            .map(|t| f64::from(q[t * k + i]) * f64::from(q[t * k + j]))
            .sum::<f64>()
    });
    let r1 = if m == 0 { 0.0 } else { qq / (m as f64 * eps) };
    [r0, r1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_inverse_roundtrip() {
        let g = [4.0, 2.0, 2.0, 5.0];
        let (r, rel) = cholesky_upper(&g, 2, 0.0).unwrap();
        assert_eq!(r, vec![2.0, 1.0, 0.0, 2.0]);
        assert!((rel - 0.8).abs() < 1e-12);
        let inv = upper_inverse(&r, 2);
        let p = upper_product(&r, &inv, 2);
        assert_eq!(p, vec![1.0, 0.0, 0.0, 1.0]);
        assert!(cholesky_upper(&[1.0, 2.0, 2.0, 1.0], 2, 0.0).is_none());
    }

    #[test]
    fn householder_signs() {
        let (q, r) = householder(&[-3.0, 0.0, 4.0, 0.0], 2, 2).unwrap();
        assert!((r[0] - 5.0).abs() < 1e-6 && r[3] == 0.0);
        let [r0, r1] = ratios(&[-3.0, 0.0, 4.0, 0.0], 2, 2, &q, &r);
        assert!(r0 < 1.0 && r1 < 1.0);
    }
}
