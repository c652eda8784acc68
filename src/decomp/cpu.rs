//! CPU decompositions built on the SVD family: the fast symmetric eigensolver (faer) and the f64
//! references the tests judge `eigh`, PCA and low-rank results by.

use faer::{Mat, Side};

use crate::error::{Error, Result};
use crate::reference::RATIO_EPS;

/// The symmetric eigen-decomposition of the row-major n×n matrix `a` with faer, reading only
/// its lower triangle: (eigenvalues ascending, eigenvectors as columns, row-major n×n).
pub fn eigh_fast(a: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // Scale max|A| into [0.5, 1) by an exact power of two (no overflow inside faer).
    let e = crate::reference::scale_exponent(crate::reference::abs_max(a));
    let inv = 2f32.powi(-e);
    let mat = Mat::<f32>::from_fn(n, n, |i, j| {
        let (r, c) = if i >= j { (i, j) } else { (j, i) };
        a[r * n + c] * inv
    });
    let evd = mat
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::InvalidArgument(format!("eigh of a {n}×{n} matrix failed: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| s[x].total_cmp(&s[y]));
    let mut z = vec![0.0f32; n * n];
    for (q, &c) in order.iter().enumerate() {
        for r in 0..n {
            z[r * n + q] = u[(r, c)];
        }
    }
    Ok((order.iter().map(|&c| s[c] / inv).collect(), z))
}

/// The eigenvalues (ascending) of the symmetric n×n matrix whose lower triangle is that of the
/// row-major `a`, with faer in f32 (no eigenvectors).
pub fn eigenvalues_fast(a: &[f32], n: usize) -> Result<Vec<f32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mat = Mat::<f32>::from_fn(n, n, |i, j| {
        let (r, c) = if i >= j { (i, j) } else { (j, i) };
        a[r * n + c]
    });
    let mut w = mat.self_adjoint_eigenvalues(Side::Lower).map_err(|e| {
        Error::InvalidArgument(format!("eigvalsh of a {n}×{n} matrix failed: {e:?}"))
    })?;
    w.sort_by(f32::total_cmp);
    Ok(w)
}

/// LAPACK's symmetric-eigen driver-test ratios in the 1-norm (f64), ε = 2⁻²³:
/// ‖A − Z D Zᵀ‖/(‖A‖·n·ε) and ‖I − ZᵀZ‖/(n·ε). Where ‖A‖ = 0 the first ratio is 0 if the
/// residual is 0 and 1/ε otherwise. `a` and `z` are row-major n×n (eigenvectors as columns).
pub fn eigh_ratios(a: &[f32], n: usize, w: &[f32], z: &[f32]) -> [f64; 2] {
    if n == 0 {
        return [0.0, 0.0];
    }
    let norm1 = |f: &dyn Fn(usize, usize) -> f64| crate::reference::norm1(n, n, f);
    let zf = |i: usize, j: usize| f64::from(z[i * n + j]);
    let an = norm1(&|i, j| f64::from(a[i * n + j]));
    let resid = norm1(&|i, j| {
        let zdz: f64 = (0..n).map(|q| zf(i, q) * f64::from(w[q]) * zf(j, q)).sum();
        f64::from(a[i * n + j]) - zdz
    });
    let r0 = crate::reference::residual_ratio(resid, an, n);
    let orth = norm1(&|i, j| {
        let d: f64 = (0..n).map(|r| zf(r, i) * zf(r, j)).sum();
        if i == j {
            1.0 - d
        } else {
            -d
        }
    });
    [r0, orth / (n as f64 * RATIO_EPS)]
}

/// The eigenvalues (ascending) of the symmetric matrix whose lower triangle is that of the
/// row-major n×n `a`, computed in f64: the reference `eigh` values are judged against.
pub fn eigenvalues_f64(a: &[f32], n: usize) -> Result<Vec<f64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mat = Mat::<f64>::from_fn(n, n, |i, j| {
        let (r, c) = if i >= j { (i, j) } else { (j, i) };
        f64::from(a[r * n + c])
    });
    let mut w = mat
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::InvalidArgument(format!("f64 eigh of {n}×{n} failed: {e:?}")))?;
    w.sort_by(|x, y| x.total_cmp(y));
    Ok(w)
}

/// An f64 PCA computed the direct way (covariance matrix, then its eigen-decomposition), the
/// reference [`crate::Context::pca`] is judged against. Components are rows, up to sign.
#[derive(Clone, Debug)]
pub struct PcaReference {
    /// k × features, row-major, unit rows, by descending variance.
    pub components: Vec<f64>,
    /// The k largest eigenvalues of the covariance (n−1 normalisation), descending.
    pub explained_variance: Vec<f64>,
    /// `explained_variance` over the total variance of all features.
    pub explained_variance_ratio: Vec<f64>,
    /// Per-feature mean.
    pub mean: Vec<f64>,
}

/// [`PcaReference`] of the row-major samples × features matrix `x` (at least 2 samples).
pub fn pca_reference(x: &[f32], m: usize, p: usize, k: usize) -> Result<PcaReference> {
    if m < 2 || k > m.min(p) {
        return Err(Error::Shape(format!(
            "pca reference: {k} components of a {m}×{p} matrix"
        )));
    }
    let mean: Vec<f64> = (0..p)
        .map(|j| (0..m).map(|i| f64::from(x[i * p + j])).sum::<f64>() / m as f64)
        .collect();
    let c = |i: usize, j: usize| f64::from(x[i * p + j]) - mean[j];
    let cov = Mat::<f64>::from_fn(p, p, |a, b| {
        (0..m).map(|i| c(i, a) * c(i, b)).sum::<f64>() / (m - 1) as f64
    });
    let total: f64 = (0..p).map(|j| cov[(j, j)]).sum();
    let evd = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::InvalidArgument(format!("f64 eigh of {p}×{p} failed: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    let order = &order[..k];
    let mut components = vec![0.0; k * p];
    for (q, &col) in order.iter().enumerate() {
        for j in 0..p {
            components[q * p + j] = u[(j, col)];
        }
    }
    let explained_variance: Vec<f64> = order.iter().map(|&col| s[col]).collect();
    let explained_variance_ratio = explained_variance
        .iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect();
    Ok(PcaReference {
        components,
        explained_variance,
        explained_variance_ratio,
        mean,
    })
}

/// ‖A − B‖_F in f64 of two row-major arrays of equal length (the Frobenius error of an
/// approximation).
pub fn frobenius_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        .sqrt()
}
