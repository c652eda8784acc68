//! Linear solvers with numpy and scipy semantics: `lu` (`scipy.linalg.lu`), `lu_factor` and
//! `lu_solve` (the compact form, for reuse), `solve_triangular`, `solve` (`assume_a = gen |
//! pos`), `inv`, `det` and `slogdet`, each on a matrix or a batch [..., n, n].
//!
//! On a GPU everything stays resident and one call is one chain in the command stream with
//! one readback of its status words (`shaders/lu.wgsl`):
//! - LU is LAPACK's right-looking blocked getrf with block [`LU_BLOCK`]: per block column a
//!   panel factorisation in one workgroup (the pivot search a workgroup max-reduction, the row
//!   swaps on the GPU), the swaps applied to the other columns with U12 = L11⁻¹·A12 in the
//!   same pass, and a register-blocked rank-b GEMM update of the trailing matrix: 3·⌈n/b⌉
//!   dispatches;
//! - the triangular solve is blocked the same way: per diagonal block a solve of every
//!   right-hand side, then a rank-b GEMM update of the rows not yet solved;
//! - `solve` and `inv` chain the LU, the row interchanges of B and two triangular solves;
//!   `assume_a = pos` chains [`Context::cholesky`] and two triangular solves.
//!
//! On the CPU backend, faer's LU and triangular solves, matrices of a batch in parallel.
//! Errors follow numpy's `LinAlgError`: a singular matrix names its first zero pivot, NaN or
//! Inf input is refused, shapes name both operands; never a NaN-filled result.

pub mod cpu;
mod gpu;
pub mod plan;
pub mod small;

pub use plan::{AssumeA, SolveOptions, SquarePlan, SystemPlan, TriangularOptions};
pub use small::{SmallSolveKernel, SMALL_MAX_N, SOLVE_SMALL_KERNEL_ENV};

/// `shaders/lu.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/lu.wgsl");

/// The block size b of the GPU LU and triangular solves (`B` in shaders/lu.wgsl): the width
/// of each panel, the order of the diagonal blocks, the inner dimension of each update.
pub const LU_BLOCK: usize = 32;

use std::sync::Arc;

use crate::context::Context;
use crate::error::Result;
use crate::runtime::{BlockSize, Gpu, GpuBuffer};
use crate::solve::cpu::CompactLu;
use crate::solve::gpu::{Kernels, Packs, Status};
use crate::solve::plan::perm_of_pivots;
use crate::tensor::{host_values, DType, Tensor};

/// The smallest order whose GPU block size is tuned; smaller matrices use [`LU_BLOCK`] (their
/// cost is the dispatches, not the block size).
pub const LU_TUNED_FROM: usize = 256;

/// The block sizes the tuner times (multiples of 4, at most [`LU_BLOCK`]).
const LU_BLOCK_CANDIDATES: [usize; 2] = [16, 32];

/// `GPU_LINALG_LU_BLOCK`: forces the block size (`b16` or `b32`).
pub const LU_BLOCK_ENV: &str = "GPU_LINALG_LU_BLOCK";

/// The tuned LU block sizes of every device.
static CHOICES: crate::runtime::Choices<BlockSize> =
    crate::runtime::Choices::new("lu", Some(LU_BLOCK_ENV));

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![gpu::LuParams::layout(SOURCE.to_string())]
}

/// `scipy.linalg.lu(a)`: A = P·L·U with P a permutation matrix, L unit lower triangular with
/// |Lᵢⱼ| ≤ 1, U upper triangular; each [..., n, n].
#[derive(Clone, Debug)]
pub struct Lu {
    /// The permutation matrix P (float32, as scipy returns it).
    pub p: Tensor,
    /// The unit lower factor L.
    pub l: Tensor,
    /// The upper factor U.
    pub u: Tensor,
    /// scipy's `p_indices` (uint32, \[..., n\]): A = L\[perm\]·U, i.e. row i of A is row perm\[i\]
    /// of L·U (P[i, perm\[i\]] = 1).
    pub perm: Tensor,
}

/// `scipy.linalg.lu_factor(a)`: LAPACK's compact LU for reuse in [`Context::lu_solve`].
#[derive(Clone, Debug)]
pub struct LuFactor {
    /// L below the diagonal (its unit diagonal not stored) and U on and above it, [..., n, n].
    pub lu: Tensor,
    /// The pivots (uint32, \[..., n\]): row i was interchanged with row piv\[i\], in order, 0-based.
    pub piv: Tensor,
}

/// `numpy.linalg.slogdet(a)`: det = sign·exp(logabsdet), without overflow.
#[derive(Clone, Debug)]
pub struct Slogdet {
    /// ±1, or 0 for a singular matrix; shape [...] (the batch dims; [] for one matrix).
    pub sign: Tensor,
    /// log|det|, −∞ for a singular matrix.
    pub logabsdet: Tensor,
}

/// Shape `batch_shape` + `inner`.
fn with_inner(batch_shape: &[usize], inner: &[usize]) -> Vec<usize> {
    batch_shape.iter().chain(inner).copied().collect()
}

