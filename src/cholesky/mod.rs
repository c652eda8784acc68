//! Cholesky factorisation, `numpy.linalg.cholesky`: A = L·Lᵀ for symmetric positive definite
//! A (lower L; upper U = Lᵀ by option), batched over leading dims. On a GPU a blocked
//! right-looking algorithm (`shaders/cholesky.wgsl`) resident in one buffer: per block column
//! of width [`CHOLESKY_BLOCK`], the diagonal block in one workgroup, the panel by forward
//! substitution, the trailing update as a register-blocked rank-b GEMM on the lower triangle;
//! 3·⌈n/b⌉ dispatches, and one readback of a 16-byte-per-matrix status buffer. On the CPU
//! backend faer's LLᵀ.

pub mod cpu;
pub mod plan;

pub use plan::{CholeskyOptions, CholeskyPlan, CHOLESKY_ASYMMETRY};

/// `shaders/cholesky.wgsl`.
pub(crate) const SOURCE: &str = include_str!("../../shaders/cholesky.wgsl");

/// The block size b of the GPU factorisation (`B` in shaders/cholesky.wgsl): the width of each
/// block column, the order of the diagonal blocks factored in one workgroup, the inner
/// dimension of each trailing update.
pub const CHOLESKY_BLOCK: usize = 32;

/// Most matrices one dispatch covers (the workgroup grid's z dimension).
const MAX_Z: usize = 65_535;

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{
    checked_pipeline, trusted_pipeline, Bind, BlockSize, Choices, Gpu, GpuBuffer, TuneOutcome,
};
use crate::tensor::{host_values, DType, Tensor};

crate::kernel_params! {
    /// The kernels' uniform block (`CholParams` in shaders/cholesky.wgsl).
    struct CholParams: "CholParams" {
        n: u32,
        k0: u32,
        bs: u32,
        z0: u32,
        pm: u32,
        upper: u32,
        pad0: u32,
        pad1: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![CholParams::layout(SOURCE.to_string())]
}

impl Context {
    /// The lower Cholesky factor L of a symmetric positive definite matrix, A = L·Lᵀ, as
    /// `numpy.linalg.cholesky(a)`: only the lower triangle of A is read, and L's upper
    /// triangle is zero. `a` is [..., n, n]; each matrix of the batch is factored.
    ///
    /// Errors (never a NaN-filled result): a matrix that is not positive definite is
    /// [`Error::LinAlg`] naming its first leading minor that is not (1-based, LAPACK's
    /// `info`); NaN or Inf in the input, or asymmetry max|A−Aᵀ| above 1e-5·max|A| (the figure
    /// is in the message), [`Error::InvalidArgument`]; input that is not [..., n, n],
    /// [`Error::Shape`]. For a batch the message names the matrix (flat batch index).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[4.0, 2.0, 2.0, 5.0])?;
    /// let l = ctx.cholesky(&a)?.to_vec()?;
    /// assert_eq!(l, vec![2.0, 0.0, 1.0, 2.0]);
    /// let bad = ctx.tensor(&[2, 2], &[1.0, 2.0, 2.0, 1.0])?;
    /// assert!(ctx.cholesky(&bad).unwrap_err().to_string().contains("order 2"));
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn cholesky(&self, a: &Tensor) -> Result<Tensor> {
        self.cholesky_with(a, &CholeskyOptions::default())
    }

    /// [`Context::cholesky`] with options: `upper` returns U = Lᵀ with A = Uᵀ·U (zeros below
    /// the diagonal), as `scipy.linalg.cholesky(a, lower=False)`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// use gpu_linalg::CholeskyOptions;
    /// let a = ctx.tensor(&[2, 2], &[4.0, 2.0, 2.0, 5.0])?;
    /// let u = ctx.cholesky_with(&a, &CholeskyOptions { upper: true })?.to_vec()?;
    /// assert_eq!(u, vec![2.0, 1.0, 0.0, 2.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn cholesky_with(&self, a: &Tensor, opts: &CholeskyOptions) -> Result<Tensor> {
        let plan = CholeskyPlan::new(a)?;
        if plan.batch * plan.n == 0 {
            return self.zeros(a.shape());
        }
        if let Some(gpu) = self.gpu() {
            let r = self
                .cholesky_block(plan.n)
                .and_then(|nb| gpu_cholesky(self, gpu, a, &plan, opts.upper, nb));
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let l = cpu::fast(&host_values(a)?, &plan, opts.upper)?;
            return self.tensor(a.shape(), &l);
        }
        let l = cpu::fast(&host_values(a)?, &plan, opts.upper)?;
        Tensor::from_vec(a.shape(), l)
    }

    /// The GPU block size of the Cholesky factorisation of order `n`: [`CHOLESKY_BLOCK`]
    /// below [`CHOLESKY_TUNED_FROM`], else forced by `GPU_LINALG_CHOLESKY_BLOCK` (`b16`,
    /// `b32`), remembered, cached on disk for this adapter, or timed now (each candidate's
    /// factor first checked by LAPACK's `dchkpo` ratio) and cached. [`CHOLESKY_BLOCK`] on the
    /// CPU backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// assert_eq!(ctx.cholesky_block(1024)?, gpu_linalg::CHOLESKY_BLOCK);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn cholesky_block(&self, n: usize) -> Result<usize> {
        match self.gpu() {
            Some(gpu) if n >= CHOLESKY_TUNED_FROM => Ok(CHOICES
                .get(gpu, &format!("n>={CHOLESKY_TUNED_FROM}"), || {
                    self.tune_cholesky_block(gpu)
                })?
                .0),
            _ => Ok(CHOLESKY_BLOCK),
        }
    }

    /// Times the factorisation of one SPD matrix (256×256 on CPU-type adapters, 1024×1024 on
    /// GPUs) with each candidate block size, after checking its factor by the `dchkpo` ratio.
    fn tune_cholesky_block(&self, gpu: &Arc<Gpu>) -> Result<Vec<TuneOutcome<BlockSize>>> {
        let n = if gpu.is_cpu_adapter() { 256 } else { 1024 };
        let r: Vec<f32> = crate::random::cpu::stream(n * n, 0xc0, None);
        // Symmetric, entries in [0, 1), diagonal n + 1: positive definite.
        let host: Vec<f32> = (0..n * n)
            .map(|idx| {
                let (i, j) = (idx / n, idx % n);
                if i == j {
                    n as f32 + 1.0
                } else {
                    r[i.min(j) * n + i.max(j)]
                }
            })
            .collect();
        let a = self.tensor(&[n, n], &host)?;
        let plan = CholeskyPlan::new(&a)?;
        let candidates: Vec<BlockSize> = [16, CHOLESKY_BLOCK].map(BlockSize).to_vec();
        Ok(crate::runtime::measure(
            gpu,
            &candidates,
            3,
            |c| gpu_cholesky(self, gpu, &a, &plan, false, c.0),
            |l| l.to_vec(),
            |l| {
                let r = cpu::ratio(&host, n, l);
                if r.is_nan() || r >= 30.0 {
                    return Err(Error::Verification(format!(
                        "cholesky: LAPACK ratio ‖A − L·Lᵀ‖/(n·‖A‖·ε) = {r}"
                    )));
                }
                Ok(())
            },
        ))
    }
}

