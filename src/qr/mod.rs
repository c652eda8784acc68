//! Reduced QR decomposition, `numpy.linalg.qr(A, mode='reduced')`: on the GPU by blocked
//! Householder, or for tall-skinny input by CholeskyQR2 / shifted CholeskyQR3 (Fukaya, Kannan,
//! Nakatsukasa, Yamamoto, Yanagisawa 2020) built from resident
//! GPU GEMMs, with the small k×k Cholesky factorizations on the host in f64; on the CPU by
//! faer's blocked Householder.

pub mod cpu;

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::householder::{Householder, View};
use crate::layout::Slice;
use crate::matmul::{MatmulOptions, MatmulStructure};
use crate::qr::cpu::{
    cholesky_upper, householder, non_finite, norm2_estimate, upper_inverse, upper_product,
};
use crate::runtime::Gpu;
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

/// The reduced QR `A = Q · R` of an m×n matrix, k = min(m, n).
#[derive(Clone, Debug)]
pub struct Qr {
    /// m×k with orthonormal columns (also when A is rank-deficient, see [`Context::qr`]).
    pub q: Tensor,
    /// k×n upper triangular (trapezoidal when wide), with a non-negative diagonal.
    pub r: Tensor,
    /// CholeskyQR passes the GPU ran (one Gram matrix and one GEMM each); 0 where the
    /// Householder path ran (the CPU backend, rank-deficient or empty input).
    pub passes: u32,
    /// Compute dispatches the GPU ran for this call (0 on the CPU backend).
    pub dispatches: u64,
    /// Queue submissions this call made (0 on the CPU backend).
    pub submits: u64,
}

/// Environment variable that forces the GPU QR method: `householder` (blocked Householder) or
/// `cholesky-qr` (CholeskyQR first, blocked Householder for what it cannot factor).
/// By default CholeskyQR runs first for m ≥ [`QR_CHOLESKY_RATIO`]·n.
pub const QR_METHOD_ENV: &str = "GPU_LINALG_QR_METHOD";

/// Tall-skinny matrices (m ≥ this multiple of n) try CholeskyQR first: its GEMMs beat
/// or tie the Householder panels there (on lavapipe, one `bench --ops qr` run per method, 16-wide
/// panels: 8192×128 0.73 s against 1.03, 4096×256 1.46 against 1.38, 1024×64 45 ms against 49;
/// at 2048×512, below the ratio, Householder wins 2.18 s against 3.47). Input it cannot factor
/// (numerically rank-deficient) then takes the GPU's blocked Householder, so it never leaves
/// the GPU.
pub const QR_CHOLESKY_RATIO: usize = 8;

/// Most CholeskyQR passes (shifted and plain) before the GPU path gives up on a matrix as
/// numerically rank-deficient and hands it to Householder.
pub const MAX_QR_PASSES: u32 = 8;

/// The first pass is a plain CholeskyQR (no shift) when its factor's condition number κ₂(R),
/// estimated by the power method on R and R⁻¹, is at most this: Q₁'s orthogonality error,
/// about κ²·√m·u, is then a few percent for m up to ~10⁵, and the second plain pass brings it
/// to u (CholeskyQR2). Otherwise the pass is shifted (Fukaya et al.), from the same Gram
/// matrix. Either way the next pass checks Q₁'s Gram matrix and shifts again if it must.
const PLAIN_FIRST_MAX_KAPPA: f64 = 100.0;

/// Unit roundoff u = 2⁻²⁴ of the shift.
const U: f64 = 1.0 / 16_777_216.0;

/// A plain CholeskyQR pass is used only when the smallest pivot of the Gram matrix, relative to
/// its largest diagonal entry, is at least this (κ(Q)² ≲ 10⁵: the pass then leaves an
/// orthogonality error of about 10⁵·u, which the next plain pass removes).
const PLAIN_MIN_PIVOT: f64 = 1e-5;

