//! Decompositions composed from the SVD family and the matmul, elementwise, reduce, layout and
//! random ops: the symmetric eigen-decomposition (`numpy.linalg.eigh`), PCA
//! (`sklearn.decomposition.PCA`), the best rank-r approximation and the randomized SVD of
//! Halko, Martinsson and Tropp. No kernels of their own: on a GPU every heavy step runs in the
//! existing kernels; on the CPU backend `eigh` uses faer's symmetric eigensolver.

mod band;
pub mod cpu;

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::Slice;
use crate::matmul::MatmulOptions;
use crate::runtime::Gpu;
use crate::svd::Svd;
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

/// The eigen-decomposition `A = Z · diag(values) · Zᵀ` of a symmetric n×n matrix.
#[derive(Clone, Debug)]
pub struct Eigh {
    /// Eigenvalues, n, ascending (signed).
    pub values: Tensor,
    /// Eigenvectors as columns, n×n, orthonormal; column i belongs to `values[i]`.
    pub vectors: Tensor,
    /// Jacobi sweeps of the GPU's SVDs of the shifted matrix and of the refinement (0 on the
    /// CPU backend).
    pub sweeps: u32,
    /// Compute dispatches the GPU ran for this call (0 on the CPU backend).
    pub dispatches: u64,
    /// Queue submissions this call made (0 on the CPU backend).
    pub submits: u64,
}

/// A principal component analysis, as `sklearn.decomposition.PCA(n_components=k)` fits it.
#[derive(Clone, Debug)]
pub struct Pca {
    /// Principal axes as rows, k × features, by descending variance. Signs follow sklearn
    /// (≥ 1.5, `svd_flip(u_based_decision=False)`): the largest-|·| entry of each row is positive.
    pub components: Tensor,
    /// Variance along each component (n_samples − 1 normalisation), k.
    pub explained_variance: Tensor,
    /// `explained_variance` over the total variance of all features, k.
    pub explained_variance_ratio: Tensor,
    /// Per-feature mean of the input, features.
    pub mean: Tensor,
    /// The centred input projected on the components, samples × k (sklearn's `transform`).
    pub projected: Tensor,
}

/// The best rank-r approximation of a matrix in the Frobenius (and spectral) norm.
#[derive(Clone, Debug)]
pub struct LowRank {
    /// `U_r · diag(S_r) · V_rᵀ`, the shape of the input.
    pub approx: Tensor,
    /// ‖A − approx‖_F as the singular values predict it: √(Σ_{i>r} σᵢ²).
    pub error: f32,
}

/// Options of [`Context::randomized_svd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomizedSvdOptions {
    /// Extra sketch columns beyond the rank asked for (10 by default).
    pub oversampling: usize,
    /// Power (subspace) iterations, each re-orthonormalised (2 by default).
    pub power_iterations: usize,
    /// Seed of the Gaussian sketch.
    pub seed: u64,
}

impl Default for RandomizedSvdOptions {
    fn default() -> Self {
        RandomizedSvdOptions {
            oversampling: 10,
            power_iterations: 2,
            seed: 0,
        }
    }
}

/// (rows, cols) of a float32 2-D operand of `op`, or an error naming the shape.
fn matrix_dims(op: &str, a: &Tensor) -> Result<(usize, usize)> {
    if a.dtype() != DType::F32 {
        return Err(Error::InvalidArgument(format!(
            "{op}: input (shape {:?}) is {}; expected float32",
            a.shape(),
            a.dtype().name()
        )));
    }
    match *a.shape() {
        [m, n] => Ok((m, n)),
        _ => Err(Error::Shape(format!(
            "{op} needs a 2-D matrix; got shape {:?} ({} dims)",
            a.shape(),
            a.ndim()
        ))),
    }
}

/// Checks that the row-major n×n `a` is finite and symmetric within 1e-5·max|A|, and returns
/// it symmetrised from its lower triangle (as numpy's `eigh` reads it).
pub(crate) fn symmetric_from_lower(a: &[f32], n: usize) -> Result<Vec<f32>> {
    if a.iter().any(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "eigh: the {n}×{n} input holds NaN or infinite values"
        )));
    }
    let max = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let mut asym = 0.0f32;
    let mut s = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..=i {
            asym = asym.max((a[i * n + j] - a[j * n + i]).abs());
            s[i * n + j] = a[i * n + j];
            s[j * n + i] = a[i * n + j];
        }
    }
    if f64::from(asym) > 1e-5 * f64::from(max) {
        return Err(Error::InvalidArgument(format!(
            "eigh needs a symmetric matrix: the {n}×{n} input has max|A−Aᵀ| = {asym:e}, above \
             1e-5·max|A| = {:e}",
            1e-5 * f64::from(max)
        )));
    }
    Ok(s)
}

