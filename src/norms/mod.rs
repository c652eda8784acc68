//! Matrix functions composed from the existing ops, with numpy semantics: `matrix_norm`
//! (`numpy.linalg.norm` for matrices), `cond`, `matrix_rank`, `pinv` and `lstsq`. No kernels of their
//! own: the sum-based norms run on the elementwise and reduce ops, the σ-based ones on
//! [`Context::svd`], the pseudo-inverse on matmul and layout ops. Every op takes a matrix
//! [m, n] or a batch [..., m, n] and works on both backends.
//!
//! Each matrix is first divided by a power of two near its max|aᵢⱼ| (exact), so that neither
//! the squares of the Frobenius norm nor the Jacobi SVD overflow or underflow at 1e±20, and
//! the result is scaled back.

pub mod cpu;
mod lstsq;
pub mod plan;

pub use lstsq::Lstsq;
pub use plan::{MatrixNorm, NormsPlan, NORMS_EPS};

use crate::context::Context;
use crate::error::Result;
use crate::norms::plan::{empty_norm, scale_of};
use crate::svd::Svd;
use crate::tensor::Tensor;

/// A checked, scaled operand: [batch, m, n] with each matrix divided by `scales[i]`.
struct Prepared {
    plan: NormsPlan,
    scaled: Tensor,
    scales: Vec<f32>,
}

impl Context {
    /// Checks `a` for op `op` (float32, ≥ 2-D, finite) and divides each matrix by its scale.
    fn norms_prepare(&self, op: &str, a: &Tensor) -> Result<Prepared> {
        let plan = NormsPlan::new(op, a)?;
        let (b, m, n) = (plan.batch, plan.m, plan.n);
        let a3 = a.reshape(&[b, m, n])?;
        if a.is_empty() {
            return Ok(Prepared {
                plan,
                scaled: a3,
                scales: vec![1.0; b],
            });
        }
        // One reduction and one readback of `batch` floats: max|A| of each matrix (NaN if any
        // entry is NaN, inf if any is infinite).
        let maxabs = self
            .max(&self.abs(&a.reshape(&[b, m * n])?)?, Some(-1))?
            .to_vec()?;
        if maxabs.iter().any(|v| !v.is_finite()) {
            return Err(plan.non_finite(op));
        }
        let scales: Vec<f32> = maxabs.iter().map(|&v| scale_of(v)).collect();
        let scaled = if scales.iter().all(|&s| s == 1.0) {
            a3
        } else {
            // 1/s is a power of two in the normal range: the product is exact.
            let inv: Vec<f32> = scales.iter().map(|&s| 1.0 / s).collect();
            self.mul(&a3, &self.tensor(&[b, 1, 1], &inv)?)?
        };
        Ok(Prepared {
            plan,
            scaled,
            scales,
        })
    }

    /// Matrix `i` of the [batch, m, n] `x`, as an m×n tensor.
    fn norms_matrix(&self, x: &Tensor, plan: &NormsPlan, i: usize) -> Result<Tensor> {
        if plan.batch == 1 {
            return x.reshape(&[plan.m, plan.n]);
        }
        self.slice_axis(x, 0, i, i + 1)?.reshape(&[plan.m, plan.n])
    }

    /// Stacks per-matrix tensors of shape `inner` into `batch_shape + inner`.
    fn norms_stack(
        &self,
        parts: &[Tensor],
        batch_shape: &[usize],
        inner: &[usize],
    ) -> Result<Tensor> {
        let mut shape = batch_shape.to_vec();
        shape.extend_from_slice(inner);
        if parts.len() == 1 {
            return parts[0].reshape(&shape);
        }
        let mut one = vec![1];
        one.extend_from_slice(inner);
        let lifted = parts
            .iter()
            .map(|t| t.reshape(&one))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = lifted.iter().collect();
        self.concat(&refs, 0)?.reshape(&shape)
    }

    /// The thin SVD of each scaled matrix, with its singular values read back (k floats).
    fn norms_svds(&self, p: &Prepared) -> Result<Vec<(Svd, Vec<f32>)>> {
        (0..p.plan.batch)
            .map(|i| {
                let svd = self.svd(&self.norms_matrix(&p.scaled, &p.plan, i)?)?;
                let s = svd.s.to_vec()?;
                Ok((svd, s))
            })
            .collect()
    }