/// (m, n) of a valid QR operand, or an error naming the shape or dtype.
fn qr_dims(a: &Tensor) -> Result<(usize, usize)> {
    if a.dtype() != DType::F32 {
        return Err(Error::InvalidArgument(format!(
            "qr: input (shape {:?}) is {}; expected float32",
            a.shape(),
            a.dtype().name()
        )));
    }
    match *a.shape() {
        [m, n] => Ok((m, n)),
        _ => Err(Error::Shape(format!(
            "qr needs a 2-D matrix; got shape {:?} ({} dims)",
            a.shape(),
            a.ndim()
        ))),
    }
}

/// f32 tensor of a row-major f64 matrix.
fn upload(ctx: &Context, rows: usize, cols: usize, v: &[f64]) -> Result<Tensor> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    ctx.tensor(&[rows, cols], &f)
}

/// Adaptive CholeskyQR of the tall or square m×n matrix `a` (m ≥ n ≥ 1) with GEMMs on `ctx`
/// (the Gram matrix's upper triangle only, Q·R⁻¹ with R⁻¹ triangular): CholeskyQR2 when the
/// first factor is well conditioned, else shifted CholeskyQR3 (more shifted passes as κ nears
/// 1/u). `Ok(None)` when `a` is numerically rank-deficient (or zero).
fn cholesky_qr(
    ctx: &Context,
    a: &Tensor,
    m: usize,
    n: usize,
) -> Result<Option<(Tensor, Vec<f64>, u32)>> {
    let tn = MatmulOptions {
        transpose_a: true,
        ..MatmulOptions::default()
    };
    let mut q = a.clone();
    let mut r_total: Option<Vec<f64>> = None;
    let mut plain = 0;
    let mut passes = 0;
    while plain < 2 {
        if passes >= MAX_QR_PASSES {
            return Ok(None);
        }
        passes += 1;
        // The Gram matrix's upper triangle (the kernels skip the rest), mirrored on the host.
        let upper = MatmulStructure {
            c_upper: true,
            ..MatmulStructure::default()
        };
        let g32 = ctx.matmul_structured(&q, &q, &tn, upper)?.to_vec()?;
        let mut g = vec![0.0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let x = f64::from(g32[i * n + j]);
                if !x.is_finite() {
                    return Ok(None);
                }
                (g[i * n + j], g[j * n + i]) = (x, x);
            }
        }
        // A plain pass's factor and its inverse (computed once: the first pass's condition
        // estimate needs it too), if the plain pass may run.
        let plain_r = cholesky_upper(&g, n, 0.0).and_then(|(r, rel)| {
            if passes > 1 && rel < PLAIN_MIN_PIVOT {
                return None;
            }
            let inverse = upper_inverse(&r, n);
            let accept = passes > 1
                || norm2_estimate(&r, n, 12) * norm2_estimate(&inverse, n, 12)
                    <= PLAIN_FIRST_MAX_KAPPA;
            accept.then_some((r, inverse))
        });
        let (r, inverse) = match plain_r {
            Some(pair) => {
                plain += 1;
                pair
            }
            None => {
                plain = 0;
                // s = 11(mn + n(n+1))·u·‖Q‖_F², Fukaya et al.'s shift.
                let fro2: f64 = (0..n).map(|j| g[j * n + j]).sum();
                let shift = 11.0 * ((m * n + n * (n + 1)) as f64) * U * fro2;
                match cholesky_upper(&g, n, shift) {
                    Some((r, _)) if shift > 0.0 => {
                        let inverse = upper_inverse(&r, n);
                        (r, inverse)
                    }
                    _ => return Ok(None),
                }
            }
        };
        let rinv = upload(ctx, n, n, &inverse)?;
        let triangular = MatmulStructure {
            b_upper: true,
            ..MatmulStructure::default()
        };
        q = ctx.matmul_structured(&q, &rinv, &MatmulOptions::default(), triangular)?;
        r_total = Some(match r_total {
            None => r,
            Some(t) => upper_product(&r, &t, n),
        });
    }
    Ok(r_total.map(|r| (q, r, passes)))
}

