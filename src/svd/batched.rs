//! Batched SVD of many small matrices in one call ([`Context::svd_batched`]): one-sided
//! Jacobi on the GPU (`shaders/svd_batched.wgsl`) by one of two kernels, chosen per adapter
//! ([`SvdBatchedKernel`]); faer per matrix across threads on the CPU.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::{grid, jacobi_pipeline, svd_tolerance, Svd, MAX_SWEEPS, ROTATE_FRACTION, ZERO_REL};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::u32_of;
use crate::runtime::{trusted_pipeline, Bind, Choices, Gpu, GpuBuffer, Kernel};
use crate::svd::unrolled::{unrolled_fits, UNROLLED_ENTRY, UNROLLED_SWEEPS_PER_DISPATCH};
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

/// `shaders/svd_batched.wgsl`.
const SOURCE: &str = include_str!("../../shaders/svd_batched.wgsl");

/// The batched SVD module with the shared Jacobi functions prepended.
pub(crate) fn module_source() -> String {
    format!("{}\n{SOURCE}", crate::runtime::shader::JACOBI)
}

/// Largest m and n of [`Context::svd_batched`] (the kernels keep per-column state in
/// private and workgroup arrays of this length).
pub const BATCHED_MAX_DIM: usize = 32;

/// Workgroup size of the invocation-per-matrix kernel ([`SvdBatchedKernel::Invocation`]).
pub const BATCHED_WORKGROUP: u32 = 64;

/// Workgroup sizes the workgroup-per-matrix kernel ([`SvdBatchedKernel::Workgroup`]) is
/// built with.
pub const BATCHED_WG_SIZES: [u32; 4] = [32, 64, 128, 256];

/// Workgroup memory of the workgroup-per-matrix sweep: W and V (32×32 each), 256 partial Gram
/// sums (vec3, 16-byte stride) and two words.
const WG_STORAGE_BYTES: u32 = 2 * 1024 * 4 + 256 * 16 + 8;

/// The environment variable that forces a batched SVD kernel (see [`SvdBatchedKernel`]).
pub const SVD_BATCHED_KERNEL_ENV: &str = "GPU_LINALG_SVD_BATCHED_KERNEL";

/// Which GPU kernel runs the Jacobi sweeps of [`Context::svd_batched`]. Both share the
/// per-matrix initialisation (scaling, NaN/Inf detection) and finish (zero columns completed,
/// descending order) kernels and run one dispatch per sweep until every matrix has converged.
///
/// Spelled `invocation`, `unrolled`, `workgroup` or `workgroup@WG` (WG one of [`BATCHED_WG_SIZES`]) in
/// [`SVD_BATCHED_KERNEL_ENV`] and the tuning cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SvdBatchedKernel {
    /// One invocation per matrix: cyclic one-sided Jacobi, W and V in storage memory. Suits
    /// CPU-type adapters such as lavapipe (no barriers, no workgroup memory).
    Invocation,
    /// One workgroup per matrix: W and V loaded into workgroup memory for each sweep, the
    /// parallel round-robin ordering rotating the ⌈n/2⌉ disjoint column pairs of a step at
    /// once, several invocations per pair. Suits real GPUs. The workgroup size: one of
    /// [`BATCHED_WG_SIZES`], or `None` to size it by the shape (about 8 invocations per pair,
    /// 32 to 256: 64 for 16×16, 128 for 32×32).
    Workgroup(Option<u32>),
    /// One invocation per matrix, W and V held in private variables for the whole sweep by
    /// straight-line code generated for the shape (`src/svd/unrolled.rs`): storage is read and
    /// written once per sweep. Suits CPU-type adapters, where private variables are SIMD
    /// registers and storage accesses are per lane. Shapes past
    /// [`crate::svd::unrolled::UNROLLED_MAX_WORK`] run [`SvdBatchedKernel::Invocation`].
    Unrolled,
}

impl fmt::Display for SvdBatchedKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvdBatchedKernel::Invocation => f.write_str("invocation"),
            SvdBatchedKernel::Unrolled => f.write_str("unrolled"),
            SvdBatchedKernel::Workgroup(None) => f.write_str("workgroup"),
            SvdBatchedKernel::Workgroup(Some(wg)) => write!(f, "workgroup@{wg}"),
        }
    }
}

