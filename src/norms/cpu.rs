//! The f64 references of the matrix functions, for the tests. (The CPU backend itself runs
//! the ops of `mod.rs` on the CPU paths of the reduce, SVD, matmul and layout families.)

use faer::Mat;

use crate::error::{Error, Result};
use crate::norms::plan::{MatrixNorm, NORMS_EPS};
use crate::reference::{norm1, residual_ratio, RATIO_EPS};

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

/// The f64 reference of [`crate::Context::lstsq`] for a row-major m×n `a` and m×k `b` (a 1-D
/// `b` is k = 1): what `numpy.linalg.lstsq(a, b, rcond)` computes, in f64 from the f32 values.
#[derive(Clone, Debug)]
pub struct LstsqF64 {
    /// The minimum-norm least-squares solution, row-major n×k.
    pub x: Vec<f64>,
    /// ‖B − A·X‖₂² per column (k values) where rank = n < m; empty otherwise, as numpy.
    pub residuals: Vec<f64>,
    /// ‖B − A·X‖₂ per column (k values), always (for error bounds).
    pub residual_norms: Vec<f64>,
    /// The number of singular values above rcond·σ_max.
    pub rank: usize,
    /// The min(m, n) singular values, descending.
    pub s: Vec<f64>,
}

/// `numpy.linalg.lstsq(a, b, rcond)` in f64 (faer's thin SVD): X = V·diag(1/σᵢ for
/// σᵢ > rcond·σ_max, else 0)·Uᵀ·B; `a` row-major m×n, `b` row-major m×k.
pub fn lstsq_f64(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    rcond: f64,
) -> Result<LstsqF64> {
    let p = m.min(n);
    let mut x = vec![0.0f64; n * k];
    let mut s = Vec::new();
    let mut rank = 0;
    if p > 0 {
        let mat = Mat::<f64>::from_fn(m, n, |i, j| f64::from(a[i * n + j]));
        let svd = mat
            .thin_svd()
            .map_err(|e| Error::InvalidArgument(format!("f64 svd of {m}×{n} failed: {e:?}")))?;
        let (u, sv, v) = (svd.U(), svd.S().column_vector(), svd.V());
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&i, &j| sv[j].total_cmp(&sv[i]));
        s = order.iter().map(|&i| sv[i]).collect();
        let cutoff = rcond * s[0];
        for &c in &order {
            if sv[c] <= cutoff {
                continue;
            }
            rank += 1;
            for col in 0..k {
                let ub: f64 = (0..m).map(|i| u[(i, c)] * f64::from(b[i * k + col])).sum();
                let w = ub / sv[c];
                for j in 0..n {
                    x[j * k + col] += v[(j, c)] * w;
                }
            }
        }
    }
    let residual_norms: Vec<f64> = (0..k)
        .map(|col| {
            (0..m)
                .map(|i| {
                    let ax: f64 = (0..n)
                        .map(|j| f64::from(a[i * n + j]) * x[j * k + col])
                        .sum();
                    let r = f64::from(b[i * k + col]) - ax;
                    r * r
                })
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let residuals = if rank == n && m > n {
        residual_norms.iter().map(|r| r * r).collect()
    } else {
        Vec::new()
    };
    Ok(LstsqF64 {
        x,
        residuals,
        residual_norms,
        rank,
        s,
    })
}

/// R = B − A·X in f64 (row-major m×k) for row-major f32 `a` (m×n), `b` (m×k), `x` (n×k).
fn lstsq_residual(a: &[f32], b: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut r: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    for i in 0..m {
        for j in 0..n {
            let aij = f64::from(a[i * n + j]);
            for c in 0..k {
                r[i * k + c] -= aij * f64::from(x[j * k + c]);
            }
        }
    }
    r
}

/// ‖Aᵀ·(B − A·X)‖₁ and ‖A‖₁, ‖B‖₁, ‖X‖₁ in f64 (row-major `a` m×n, `b` m×k, `x` n×k).
fn lstsq_orthogonality_parts(
    a: &[f32],
    b: &[f32],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> [f64; 4] {
    let r = lstsq_residual(a, b, x, m, n, k);
    let mut atr = vec![0.0f64; n * k];
    for i in 0..m {
        for j in 0..n {
            let aij = f64::from(a[i * n + j]);
            for c in 0..k {
                atr[j * k + c] += aij * r[i * k + c];
            }
        }
    }
    [
        norm1(n, k, &|j, c| atr[j * k + c]),
        norm1(m, n, &|i, j| f64::from(a[i * n + j])),
        norm1(m, k, &|i, c| f64::from(b[i * k + c])),
        norm1(n, k, &|j, c| f64::from(x[j * k + c])),
    ]
}

/// LAPACK `dqrt17`'s ratio (as `ddrvls` uses it, with α = ‖B‖) for an overdetermined
/// least-squares solution: ‖Aᵀ·(B − A·X)‖₁/(‖A‖₁·‖B‖₁·max(m, n, k)·ε), ε = 2⁻²³, in f64. At
/// the least-squares solution the residual is orthogonal to range(A), so this is small (below
/// 30) for a backward-stable solver on a well-conditioned A (`ddrvls` applies it to its
/// well-conditioned `dqrt13` matrices only; see [`lstsq_backward_orthogonality_ratio`] for
/// ill-conditioned ones). `a` m×n, `b` m×k, `x` n×k, all row-major; 0 for a zero numerator,
/// 1/ε where ‖A‖·‖B‖ = 0 and the numerator is not.
pub fn lstsq_orthogonality_ratio(
    a: &[f32],
    b: &[f32],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> f64 {
    let [num, anorm, bnorm, _] = lstsq_orthogonality_parts(a, b, x, m, n, k);
    residual_ratio(num, anorm * bnorm, m.max(n).max(k))
}

/// [`lstsq_orthogonality_ratio`] with α = ‖B‖₁ + ‖A‖₁·‖X‖₁ in place of ‖B‖₁:
/// ‖Aᵀ·(B − A·X)‖₁/(‖A‖₁·(‖B‖₁ + ‖A‖₁·‖X‖₁)·max(m, n, k)·ε). A backward-stable solver
/// returns the exact solution of (A + δA)·X ≈ B + δB with ‖δA‖ ≲ ε‖A‖, ‖δB‖ ≲ ε‖B‖, which
/// leaves ‖Aᵀ·R‖ ≲ ε·‖A‖·(‖B‖ + ‖R‖ + ‖A‖·‖X‖); for an ill-conditioned A, ‖A‖·‖X‖ can
/// exceed ‖B‖ by up to κ(A), and `dqrt17`'s α = ‖B‖ would charge the solver for the
/// conditioning. For well-conditioned A the two ratios agree to a small factor.
pub fn lstsq_backward_orthogonality_ratio(
    a: &[f32],
    b: &[f32],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> f64 {
    let [num, anorm, bnorm, xnorm] = lstsq_orthogonality_parts(a, b, x, m, n, k);
    residual_ratio(num, anorm * (bnorm + anorm * xnorm), m.max(n).max(k))
}

/// LAPACK `dqrt16`'s ratio for a consistent (e.g. underdetermined full-row-rank) system:
/// ‖B − A·X‖₁/(‖A‖₁·‖X‖₁·max(m, n)·ε), ε = 2⁻²³, in f64; below 30 for a backward-stable
/// solver. `a` m×n, `b` m×k, `x` n×k, all row-major; 0 for a zero residual, 1/ε where
/// ‖A‖·‖X‖ = 0 and the residual is not.
pub fn lstsq_residual_ratio(a: &[f32], b: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> f64 {
    let r = lstsq_residual(a, b, x, m, n, k);
    let num = norm1(m, k, &|i, c| r[i * k + c]);
    let anorm = norm1(m, n, &|i, j| f64::from(a[i * n + j]));
    let xnorm = norm1(n, k, &|j, c| f64::from(x[j * k + c]));
    residual_ratio(num, anorm * xnorm, m.max(n))
}

/// The forward error of a computed least-squares solution `x` (row-major n×k) against the
/// f64 minimum-norm solution `reference`, as a ratio to Wedin's perturbation bound, the worst
/// column: ‖x − x*‖₂/(max(m, n)·ε·κ·(‖x*‖₂ + κ·‖r*‖₂/σ₁)), ε = 2⁻²³, κ = σ₁/σ_rank (the
/// condition of the rank-`rank` problem), r* = B − A·x*.
///
/// A backward-stable solver perturbs A and B by O(max(m, n)·ε) relatively; Wedin's theorem
/// bounds the change of the (truncated) minimum-norm solution by κ·ε·‖x*‖ plus κ²·ε·‖r*‖/σ₁
/// (the second term from the residual, zero for a consistent system), provided the
/// perturbation is well below σ_rank, so that the numerical rank is unambiguous. The ratio is
/// O(1) for such a solver; 0 where the reference is 0 and `x` is too (1/ε if `x` is not).
pub fn lstsq_solution_ratio(x: &[f32], reference: &LstsqF64, m: usize, n: usize, k: usize) -> f64 {
    let r = reference.rank;
    if r == 0 {
        return if x.iter().all(|&v| v == 0.0) {
            0.0
        } else {
            1.0 / RATIO_EPS
        };
    }
    let (s1, sr) = (reference.s[0], reference.s[r - 1]);
    let kappa = s1 / sr;
    (0..k)
        .map(|c| {
            let (mut err, mut xn) = (0.0f64, 0.0f64);
            for j in 0..n {
                let e = reference.x[j * k + c];
                err += (f64::from(x[j * k + c]) - e).powi(2);
                xn += e * e;
            }
            let bound = m.max(n) as f64
                * RATIO_EPS
                * kappa
                * (xn.sqrt() + kappa * reference.residual_norms[c] / s1);
            if bound == 0.0 {
                if err == 0.0 {
                    0.0
                } else {
                    1.0 / RATIO_EPS
                }
            } else {
                err.sqrt() / bound
            }
        })
        .fold(0.0, f64::max)
}