impl Context {
    /// Runs `gpu_path` on a GPU context (a kernel that cannot be built falls back to
    /// `cpu_path` under [`crate::Backend::Auto`]) and `cpu_path` elsewhere.
    fn solver_path<T>(
        &self,
        gpu_path: impl FnOnce(&Arc<Gpu>) -> Result<T>,
        cpu_path: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if let Some(gpu) = self.gpu() {
            if let Some(v) = self.fallback_or(gpu_path(gpu))? {
                return Ok(v);
            }
        }
        cpu_path()
    }

    /// The GPU block size of the LU and triangular solves of order `n`: [`LU_BLOCK`] below
    /// [`LU_TUNED_FROM`], else forced by `GPU_LINALG_LU_BLOCK`, remembered, cached on disk for
    /// this adapter, or timed now (each candidate's factors first checked by LAPACK's ratio)
    /// and cached. [`LU_BLOCK`] on the CPU backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let nb = ctx.lu_block(512)?;
    /// assert!(nb >= 1); // LU_BLOCK on the CPU backend
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lu_block(&self, n: usize) -> Result<usize> {
        match self.gpu() {
            Some(gpu) if n >= LU_TUNED_FROM => Ok(CHOICES
                .get(gpu, &format!("n>={LU_TUNED_FROM}"), || self.tune_lu_block())?
                .0),
            _ => Ok(LU_BLOCK),
        }
    }