/// The symmetric matrix (both triangles, from the lower one) of the square `a` and its order,
/// for `op` (eigh, eigvalsh); errors name a non-square shape or the asymmetry.
fn symmetric_input(op: &str, a: &Tensor) -> Result<(Vec<f32>, usize)> {
    let (m, n) = matrix_dims(op, a)?;
    if m != n {
        return Err(Error::Shape(format!(
            "{op} needs a square matrix; got shape {:?}",
            a.shape()
        )));
    }
    Ok((symmetric_from_lower(&host_values(a)?, n)?, n))
}

/// `a` scaled by the power of two 1/up that brings max|a| into [0.5, 1), and `up`.
fn power_of_two_scaled(a: &[f32]) -> (Vec<f32>, f32) {
    let e = crate::reference::scale_exponent(crate::reference::abs_max(a));
    let down = 2f32.powi(-e);
    (a.iter().map(|x| x * down).collect(), 2f32.powi(e))
}

/// The first `r` columns of a 2-D tensor.
fn first_cols(ctx: &Context, t: &Tensor, r: usize) -> Result<Tensor> {
    ctx.slice(t, &[Slice::all(), Slice::range(0, r as isize)])
}

/// The first `r` rows of a 2-D tensor.
fn first_rows(ctx: &Context, t: &Tensor, r: usize) -> Result<Tensor> {
    ctx.slice(t, &[Slice::range(0, r as isize), Slice::all()])
}

/// The refinement shift of [`Context::eigh`] sits this fraction of max|λ| above −λ_min, far
/// above the first pass's eigenvalue errors (~10⁻⁶ of max|λ|), so A + c'·I is surely positive
/// definite.
const REFINE_MARGIN: f32 = 1e-2;

