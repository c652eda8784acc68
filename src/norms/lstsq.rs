//! `numpy.linalg.lstsq`: the minimum-norm least-squares solution of A·X ≈ B, composed from
//! the SVD, QR, triangular-solve, matmul, elementwise and reduce ops (no kernels of its own).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::matmul::MatmulOptions;
use crate::norms::plan::{scale_of, NORMS_EPS};
use crate::solve::TriangularOptions;
use crate::tensor::{DType, Tensor};

/// The result of [`Context::lstsq`], as `numpy.linalg.lstsq` returns it: `(x, residuals,
/// rank, s)`.
#[derive(Clone, Debug)]
pub struct Lstsq {
    /// The minimum-norm least-squares solution: \[n\] for a 1-D `b`, \[n, k\] for `b` of \[m, k\].
    pub x: Tensor,
    /// The squared 2-norm of each column of B − A·X, shape \[k\] (\[1\] for a 1-D `b`); empty
    /// (shape \[0\]) when rank < n or m ≤ n, as numpy makes it.
    pub residuals: Tensor,
    /// The effective rank of A: the number of singular values above rcond·σ_max.
    pub rank: usize,
    /// The min(m, n) singular values of A, descending.
    pub s: Tensor,
}

/// A power of two 2^e as one or two exact factors (each a normal f32), for |e| up to 252.
fn pow2_factors(e: i32) -> Vec<f32> {
    let first = e.clamp(-126, 127);
    let rest = e - first;
    let mut f = vec![2f32.powi(first)];
    if rest != 0 {
        f.push(2f32.powi(rest.clamp(-126, 127)));
    }
    f
}

/// The exponent of a power of two returned by [`scale_of`].
fn exponent(scale: f32) -> i32 {
    scale.log2().round() as i32
}

impl Context {
    /// `x` multiplied by the exact power of two 2^e (one or two elementwise products; none for
    /// e = 0). Overflow or underflow happens only where the exact product is out of range.
    fn lstsq_scale_pow2(&self, x: Tensor, e: i32) -> Result<Tensor> {
        if e == 0 {
            return Ok(x);
        }
        let mut x = x;
        for f in pow2_factors(e) {
            x = self.scale(&x, f)?;
        }
        Ok(x)
    }

    /// The least-squares solution of A·X ≈ B, as `numpy.linalg.lstsq(a, b, rcond)`:
    /// X minimizes ‖B − A·X‖₂ column by column and, among the minimizers, has the least
    /// 2-norm. `a` is \[m, n\] (2-D only, as in numpy), `b` is \[m\] or \[m, k\]; the result holds
    /// `x` (\[n\] or \[n, k\]), `residuals`, `rank` and `s` (see [`Lstsq`]).
    ///
    /// - Singular values: one [`Context::svd`] of A, always (numpy returns them), read back
    ///   (min(m, n) floats) to fix the rank: the number of σᵢ > rcond·σ_max. `rcond` defaults
    ///   to ε·max(m, n) with ε = 2⁻²³ ([`NORMS_EPS`], f32's machine epsilon); a negative
    ///   `rcond` means ε, as LAPACK's `gelsd` takes it. (numpy computes in f64 and so defaults
    ///   to 2⁻⁵²·max(m, n); singular values below 2⁻²³·σ_max are not resolved in f32.)
    /// - Full column rank and m ≥ n: through [`Context::qr`], X = R⁻¹·(Qᵀ·B) by
    ///   [`Context::solve_triangular`].
    /// - Rank-deficient or wide (m < n): through the SVD, X = V·diag(1/σᵢ for σᵢ above the
    ///   cutoff, else 0)·Uᵀ·B.
    /// - Residuals: the squared column norms of B − A·X, when rank = n < m; otherwise an empty
    ///   tensor, as numpy returns.
    ///
    /// A and B are each divided by a power of two near their largest |entry| first (exact),
    /// and X, the residuals and σ are scaled back exactly, so inputs near 1e±30 neither
    /// overflow nor underflow inside. Results stay resident on a GPU context.
    ///
    /// Empty input follows numpy: m = 0 or n = 0 gives X of zeros, rank 0 and no singular
    /// values; the residuals are empty, except for n = 0 < m, where X = 0 is the full-rank
    /// solution and the residuals are the squared column norms of B (numpy's `gelsd` path
    /// reports them too). k = 0 gives X of shape [n, 0] and empty residuals.
    ///
    /// Errors: `a` not 2-D or `b` not 1-D/2-D, or rows of `b` ≠ rows of `a`
    /// ([`Error::Shape`], naming both shapes); a dtype other than float32, NaN or infinite
    /// values ([`Error::InvalidArgument`]).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// // Fit y = c₀ + c₁·t through (0, 1), (1, 3), (2, 5), (3, 6).
    /// let a = ctx.tensor(&[4, 2], &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0])?;
    /// let y = ctx.tensor(&[4], &[1.0, 3.0, 5.0, 6.0])?;
    /// let fit = ctx.lstsq(&a, &y, None)?;
    /// let c = fit.x.to_vec()?;
    /// assert!((c[0] - 1.2).abs() < 1e-5 && (c[1] - 1.7).abs() < 1e-5);
    /// assert_eq!(fit.rank, 2);
    /// assert_eq!(fit.residuals.shape(), &[1]);
    /// assert!((fit.residuals.to_vec()?[0] - 0.3).abs() < 1e-5);
    /// // A rank-deficient system: the minimum-norm solution, no residuals.
    /// let a = ctx.tensor(&[2, 2], &[1.0, 1.0, 1.0, 1.0])?;
    /// let fit = ctx.lstsq(&a, &ctx.tensor(&[2], &[2.0, 2.0])?, None)?;
    /// assert_eq!(fit.rank, 1);
    /// let x = fit.x.to_vec()?;
    /// assert!((x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6);
    /// assert_eq!(fit.residuals.shape(), &[0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lstsq(&self, a: &Tensor, b: &Tensor, rcond: Option<f32>) -> Result<Lstsq> {
        for (name, t) in [("a", a), ("b", b)] {
            if t.dtype() != DType::F32 {
                return Err(Error::InvalidArgument(format!(
                    "lstsq: {name} (shape {:?}) is {}; expected float32",
                    t.shape(),
                    t.dtype().name()
                )));
            }
        }
        let (m, n) = match *a.shape() {
            [m, n] => (m, n),
            _ => {
                return Err(Error::Shape(format!(
                    "lstsq needs a 2-D matrix a [m, n]; got a of shape {:?} ({} dims), b of \
                     shape {:?}",
                    a.shape(),
                    a.ndim(),
                    b.shape()
                )))
            }
        };
        let (mb, k, b_1d) = match *b.shape() {
            [mb] => (mb, 1, true),
            [mb, k] => (mb, k, false),
            _ => {
                return Err(Error::Shape(format!(
                    "lstsq: b must be [m] or [m, k]; got a of shape {:?} and b of shape {:?} \
                     ({} dims)",
                    a.shape(),
                    b.shape(),
                    b.ndim()
                )))
            }
        };
        if mb != m {
            return Err(Error::Shape(format!(
                "lstsq: incompatible dimensions: a of shape {:?} has {m} rows, b of shape {:?} \
                 has {mb}",
                a.shape(),
                b.shape()
            )));
        }
        let x_shape: Vec<usize> = if b_1d { vec![n] } else { vec![n, k] };
        let res_len = if b_1d { 1 } else { k };
        let b2 = b.reshape(&[m, k])?;