impl FromStr for SvdBatchedKernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<SvdBatchedKernel> {
        let bad = || {
            Error::InvalidArgument(format!(
                "bad batched svd kernel '{s}'; expected invocation, unrolled, workgroup or \
                 workgroup@WG with WG one of {BATCHED_WG_SIZES:?}"
            ))
        };
        let t = s.trim().to_ascii_lowercase();
        match t.split_once('@') {
            None if t == "invocation" => Ok(SvdBatchedKernel::Invocation),
            None if t == "unrolled" => Ok(SvdBatchedKernel::Unrolled),
            None if t == "workgroup" => Ok(SvdBatchedKernel::Workgroup(None)),
            Some(("workgroup", wg)) => match wg.parse::<u32>() {
                Ok(wg) if BATCHED_WG_SIZES.contains(&wg) => {
                    Ok(SvdBatchedKernel::Workgroup(Some(wg)))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Options of [`Context::svd_batched_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvdBatchedOptions {
    /// Force a GPU kernel (ignored on the CPU backend); `None` uses
    /// [`Context::svd_batched_kernel`].
    pub kernel: Option<SvdBatchedKernel>,
}

/// The tuned batched SVD kernels of every device.
static CHOICES: Choices<SvdBatchedKernel> =
    Choices::new("svd-batched", Some(SVD_BATCHED_KERNEL_ENV));

/// The workgroup size of the workgroup-per-matrix sweep on `rows`×`cols` work matrices
/// (cols ≤ rows), checked against the adapter's limits.
fn wg_size(gpu: &Gpu, rows: usize, cols: usize, forced: Option<u32>) -> Result<u32> {
    let limits = &gpu.limits;
    if limits.max_compute_workgroup_storage_size < WG_STORAGE_BYTES {
        return Err(Error::Kernel(format!(
            "the workgroup-per-matrix batched svd needs {WG_STORAGE_BYTES} bytes of workgroup \
             memory; this adapter offers {}",
            limits.max_compute_workgroup_storage_size
        )));
    }
    let wg = match forced {
        Some(wg) => wg,
        None => {
            let pairs = cols.div_ceil(2).max(1);
            let lanes = rows.next_power_of_two().min(8);
            let fit = (pairs * lanes).next_power_of_two().clamp(32, 256);
            // The largest listed size within the adapter's limits, if the shape asks for more.
            BATCHED_WG_SIZES
                .iter()
                .copied()
                .filter(|&w| w as usize <= fit)
                .filter(|&w| w <= limits.max_compute_invocations_per_workgroup)
                .filter(|&w| w <= limits.max_compute_workgroup_size_x)
                .max()
                .unwrap_or(32)
        }
    };
    if !BATCHED_WG_SIZES.contains(&wg)
        || wg > limits.max_compute_invocations_per_workgroup
        || wg > limits.max_compute_workgroup_size_x
    {
        return Err(Error::InvalidArgument(format!(
            "batched svd workgroup size {wg} is not one of {BATCHED_WG_SIZES:?} within this \
             adapter's limit of {} invocations",
            limits.max_compute_invocations_per_workgroup
        )));
    }
    Ok(wg)
}

crate::kernel_params! {
    /// The kernels' uniform block (`Params` in shaders/svd_batched.wgsl).
    struct BatchedParams: "Params" {
        batch: u32,
        rows: u32,
        cols: u32,
        wide: u32,
        tol: f32,
        zrel: f32,
        rot: f32,
        gx: u32,
        sweeps: u32,
    }
}

/// The layout of every parameter struct of this module (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![BatchedParams::layout(module_source())]
}

/// The pipeline of `entry` in `shaders/svd_batched.wgsl` built with workgroup size `wg`.
fn kernel(gpu: &Gpu, entry: &str, wg: u32) -> Result<Arc<Kernel>> {
    jacobi_pipeline(gpu, "svd_batched", entry, wg)
}

/// The per-matrix initialisation or finish (`svd_batched_init`, `svd_batched_finish`).
fn per_matrix_kernel(gpu: &Gpu, entry: &str) -> Result<Arc<Kernel>> {
    // SAFETY: both entry points return unless b < batch, and run_batched refuses rows or cols
    // above BATCHED_MAX_DIM (32), the length of their private arrays (indexed by columns, by rows /
    // 4 and by sorted positions, each below 32); they then touch A, W and the outputs at
    // b·(matrix size) + i (i below the matrix size), V at b·cols² + i and state at 3b … 3b + 2,
    // and run_batched binds every buffer with batch times those sizes. Their loops are
    // bounded by rows and cols.
    unsafe {
        trusted_pipeline(
            gpu,
            &format!("svd_batched/{entry}/WG={BATCHED_WORKGROUP}"),
            "svd_batched",
            module_source,
            entry,
            &[("WG", f64::from(BATCHED_WORKGROUP))],
        )
    }
}

/// The unrolled sweep for `rows`×`cols` work matrices (one pipeline per shape).
fn unrolled_kernel(gpu: &Gpu, rows: usize, cols: usize) -> Result<Arc<Kernel>> {
    // SAFETY: the generated sweep returns unless b < batch and the uniform rows and cols are
    // the ones it was generated for; it then reads and writes W at b·rows·cols + i
    // (i < rows·cols), V at b·cols² + i (i < cols²), state at 3b … 3b + 2 and stats[0], [1],
    // [3], and run_batched binds W, V and state with batch·rows·cols, batch·cols² and 3·batch
    // floats and stats with 4 words. Its one loop ends after at most max(1, sweeps) passes.
    unsafe {
        trusted_pipeline(
            gpu,
            &format!("svd_batched/{UNROLLED_ENTRY}/{rows}x{cols}/WG={BATCHED_WORKGROUP}"),
            "svd_batched",
            || crate::svd::unrolled::module_source(rows, cols),
            UNROLLED_ENTRY,
            &[("WG", f64::from(BATCHED_WORKGROUP))],
        )
    }
}

/// Runs the batched SVD of `batch` m×n matrices in `a`, the sweeps by `kernel_choice`.
fn run_batched(
    gpu: &Arc<Gpu>,
    a: &Arc<GpuBuffer>,
    (batch, m, n): (usize, usize, usize),
    kernel_choice: SvdBatchedKernel,
) -> Result<GpuBatched> {
    let wide = m < n;
    let (rows, cols) = if wide { (n, m) } else { (m, n) };
    if rows > BATCHED_MAX_DIM {
        // The kernels' private arrays hold BATCHED_MAX_DIM entries (their safety rests on it).
        return Err(Error::InvalidArgument(format!(
            "svd_batched handles matrices up to {BATCHED_MAX_DIM}×{BATCHED_MAX_DIM}; got {m}×{n}"
        )));
    }
    let k = cols;
    let total = batch * m * n;
    u32_of(total, "batch·m·n")?;
    let bytes = |len: usize| (len * 4) as u64;
    for (len, what) in [
        (total, "the batched svd input"),
        (batch * m * k, "the batched svd U"),
        (batch * k * n, "the batched svd Vt"),
    ] {
        gpu.check_binding(bytes(len), what)?;
    }
    // The sweep: entry point, workgroup size and grid (one invocation or one workgroup per
    // matrix). Checked first, so a refused workgroup size allocates nothing.
    let (gx, gy) = grid(gpu, batch, BATCHED_WORKGROUP)?;
    let kernel_choice = match kernel_choice {
        SvdBatchedKernel::Unrolled if !unrolled_fits(rows, cols) => SvdBatchedKernel::Invocation,
        other => other,
    };
    let (sweep, (sgx, sgy)) = match kernel_choice {
        SvdBatchedKernel::Invocation => (
            kernel(gpu, "svd_batched_sweep", BATCHED_WORKGROUP)?,
            (gx, gy),
        ),
        SvdBatchedKernel::Unrolled => (unrolled_kernel(gpu, rows, cols)?, (gx, gy)),
        SvdBatchedKernel::Workgroup(forced) => (
            kernel(
                gpu,
                "svd_batched_wg_sweep",
                wg_size(gpu, rows, cols, forced)?,
            )?,
            grid(gpu, batch, 1)?,
        ),
    };
    let uo = gpu.alloc(bytes(batch * m * k), "batched svd U")?;
    let so = gpu.alloc(bytes(batch * k), "batched svd S")?;
    let vto = gpu.alloc(bytes(batch * k * n), "batched svd Vt")?;
    let stats = gpu.alloc(16, "batched svd stats")?;
    let params = BatchedParams {
        batch: u32_of(batch, "batch")?,
        rows: rows as u32,
        cols: cols as u32,
        wide: u32::from(wide),
        tol: svd_tolerance(rows),
        zrel: ZERO_REL,
        rot: svd_tolerance(rows) * ROTATE_FRACTION,
        gx,
        sweeps: 1,
    };
    let sweep_params = BatchedParams { gx: sgx, ..params };
    let w = gpu.alloc(bytes(total), "batched svd work")?;
    let v = gpu.alloc(bytes(batch * k * k), "batched svd V")?;
    let state = gpu.alloc(bytes(batch * 3), "batched svd state")?;
    let (wb, vb, sb) = (
        (2, Bind::Buffer(&w, bytes(total))),
        (3, Bind::Buffer(&v, bytes(batch * k * k))),
        (8, Bind::Buffer(&state, bytes(batch * 3))),
    );
    let stats_b = (7, Bind::Buffer(&stats, 16));
    let run = |kn: &Kernel,
               (p, groups): (&BatchedParams, (u32, u32)),
               b: &[(u32, Bind<'_>)],
               clear: &[(u64, u64)]|
     -> Result<()> {
        let mut enc = gpu.encoder("svd_batched");
        let u = enc.params(p)?;
        let mut all = vec![(0, Bind::Params(&u))];
        all.extend_from_slice(b);
        let bg = enc.bind(kn, &all);
        for &(off, len) in clear {
            enc.clear(&stats, off, len);
        }
        enc.dispatch(kn, &bg, (groups.0, groups.1, 1));
        enc.submit()
    };
    run(
        &*per_matrix_kernel(gpu, "svd_batched_init")?,
        (&params, (gx, gy)),
        &[(1, Bind::Buffer(a, bytes(total))), wb, vb, stats_b, sb],
        &[(0, 16)],
    )?;
    let mut sweeps = 0;
    let mut st = vec![0u32; 4];
    if k >= 2 {
        while sweeps < MAX_SWEEPS {
            // A dispatch per sweep (or per few, for the unrolled kernel, which keeps W and V in
            // registers between them): a single dispatch running all sweeps gave wrong
            // results from about 20×20 on lavapipe (long invocations seem to be cut short).
            let per = if kernel_choice == SvdBatchedKernel::Unrolled {
                UNROLLED_SWEEPS_PER_DISPATCH.min(MAX_SWEEPS - sweeps)
            } else {
                1
            };
            // stats[0], [1] and [3] describe the last dispatch; stats[2] (NaN seen) stays.
            run(
                &sweep,
                (
                    &BatchedParams {
                        sweeps: per,
                        ..sweep_params
                    },
                    (sgx, sgy),
                ),
                &[wb, vb, stats_b, sb],
                &[(0, 8), (12, 4)],
            )?;
            st = bytemuck::pod_collect_to_vec(&stats.read(16)?);
            sweeps += st.first().copied().unwrap_or(1).clamp(1, per);
            if st.get(2).copied().unwrap_or(0) != 0 || st.get(3).copied().unwrap_or(0) == 0 {
                break;
            }
        }
    } else {
        st = bytemuck::pod_collect_to_vec(&stats.read(16)?);
    }
    if st.get(2).copied().unwrap_or(0) != 0 {
        return Err(Error::InvalidArgument(format!(
            "svd_batched: the [{batch}, {m}, {n}] input holds NaN or infinite values; no SVD exists"
        )));
    }
    run(
        &*per_matrix_kernel(gpu, "svd_batched_finish")?,
        (&params, (gx, gy)),
        &[
            wb,
            vb,
            (4, Bind::Buffer(&uo, bytes(batch * m * k))),
            (5, Bind::Buffer(&so, bytes(batch * k))),
            (6, Bind::Buffer(&vto, bytes(batch * k * n))),
            sb,
        ],
        &[],
    )?;
    Ok(GpuBatched {
        u: uo,
        s: so,
        vt: vto,
        sweeps,
        off: f32::from_bits(st.get(1).copied().unwrap_or(0)),
    })
}

/// The batched GPU factors before they become tensors.
struct GpuBatched {
    u: Arc<GpuBuffer>,
    s: Arc<GpuBuffer>,
    vt: Arc<GpuBuffer>,
    sweeps: u32,
    off: f32,
}

impl Context {
    /// The thin SVDs of a batch of small matrices in one call: `a` of shape [batch, m, n] with
    /// m, n ≤ [`BATCHED_MAX_DIM`] (32) gives U [batch, m, k], S [batch, k] (descending), Vt
    /// [batch, k, n], k = min(m, n), each matrix as [`Context::svd`] would. Larger matrices
    /// are refused: use [`Context::svd`]. On the CPU backend: faer per matrix across threads.
    ///
    /// On a GPU: one-sided Jacobi (tolerance √rows·ε, Rutishauser's rotation, columns below
    /// 4ε·‖A‖_F treated as zero and completed to an orthonormal basis), one dispatch per sweep
    /// until every matrix has converged (`sweeps` and `off_diagonal` are the largest over the
    /// batch). The sweeps run one of two kernels ([`SvdBatchedKernel`]): one invocation per
    /// matrix (cyclic ordering, W and V in storage memory; best on CPU-type adapters such as
    /// lavapipe) or one workgroup per matrix (W and V in workgroup memory, the ⌈n/2⌉ disjoint
    /// pairs of each round-robin step rotated at once by several invocations each; best on
    /// real GPUs). Which one: [`SvdBatchedOptions::kernel`] if set
    /// ([`Context::svd_batched_with`]), else [`Context::svd_batched_kernel`]: forced by
    /// `GPU_LINALG_SVD_BATCHED_KERNEL` (`invocation`, `workgroup` or `workgroup@WG`), else
    /// the choice cached on disk for this adapter, else both timed now on matrices of 16×16
    /// at the first call ([`Context::tune_svd_batched`]), the faster cached.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2, 2], &[3.0, 0.0, 0.0, -4.0, 1.0, 0.0, 0.0, 2.0])?;
    /// let svd = ctx.svd_batched(&a)?;
    /// assert_eq!(svd.s.to_vec()?, vec![4.0, 3.0, 2.0, 1.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd_batched(&self, a: &Tensor) -> Result<Svd> {
        self.svd_batched_with(a, &SvdBatchedOptions::default())
    }

    /// [`Context::svd_batched`] with options (the GPU kernel; ignored on the CPU backend).
    ///
    /// ```
    /// use gpu_linalg::SvdBatchedOptions;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// // Two 2×2 matrices in one call.
    /// let a = ctx.tensor(&[2, 2, 2], &[2., 0., 0., 1., 0., 3., 1., 0.])?;
    /// let r = ctx.svd_batched_with(&a, &SvdBatchedOptions::default())?;
    /// let s = r.s.to_vec()?;
    /// assert_eq!(r.s.shape(), &[2, 2]);
    /// for (got, want) in s.iter().zip([2., 1., 3., 1.]) {
    ///     assert!((got - want).abs() < 1e-5);
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd_batched_with(&self, a: &Tensor, opts: &SvdBatchedOptions) -> Result<Svd> {
        let (mut out, spent) = crate::runtime::counted(|| self.svd_batched_uncounted(a, opts))?;
        (out.dispatches, out.submits) = (spent.dispatches, spent.submits);
        Ok(out)
    }

    fn svd_batched_uncounted(&self, a: &Tensor, opts: &SvdBatchedOptions) -> Result<Svd> {
        if a.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "svd_batched: input (shape {:?}) is {}; expected float32",
                a.shape(),
                a.dtype().name()
            )));
        }
        let [batch, m, n] = *a.shape() else {
            return Err(Error::Shape(format!(
                "svd_batched needs a [batch, m, n] tensor; got shape {:?} ({} dims)",
                a.shape(),
                a.ndim()
            )));
        };
        if m > BATCHED_MAX_DIM || n > BATCHED_MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "svd_batched handles matrices up to {BATCHED_MAX_DIM}×{BATCHED_MAX_DIM}; got \
                 shape {:?}: use svd per matrix",
                a.shape()
            )));
        }
        let k = m.min(n);
        let shapes = ([batch, m, k], [batch, k], [batch, k, n]);
        if batch == 0 || k == 0 {
            return Ok(Svd {
                u: self.zeros(&shapes.0)?,
                s: self.zeros(&shapes.1)?,
                vt: self.zeros(&shapes.2)?,
                sweeps: 0,
                off_diagonal: 0.0,
                dispatches: 0,
                submits: 0,
            });
        }
        if let Some(gpu) = self.gpu() {
            let r = (|| {
                let choice = match opts.kernel {
                    Some(k) => k,
                    None => self.svd_batched_kernel()?,
                };
                let ab = self.resident(a)?;
                let out = gpu.scoped("svd_batched", || {
                    run_batched(gpu, &ab, (batch, m, n), choice)
                })??;
                Ok(Svd {
                    u: Tensor::from_gpu(shapes.0.to_vec(), DType::F32, out.u),
                    s: Tensor::from_gpu(shapes.1.to_vec(), DType::F32, out.s),
                    vt: Tensor::from_gpu(shapes.2.to_vec(), DType::F32, out.vt),
                    sweeps: out.sweeps,
                    off_diagonal: out.off,
                    dispatches: 0,
                    submits: 0,
                })
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
        }
        let values = host_values(a)?;
        if values.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "svd_batched: the {:?} input holds NaN or infinite values; no SVD exists",
                a.shape()
            )));
        }
        let (u, s, vt) = crate::svd::cpu::fast_batched(&values, batch, m, n)?;
        Ok(Svd {
            u: self.tensor(&shapes.0, &u)?,
            s: self.tensor(&shapes.1, &s)?,
            vt: self.tensor(&shapes.2, &vt)?,
            sweeps: 0,
            off_diagonal: 0.0,
            dispatches: 0,
            submits: 0,
        })
    }

    /// The batched SVD kernel this context uses (see [`Context::svd_batched`]): forced by
    /// `GPU_LINALG_SVD_BATCHED_KERNEL`, else remembered, cached on disk for this adapter, or
    /// timed now by [`Context::tune_svd_batched`] (each kernel's factors checked first) and
    /// cached on disk.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// match ctx.svd_batched_kernel() {
    ///     Ok(k) => println!("batched svd kernel: {k:?}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"), // the CPU backend has no GPU kernel
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd_batched_kernel(&self) -> Result<SvdBatchedKernel> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU batched svd kernel".into(),
            ));
        };
        CHOICES.get(gpu, "16x16", || self.tune_svd_batched_outcomes())
    }

    /// Times each batched SVD kernel on random 16×16 matrices — 128 on CPU-type adapters such
    /// as lavapipe, 4096 on GPUs, enough to fill one — after checking its factors of 8 of them
    /// and one untimed run that builds the pipelines: (kernel, seconds of the best of three
    /// runs, or why it was ruled out).
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// if ctx.is_gpu() { // nothing to tune on the CPU backend
    ///     for (kernel, outcome) in ctx.tune_svd_batched()? {
    ///         println!("{kernel:?}: {outcome:?}");
    ///     }
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tune_svd_batched(
        &self,
    ) -> Result<Vec<(SvdBatchedKernel, std::result::Result<f64, String>)>> {
        Ok(self
            .tune_svd_batched_outcomes()?
            .into_iter()
            .map(|o| (o.choice, o.seconds))
            .collect())
    }

    fn tune_svd_batched_outcomes(
        &self,
    ) -> Result<Vec<crate::runtime::TuneOutcome<SvdBatchedKernel>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let batch = if gpu.is_cpu_adapter() { 128 } else { 4096 };
        let n = 16usize;
        let a = self.rand_normal(&[batch, n, n], 0x5eed, 0.0, 1.0)?;
        let checked = 8usize;
        let few = self.rand_normal(&[checked, n, n], 0xc4ec, 0.0, 1.0)?;
        let few_host = few.to_vec()?;
        let opts = |kernel| SvdBatchedOptions {
            kernel: Some(kernel),
        };
        Ok(crate::runtime::measure_with(
            gpu,
            &[
                SvdBatchedKernel::Invocation,
                SvdBatchedKernel::Unrolled,
                SvdBatchedKernel::Workgroup(None),
            ],
            3,
            |kernel| {
                let f = self.svd_batched_with(&few, &opts(kernel))?;
                let (u, s, vt) = (f.u.to_vec()?, f.s.to_vec()?, f.vt.to_vec()?);
                Ok((0..checked)
                    .flat_map(|b| {
                        crate::svd::factor_residuals(
                            n,
                            n,
                            &u[b * n * n..(b + 1) * n * n],
                            &s[b * n..(b + 1) * n],
                            &vt[b * n * n..(b + 1) * n * n],
                        )
                    })
                    .collect())
            },
            |out| {
                let per = out.len() / checked;
                (0..checked).try_for_each(|b| {
                    crate::svd::check_factor_residuals(
                        &few_host[b * n * n..(b + 1) * n * n],
                        n,
                        n,
                        &out[b * per..(b + 1) * per],
                    )
                })
            },
            |kernel| self.svd_batched_with(&a, &opts(kernel)).map(drop),
        ))
    }
}
