//! The f64 references of the matrix functions, for the tests. (The CPU backend itself runs
//! the ops of `mod.rs` on the CPU paths of the reduce, SVD, matmul and layout families.)

use faer::Mat;

use crate::error::{Error, Result};
use crate::norms::plan::{MatrixNorm, NORMS_EPS};
use crate::reference::{norm1, residual_ratio};

/// The singular values of the row-major m×n `a` in f64, descending.
fn singular_values(a: &[f64], m: usize, n: usize) -> Result<Vec<f64>> {
    if m.min(n) == 0 {
        return Ok(Vec::new());
    }
    let mat = Mat::<f64>::from_fn(m, n, |i, j| a[i * n + j]);
    let mut s = mat
        .singular_values()
        .map_err(|e| Error::InvalidArgument(format!("f64 svd of {m}×{n} failed: {e:?}")))?;
    s.sort_by(|x, y| y.total_cmp(x));
    Ok(s)
}

/// `numpy.linalg.norm(a, ord)` of the row-major m×n `a` (given as f64), in f64.
pub fn matrix_norm_f64(a: &[f64], m: usize, n: usize, ord: MatrixNorm) -> Result<f64> {
    let col = |j: usize| (0..m).map(|i| a[i * n + j].abs()).sum::<f64>();
    let row = |i: usize| (0..n).map(|j| a[i * n + j].abs()).sum::<f64>();
    let fold = |it: &mut dyn Iterator<Item = f64>, max: bool| {
        it.fold(None, |acc: Option<f64>, x| {
            Some(match acc {
                None => x,
                Some(y) if max => y.max(x),
                Some(y) => y.min(x),
            })
        })
    };
    let sv = || singular_values(a, m, n);
    let empty = || Error::LinAlg(format!("norm ord={ord} of an empty {m}×{n} matrix"));
    Ok(match ord {
        MatrixNorm::Fro => a.iter().map(|x| x * x).sum::<f64>().sqrt(),
        MatrixNorm::One => fold(&mut (0..n).map(col), true).unwrap_or(0.0),
        MatrixNorm::NegOne => fold(&mut (0..n).map(col), false).ok_or_else(empty)?,
        MatrixNorm::Inf => fold(&mut (0..m).map(row), true).unwrap_or(0.0),
        MatrixNorm::NegInf => fold(&mut (0..m).map(row), false).ok_or_else(empty)?,
        MatrixNorm::Two => *sv()?.first().ok_or_else(empty)?,
        MatrixNorm::NegTwo => *sv()?.last().ok_or_else(empty)?,
        MatrixNorm::Nuc => {
            let s = sv()?;
            if s.is_empty() {
                return Err(empty());
            }
            s.iter().sum()
        }
    })
}

/// The inverse of the row-major n×n `a` in f64 by Gauss–Jordan with partial pivoting, or
/// `None` when a pivot is exactly zero.
pub fn inverse_f64(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let w = 2 * n;
    let mut t = vec![0.0f64; n * w];
    for i in 0..n {
        t[i * w..i * w + n].copy_from_slice(&a[i * n..(i + 1) * n]);
        t[i * w + n + i] = 1.0;
    }
    for c in 0..n {
        let p = (c..n).max_by(|&x, &y| t[x * w + c].abs().total_cmp(&t[y * w + c].abs()))?;
        if t[p * w + c] == 0.0 {
            return None;
        }
        if p != c {
            for j in 0..w {
                t.swap(p * w + j, c * w + j);
            }
        }
        let d = t[c * w + c];
        for j in 0..w {
            t[c * w + j] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = t[r * w + c];
                if f != 0.0 {
                    for j in 0..w {
                        t[r * w + j] -= f * t[c * w + j];
                    }
                }
            }
        }
    }
    Some((0..n * n).map(|k| t[(k / n) * w + n + k % n]).collect())
}

/// `numpy.linalg.cond(a, p)` of the row-major m×n `a`, in f64 (inf for a singular matrix).
pub fn cond_f64(a: &[f32], m: usize, n: usize, p: Option<MatrixNorm>) -> Result<f64> {
    let ad: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
    match p {
        None | Some(MatrixNorm::Two) | Some(MatrixNorm::NegTwo) => {
            let s = singular_values(&ad, m, n)?;
            let (hi, lo) = match (s.first(), s.last()) {
                (Some(&h), Some(&l)) => (h, l),
                _ => return Err(Error::LinAlg(format!("cond of an empty {m}×{n} matrix"))),
            };
            let r = if p == Some(MatrixNorm::NegTwo) {
                lo / hi
            } else {
                hi / lo
            };
            Ok(if r.is_nan() { f64::INFINITY } else { r })
        }
        Some(ord) => {
            if m != n {
                return Err(Error::Shape(format!(
                    "cond ord={ord} needs square; got {m}×{n}"
                )));
            }
            match inverse_f64(&ad, n) {
                None => Ok(f64::INFINITY),
                Some(inv) => {
                    Ok(matrix_norm_f64(&ad, n, n, ord)? * matrix_norm_f64(&inv, n, n, ord)?)
                }
            }
        }
    }
}

