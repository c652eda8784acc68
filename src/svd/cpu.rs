//! CPU singular value decomposition: the fast backend (faer's thin SVD) and the f64 checks the
//! tests judge every result by (LAPACK's driver-test ratios).

use crate::reference::norm1;
use faer::Mat;

use crate::error::{Error, Result};

/// The thin SVD of the row-major m×n matrix `a` with faer: (U m×k, S k descending, Vt k×n),
/// row-major, k = min(m, n).
pub fn fast(a: &[f32], m: usize, n: usize) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let k = m.min(n);
    if k == 0 {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    // Scale max|A| into [0.5, 1) by an exact power of two, so that no square inside the
    // decomposition overflows or underflows; S is scaled back at the end.
    let e = crate::reference::scale_exponent(crate::reference::abs_max(a));
    let inv = 2f32.powi(-e);
    let mat = Mat::<f32>::from_fn(m, n, |i, j| a[i * n + j] * inv);
    let svd = mat
        .thin_svd()
        .map_err(|e| Error::InvalidArgument(format!("svd of a {m}×{n} matrix failed: {e:?}")))?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    // faer sorts non-increasingly already; sort again so ties and NaN follow one rule.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
    let mut uo = vec![0.0f32; m * k];
    let mut vto = vec![0.0f32; k * n];
    for (q, &c) in order.iter().enumerate() {
        for r in 0..m {
            uo[r * k + q] = u[(r, c)];
        }
        for j in 0..n {
            vto[q * n + j] = v[(j, c)];
        }
    }
    let so = order.iter().map(|&c| s[c] / inv).collect();
    Ok((uo, so, vto))
}

/// The singular values (descending) of the row-major m×n matrix `a` with faer in f32,
/// scaled as [`fast`] scales.
pub fn singular_values(a: &[f32], m: usize, n: usize) -> Result<Vec<f32>> {
    let e = crate::reference::scale_exponent(crate::reference::abs_max(a));
    let inv = 2f32.powi(-e);
    let mat = Mat::<f32>::from_fn(m, n, |i, j| a[i * n + j] * inv);
    let mut s = mat.singular_values().map_err(|e| {
        Error::InvalidArgument(format!("svdvals of a {m}×{n} matrix failed: {e:?}"))
    })?;
    s.sort_by(|x, y| y.total_cmp(x));
    Ok(s.iter().map(|x| x / inv).collect())
}

/// [`fast`] on each of `batch` row-major m×n matrices stored one after the other, in
/// parallel: (U [batch, m, k], S [batch, k], Vt [batch, k, n]) concatenated.
pub fn fast_batched(
    a: &[f32],
    batch: usize,
    m: usize,
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    use rayon::prelude::*;
    let per = m * n;
    if a.len() < batch * per {
        return Err(Error::Shape(format!(
            "svd_batched: {} values for {batch} matrices of {m}×{n}",
            a.len()
        )));
    }
    let parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = a
        .par_chunks(per.max(1))
        .take(batch)
        .map(|x| fast(x, m, n))
        .collect::<Result<_>>()?;
    let (mut u, mut s, mut vt) = (Vec::new(), Vec::new(), Vec::new());
    for (pu, ps, pv) in parts {
        u.extend(pu);
        s.extend(ps);
        vt.extend(pv);
    }
    Ok((u, s, vt))
}

pub use crate::reference::RATIO_EPS;

/// LAPACK's SVD driver-test ratios in the 1-norm (f64): ‖A − U S Vt‖/(‖A‖·max(m,n)·ε),
/// ‖I − UᵀU‖/(m·ε), ‖I − Vt Vtᵀ‖/(n·ε), with ε = 2⁻²³. Where ‖A‖ = 0 the first ratio is 0
/// if the residual is 0 and 1/ε otherwise. Factors are row-major: U m×k, S k, Vt k×n.
pub fn ratios(a: &[f32], m: usize, n: usize, u: &[f32], s: &[f32], vt: &[f32]) -> [f64; 3] {
    let k = m.min(n);
    let an = norm1(m, n, &|i, j| f64::from(a[i * n + j]));
    let resid = norm1(m, n, &|i, j| {
        let usv: f64 = (0..k)
            .map(|q| f64::from(u[i * k + q]) * f64::from(s[q]) * f64::from(vt[q * n + j]))
            .sum();
        f64::from(a[i * n + j]) - usv
    });
    let r0 = crate::reference::residual_ratio(resid, an, m.max(n));
    let eye = |i: usize, j: usize| if i == j { 1.0 } else { 0.0 };
    let uu = norm1(k, k, &|i, j| {
        eye(i, j)
            - (0..m)
                .map(|r| f64::from(u[r * k + i]) * f64::from(u[r * k + j]))
                .sum::<f64>()
    });
    let vv = norm1(k, k, &|i, j| {
        eye(i, j)
            - (0..n)
                .map(|c| f64::from(vt[i * n + c]) * f64::from(vt[j * n + c]))
                .sum::<f64>()
    });
    let r1 = if m == 0 {
        0.0
    } else {
        uu / (m as f64 * RATIO_EPS)
    };
    let r2 = if n == 0 {
        0.0
    } else {
        vv / (n as f64 * RATIO_EPS)
    };
    [r0, r1, r2]
}

/// The singular values of the row-major m×n matrix `a`, computed in f64 (descending): the
/// reference S is judged against.
pub fn singular_values_f64(a: &[f32], m: usize, n: usize) -> Result<Vec<f64>> {
    if m.min(n) == 0 {
        return Ok(Vec::new());
    }
    let mat = Mat::<f64>::from_fn(m, n, |i, j| f64::from(a[i * n + j]));
    let mut s = mat
        .singular_values()
        .map_err(|e| Error::InvalidArgument(format!("f64 svd of {m}×{n} failed: {e:?}")))?;
    s.sort_by(|x, y| y.total_cmp(x));
    Ok(s)
}