    /// Times the LU of one random matrix (256×256 on CPU-type adapters such as lavapipe,
    /// 1024×1024 on GPUs) with each candidate block size, after checking its factors by
    /// LAPACK's ratio ‖A − P·L·U‖/(n·‖A‖·ε) < 30.
    fn tune_lu_block(&self) -> Result<Vec<crate::runtime::TuneOutcome<BlockSize>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let n = if gpu.is_cpu_adapter() { 256 } else { 1024 };
        let host: Vec<f32> = crate::random::cpu::stream(n * n, 0x1a, None)
            .into_iter()
            .map(|u| 2.0 * u - 1.0)
            .collect();
        let a = self.tensor(&[n, n], &host)?;
        let plan = SquarePlan::new("lu", &a)?;
        let candidates: Vec<BlockSize> =
            LU_BLOCK_CANDIDATES.iter().map(|&b| BlockSize(b)).collect();
        Ok(crate::runtime::measure(
            gpu,
            &candidates,
            3,
            |c| Ok(self.lu_compact_with(&a, &plan, Some(c.0))?.0),
            |f| {
                // The factors, then the pivots as floats (exact below 2²⁴).
                let mut v = f.lu.to_vec()?;
                v.extend(f.piv.to_vec_u32()?.iter().map(|&p| p as f32));
                Ok(v)
            },
            |out| cpu::check_compact_lu(&host, n, out),
        ))
    }

    /// `t` broadcast to `shape` (a copy only where the shapes differ).
    fn solver_broadcast(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        if t.shape() == shape {
            return Ok(t.clone());
        }
        // x + 0 is x exactly for every finite x (and keeps NaN and Inf for the checks).
        self.add(t, &self.zeros(shape)?)
    }

    /// The compact LU of every matrix of `a` (see [`Context::lu_factor`]) with each matrix's
    /// status words; NaN or Inf input is an error.
    fn lu_compact(&self, a: &Tensor, plan: &SquarePlan) -> Result<(LuFactor, Vec<[u32; 2]>)> {
        self.lu_compact_with(a, plan, None)
    }

    /// [`Context::lu_compact`] with the GPU block size `nb` (else the tuned one).
    fn lu_compact_with(
        &self,
        a: &Tensor,
        plan: &SquarePlan,
        nb: Option<usize>,
    ) -> Result<(LuFactor, Vec<[u32; 2]>)> {
        let (batch, n) = (plan.batch, plan.n);
        let piv_shape = with_inner(&plan.batch_shape, &[n]);
        let (f, status) = self.solver_path(
            |gpu| {
                let nb = match nb {
                    Some(nb) => nb,
                    None => self.lu_block(n)?,
                };
                let input = self.resident(a)?;
                let (lu, piv, status) = gpu.scoped("lu", || -> Result<_> {
                    let k = Kernels::new(gpu)?;
                    let packs = Packs::new(gpu, batch, n, n)?;
                    let mut enc = gpu.encoder("lu");
                    let status = Status::new(gpu, &mut enc, batch)?;
                    let (lu, piv) =
                        lu_into(gpu, &mut enc, &k, &packs, &input, &status, batch, n, nb)?;
                    enc.submit()?;
                    Ok((lu, piv, status))
                })??;
                let status = status.read()?;
                Ok((
                    LuFactor {
                        lu: Tensor::from_gpu(a.shape().to_vec(), DType::F32, lu),
                        piv: Tensor::from_gpu(piv_shape.clone(), DType::U32, piv),
                    },
                    status,
                ))
            },
            || {
                let f = cpu::lu_factor(&host_values(a)?, batch, n);
                Ok((
                    LuFactor {
                        lu: self.tensor(a.shape(), &f.lu)?,
                        piv: self.tensor_u32(&piv_shape, &f.ipiv)?,
                    },
                    f.status,
                ))
            },
        )?;
        plan.judge_all(&status, "a", "U", false)?;
        Ok((f, status))
    }

    /// LAPACK's compact LU with partial pivoting, as `scipy.linalg.lu_factor(a)`: `lu` holds L
    /// (unit diagonal not stored) below the diagonal and U on and above it, `piv` the row
    /// interchanges (row i with row piv\[i\], in order, 0-based). `a` is \[..., n, n\]. A singular
    /// matrix factors (U has a zero pivot), as in scipy; [`Context::lu_solve`] then refuses it.
    ///
    /// Errors: NaN or Inf in `a` ([`crate::Error::InvalidArgument`]); a shape that is not
    /// [..., n, n] ([`crate::Error::Shape`]).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[0.0, 1.0, 2.0, 3.0])?;
    /// let f = ctx.lu_factor(&a)?;
    /// assert_eq!(f.lu.to_vec()?, vec![2.0, 3.0, 0.0, 1.0]);
    /// assert_eq!(f.piv.to_vec_u32()?, vec![1, 1]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lu_factor(&self, a: &Tensor) -> Result<LuFactor> {
        let plan = SquarePlan::new("lu_factor", a)?;
        Ok(self.lu_compact(a, &plan)?.0)
    }

    /// The LU decomposition with partial pivoting, as `scipy.linalg.lu(a)`: A = P·L·U with P
    /// a permutation matrix, L unit lower triangular (|Lᵢⱼ| ≤ 1), U upper triangular, plus
    /// scipy's `p_indices` as [`Lu::perm`]. `a` is [..., n, n]; singular matrices factor.
    /// Rectangular [..., m, n] input gives scipy's shapes (P m×m, L m×k, U k×n, k = min(m, n))
    /// and is factored by faer on the host on every backend (the GPU kernels are square);
    /// the factors are then uploaded.
    ///
    /// Errors as [`Context::lu_factor`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[0.0, 1.0, 2.0, 3.0])?;
    /// let f = ctx.lu(&a)?;
    /// assert_eq!(f.p.to_vec()?, vec![0.0, 1.0, 1.0, 0.0]);
    /// assert_eq!(f.l.to_vec()?, vec![1.0, 0.0, 0.0, 1.0]);
    /// assert_eq!(f.u.to_vec()?, vec![2.0, 3.0, 0.0, 1.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lu(&self, a: &Tensor) -> Result<Lu> {
        let shape = a.shape();
        if shape.len() >= 2 && shape[shape.len() - 2] != shape[shape.len() - 1] {
            return self.lu_rectangular(a);
        }
        let plan = SquarePlan::new("lu", a)?;
        let (batch, n) = (plan.batch, plan.n);
        let (f, _) = self.lu_compact(a, &plan)?;
        let ipiv = f.piv.to_vec_u32()?;
        let mut p = vec![0.0f32; batch * n * n];
        let mut perm = vec![0u32; batch * n];
        for z in 0..batch {
            let rows = perm_of_pivots(&ipiv[z * n..(z + 1) * n]);
            for (i, &r) in rows.iter().enumerate() {
                // Row i of L·U is row r of A: P[r, i] = 1 and perm[r] = i.
                p[z * n * n + r as usize * n + i] = 1.0;
                perm[z * n + r as usize] = i as u32;
            }
        }
        let (l, u) = self.solver_path(
            |gpu| {
                let lu = self.resident(&f.lu)?;
                let (l, u) = gpu.scoped("lu", || -> Result<_> {
                    let k = Kernels::new(gpu)?;
                    let bytes = (batch * n * n * 4).max(4) as u64;
                    let l = gpu.alloc(bytes, "lu L")?;
                    let u = gpu.alloc(bytes, "lu U")?;
                    let mut enc = gpu.encoder("lu");
                    gpu::record_extract(&mut enc, &k, &lu, &l, batch, n, false)?;
                    gpu::record_extract(&mut enc, &k, &lu, &u, batch, n, true)?;
                    enc.submit()?;
                    Ok((l, u))
                })??;
                Ok((
                    Tensor::from_gpu(a.shape().to_vec(), DType::F32, l),
                    Tensor::from_gpu(a.shape().to_vec(), DType::F32, u),
                ))
            },
            || {
                let lu = f.lu.to_vec()?;
                let (mut l, mut u) = (vec![0.0f32; lu.len()], vec![0.0f32; lu.len()]);
                for (idx, &v) in lu.iter().enumerate() {
                    let (i, j) = ((idx / n) % n, idx % n);
                    if j < i {
                        l[idx] = v;
                    } else {
                        u[idx] = v;
                        if j == i {
                            l[idx] = 1.0;
                        }
                    }
                }
                Ok((self.tensor(a.shape(), &l)?, self.tensor(a.shape(), &u)?))
            },
        )?;
        Ok(Lu {
            p: self.tensor(a.shape(), &p)?,
            l,
            u,
            perm: self.tensor_u32(&with_inner(&plan.batch_shape, &[n]), &perm)?,
        })
    }

    /// [`Context::lu`] of rectangular [..., m, n] input, by faer on the host.
    fn lu_rectangular(&self, a: &Tensor) -> Result<Lu> {
        plan::require_f32("lu", "a", a)?;
        let shape = a.shape();
        let (m, n) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let batch_shape = &shape[..shape.len() - 2];
        let batch: usize = batch_shape.iter().product();
        let k = m.min(n);
        let f = cpu::lu_rectangular(&host_values(a)?, batch, m, n);
        if let Some(z) = f.nonfinite.iter().position(|&b| b) {
            return Err(crate::Error::InvalidArgument(format!(
                "lu: a of {} holds NaN or infinite values",
                crate::error::matrix_label(m, n, batch, z)
            )));
        }
        Ok(Lu {
            p: self.tensor(&with_inner(batch_shape, &[m, m]), &f.p)?,
            l: self.tensor(&with_inner(batch_shape, &[m, k]), &f.l)?,
            u: self.tensor(&with_inner(batch_shape, &[k, n]), &f.u)?,
            perm: self.tensor_u32(&with_inner(batch_shape, &[m]), &f.perm)?,
        })
    }

    /// Solves A·X = B from A's [`Context::lu_factor`], as `scipy.linalg.lu_solve((lu, piv),
    /// b)`: `b` is \[n\] or \[..., n, k\] (batch dims broadcast as numpy does).
    ///
    /// Errors: a zero pivot in U ([`crate::Error::LinAlg`] naming it), NaN or Inf in `b`,
    /// shapes that do not fit (both named).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[0.0, 1.0, 2.0, 3.0])?;
    /// let f = ctx.lu_factor(&a)?;
    /// let x = ctx.lu_solve(&f, &ctx.tensor(&[2], &[1.0, 5.0])?)?;
    /// assert_eq!(x.to_vec()?, vec![1.0, 1.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lu_solve(&self, f: &LuFactor, b: &Tensor) -> Result<Tensor> {
        let plan = SystemPlan::new("lu_solve", &f.lu, b)?;
        let sq = &plan.a;
        if f.piv.dtype() != DType::U32 || f.piv.len() * sq.n != f.lu.len() {
            return Err(crate::Error::Shape(format!(
                "lu_solve: piv has shape {:?} ({}) for lu of shape {:?}; expected uint32 [..., n]",
                f.piv.shape(),
                f.piv.dtype().name(),
                f.lu.shape()
            )));
        }
        if plan.a_batch_shape != sq.batch_shape {
            // Broadcast the factors: the pivots ride along as float values of a u32 (exact).
            return Err(crate::Error::Shape(format!(
                "lu_solve: b (shape {:?}) broadcasts the factors' batch {:?} to {:?}; give b \
                 the factors' batch dims",
                b.shape(),
                plan.a_batch_shape,
                sq.batch_shape
            )));
        }
        let b3 =
            self.solver_broadcast(&b.reshape(&vector_as_matrix(b, &plan))?, &plan.b_shape())?;
        self.solve_factored(&f.lu, &f.piv, &b3, &plan)
    }

    /// X for the factored A (`lu`, `piv`), B = `b` [batch..., n, k], in `plan`'s output
    /// shape; a zero pivot of U (found by scanning its diagonal) is an error.
    fn solve_factored(
        &self,
        lu: &Tensor,
        piv: &Tensor,
        b: &Tensor,
        plan: &SystemPlan,
    ) -> Result<Tensor> {
        let sq = &plan.a;
        let (batch, n, k) = (sq.batch, sq.n, plan.k);
        if batch * n * k == 0 {
            return self.zeros(&plan.out_shape());
        }
        let x = self.solver_path(
            |gpu| {
                let nb = self.lu_block(n)?;
                let (lu_b, piv_b, b_b) =
                    (self.resident(lu)?, self.resident(piv)?, self.resident(b)?);
                let (x, status) = gpu.scoped("lu_solve", || -> Result<_> {
                    let kern = Kernels::new(gpu)?;
                    let packs = Packs::new(gpu, batch, n, n.max(k))?;
                    let mut enc = gpu.encoder("lu_solve");
                    let status = Status::new(gpu, &mut enc, 2 * batch)?;
                    gpu::record_scan(&mut enc, &kern, &lu_b, (&status, 0), batch, n, false)?;
                    let x = solve_into(
                        gpu, &mut enc, &kern, &packs, &lu_b, &piv_b, &b_b, &status, batch, n, k,
                        false, nb,
                    )?;
                    enc.submit()?;
                    Ok((x, status))
                })??;
                let status = status.read()?;
                judge_system(sq, &status, batch)?;
                Ok(Tensor::from_gpu(plan.out_shape(), DType::F32, x))
            },
            || {
                let f = CompactLu {
                    lu: lu.to_vec()?,
                    ipiv: piv.to_vec_u32()?,
                    status: Vec::new(),
                };
                let bv = host_values(b)?;
                let status: Vec<[u32; 2]> = (0..batch)
                    .map(|z| {
                        let u = &f.lu[z * n * n..(z + 1) * n * n];
                        [
                            plan::zero_pivot_word(n, (0..n).find(|&i| u[i * n + i] == 0.0)),
                            0,
                        ]
                    })
                    .chain(nonfinite_words(&bv, batch))
                    .collect();
                judge_system(sq, &status, batch)?;
                self.tensor(&plan.out_shape(), &cpu::lu_solve(&f, &bv, batch, n, k))
            },
        )?;
        Ok(x)
    }

    /// Solves op(T)·X = B for triangular T, as `scipy.linalg.solve_triangular(t, b, trans,
    /// lower, unit_diagonal)` (by default T is upper and op(T) = T): `t` is [..., n, n] (only
    /// the triangle named is read, its diagonal not at all when `unit_diagonal`), `b` is \[n\]
    /// or [..., n, k], batch dims broadcast as numpy does. Blocked on the GPU (see the module
    /// docs).
    ///
    /// Errors: a zero on the diagonal ([`crate::Error::LinAlg`] naming the first), NaN or Inf
    /// in `t` or `b`, shapes that do not fit (both named).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::TriangularOptions;
    /// let t = ctx.tensor(&[2, 2], &[2.0, 0.0, 1.0, 4.0])?;
    /// let b = ctx.tensor(&[2], &[2.0, 9.0])?;
    /// let lower = TriangularOptions { lower: true, ..Default::default() };
    /// assert_eq!(ctx.solve_triangular(&t, &b, &lower)?.to_vec()?, vec![1.0, 2.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn solve_triangular(
        &self,
        t: &Tensor,
        b: &Tensor,
        opts: &TriangularOptions,
    ) -> Result<Tensor> {
        let plan = SystemPlan::new("solve_triangular", t, b)?;
        let sq = &plan.a;
        let (batch, n, k) = (sq.batch, sq.n, plan.k);
        if batch * n * k == 0 {
            return self.zeros(&plan.out_shape());
        }
        let t3 = self.solver_broadcast(t, &plan.a_shape())?;
        let b3 =
            self.solver_broadcast(&b.reshape(&vector_as_matrix(b, &plan))?, &plan.b_shape())?;
        self.solver_path(
            |gpu| {
                let nb = self.lu_block(n)?;
                let (t_b, b_b) = (self.resident(&t3)?, self.resident(&b3)?);
                let (x, status) = gpu.scoped("solve_triangular", || -> Result<_> {
                    let kern = Kernels::new(gpu)?;
                    let packs = Packs::new(gpu, batch, n, k)?;
                    let mut enc = gpu.encoder("solve_triangular");
                    let status = Status::new(gpu, &mut enc, 2 * batch)?;
                    gpu::record_scan(
                        &mut enc,
                        &kern,
                        &t_b,
                        (&status, 0),
                        batch,
                        n,
                        opts.unit_diagonal,
                    )?;
                    let x = gpu.alloc((batch * n * k * 4) as u64, "solve_triangular X")?;
                    gpu::record_check(
                        &mut enc,
                        &kern,
                        &b_b,
                        &x,
                        (&status, batch),
                        batch,
                        n,
                        k,
                        false,
                    )?;
                    gpu::record_trsm(&mut enc, &kern, &packs, &t_b, &x, batch, n, k, opts, nb)?;
                    enc.submit()?;
                    Ok((x, status))
                })??;
                judge_triangular(sq, &status.read()?, batch)?;
                Ok(Tensor::from_gpu(plan.out_shape(), DType::F32, x))
            },
            || {
                let (tv, bv) = (host_values(&t3)?, host_values(&b3)?);
                let status: Vec<[u32; 2]> = (0..batch)
                    .map(|z| {
                        let m = &tv[z * n * n..(z + 1) * n * n];
                        let zero = if opts.unit_diagonal {
                            None
                        } else {
                            (0..n).find(|&i| m[i * n + i] == 0.0)
                        };
                        [
                            plan::zero_pivot_word(n, zero),
                            u32::from(m.iter().any(|x| !x.is_finite())),
                        ]
                    })
                    .chain(nonfinite_words(&bv, batch))
                    .collect();
                judge_triangular(sq, &status, batch)?;
                self.tensor(&plan.out_shape(), &cpu::trsm(&tv, &bv, batch, n, k, opts))
            },
        )
    }

    /// Solves A·X = B, as `numpy.linalg.solve(a, b)`: `a` is \[..., n, n\], `b` is \[n\] (a vector;
    /// the result is [..., n]) or [..., n, k], the batch dims broadcast. LU with partial
    /// pivoting; see [`Context::solve_with`] for Cholesky.
    ///
    /// Errors: a singular matrix ([`crate::Error::LinAlg`] naming the first zero pivot), NaN
    /// or Inf in `a` or `b`, shapes that do not fit (both named).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[3.0, 1.0, 1.0, 2.0])?;
    /// let x = ctx.solve(&a, &ctx.tensor(&[2], &[9.0, 8.0])?)?;
    /// assert_eq!(x.to_vec()?, vec![2.0, 3.0]);
    /// let singular = ctx.tensor(&[2, 2], &[1.0, 2.0, 2.0, 4.0])?;
    /// assert!(ctx.solve(&singular, &x).unwrap_err().to_string().contains("singular"));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn solve(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.solve_with(a, b, &SolveOptions::default())
    }

    /// [`Context::solve`] with options: `assume_a = Positive` (scipy's `"pos"`) factors A by
    /// [`Context::cholesky`] (only its lower triangle is read; an asymmetric or indefinite A is
    /// refused, naming the figure or the leading minor) and solves with L and Lᵀ.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::{AssumeA, SolveOptions};
    /// let a = ctx.tensor(&[2, 2], &[4.0, 2.0, 2.0, 5.0])?;
    /// let pos = SolveOptions { assume_a: AssumeA::Positive };
    /// let x = ctx.solve_with(&a, &ctx.tensor(&[2], &[6.0, 7.0])?, &pos)?;
    /// assert_eq!(x.to_vec()?, vec![1.0, 1.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn solve_with(&self, a: &Tensor, b: &Tensor, opts: &SolveOptions) -> Result<Tensor> {
        let plan = SystemPlan::new("solve", a, b)?;
        let sq = &plan.a;
        if sq.batch * sq.n * plan.k == 0 {
            return self.zeros(&plan.out_shape());
        }
        let a3 = self.solver_broadcast(a, &plan.a_shape())?;
        let b3 =
            self.solver_broadcast(&b.reshape(&vector_as_matrix(b, &plan))?, &plan.b_shape())?;
        match opts.assume_a {
            AssumeA::General => self.solve_general(&a3, &b3, &plan),
            AssumeA::Positive => {
                let l = self.cholesky(&a3)?;
                let lower = TriangularOptions {
                    lower: true,
                    ..Default::default()
                };
                let y = self.solve_triangular(&l, &b3, &lower)?;
                let x = self.solve_triangular(
                    &l,
                    &y,
                    &TriangularOptions {
                        trans: true,
                        ..lower
                    },
                )?;
                x.reshape(&plan.out_shape())
            }
        }
    }

    /// `solve` with LU: A [batch..., n, n], B [batch..., n, k] already broadcast. Orders up
    /// to [`SMALL_MAX_N`] run on the batched small-system kernels (one dispatch for the whole
    /// batch), larger ones on the blocked LU; the CPU backend runs faer's LU per matrix, in
    /// parallel over the batch.
    fn solve_general(&self, a: &Tensor, b: &Tensor, plan: &SystemPlan) -> Result<Tensor> {
        let sq = &plan.a;
        let (batch, n, k) = (sq.batch, sq.n, plan.k);
        self.solver_path(
            |gpu| {
                if n <= SMALL_MAX_N {
                    let (x, st) = small::gpu_solve_small(
                        self,
                        gpu,
                        &a.reshape(&[batch, n, n])?,
                        &b.reshape(&[batch, n, k])?,
                        None,
                    )?;
                    judge_system(sq, &from_small_status(n, &st), batch)?;
                    return x.reshape(&plan.out_shape());
                }
                let nb = self.lu_block(n)?;
                let (a_b, b_b) = (self.resident(a)?, self.resident(b)?);
                let (x, status) = gpu.scoped("solve", || -> Result<_> {
                    let kern = Kernels::new(gpu)?;
                    let packs = Packs::new(gpu, batch, n, n.max(k))?;
                    let mut enc = gpu.encoder("solve");
                    let status = Status::new(gpu, &mut enc, 2 * batch)?;
                    let (lu, piv) =
                        lu_into(gpu, &mut enc, &kern, &packs, &a_b, &status, batch, n, nb)?;
                    let x = solve_into(
                        gpu, &mut enc, &kern, &packs, &lu, &piv, &b_b, &status, batch, n, k, false,
                        nb,
                    )?;
                    enc.submit()?;
                    Ok((x, status))
                })??;
                judge_system(sq, &status.read()?, batch)?;
                Ok(Tensor::from_gpu(plan.out_shape(), DType::F32, x))
            },
            || {
                let (x, st) =
                    small::solve_batched_cpu(&host_values(a)?, &host_values(b)?, batch, n, k);
                judge_system(sq, &from_small_status(n, &st), batch)?;
                self.tensor(&plan.out_shape(), &x)
            },
        )
    }

    /// The inverse of every matrix of `a` ([..., n, n]), as `numpy.linalg.inv`: LU, then the
    /// solve of A·X = I.
    ///
    /// Errors: a singular matrix ([`crate::Error::LinAlg`] naming the first zero pivot), NaN
    /// or Inf in `a`, a shape that is not [..., n, n].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[2.0, 0.0, 0.0, 4.0])?;
    /// assert_eq!(ctx.inv(&a)?.to_vec()?, vec![0.5, 0.0, 0.0, 0.25]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn inv(&self, a: &Tensor) -> Result<Tensor> {
        let sq = SquarePlan::new("inv", a)?;
        let (batch, n) = (sq.batch, sq.n);
        if batch * n == 0 {
            return self.zeros(a.shape());
        }
        self.solver_path(
            |gpu| {
                let nb = self.lu_block(n)?;
                let a_b = self.resident(a)?;
                let (x, status) = gpu.scoped("inv", || -> Result<_> {
                    let kern = Kernels::new(gpu)?;
                    let packs = Packs::new(gpu, batch, n, n)?;
                    let mut enc = gpu.encoder("inv");
                    let status = Status::new(gpu, &mut enc, 2 * batch)?;
                    let (lu, piv) =
                        lu_into(gpu, &mut enc, &kern, &packs, &a_b, &status, batch, n, nb)?;
                    let x = solve_into(
                        gpu, &mut enc, &kern, &packs, &lu, &piv, &a_b, &status, batch, n, n, true,
                        nb,
                    )?;
                    enc.submit()?;
                    Ok((x, status))
                })??;
                judge_system(&sq, &status.read()?, batch)?;
                Ok(Tensor::from_gpu(a.shape().to_vec(), DType::F32, x))
            },
            || {
                let f = cpu::lu_factor(&host_values(a)?, batch, n);
                let status: Vec<[u32; 2]> = f
                    .status
                    .iter()
                    .copied()
                    .chain(vec![[0, 0]; batch])
                    .collect();
                judge_system(&sq, &status, batch)?;
                let eye: Vec<f32> = (0..batch * n * n)
                    .map(|idx| f32::from(u8::from((idx / n) % n == idx % n)))
                    .collect();
                self.tensor(a.shape(), &cpu::lu_solve(&f, &eye, batch, n, n))
            },
        )
    }

    /// Sign and log|det| of every matrix of `a` ([..., n, n]), as `numpy.linalg.slogdet`: from
    /// the LU factors, so that det = sign·exp(logabsdet) never overflows; a singular matrix
    /// gives sign 0 and logabsdet −∞ (no error). A 0×0 matrix gives (1, 0).
    ///
    /// Errors: NaN or Inf in `a`, a shape that is not [..., n, n].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[0.0, 2.0, 3.0, 0.0])?;
    /// let s = ctx.slogdet(&a)?;
    /// assert_eq!(s.sign.to_vec()?, vec![-1.0]);
    /// assert!((s.logabsdet.to_vec()?[0] - 6.0f32.ln()).abs() < 1e-6);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn slogdet(&self, a: &Tensor) -> Result<Slogdet> {
        let plan = SquarePlan::new("slogdet", a)?;
        let (sign, logabs) = self.slogdet_values(a, &plan)?;
        Ok(Slogdet {
            sign: self.tensor(&plan.batch_shape, &sign)?,
            logabsdet: self.tensor(&plan.batch_shape, &logabs)?,
        })
    }

    /// The determinant of every matrix of `a` ([..., n, n]), as `numpy.linalg.det`: shape
    /// [...] ([] for one matrix); sign·exp(log|det|) from the LU factors, so it is ±inf only
    /// where |det| exceeds f32's range, and 0 for a singular matrix.
    ///
    /// Errors as [`Context::slogdet`].
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    /// let d = ctx.det(&a)?.to_vec()?[0];
    /// assert!((d + 2.0).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn det(&self, a: &Tensor) -> Result<Tensor> {
        let plan = SquarePlan::new("det", a)?;
        let (sign, logabs) = self.slogdet_values(a, &plan)?;
        let det: Vec<f32> = sign
            .iter()
            .zip(&logabs)
            .map(|(&s, &l)| {
                if s == 0.0 {
                    0.0
                } else {
                    (f64::from(s) * f64::from(l).exp()) as f32
                }
            })
            .collect();
        self.tensor(&plan.batch_shape, &det)
    }

    /// (signs, log|det|s) of every matrix, on the host.
    fn slogdet_values(&self, a: &Tensor, plan: &SquarePlan) -> Result<(Vec<f32>, Vec<f32>)> {
        let (batch, n) = (plan.batch, plan.n);
        if n == 0 {
            return Ok((vec![1.0; batch], vec![0.0; batch]));
        }
        if batch == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let (f, _) = self.lu_compact(a, plan)?;
        self.solver_path(
            |gpu| {
                let (lu, piv) = (self.resident(&f.lu)?, self.resident(&f.piv)?);
                let out = gpu.scoped("slogdet", || -> Result<_> {
                    let k = Kernels::new(gpu)?;
                    let out = gpu.alloc((batch * 8) as u64, "slogdet values")?;
                    let mut enc = gpu.encoder("slogdet");
                    gpu::record_slogdet(&mut enc, &k, &lu, &piv, &out, batch, n)?;
                    enc.submit()?;
                    Ok(out)
                })??;
                let v: Vec<f32> = bytemuck::pod_collect_to_vec(&out.read(batch * 8)?);
                Ok(v.chunks_exact(2)
                    .map(|s| {
                        if s[0] == 0.0 {
                            (0.0, f32::NEG_INFINITY)
                        } else {
                            (s[0], s[1])
                        }
                    })
                    .unzip())
            },
            || {
                let c = CompactLu {
                    lu: f.lu.to_vec()?,
                    ipiv: f.piv.to_vec_u32()?,
                    status: Vec::new(),
                };
                Ok(cpu::slogdet(&c, batch, n))
            },
        )
    }
}