        // max|A| and max|B| (one reduction and one readback of a float each): finiteness and
        // the power-of-two scales.
        let max_abs = |t: &Tensor| -> Result<f32> {
            if t.is_empty() {
                return Ok(0.0);
            }
            Ok(self.max(&self.abs(t)?, None)?.to_vec()?[0])
        };
        let (amax, bmax) = (max_abs(a)?, max_abs(&b2)?);
        for (name, t, v) in [("a", a, amax), ("b", b, bmax)] {
            if !v.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "lstsq: {name} (shape {:?}) holds NaN or infinite values",
                    t.shape()
                )));
            }
        }

        if m == 0 || n == 0 {
            let x = self.zeros(&x_shape)?;
            let residuals = if n == 0 && m > 0 {
                // X = 0 has full rank n = 0 < m: the residuals are ‖B‖² per column.
                self.sum(&self.mul(&b2, &b2)?, Some(0))?
                    .reshape(&[res_len])?
            } else {
                self.zeros(&[0])?
            };
            return Ok(Lstsq {
                x,
                residuals,
                rank: 0,
                s: self.zeros(&[0])?,
            });
        }

        let (sa, sb) = (scale_of(amax), scale_of(bmax));
        let (ea, eb) = (exponent(sa), exponent(sb));
        let a_s = self.lstsq_scale_pow2(a.clone(), -ea)?;
        let b_s = self.lstsq_scale_pow2(b2, -eb)?;

        let svd = self.svd(&a_s)?;
        let s_host = svd.s.to_vec()?;
        let rcond = match rcond {
            Some(r) if r >= 0.0 => f64::from(r),
            Some(_) => f64::from(NORMS_EPS),
            None => f64::from(NORMS_EPS) * m.max(n) as f64,
        };
        let cutoff = rcond * f64::from(s_host[0]);
        let rank = s_host.iter().filter(|&&x| f64::from(x) > cutoff).count();
        let s = self.lstsq_scale_pow2(svd.s.clone(), ea)?;

        if k == 0 {
            return Ok(Lstsq {
                x: self.zeros(&x_shape)?,
                residuals: self.zeros(&[0])?,
                rank,
                s,
            });
        }

        let tn = MatmulOptions {
            transpose_a: true,
            ..MatmulOptions::default()
        };
        // X' solves the scaled problem A'·X' ≈ B' with A = 2^ea·A', B = 2^eb·B'.
        let x_s = if rank == n && m >= n {
            let qr = self.qr(&a_s)?;
            let c = self.matmul_with(&qr.q, &b_s, &tn)?;
            self.solve_triangular(&qr.r, &c, &TriangularOptions::default())?
        } else {
            let d: Vec<f32> = s_host
                .iter()
                .map(|&x| if f64::from(x) > cutoff { 1.0 / x } else { 0.0 })
                .collect();
            let c = self.matmul_with(&svd.u, &b_s, &tn)?;
            let c = self.mul(&c, &self.tensor(&[d.len(), 1], &d)?)?;
            self.matmul_with(&svd.vt, &c, &tn)?
        };

        let residuals = if rank == n && m > n {
            let r = self.sub(&b_s, &self.matmul(&a_s, &x_s)?)?;
            let r2 = self.sum(&self.mul(&r, &r)?, Some(0))?;
            // ‖B − A·X‖² = 2^(2·eb)·‖B' − A'·X'‖², in two exact steps.
            let r2 = self.lstsq_scale_pow2(r2, eb)?;
            self.lstsq_scale_pow2(r2, eb)?.reshape(&[res_len])?
        } else {
            self.zeros(&[0])?
        };
        // X = 2^(eb − ea)·X'.
        let x = self.lstsq_scale_pow2(x_s, eb - ea)?.reshape(&x_shape)?;
        Ok(Lstsq {
            x,
            residuals,
            rank,
            s,
        })
    }
}