/// `numpy.linalg.matrix_rank(a, tol)` of the row-major m×n `a` in f64 (the default tol is
/// σ_max·max(m, n)·ε with ε = 2⁻²³, as for the f32 op).
pub fn matrix_rank_f64(a: &[f32], m: usize, n: usize, tol: Option<f64>) -> Result<usize> {
    let ad: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
    let s = singular_values(&ad, m, n)?;
    let smax = s.first().copied().unwrap_or(0.0);
    let tol = tol.unwrap_or(smax * m.max(n) as f64 * f64::from(NORMS_EPS));
    Ok(s.iter().filter(|&&x| x > tol).count())
}

/// The four Moore–Penrose residuals of a candidate pseudo-inverse `x` (n×m) of `a` (m×n),
/// relative, in the Frobenius norm and f64: ‖A·X·A − A‖/‖A‖, ‖X·A·X − X‖/‖X‖,
/// ‖(A·X)ᵀ − A·X‖/(‖A‖‖X‖), ‖(X·A)ᵀ − X·A‖/(‖A‖‖X‖) (0 where a denominator is 0).
pub fn moore_penrose_residuals(a: &[f32], x: &[f32], m: usize, n: usize) -> [f64; 4] {
    let mul = |p: &[f64], q: &[f64], r: usize, k: usize, c: usize| -> Vec<f64> {
        let mut o = vec![0.0; r * c];
        for i in 0..r {
            for l in 0..k {
                let v = p[i * k + l];
                for j in 0..c {
                    o[i * c + j] += v * q[l * c + j];
                }
            }
        }
        o
    };
    let fro = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = |p: &[f64], q: &[f64]| fro(&p.iter().zip(q).map(|(x, y)| x - y).collect::<Vec<_>>());
    let sym = |p: &[f64], k: usize| {
        fro(&(0..k * k)
            .map(|i| p[i] - p[(i % k) * k + i / k])
            .collect::<Vec<_>>())
    };
    let rel = |num: f64, den: f64| if den == 0.0 { num } else { num / den };
    let ad: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let ax = mul(&ad, &xd, m, n, m);
    let xa = mul(&xd, &ad, n, m, n);
    let axa = mul(&ax, &ad, m, m, n);
    let xax = mul(&xa, &xd, n, n, m);
    let (na, nx) = (fro(&ad), fro(&xd));
    [
        rel(diff(&axa, &ad), na),
        rel(diff(&xax, &xd), nx),
        rel(sym(&ax, m), na * nx),
        rel(sym(&xa, n), na * nx),
    ]
}

/// The Penrose-condition ratios of a computed pseudo-inverse `x` (n×m) of the row-major m×n
/// `a`, in f64 and the 1-norm: ‖A·X·A − A‖/(‖A‖²·‖X‖·d·ε) and ‖X·A·X − X‖/(‖X‖²·‖A‖·d·ε),
/// d = max(m, n), ε = 2⁻²³. Dropping the singular values at most rtol·σ_max moves the first
/// by about rtol/(d·ε). Where a norm is 0 a ratio is 0 for a zero residual, else 1/ε.
pub fn pinv_ratios(a: &[f32], m: usize, n: usize, x: &[f32]) -> [f64; 2] {
    let mul = |p: &[f64], q: &[f64], r: usize, k: usize, c: usize| -> Vec<f64> {
        (0..r * c)
            .map(|idx| {
                (0..k)
                    .map(|t| p[(idx / c) * k + t] * q[t * c + idx % c])
                    .sum()
            })
            .collect()
    };
    let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let an = norm1(m, n, &|i, j| a64[i * n + j]);
    let xn = norm1(n, m, &|i, j| x64[i * m + j]);
    let axa = mul(&mul(&a64, &x64, m, n, m), &a64, m, m, n);
    let xax = mul(&mul(&x64, &a64, n, m, n), &x64, n, n, m);
    let r1 = norm1(m, n, &|i, j| axa[i * n + j] - a64[i * n + j]);
    let r2 = norm1(n, m, &|i, j| xax[i * m + j] - x64[i * m + j]);
    let d = m.max(n);
    [
        residual_ratio(r1, an * an * xn, d),
        residual_ratio(r2, xn * xn * an, d),
    ]
}
