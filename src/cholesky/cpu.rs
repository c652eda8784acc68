//! CPU Cholesky: faer's blocked LLᵀ (the CPU backend) and LAPACK's driver-test ratio
//! ‖A − L·Lᵀ‖₁/(n·‖A‖₁·ε) in f64, the one every Cholesky result is judged by.

use crate::cholesky::plan::{figures, CholeskyPlan};
use crate::error::Result;
use crate::reference::{norm1, residual_ratio};

/// The Cholesky factors of the `plan.batch` row-major n×n matrices in `a` with faer (f32):
/// L (zeros above the diagonal), or U = Lᵀ when `upper`. Only the lower triangle of each
/// matrix is factored; the figures of [`CholeskyPlan::judge`] are checked first, matrix by
/// matrix.
pub fn fast(a: &[f32], plan: &CholeskyPlan, upper: bool) -> Result<Vec<f32>> {
    let n = plan.n;
    let nn = n * n;
    let mut out = vec![0.0f32; a.len()];
    for z in 0..plan.batch {
        let m = &a[z * nn..(z + 1) * nn];
        let (nonfinite, asym, max) = figures(m, n);
        plan.judge(z, nonfinite, asym, max, 0)?;
        if n == 0 {
            continue;
        }
        let mat = faer::Mat::<f32>::from_fn(n, n, |i, j| if j <= i { m[i * n + j] } else { 0.0 });
        let llt = match mat.llt(faer::Side::Lower) {
            Ok(f) => f,
            Err(faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }) => {
                return plan
                    .judge(z, false, 0.0, 0.0, index + 1)
                    .map(|_| Vec::new());
            }
        };
        let l = llt.L();
        let o = &mut out[z * nn..(z + 1) * nn];
        for i in 0..n {
            for j in 0..=i {
                if upper {
                    o[j * n + i] = l[(i, j)];
                } else {
                    o[i * n + j] = l[(i, j)];
                }
            }
        }
    }
    Ok(out)
}

/// LAPACK's Cholesky ratio ‖A − L·Lᵀ‖₁/(n·‖A‖₁·ε), ε = 2⁻²³ (`dchkpo`), in f64, for the
/// row-major n×n `a` (its lower triangle, mirrored, is the matrix factored) and lower `l`
/// (only its lower triangle is read). Where ‖A‖ = 0 it is 0 for a zero residual, else 1/ε.
pub fn ratio(a: &[f32], n: usize, l: &[f32]) -> f64 {
    let sym = |i: usize, j: usize| f64::from(if j <= i { a[i * n + j] } else { a[j * n + i] });
    let an = norm1(n, n, &sym);
    let resid = norm1(n, n, &|i, j| {
        let llt: f64 = (0..=i.min(j))
            .map(|t| f64::from(l[i * n + t]) * f64::from(l[j * n + t]))
            .sum();
        sym(i, j) - llt
    });
    residual_ratio(resid, an, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_and_names_the_minor() {
        let plan = CholeskyPlan { batch: 1, n: 2 };
        let l = fast(&[4.0, 2.0, 2.0, 5.0], &plan, false).unwrap();
        assert_eq!(l, vec![2.0, 0.0, 1.0, 2.0]);
        assert!(ratio(&[4.0, 2.0, 2.0, 5.0], 2, &l) < 1.0);
        let e = fast(&[1.0, 2.0, 2.0, 1.0], &plan, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("order 2"), "{e}");
        let e = fast(&[-1.0, 0.0, 0.0, 1.0], &plan, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("order 1"), "{e}");
    }
}