/// B's shape with a vector b taken as an n×1 matrix.
fn vector_as_matrix(b: &Tensor, plan: &SystemPlan) -> Vec<usize> {
    if plan.vector {
        vec![plan.a.n, 1]
    } else {
        b.shape().to_vec()
    }
}

/// Status words (NaN or Inf flag only) of `batch` equal parts of `values`.
fn nonfinite_words(values: &[f32], batch: usize) -> Vec<[u32; 2]> {
    let per = values.len() / batch.max(1);
    (0..batch)
        .map(|z| {
            let part = &values[z * per..(z + 1) * per];
            [0, u32::from(part.iter().any(|x| !x.is_finite()))]
        })
        .collect()
}

/// The batched small solve's status words ([0] the 1-based first zero pivot, [1] bit 0 NaN in
/// A, bit 1 in B) in the layout of [`judge_system`].
fn from_small_status(n: usize, st: &[[u32; 2]]) -> Vec<[u32; 2]> {
    let a = st.iter().map(|s| {
        [
            plan::zero_pivot_word(n, (s[0] as usize).checked_sub(1)),
            s[1] & 1,
        ]
    });
    let b = st.iter().map(|s| [0, s[1] >> 1]);
    a.chain(b).collect()
}

/// Judges a system's status (A's words in slots 0…batch, B's after them): NaN in A, then NaN
/// in B, then a zero pivot of U, matrix by matrix.
fn judge_system(plan: &SquarePlan, status: &[[u32; 2]], batch: usize) -> Result<()> {
    for z in 0..batch {
        plan.judge(z, [0, status[z][1]], "a", "U", false)?;
        plan.judge(z, status[batch + z], "b", "U", false)?;
        plan.judge(z, status[z], "a", "U", true)?;
    }
    Ok(())
}