impl Context {
    /// The reduced QR decomposition, as `numpy.linalg.qr(a, mode='reduced')`: `Q` m×k with
    /// orthonormal columns, `R` k×n upper triangular, k = min(m, n), with one convention that
    /// differs from numpy/LAPACK: R's diagonal is non-negative on every path (LAPACK's may hold
    /// negative entries; the two differ by the signs of Q's columns and R's rows).
    ///
    /// On a GPU, results stay resident. Tall-skinny input (m ≥ [`QR_CHOLESKY_RATIO`]·n, or past the
    /// Householder panels' reach) first tries CholeskyQR (below), which measures faster
    /// there; everything else, and whatever CholeskyQR cannot factor, takes blocked Householder
    /// (LAPACK's geqrf/orgqr structure): each panel of 16 columns on CPU-type adapters, 32
    /// elsewhere (16 for taller input), is factored in one workgroup, the trailing matrix updated
    /// by the compact-WY block reflector as rank-b products, and Q accumulated backwards from the
    /// signed identity; rank-deficient input needs nothing else and never leaves the GPU (one
    /// readback, max|A|, refuses NaN and Inf). CholeskyQR: the Gram matrix QᵀQ by a GPU GEMM
    /// (its upper triangle), its Cholesky factor on the host in f64 (one readback of n² values
    /// per pass), Q ← Q·R⁻¹ by a GPU GEMM that skips R⁻¹'s zero triangle; plain passes until two
    /// have run — the first one plain only when its factor's κ₂ (estimated) is at most 100
    /// (CholeskyQR2), shifted otherwise (shifted CholeskyQR3; more shifted passes for condition
    /// numbers near 1/u). A wide matrix (m < n) is factored through its first
    /// m columns, then R = Qᵀ·A. A matrix that CholeskyQR cannot factor (numerically
    /// rank-deficient: condition ≳ 10⁷, zero columns, the zero matrix) goes to the blocked
    /// Householder; only past its panels' reach (tens of thousands of rows) is it read back and
    /// factored by Householder in f64 on the host. On the CPU backend: faer's blocked Householder
    /// QR (f32, all threads), signs made to match.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[3.0, 1.0, 4.0, 2.0])?;
    /// let qr = ctx.qr(&a)?;
    /// let r = qr.r.to_vec()?;
    /// assert!((r[0] - 5.0).abs() < 1e-6 && r[2] == 0.0);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn qr(&self, a: &Tensor) -> Result<Qr> {
        let (mut out, spent) = crate::runtime::counted(|| self.qr_uncounted(a))?;
        (out.dispatches, out.submits) = (spent.dispatches, spent.submits);
        Ok(out)
    }

    /// The blocked Householder QR on the GPU (panels of `pb` columns, compact-WY trailing
    /// updates, Q accumulated backwards from the signed identity), resident from input to
    /// output; rank-deficient input needs nothing else. One readback: max|A|, which refuses
    /// NaN and Inf.
    fn qr_householder_gpu(
        &self,
        gpu: &Arc<Gpu>,
        a: &Tensor,
        (m, n): (usize, usize),
        pb: usize,
    ) -> Result<Qr> {
        let k = m.min(n);
        let max = self.max(&self.abs(a)?, None)?.to_vec()?;
        if !max.first().is_some_and(|x| x.is_finite()) {
            return Err(non_finite(m, n));
        }
        let src = self.resident(a)?;
        gpu.scoped("qr", || -> Result<Qr> {
            let w = gpu.alloc((m * n * 4) as u64, "qr work matrix")?;
            let (q, r) = (
                gpu.alloc((m * k * 4) as u64, "qr Q")?,
                gpu.alloc((k * n * 4) as u64, "qr R")?,
            );
            let work = crate::householder::work_values(pb, &[(m, n)]);
            let hh = Householder::new(gpu, &w, m * n, pb, work)?;
            let mut enc = gpu.encoder("qr");
            enc.copy(&src, 0, &w, 0, (m * n * 4) as u64);
            let mut panels = Vec::new();
            for j0 in (0..k).step_by(pb) {
                let wdt = pb.min(k - j0);
                let p = hh.factor(&mut enc, View::block(n, j0, j0, m - j0, wdt))?;
                let rest = View::block(n, j0, j0 + wdt, m - j0, n - j0 - wdt);
                hh.apply(&mut enc, &p, None, rest, true)?;
                panels.push((j0, p));
            }
            hh.extract(&mut enc, View::block(n, 0, 0, k, n), &r, true)?;
            hh.extract(&mut enc, View::block(n, 0, 0, m, k), &q, false)?;
            for (j0, p) in panels.iter().rev() {
                let view = View::block(k, *j0, *j0, m - j0, k - j0);
                hh.apply(&mut enc, p, Some((&q, m * k)), view, false)?;
            }
            enc.submit()?;
            Ok(Qr {
                q: Tensor::from_gpu(vec![m, k], DType::F32, q),
                r: Tensor::from_gpu(vec![k, n], DType::F32, r),
                passes: 0,
                dispatches: 0,
                submits: 0,
            })
        })?
    }

    fn qr_uncounted(&self, a: &Tensor) -> Result<Qr> {
        let (m, n) = qr_dims(a)?;
        let k = m.min(n);
        let householder_path = || -> Result<Qr> {
            let values = host_values(a)?;
            let (q, r) = householder(&values, m, n)?;
            Ok(Qr {
                q: self.tensor(&[m, k], &q)?,
                r: self.tensor(&[k, n], &r)?,
                passes: 0,
                dispatches: 0,
                submits: 0,
            })
        };
        let cpu_path = || -> Result<Qr> {
            let (q, r) = crate::qr::cpu::fast(&host_values(a)?, m, n)?;
            Ok(Qr {
                q: self.tensor(&[m, k], &q)?,
                r: self.tensor(&[k, n], &r)?,
                passes: 0,
                dispatches: 0,
                submits: 0,
            })
        };
        let Some(gpu) = self.gpu().filter(|_| k > 0) else {
            return cpu_path();
        };
        let panel = crate::householder::panel_width(gpu, m);
        let householder_gpu = |pb: usize| -> Result<Qr> {
            let r = self.qr_householder_gpu(gpu, a, (m, n), pb);
            match self.fallback_or(r)? {
                Some(t) => Ok(t),
                None => cpu_path(),
            }
        };
        let method = std::env::var(QR_METHOD_ENV).ok();
        let cholesky_first = match method.as_deref() {
            Some("cholesky-qr") => true,
            Some("householder") => false,
            _ => m >= QR_CHOLESKY_RATIO * n || panel.is_none(),
        };
        if let (Some(pb), false) = (panel, cholesky_first) {
            return householder_gpu(pb);
        }
        let front = if m < n {
            self.slice(a, &[Slice::all(), Slice::range(0, m as isize)])?
        } else {
            a.clone()
        };
        let Some((q, r, passes)) = cholesky_qr(self, &front, m, k)? else {
            // Numerically rank-deficient for CholeskyQR: the GPU's Householder where its
            // panels reach, else the host's.
            if let Some(pb) = panel {
                return householder_gpu(pb);
            }
            let values = host_values(a)?;
            if values.iter().any(|x| !x.is_finite()) {
                return Err(non_finite(m, n));
            }
            return householder_path();
        };
        let r1 = upload(self, k, k, &r)?;
        let r = if m < n {
            // R = [R₁ | Qᵀ·A₂]: the first block exactly triangular.
            let rest = self.slice(a, &[Slice::all(), Slice::range(m as isize, n as isize)])?;
            let tn = MatmulOptions {
                transpose_a: true,
                ..MatmulOptions::default()
            };
            let r2 = self.matmul_with(&q, &rest, &tn)?;
            self.concat(&[&r1, &r2], 1)?
        } else {
            r1
        };
        Ok(Qr {
            q,
            r,
            passes,
            dispatches: 0,
            submits: 0,
        })
    }
}