    /// The matrix norm of the scaled [batch, m, n] operand, one value per matrix ([batch]),
    /// not yet scaled back.
    fn norms_scaled_norm(&self, p: &Prepared, ord: MatrixNorm) -> Result<Tensor> {
        let NormsPlan { batch: b, m, n, .. } = p.plan;
        let x = &p.scaled;
        Ok(match ord {
            MatrixNorm::Fro => self.norm(&x.reshape(&[b, m * n])?, Some(-1))?,
            MatrixNorm::One | MatrixNorm::NegOne | MatrixNorm::Inf | MatrixNorm::NegInf => {
                let axis = if matches!(ord, MatrixNorm::One | MatrixNorm::NegOne) {
                    -2
                } else {
                    -1
                };
                let sums = self.sum(&self.abs(x)?, Some(axis))?;
                if matches!(ord, MatrixNorm::One | MatrixNorm::Inf) {
                    self.max(&sums, Some(-1))?
                } else {
                    self.min(&sums, Some(-1))?
                }
            }
            MatrixNorm::Two | MatrixNorm::NegTwo | MatrixNorm::Nuc => {
                let parts = (0..b)
                    .map(|i| {
                        let s = self.svd(&self.norms_matrix(x, &p.plan, i)?)?.s;
                        match ord {
                            MatrixNorm::Two => self.max(&s, None),
                            MatrixNorm::NegTwo => self.min(&s, None),
                            _ => self.sum(&s, None),
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.norms_stack(&parts, &[b], &[])?
            }
        })
    }

    /// The matrix norm of `a`, as `numpy.linalg.norm(a, ord)` for a matrix: over the last two
    /// axes of [..., m, n], result shape [...] (0-d for a matrix). `fro`, `1` (largest column
    /// sum of |aᵢⱼ|), `-1`, `inf` (largest row sum), `-inf` run on the elementwise and reduce
    /// ops; `2`, `-2` (largest, smallest singular value) and `nuc` (their sum) on
    /// [`Context::svd`], one SVD per matrix. The result stays resident.
    ///
    /// An empty matrix has fro, 1 and inf norm 0; for 2, −2 and nuc (and −1 / −inf of a
    /// matrix without columns / rows) numpy raises, and so does this, with an
    /// [`Error::LinAlg`](crate::Error::LinAlg) naming it. NaN or infinite input, and input of
    /// fewer than 2 dims, are errors.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::MatrixNorm;
    /// let a = ctx.tensor(&[2, 2], &[1.0, -2.0, 3.0, 4.0])?;
    /// assert_eq!(ctx.matrix_norm(&a, MatrixNorm::One)?.to_vec()?, vec![6.0]);
    /// assert_eq!(ctx.matrix_norm(&a, "inf".parse()?)?.to_vec()?, vec![7.0]);
    /// let fro = ctx.matrix_norm(&a, MatrixNorm::Fro)?;
    /// assert_eq!(fro.shape(), &[] as &[usize]);
    /// assert!((fro.to_vec()?[0] - 30f32.sqrt()).abs() < 1e-6);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn matrix_norm(&self, a: &Tensor, ord: MatrixNorm) -> Result<Tensor> {
        let p = self.norms_prepare("matrix_norm", a)?;
        if p.plan.is_empty() {
            let v = empty_norm(&p.plan, ord)?;
            let len: usize = p.plan.batch;
            return self.tensor(&p.plan.batch_shape, &vec![v; len]);
        }
        let r = self.norms_scaled_norm(&p, ord)?;
        let r = if p.scales.iter().all(|&s| s == 1.0) {
            r
        } else {
            self.mul(&r, &self.tensor(&[p.plan.batch], &p.scales)?)?
        };
        r.reshape(&p.plan.batch_shape)
    }

    /// The condition number of `a`, as `numpy.linalg.cond(a, p)`, batched over [..., m, n]
    /// (result shape [...]).
    ///
    /// - `None` or `Some(Two)`: σ_max/σ_min, any shape; `Some(NegTwo)`: σ_min/σ_max. Singular
    ///   values come from [`Context::svd`]; a zero σ_min gives inf, as numpy does.
    /// - `fro`, `nuc`, `1`, `-1`, `inf`, `-inf`: ‖A‖·‖A⁻¹‖ in that norm, for square matrices
    ///   only (an error names both dims), with A⁻¹ from [`Context::inv`] (LU with partial
    ///   pivoting), as numpy does: a matrix with an exact zero pivot gives inf, a nearly
    ///   singular one a huge number.
    ///
    /// The σ-based result is computed on the host from the singular values read back (one
    /// small readback per matrix). Empty matrices are an error (numpy raises).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::MatrixNorm;
    /// let a = ctx.tensor(&[2, 2], &[4.0, 0.0, 0.0, 0.5])?;
    /// assert_eq!(ctx.cond(&a, None)?.to_vec()?, vec![8.0]);
    /// let c1 = ctx.cond(&a, Some(MatrixNorm::One))?.to_vec()?[0];
    /// assert!((c1 - 8.0).abs() < 1e-5);
    /// let singular = ctx.tensor(&[2, 2], &[1.0, 2.0, 0.0, 0.0])?;
    /// assert_eq!(ctx.cond(&singular, None)?.to_vec()?, vec![f32::INFINITY]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn cond(&self, a: &Tensor, p: Option<MatrixNorm>) -> Result<Tensor> {
        let prep = self.norms_prepare("cond", a)?;
        let plan = &prep.plan;
        let sigma_based = matches!(p, None | Some(MatrixNorm::Two) | Some(MatrixNorm::NegTwo));
        if !sigma_based {
            plan.require_square("cond", &format!("p={}", p.map_or("2", |o| o.name())))?;
        }
        if plan.is_empty() {
            return Err(plan.empty_error("cond", "the condition number"));
        }
        if let Some(ord) = p.filter(|_| !sigma_based) {
            return self.norms_cond_by_inverse(&prep, ord);
        }
        let out: Vec<f32> = self
            .norms_svds(&prep)?
            .into_iter()
            .map(|(_, s)| {
                let (hi, lo) = (s[0], s[s.len() - 1]);
                let r = if p == Some(MatrixNorm::NegTwo) {
                    lo / hi
                } else {
                    hi / lo
                };
                // 0/0 (a zero matrix) is inf, as numpy makes it.
                if r.is_nan() {
                    f32::INFINITY
                } else {
                    r
                }
            })
            .collect();
        self.tensor(&plan.batch_shape, &out)
    }

    /// ‖A‖·‖A⁻¹‖ in the norm `ord` of each (square, scaled: the product is scale-free) matrix,
    /// A⁻¹ by LU; a matrix whose LU meets an exact zero pivot gives inf.
    fn norms_cond_by_inverse(&self, prep: &Prepared, ord: MatrixNorm) -> Result<Tensor> {
        let plan = &prep.plan;
        let (b, n) = (plan.batch, plan.n);
        let norms = |x: &Tensor, batch: usize| -> Result<Vec<f32>> {
            let one = Prepared {
                plan: NormsPlan::from_shape("cond", &[batch, n, n])?,
                scaled: x.reshape(&[batch, n, n])?,
                scales: vec![1.0; batch],
            };
            self.norms_scaled_norm(&one, ord)?.to_vec()
        };
        let na = norms(&prep.scaled, b)?;
        let ni: Vec<f32> = match self.inv(&prep.scaled) {
            Ok(inv) => norms(&inv, b)?,
            // Some matrix is singular: invert each alone, inf for the singular ones.
            Err(crate::Error::LinAlg(_)) => (0..b)
                .map(
                    |i| match self.inv(&self.norms_matrix(&prep.scaled, plan, i)?) {
                        Ok(inv) => Ok(norms(&inv, 1)?[0]),
                        Err(crate::Error::LinAlg(_)) => Ok(f32::INFINITY),
                        Err(e) => Err(e),
                    },
                )
                .collect::<Result<_>>()?,
            Err(e) => return Err(e),
        };
        // 0·inf (the zero matrix) is inf, as numpy makes it.
        let out: Vec<f32> = na
            .iter()
            .zip(&ni)
            .map(|(a, i)| if a * i >= 0.0 { a * i } else { f32::INFINITY })
            .collect();
        self.tensor(&plan.batch_shape, &out)
    }

    /// V·diag(d)·Uᵀ (n×m) from a thin SVD and the k values d.
    fn norms_inverse_from(&self, svd: &Svd, d: &[f32]) -> Result<Tensor> {
        let k = d.len();
        let v = self.transpose(&svd.vt)?;
        let vd = self.mul(&v, &self.tensor(&[1, k], d)?)?;
        self.matmul(&vd, &self.transpose(&svd.u)?)
    }

    /// The rank of `a`, as `numpy.linalg.matrix_rank(a, tol)`: the number of singular values
    /// above `tol`, by default σ_max·max(m, n)·ε with ε = 2⁻²³ (f32's machine epsilon);
    /// batched over [..., m, n], result a u32 tensor of shape [...]. An empty matrix has rank
    /// 0. Singular values from [`Context::svd`], counted on the host.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[3, 2], &[1.0, 2.0, 2.0, 4.0, 3.0, 6.0])?; // rank 1
    /// assert_eq!(ctx.matrix_rank(&a, None)?.to_vec_u32()?, vec![1]);
    /// let b = ctx.tensor(&[2, 2, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1e-3])?;
    /// assert_eq!(ctx.matrix_rank(&b, Some(1e-2))?.to_vec_u32()?, vec![2, 1]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn matrix_rank(&self, a: &Tensor, tol: Option<f32>) -> Result<Tensor> {
        let prep = self.norms_prepare("matrix_rank", a)?;
        let plan = &prep.plan;
        if plan.is_empty() {
            return self.tensor_u32(&plan.batch_shape, &vec![0; plan.batch]);
        }
        let eps = f64::from(NORMS_EPS);
        let ranks = self
            .norms_svds(&prep)?
            .into_iter()
            .zip(&prep.scales)
            .map(|((_, s), &scale)| {
                // Compare in the unscaled domain (the scale is an exact power of two).
                let sigma: Vec<f64> = s.iter().map(|&x| f64::from(x) * f64::from(scale)).collect();
                let t = match tol {
                    Some(t) => f64::from(t),
                    None => sigma[0] * plan.m.max(plan.n) as f64 * eps,
                };
                sigma.iter().filter(|&&x| x > t).count() as u32
            })
            .collect::<Vec<u32>>();
        self.tensor_u32(&plan.batch_shape, &ranks)
    }