/// As [`judge_system`] for a triangular solve: a zero diagonal names T's.
fn judge_triangular(plan: &SquarePlan, status: &[[u32; 2]], batch: usize) -> Result<()> {
    for z in 0..batch {
        plan.judge(z, [0, status[z][1]], "t", "T", false)?;
        plan.judge(z, status[batch + z], "b", "T", false)?;
        plan.judge(z, status[z], "t", "T", true)?;
    }
    Ok(())
}

/// Records the LU of `input` (copied and checked first) into new buffers: (factors, pivots).
#[allow(clippy::too_many_arguments)]
fn lu_into(
    gpu: &Arc<Gpu>,
    enc: &mut crate::runtime::Encoder,
    k: &Kernels,
    packs: &Packs,
    input: &Arc<GpuBuffer>,
    status: &Status,
    batch: usize,
    n: usize,
    nb: usize,
) -> Result<(Arc<GpuBuffer>, Arc<GpuBuffer>)> {
    let lu = gpu.alloc((batch * n * n * 4).max(4) as u64, "lu factors")?;
    let piv = gpu.alloc((batch * n * 4).max(4) as u64, "lu pivots")?;
    gpu::record_check(enc, k, input, &lu, (status, 0), batch, n, n, false)?;
    gpu::record_lu(enc, k, packs, &lu, &piv, status, batch, n, nb)?;
    Ok((lu, piv))
}

