//! The rules both Cholesky paths share: options, the operand's shape, and the numpy-style
//! errors (non-finite input, asymmetry, a leading minor that is not positive definite).

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Options of [`Context::cholesky_with`](crate::Context::cholesky_with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CholeskyOptions {
    /// Return the upper factor U = Lᵀ with A = Uᵀ·U (scipy's `lower=False`) instead of L.
    pub upper: bool,
}

/// The shape of one Cholesky call: `batch` matrices of order `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CholeskyPlan {
    /// Matrices (the product of the leading dims; 1 for a 2-D input).
    pub batch: usize,
    /// Their order.
    pub n: usize,
}

/// Largest relative asymmetry max|A − Aᵀ| / max|A| accepted (DESIGN.md's eigh rule).
pub const CHOLESKY_ASYMMETRY: f64 = 1e-5;

impl CholeskyPlan {
    /// The plan of `a` ([..., n, n], float32), or an error naming its shape.
    pub fn new(a: &Tensor) -> Result<CholeskyPlan> {
        if a.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "cholesky: input (shape {:?}) is {}; expected float32",
                a.shape(),
                a.dtype().name()
            )));
        }
        let shape = a.shape();
        if shape.len() < 2 {
            return Err(Error::Shape(format!(
                "cholesky needs a matrix or a batch of matrices [..., n, n]; got shape {shape:?} \
                 ({} dims)",
                shape.len()
            )));
        }
        let (m, n) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        if m != n {
            return Err(Error::Shape(format!(
                "cholesky needs square matrices; got shape {shape:?} ({m}×{n})"
            )));
        }
        Ok(CholeskyPlan {
            batch: shape[..shape.len() - 2].iter().product(),
            n,
        })
    }

    /// "the n×n matrix", or "matrix z of the batch" for batched input.
    fn which(&self, z: usize) -> String {
        crate::error::matrix_label(self.n, self.n, self.batch, z)
    }

    /// The error, if any, for matrix `z` from its figures: NaN or Inf anywhere, asymmetry
    /// `asym` = max|A − Aᵀ| above 1e-5·`max` (max|A|), a failing pivot `minor` (1-based
    /// order of the first leading minor that is not positive definite; 0 = none), in that
    /// order of precedence.
    pub fn judge(
        &self,
        z: usize,
        nonfinite: bool,
        asym: f32,
        max: f32,
        minor: usize,
    ) -> Result<()> {
        if nonfinite {
            return Err(Error::InvalidArgument(format!(
                "cholesky: {} holds NaN or infinite values",
                self.which(z)
            )));
        }
        if f64::from(asym) > CHOLESKY_ASYMMETRY * f64::from(max) {
            return Err(Error::InvalidArgument(format!(
                "cholesky needs a symmetric matrix: {} has max|A−Aᵀ| = {asym:e}, above \
                 1e-5·max|A| = {:e}",
                self.which(z),
                CHOLESKY_ASYMMETRY * f64::from(max)
            )));
        }
        if minor != 0 {
            return Err(Error::LinAlg(format!(
                "cholesky: {} is not positive definite: its leading minor of order {minor} is \
                 not (LAPACK info = {minor})",
                self.which(z)
            )));
        }
        Ok(())
    }
}

/// (NaN or Inf anywhere, max|A_ij − A_ji|, max|A_ij|) of the row-major n×n `a`, in f32 as the
/// GPU measures them.
pub fn figures(a: &[f32], n: usize) -> (bool, f32, f32) {
    let nonfinite = a.iter().any(|x| !x.is_finite());
    let max = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let mut asym = 0.0f32;
    for i in 0..n {
        for j in 0..i {
            asym = asym.max((a[i * n + j] - a[j * n + i]).abs());
        }
    }
    (nonfinite, asym, max)
}