    /// The Moore–Penrose pseudo-inverse of `a`, as `numpy.linalg.pinv(a, rtol=rtol)`:
    /// V·diag(1/σ)·Uᵀ from [`Context::svd`], singular values σ ≤ rtol·σ_max treated as zero;
    /// `rtol` defaults to max(m, n)·ε with ε = 2⁻²³. Batched over [..., m, n]; the result is
    /// [..., n, m] and stays resident (an empty matrix gives an empty result).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[2.0, 0.0, 0.0, 0.0])?;
    /// let p = ctx.pinv(&a, None)?;
    /// assert_eq!(p.to_vec()?, vec![0.5, 0.0, 0.0, 0.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn pinv(&self, a: &Tensor, rtol: Option<f32>) -> Result<Tensor> {
        let prep = self.norms_prepare("pinv", a)?;
        let plan = &prep.plan;
        if plan.is_empty() {
            let mut shape = plan.batch_shape.clone();
            shape.extend([plan.n, plan.m]);
            return self.zeros(&shape);
        }
        let rtol = f64::from(rtol.unwrap_or(plan.m.max(plan.n) as f32 * NORMS_EPS));
        let parts = self
            .norms_svds(&prep)?
            .into_iter()
            .zip(&prep.scales)
            .map(|((svd, s), &scale)| {
                let cutoff = rtol * f64::from(s[0]);
                // pinv(A) = pinv(A/scale)/scale: fold 1/scale into the reciprocals.
                let d: Vec<f32> = s
                    .iter()
                    .map(|&x| {
                        let x = f64::from(x);
                        if x > cutoff {
                            (1.0 / (x * f64::from(scale))) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect();
                self.norms_inverse_from(&svd, &d)
            })
            .collect::<Result<Vec<_>>>()?;
        self.norms_stack(&parts, &plan.batch_shape, &[plan.n, plan.m])
    }
}