/// The smallest order whose GPU block size is tuned; smaller matrices use [`CHOLESKY_BLOCK`].
pub const CHOLESKY_TUNED_FROM: usize = 256;

/// `GPU_LINALG_CHOLESKY_BLOCK`: forces the GPU block size (`b16` or `b32`).
pub const CHOLESKY_BLOCK_ENV: &str = "GPU_LINALG_CHOLESKY_BLOCK";

/// The tuned Cholesky block sizes of every device.
static CHOICES: Choices<BlockSize> = Choices::new("cholesky", Some(CHOLESKY_BLOCK_ENV));

/// The GPU factorisation of every matrix of `a` with block size `nb` (a multiple of 4, at
/// most [`CHOLESKY_BLOCK`]; see the module docs).
fn gpu_cholesky(
    ctx: &Context,
    gpu: &Arc<Gpu>,
    a: &Tensor,
    plan: &CholeskyPlan,
    upper: bool,
    nb: usize,
) -> Result<Tensor> {
    let (batch, n) = (plan.batch, plan.n);
    let b = CHOLESKY_BLOCK;
    let bytes = (batch * n * n * 4) as u64;
    gpu.check_binding(bytes, "cholesky of the input")?;
    let pm = n.div_ceil(4) * 4;
    let blocks = n.div_ceil(b);
    let packed_bytes = (batch * b * pm * 4) as u64;
    if blocks > 1 {
        gpu.check_binding(packed_bytes, "cholesky's packed panel")?;
    }
    let input = ctx.resident(a)?;
    let (out, status) = gpu.scoped("cholesky", || -> Result<_> {
        let build = |entry: &str| {
            checked_pipeline(
                gpu,
                &format!("cholesky/{entry}"),
                "cholesky.wgsl",
                || SOURCE.to_string(),
                entry,
                &[],
            )
        };
        let (check, diag, panel, finish) = (
            build("check")?,
            build("diag")?,
            build("panel")?,
            build("finish")?,
        );
        // SAFETY: `update` indexes `packed` at (z·B + c)·pm/4 + i/4 with z < batch, c < bs ≤ B
        // and i < n ≤ pm (pm a multiple of 4), inside the batch·B·pm values bound below; and
        // `w` at z·n² + i·n + j with i < n, j ≤ i (it returns for i ≥ n and stores only
        // j ≤ i), inside the batch·n² values bound; its one loop runs bs ≤ 32 times. The
        // grid's z (matrix z − z0) stays below batch − z0 for every chunk.
        let update = unsafe {
            trusted_pipeline(
                gpu,
                "cholesky/update",
                "cholesky.wgsl",
                || SOURCE.to_string(),
                "update",
                &[],
            )
        }?;
        let w = gpu.alloc(bytes, "cholesky work matrix")?;
        let out = gpu.alloc(bytes, "cholesky factor")?;
        let status_bytes = (batch * 16) as u64;
        let status = gpu.alloc(status_bytes, "cholesky status")?;
        let packed = if blocks > 1 {
            Some(gpu.alloc(packed_bytes, "cholesky packed panel")?)
        } else {
            None
        };
        let mut enc = gpu.encoder("cholesky");
        enc.clear(&status, 0, status_bytes);
        // Every count below fits u32: batch·n² elements fit one storage binding (checked).
        let params = |k0: usize, bs: usize, z0: usize| CholParams {
            n: n as u32,
            k0: k0 as u32,
            bs: bs as u32,
            z0: z0 as u32,
            pm: pm as u32,
            upper: u32::from(upper),
            pad0: 0,
            pad1: 0,
        };
        let mut z0 = 0;
        while z0 < batch {
            let zc = (batch - z0).min(MAX_Z) as u32;
            let u = enc.params(&params(0, 0, z0))?;
            let bg = enc.bind(
                &check,
                &[
                    (0, Bind::Params(&u)),
                    (1, Bind::Buffer(&input, bytes)),
                    (2, Bind::Buffer(&w, bytes)),
                    (3, Bind::Buffer(&status, status_bytes)),
                ],
            );
            enc.dispatch(
                &check,
                &bg,
                (n.div_ceil(64) as u32, n.div_ceil(256) as u32, zc),
            );
            for k0 in (0..n).step_by(nb) {
                let bs = nb.min(n - k0);
                let u = enc.params(&params(k0, bs, z0))?;
                let bg = enc.bind(
                    &diag,
                    &[
                        (0, Bind::Params(&u)),
                        (2, Bind::Buffer(&w, bytes)),
                        (3, Bind::Buffer(&status, status_bytes)),
                    ],
                );
                enc.dispatch(&diag, &bg, (1, 1, zc));
                let rest = n - k0 - bs;
                let Some(packed) = packed.as_ref().filter(|_| rest > 0) else {
                    continue;
                };
                let entries = [
                    (0, Bind::Params(&u)),
                    (2, Bind::Buffer(&w, bytes)),
                    (4, Bind::Buffer(packed, packed_bytes)),
                ];
                let bg = enc.bind(&panel, &entries);
                enc.dispatch(&panel, &bg, (rest.div_ceil(4 * 64) as u32, 1, zc));
                let bg = enc.bind(&update, &entries);
                let tiles = rest.div_ceil(4).div_ceil(8) as u32;
                enc.dispatch(&update, &bg, (tiles, tiles, zc));
            }
            let u = enc.params(&params(0, 0, z0))?;
            let bg = enc.bind(
                &finish,
                &[
                    (0, Bind::Params(&u)),
                    (2, Bind::Buffer(&w, bytes)),
                    (5, Bind::Buffer(&out, bytes)),
                ],
            );
            let g = n.div_ceil(16) as u32;
            enc.dispatch(&finish, &bg, (g, g, zc));
            z0 += MAX_Z;
        }
        enc.submit()?;
        Ok((out, status))
    })??;
    report(plan, &status)?;
    Ok(Tensor::from_gpu(a.shape().to_vec(), DType::F32, out))
}

/// Reads the status words back (the one readback) and turns the first matrix's problem into
/// its error.
fn report(plan: &CholeskyPlan, status: &Arc<GpuBuffer>) -> Result<()> {
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(&status.read(plan.batch * 16)?);
    if words.len() != plan.batch * 4 {
        return Err(Error::Readback(format!(
            "cholesky: {} status words read back for {} matrices",
            words.len(),
            plan.batch
        )));
    }
    for (z, s) in words.chunks_exact(4).enumerate() {
        plan.judge(
            z,
            s[1] != 0,
            f32::from_bits(s[2]),
            f32::from_bits(s[3]),
            s[0] as usize,
        )?;
    }
    Ok(())
}