impl Context {
    /// The eigen-decomposition of a symmetric matrix, as `numpy.linalg.eigh(a)`: eigenvalues
    /// ascending, eigenvectors as columns. Only the lower triangle is used; input whose
    /// asymmetry max|A−Aᵀ| exceeds 1e-5·max|A| is refused with that figure.
    ///
    /// On a GPU: the two-stage band eigensolver. Householder panels reduce A = Q·B·Qᵀ to a
    /// symmetric band B of the panel width (16 or 32) on the GPU (a QR of each panel below the
    /// diagonal block, then the two-sided block update of the trailing matrix as rank-b products); the host
    /// reads the band back and solves it in f64 (faer); the GPU applies the reflectors to the
    /// band's eigenvectors (Z = Q·Z_B). Orders past the one-workgroup panel's reach (tens of
    /// thousands) take the older path: the one-sided Jacobi SVD of the shifted matrix B = A + c·I, with
    /// c = min(‖A‖_∞, ‖A‖_F) ≥ −λ_min so that B is positive semi-definite and its right
    /// singular vectors are eigenvectors of A; each eigenvalue is then the Rayleigh quotient
    /// zᵢᵀ A zᵢ (a GPU matmul and a column sum), which keeps small eigenvalues accurate
    /// relative to ‖A‖. A second, short pass refines the vectors: the SVD of (A + c'·I)·Z with
    /// c' just above −λ_min (Jacobi's mixing of close eigenvectors grows with the shift; on a
    /// random 200×200 the worst mixing fell from 7.6e-3 to 1.4e-3 and the residual ratio from
    /// 3.75 to 0.24). `Eigh::sweeps` counts both passes. On the CPU: faer's symmetric
    /// eigensolver.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[2.0, 1.0, 1.0, 2.0])?;
    /// let e = ctx.eigh(&a)?;
    /// let w = e.values.to_vec()?;
    /// assert!((w[0] - 1.0).abs() < 1e-6 && (w[1] - 3.0).abs() < 1e-6);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn eigh(&self, a: &Tensor) -> Result<Eigh> {
        let (mut out, spent) = crate::runtime::counted(|| self.eigh_uncounted(a))?;
        (out.dispatches, out.submits) = (spent.dispatches, spent.submits);
        Ok(out)
    }

    fn eigh_uncounted(&self, a: &Tensor) -> Result<Eigh> {
        let (sym, n) = symmetric_input("eigh", a)?;
        if n == 0 {
            return Ok(Eigh {
                values: self.zeros(&[0])?,
                vectors: self.zeros(&[0, 0])?,
                sweeps: 0,
                dispatches: 0,
                submits: 0,
            });
        }
        let cpu_path = || -> Result<Eigh> {
            let (w, z) = crate::decomp::cpu::eigh_fast(&sym, n)?;
            Ok(Eigh {
                values: self.tensor(&[n], &w)?,
                vectors: self.tensor(&[n, n], &z)?,
                sweeps: 0,
                dispatches: 0,
                submits: 0,
            })
        };
        let Some(gpu) = self.gpu() else {
            return cpu_path();
        };
        // Scale max|A| into [0.5, 1) by an exact power of two, so that neither the shift nor
        // the Rayleigh quotients overflow or underflow; the eigenvalues are scaled back.
        let (scaled, up) = power_of_two_scaled(&sym);
        if band::fits(n) {
            let r = self.eigh_band(gpu, &scaled, n, true).and_then(|(w, z)| {
                let w: Vec<f32> = w.iter().map(|x| x * up).collect();
                Ok(Eigh {
                    values: self.tensor(&[n], &w)?,
                    vectors: z.ok_or_else(|| {
                        Error::Readback("eigh: the band solver returned no vectors".into())
                    })?,
                    sweeps: 0,
                    dispatches: 0,
                    submits: 0,
                })
            });
            return match self.fallback_or(r)? {
                Some(t) => Ok(t),
                None => cpu_path(),
            };
        }
        let sym = scaled;
        // Shift: both norms bound the spectral radius.
        let inf = (0..n)
            .map(|i| {
                sym[i * n..(i + 1) * n]
                    .iter()
                    .map(|x| f64::from(x.abs()))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let fro = sym
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        let c = inf.min(fro) as f32;
        let mut shifted = sym.clone();
        for i in 0..n {
            shifted[i * n + i] += c;
        }
        let b = self.tensor(&[n, n], &shifted)?;
        let svd = self.svd(&b)?;
        let at = self.tensor(&[n, n], &sym)?;
        let mut v = self.transpose(&svd.vt)?;
        let mut av = self.matmul(&at, &v)?;
        let mut rayleigh = self.sum(&self.mul(&v, &av)?, Some(0))?.to_vec()?;
        let mut sweeps = svd.sweeps;
        // Refinement. Jacobi mixes the eigenvectors of λᵢ, λⱼ by about
        // tol·(λᵢ+c)(λⱼ+c)/((λᵢ−λⱼ)(λᵢ+λⱼ+2c)): the Gershgorin-sized c costs accuracy where
        // eigenvalues are close. Now that the eigenvalues are known, the SVD of
        // (A + c'·I)·V with c' just above −λ_min (its columns are nearly orthogonal already, so
        // it takes few sweeps) gives V' with A + c'·I = U·Σ·(V·V')ᵀ: eigenvectors V·V'.
        let (lo, hi) = rayleigh.iter().fold((f32::INFINITY, 0f32), |(lo, hi), x| {
            (lo.min(*x), hi.max(x.abs()))
        });
        let c2 = (-lo).max(0.0) + REFINE_MARGIN * hi;
        if n > 1 && lo.is_finite() && c2 < 0.5 * c {
            let y = self.axpy(c2, &v, &av)?;
            let fine = self.svd(&y)?;
            let opts = MatmulOptions {
                transpose_b: true,
                ..MatmulOptions::default()
            };
            let v2 = self.matmul_with(&v, &fine.vt, &opts)?;
            let av2 = self.matmul(&at, &v2)?;
            let r2 = self.sum(&self.mul(&v2, &av2)?, Some(0))?.to_vec()?;
            // A + c'·I must have been positive definite (else ±pairs of its eigenvalues could
            // mix): keep the first result if a refined eigenvalue says otherwise.
            if r2.iter().all(|x| x + c2 > 0.0) {
                (v, av, rayleigh) = (v2, av2, r2);
                sweeps = sweeps.saturating_add(fine.sweeps);
            }
        }
        drop(av);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| rayleigh[x].total_cmp(&rayleigh[y]));
        let vs = v.to_vec()?;
        let mut z = vec![0.0f32; n * n];
        for (q, &col) in order.iter().enumerate() {
            for r in 0..n {
                z[r * n + q] = vs[r * n + col];
            }
        }
        let w: Vec<f32> = order.iter().map(|&col| rayleigh[col] * up).collect();
        Ok(Eigh {
            values: self.tensor(&[n], &w)?,
            vectors: self.tensor(&[n, n], &z)?,
            sweeps,
            dispatches: 0,
            submits: 0,
        })
    }

    /// The band eigensolver on the GPU for the symmetric `sym` (n×n, scaled): eigenvalues
    /// ascending and, with `vectors`, the eigenvectors as columns.
    fn eigh_band(
        &self,
        gpu: &Arc<Gpu>,
        sym: &[f32],
        n: usize,
        vectors: bool,
    ) -> Result<(Vec<f32>, Option<Tensor>)> {
        let w = self.resident(&self.tensor(&[n, n], sym)?)?;
        let (values, z) = gpu.scoped("eigh", || band::band_eigh(gpu, &w, n, vectors))??;
        Ok((
            values,
            z.map(|z| Tensor::from_gpu(vec![n, n], DType::F32, z)),
        ))
    }

    /// The eigenvalues of a symmetric matrix, ascending, without its eigenvectors
    /// (`numpy.linalg.eigvalsh`): the checks and conventions of [`Context::eigh`]. On a GPU the
    /// band reduction runs without its back-transform and the host solves for values only;
    /// on the CPU: faer.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[2.0, 1.0, 1.0, 2.0])?;
    /// let w = ctx.eigvalsh(&a)?.to_vec()?;
    /// assert!((w[0] - 1.0).abs() < 1e-6 && (w[1] - 3.0).abs() < 1e-6);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn eigvalsh(&self, a: &Tensor) -> Result<Tensor> {
        let (sym, n) = symmetric_input("eigvalsh", a)?;
        if n == 0 {
            return self.zeros(&[0]);
        }
        let (sym, up) = power_of_two_scaled(&sym);
        if let Some(gpu) = self.gpu().filter(|_| band::fits(n)) {
            let r = self.eigh_band(gpu, &sym, n, false).and_then(|(w, _)| {
                self.tensor(&[n], &w.iter().map(|x| x * up).collect::<Vec<_>>())
            });
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
        }
        let w = crate::decomp::cpu::eigenvalues_fast(&sym, n)?;
        self.tensor(&[n], &w.iter().map(|x| x * up).collect::<Vec<_>>())
    }

    /// Principal component analysis of `x` (samples × features), as
    /// `sklearn.decomposition.PCA(n_components=k).fit(x)`: the SVD of the centred data gives
    /// the components (rows, signs as sklearn ≥ 1.5 picks them), the explained variance (with
    /// n−1) and its ratio over the total variance of all features; `projected` is the centred
    /// data times the components' transpose. Needs at least 2 samples and
    /// k ≤ min(samples, features).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// // Three samples along the first feature: all the variance is there.
    /// let x = ctx.tensor(&[3, 2], &[-2., 0., 0., 0., 2., 0.])?;
    /// let p = ctx.pca(&x, 1)?;
    /// assert_eq!((p.components.shape(), p.projected.shape()), (&[1, 2][..], &[3, 1][..]));
    /// assert!((p.explained_variance.to_vec()?[0] - 4.0).abs() < 1e-4);
    /// assert!((p.explained_variance_ratio.to_vec()?[0] - 1.0).abs() < 1e-4);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn pca(&self, x: &Tensor, k: usize) -> Result<Pca> {
        let (m, p) = matrix_dims("pca", x)?;
        if m < 2 {
            return Err(Error::Shape(format!(
                "pca needs at least 2 samples (rows); got shape {:?}",
                x.shape()
            )));
        }
        if k > m.min(p) {
            return Err(Error::InvalidArgument(format!(
                "pca: {k} components of data of shape {:?}; at most min(samples, features) = {}",
                x.shape(),
                m.min(p)
            )));
        }
        let mean = self.mean(x, Some(0))?;
        let centred = self.sub(x, &mean)?;
        let svd = self.svd(&centred)?;
        let s = svd.s.to_vec()?;
        let vt = svd.vt.to_vec()?;
        let mut comps = vt[..k * p].to_vec();
        crate::reference::flip_rows_largest_positive(&mut comps, p);
        let components = self.tensor(&[k, p], &comps)?;
        let total: f64 = self
            .var(x, Some(0), 1)?
            .to_vec()?
            .iter()
            .map(|v| f64::from(*v))
            .sum();
        let dof = (m - 1) as f64;
        let ev: Vec<f64> = s[..k].iter().map(|v| f64::from(*v).powi(2) / dof).collect();
        let ratio: Vec<f32> = ev
            .iter()
            .map(|v| if total > 0.0 { (v / total) as f32 } else { 0.0 })
            .collect();
        let ev: Vec<f32> = ev.iter().map(|v| *v as f32).collect();
        let projected = if k == 0 {
            self.zeros(&[m, 0])?
        } else {
            self.matmul_with(
                &centred,
                &components,
                &MatmulOptions {
                    transpose_b: true,
                    ..Default::default()
                },
            )?
        };
        Ok(Pca {
            components,
            explained_variance: self.tensor(&[k], &ev)?,
            explained_variance_ratio: self.tensor(&[k], &ratio)?,
            mean,
            projected,
        })
    }

    /// The best rank-`r` approximation `U_r · diag(S_r) · V_rᵀ` of the m×n matrix `a` (Eckart–
    /// Young) from its SVD, and its Frobenius error √(Σ_{i>r} σᵢ²). r ≤ min(m, n).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[3., 0., 0., 1.])?;
    /// let lr = ctx.low_rank(&a, 1)?;
    /// let v = lr.approx.to_vec()?;
    /// assert!((v[0] - 3.0).abs() < 1e-4);
    /// assert!((v[3] - 0.0).abs() < 1e-4);
    /// assert!((lr.error - 1.0).abs() < 1e-4);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn low_rank(&self, a: &Tensor, r: usize) -> Result<LowRank> {
        let (m, n) = matrix_dims("low_rank", a)?;
        if r > m.min(n) {
            return Err(Error::InvalidArgument(format!(
                "low_rank: rank {r} of a matrix of shape {:?}; at most min(m, n) = {}",
                a.shape(),
                m.min(n)
            )));
        }
        let svd = self.svd(a)?;
        let s = svd.s.to_vec()?;
        let error = s[r..]
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt() as f32;
        let approx = if r == 0 {
            self.zeros(&[m, n])?
        } else {
            let us = self.mul(
                &first_cols(self, &svd.u, r)?,
                &self.slice(&svd.s, &[Slice::range(0, r as isize)])?,
            )?;
            self.matmul(&us, &first_rows(self, &svd.vt, r)?)?
        };
        Ok(LowRank { approx, error })
    }

    /// The top `r` singular triplets of the m×n matrix `a` by the randomized SVD of Halko,
    /// Martinsson and Tropp (2011): a Gaussian sketch Y = A·Ω with `r + oversampling` columns,
    /// `power_iterations` subspace iterations (Q re-orthonormalised after every product by the
    /// thin SVD's U), B = Qᵀ·A, and the small SVD of B. Returns U m×r, S r, Vt r×n; `sweeps`
    /// counts the Jacobi sweeps of every inner SVD, `off_diagonal` is that of the last.
    ///
    /// ```
    /// use gpu_linalg::RandomizedSvdOptions;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[3, 3], &[3., 0., 0., 0., 1., 0., 0., 0., 0.5])?;
    /// let top = ctx.randomized_svd(&a, 1, &RandomizedSvdOptions { seed: 1, ..Default::default() })?;
    /// assert!((top.s.to_vec()?[0] - 3.0).abs() < 1e-3);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn randomized_svd(&self, a: &Tensor, r: usize, opts: &RandomizedSvdOptions) -> Result<Svd> {
        let (m, n) = matrix_dims("randomized_svd", a)?;
        let k = m.min(n);
        if r > k {
            return Err(Error::InvalidArgument(format!(
                "randomized_svd: rank {r} of a matrix of shape {:?}; at most min(m, n) = {k}",
                a.shape()
            )));
        }
        if r == 0 {
            return Ok(Svd {
                u: self.zeros(&[m, 0])?,
                s: self.zeros(&[0])?,
                vt: self.zeros(&[0, n])?,
                sweeps: 0,
                off_diagonal: 0.0,
                dispatches: 0,
                submits: 0,
            });
        }
        let l = r.saturating_add(opts.oversampling).min(k);
        let t_a = MatmulOptions {
            transpose_a: true,
            ..Default::default()
        };
        let mut sweeps = 0u32;
        let mut basis = |y: &Tensor| -> Result<Tensor> {
            let s = self.svd(y)?;
            sweeps = sweeps.saturating_add(s.sweeps);
            Ok(s.u)
        };
        let omega = self.rand_normal(&[n, l], opts.seed, 0.0, 1.0)?;
        let mut q = basis(&self.matmul(a, &omega)?)?;
        for _ in 0..opts.power_iterations {
            let z = basis(&self.matmul_with(a, &q, &t_a)?)?;
            q = basis(&self.matmul(a, &z)?)?;
        }
        let b = self.matmul_with(&q, a, &t_a)?;
        let small = self.svd(&b)?;
        let u = self.matmul(&q, &first_cols(self, &small.u, r)?)?;
        Ok(Svd {
            u,
            s: self.slice(&small.s, &[Slice::range(0, r as isize)])?,
            vt: first_rows(self, &small.vt, r)?,
            sweeps: sweeps.saturating_add(small.sweeps),
            off_diagonal: small.off_diagonal,
            dispatches: 0,
            submits: 0,
        })
    }
}