/// Records X = A⁻¹·B from A's LU (`lu`, `piv`) into a new buffer: B (or, with `identity`,
/// I) copied and checked into status slots batch…2·batch, the row interchanges, then the
/// unit-lower and upper solves.
#[allow(clippy::too_many_arguments)]
fn solve_into(
    gpu: &Arc<Gpu>,
    enc: &mut crate::runtime::Encoder,
    k: &Kernels,
    packs: &Packs,
    lu: &Arc<GpuBuffer>,
    piv: &Arc<GpuBuffer>,
    b: &Arc<GpuBuffer>,
    status: &Status,
    batch: usize,
    n: usize,
    rhs: usize,
    identity: bool,
    nb: usize,
) -> Result<Arc<GpuBuffer>> {
    let x = gpu.alloc((batch * n * rhs * 4).max(4) as u64, "solve X")?;
    gpu::record_check(enc, k, b, &x, (status, batch), batch, n, rhs, identity)?;
    gpu::record_permute(enc, k, piv, &x, batch, n, rhs)?;
    let unit_lower = TriangularOptions {
        lower: true,
        trans: false,
        unit_diagonal: true,
    };
    gpu::record_trsm(enc, k, packs, lu, &x, batch, n, rhs, &unit_lower, nb)?;
    gpu::record_trsm(
        enc,
        k,
        packs,
        lu,
        &x,
        batch,
        n,
        rhs,
        &TriangularOptions::default(),
        nb,
    )?;
    Ok(x)
}
