//! Singular value decomposition, `numpy.linalg.svd(A, full_matrices=False)`: on the GPU by
//! one-sided (Hestenes) Jacobi with a parallel round-robin ordering (`shaders/svd.wgsl`), on
//! the CPU by faer.

pub(crate) mod band;
pub mod batched;
pub mod cpu;
pub mod unrolled;

/// `shaders/svd.wgsl`.
const SOURCE: &str = include_str!("../../shaders/svd.wgsl");

/// The SVD module with the shared Jacobi functions prepended.
pub(crate) fn module_source() -> String {
    format!("{}\n{SOURCE}", shader::JACOBI)
}

use std::fmt;
use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::shader;
use crate::runtime::{
    checked_pipeline, fold_grid, u32_of, Bind, Choices, Encoder, Gpu, GpuBuffer, Kernel,
};
use crate::tensor::host_values;
use crate::tensor::{DType, Tensor};

pub use crate::svd::batched::{BATCHED_MAX_DIM, BATCHED_WORKGROUP};

/// The thin SVD `A = U · diag(S) · Vt` of an m×n matrix, k = min(m, n).
#[derive(Clone, Debug)]
pub struct Svd {
    /// Left singular vectors as columns, m×k, orthonormal even when A is rank-deficient.
    pub u: Tensor,
    /// Singular values, k, non-negative and descending.
    pub s: Tensor,
    /// Right singular vectors as rows, k×n.
    pub vt: Tensor,
    /// Jacobi sweeps the GPU ran (0 on the CPU backend, and when k ≤ 1).
    pub sweeps: u32,
    /// The largest scaled off-diagonal |aᵢ·aⱼ|/(‖aᵢ‖‖aⱼ‖) measured in the last sweep (0 on the
    /// CPU backend); at most [`svd_tolerance`] when the sweeps converged.
    pub off_diagonal: f32,
    /// Compute dispatches the GPU ran for this call (0 on the CPU backend).
    pub dispatches: u64,
    /// Queue submissions this call made (0 on the CPU backend).
    pub submits: u64,
}

/// Most Jacobi sweeps the GPU runs (LAPACK's sgesvj stops at 30 too).
pub const MAX_SWEEPS: u32 = 30;

/// ε of the tolerances, 2⁻²³ (LAPACK's "precision" for f32).
const EPS: f32 = 1.0 / 8_388_608.0;

/// Columns whose norm is at most this multiple of ‖A‖_F·ε count as zero: never rotated, and
/// their left singular vectors are completed to an orthonormal basis.
pub(crate) const ZERO_REL: f32 = 4.0 * EPS;

/// The convergence tolerance of the Jacobi sweeps on columns of length `rows`: √rows·ε, as
/// LAPACK's sgesvj.
pub fn svd_tolerance(rows: usize) -> f32 {
    (rows as f32).sqrt() * EPS
}

/// (m, n) of a valid SVD operand, or an error naming the shape or dtype.
pub(crate) fn svd_dims(a: &Tensor) -> Result<(usize, usize)> {
    if a.dtype() != DType::F32 {
        return Err(Error::InvalidArgument(format!(
            "svd: input (shape {:?}) is {}; expected float32",
            a.shape(),
            a.dtype().name()
        )));
    }
    match *a.shape() {
        [m, n] => Ok((m, n)),
        _ => Err(Error::Shape(format!(
            "svd needs a 2-D matrix; got shape {:?} ({} dims)",
            a.shape(),
            a.ndim()
        ))),
    }
}

/// The error for input with NaN or infinite values (numpy raises `LinAlgError`).
fn non_finite(m: usize, n: usize) -> Error {
    Error::InvalidArgument(format!(
        "svd: the {m}×{n} input holds NaN or infinite values; no SVD exists"
    ))
}

/// The pipeline of `entry` in the Jacobi module `name` (`svd` or `svd_batched`, with
/// shaders/jacobi.wgsl prepended) at workgroup size `wg`, cached per device.
pub(crate) fn jacobi_pipeline(gpu: &Gpu, name: &str, entry: &str, wg: u32) -> Result<Arc<Kernel>> {
    // Checked modules: pair indices and matrix offsets are computed in the kernels.
    checked_pipeline(
        gpu,
        &format!("{name}/{entry}/WG={wg}"),
        name,
        || {
            if name == "svd" {
                module_source()
            } else {
                batched::module_source()
            }
        },
        entry,
        &[("WG", f64::from(wg))],
    )
}

/// Options of [`Context::svd_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvdOptions {
    /// Force the workgroup size of the GPU kernels (a power of two, 8 to 256). By default the
    /// adapter's tuned size ([`Context::svd_workgroup`]), never wider than the next power of
    /// two of the column length. By default matrices (or QR factors R) of at most
    /// [`crate::svd::batched::BATCHED_MAX_DIM`] rows and columns run on the batched kernels instead (one
    /// dispatch a sweep: 2× faster on lavapipe at 8…32); forcing a size keeps them on these.
    pub workgroup: Option<u32>,
    /// Whether the GPU first factors a tall A = Q·R ([`Context::qr`]), runs Jacobi on the n×n R
    /// and returns U = Q·U_R (a wide A: the same on Aᵀ, transposed back). By default (`None`)
    /// it does when the long side is at least [`SVD_QR_RATIO`] times the short one and the
    /// short one is at least [`SVD_QR_MIN_COLS`] (below that the QR's round trips cost more
    /// than they save) or the long one exceeds [`SVD_QR_LONG_COLUMN`].
    pub qr_first: Option<bool>,
    /// Whether the columns are sorted by descending norm before each sweep (de Rijk's
    /// pivoting: the round-robin then meets columns of near norms in a better order). It costs
    /// one norm kernel and a readback of k floats per sweep. By default (`None`) it is on: over
    /// 16 random 256×256 matrices on lavapipe it takes 10.06 sweeps on average (at most 11)
    /// against 10.94 (at most 12) unsorted; 9.25 against 9.69 at 128×128
    /// (`cargo test --release --test svd sweeps_with -- --ignored --nocapture`).
    pub sort_columns: Option<bool>,
    /// The GPU method for matrices of more than [`BATCHED_MAX_DIM`] rows or columns. By
    /// default ([`SvdMethod::Band`] unless a Jacobi option above is set) the two-stage band
    /// reduction; [`SvdMethod::Jacobi`] keeps the one-sided Jacobi sweeps.
    pub method: Option<SvdMethod>,
}

/// The GPU SVD methods of [`SvdOptions::method`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvdMethod {
    /// Reduction to upper band form by Householder panels and GEMM-shaped block updates on
    /// the GPU, the band's SVD on the host in f64 (O(n²) data), the vectors back-transformed
    /// on the GPU: about 6·n/b dependent dispatches for panel width b.
    Band,
    /// One-sided (Hestenes) Jacobi: one dispatch per round-robin step, n − 1 steps a sweep.
    Jacobi,
}

/// Tall matrices with m ≥ this multiple of n are first reduced by a QR on the GPU (unless
/// [`SvdOptions::qr_first`] says otherwise): Jacobi sweeps then touch n×n columns, not m×n.
pub const SVD_QR_RATIO: usize = 2;

/// Fewest columns for which the default SVD runs the QR first (see [`SvdOptions::qr_first`]):
/// on lavapipe a 4096×64 SVD takes 75 ms instead of 325 with it, a 1000×7 one 5.5 instead
/// of 2.3.
pub const SVD_QR_MIN_COLS: usize = 16;

/// Columns (of A, or of Aᵀ when A is wide) longer than this are reduced by a QR first whatever
/// the other dimension: the Jacobi kernels' invocations loop over a column, and lavapipe ends an
/// invocation after 65,535 loop iterations.
pub const SVD_QR_LONG_COLUMN: usize = 65_536;

/// The workgroup sizes the SVD kernels are built with.
pub const SVD_WORKGROUPS: [u32; 6] = [8, 16, 32, 64, 128, 256];

/// The workgroup size for columns of length `rows` on `gpu`: `forced` (checked), else the
/// adapter's tuned size `base`, never wider than the next power of two of `rows`.
fn workgroup(gpu: &Gpu, rows: usize, forced: Option<u32>, base: u32) -> Result<u32> {
    if let Some(wg) = forced {
        if !SVD_WORKGROUPS.contains(&wg) || wg > gpu.limits.max_compute_invocations_per_workgroup {
            return Err(Error::InvalidArgument(format!(
                "svd workgroup size {wg} is not one of {SVD_WORKGROUPS:?} within this adapter's \
                 limit of {} invocations",
                gpu.limits.max_compute_invocations_per_workgroup
            )));
        }
        return Ok(wg);
    }
    let fit = u32::try_from(rows.next_power_of_two()).unwrap_or(u32::MAX);
    Ok(base.min(fit).max(8))
}

/// Environment variable that forces the SVD workgroup size (one of [`SVD_WORKGROUPS`]).
pub const SVD_WORKGROUP_ENV: &str = "GPU_LINALG_SVD_WORKGROUP";

/// The workgroup size each device chose (tuned or read from the cache) in this process.
static WORKGROUP_CHOICE: Choices<SvdWorkgroup> = Choices::new("svd", None);

/// The sweeps rotate every pair whose scaled off-diagonal exceeds this fraction of the
/// convergence tolerance. Convergence still means every pair ≤ the tolerance; rotating only
/// above it would leave pairs just under it, which the later rotations of a sweep nudge back
/// over, so that a last sweep would run only to push them under again. On random 256×256
/// matrices (lavapipe) 1 took 11–12 sweeps, 0.25 takes 10–11.
pub(crate) const ROTATE_FRACTION: f32 = 0.25;

/// Element updates one submission of rotation steps may hold (keeps submissions short).
const WORK_PER_SUBMIT: usize = 1 << 22;

crate::kernel_params! {
    /// The kernels' uniform block (`Params` in shaders/svd.wgsl).
    struct SvdParams: "Params" {
        rows: u32,
        cols: u32,
        np: u32,
        step: u32,
        rot: f32,
        zrel: f32,
        wide: u32,
        gx: u32,
    }
}

/// The layout of every parameter struct of this family (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![SvdParams::layout(module_source())]
}

/// What every kernel launch of one SVD shares.
struct Params {
    rows: u32,
    cols: u32,
    np: u32,
    tol: f32,
    wide: bool,
    wg: u32,
}

impl Params {
    /// The kernel parameters of round-robin step `step` on a grid `gx` workgroups wide.
    fn at(&self, step: u32, gx: u32) -> SvdParams {
        SvdParams {
            rows: self.rows,
            cols: self.cols,
            np: self.np,
            step,
            rot: self.tol * ROTATE_FRACTION,
            zrel: ZERO_REL,
            wide: u32::from(self.wide),
            gx,
        }
    }
}

/// A 1-D grid of `threads` threads folded into 2-D under the dispatch limit: (gx, gy).
pub(crate) fn grid(gpu: &Gpu, threads: usize, wg: u32) -> Result<(u32, u32)> {
    fold_grid(gpu, threads.div_ceil(wg as usize).max(1), "svd")
}

/// Records one dispatch of `entry` over `threads` threads (a 1-D grid folded into 2-D).
fn dispatch(
    gpu: &Arc<Gpu>,
    enc: &mut Encoder,
    entry: &str,
    params: &Params,
    threads: usize,
    b: &[(u32, Bind<'_>)],
) -> Result<()> {
    let k = jacobi_pipeline(gpu, "svd", entry, params.wg)?;
    let (gx, gy) = grid(gpu, threads, params.wg)?;
    let u = enc.params(&params.at(0, gx))?;
    let mut all = vec![(0, Bind::Params(&u))];
    all.extend_from_slice(b);
    let bg = enc.bind(&k, &all);
    enc.dispatch(&k, &bg, (gx, gy, 1));
    Ok(())
}

/// Elements of A one invocation of `svd_amax` scans (`CHUNK` in svd.wgsl).
const AMAX_CHUNK: usize = 64;

/// Encodes `svd_norms` (the column norms of W and V, and the sweep's measure, into stats) over
/// `bindings` (w, vm, stats and offmax): one workgroup per column.
fn column_norms(
    gpu: &Arc<Gpu>,
    enc: &mut Encoder,
    params: &Params,
    bindings: &[(u32, Bind<'_>)],
) -> Result<()> {
    let threads = params.cols as usize * params.wg as usize;
    dispatch(gpu, enc, "svd_norms", params, threads, bindings)
}

/// The GPU factors before they become tensors.
struct GpuSvd {
    u: Arc<GpuBuffer>,
    s: Vec<f32>,
    vt: Arc<GpuBuffer>,
    sweeps: u32,
    off: f32,
}

/// Runs the Jacobi SVD of the m×n matrix in `a` (k = min(m, n) ≥ 1).
/// Computes the Gram matrix WᵀW (cols × cols, read back) of the work matrix W, stored as the
/// row-major cols × rows buffer (a column of W per row): by the context's GEMM.
type GramFn<'a> = dyn Fn(&Arc<GpuBuffer>, usize, usize) -> Result<Vec<f32>> + 'a;

/// The largest scaled off-diagonal |gᵢⱼ|/√(gᵢᵢ·gⱼⱼ) of a Gram matrix over the pairs whose
/// columns are both above the zero threshold (squared norms ≤ ZERO_REL²·trace count as zero,
/// as in the sweeps: the Frobenius norm is the trace and rotations keep it).
fn gram_off_diagonal(g: &[f32], cols: usize) -> f32 {
    let trace: f32 = (0..cols).map(|i| g[i * cols + i]).sum();
    let zt2 = ZERO_REL * ZERO_REL * trace;
    let mut worst = 0f32;
    for i in 0..cols {
        let gi = g[i * cols + i];
        if gi <= zt2 {
            continue;
        }
        for j in i + 1..cols {
            let gj = g[j * cols + j];
            if gj > zt2 {
                let off = g[i * cols + j].abs() / (gi.sqrt() * gj.sqrt());
                if off.is_nan() {
                    return f32::NAN;
                }
                worst = worst.max(off);
            }
        }
    }
    worst
}

/// How a GPU SVD runs: the adapter's tuned workgroup size and the most sweeps (tuning runs
/// one).
#[derive(Clone, Copy)]
struct Run {
    base_wg: u32,
    max_sweeps: u32,
}

fn run_gpu(
    gpu: &Arc<Gpu>,
    a: &Arc<GpuBuffer>,
    (m, n): (usize, usize),
    opts: &SvdOptions,
    run: Run,
    gram: &GramFn,
) -> Result<GpuSvd> {
    let wide = m < n;
    let (rows, cols) = if wide { (n, m) } else { (m, n) };
    let mn = rows * cols;
    let wg = workgroup(gpu, rows, opts.workgroup, run.base_wg)?;
    u32_of(mn + cols * cols + 256, "m·n + k²")?;
    let w_bytes = (mn * 4) as u64;
    let v_bytes = (cols * cols * 4) as u64;
    for (bytes, what) in [
        (w_bytes, "the svd work matrix"),
        (v_bytes, "the svd V matrix"),
    ] {
        gpu.check_binding(bytes, what)?;
    }
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let np = cols + cols % 2;
    if np / 2 > limit {
        return Err(Error::InvalidArgument(format!(
            "svd: {} column pairs per step exceed this adapter's limit of {limit} workgroups",
            np / 2
        )));
    }
    let params = Params {
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        np: u32_of(np, "cols")?,
        tol: svd_tolerance(rows),
        wide,
        wg,
    };
    let w = gpu.alloc(w_bytes, "svd work matrix")?;
    let v = gpu.alloc(v_bytes, "svd V")?;
    let stats_bytes = ((2 * cols + 3) * 4) as u64;
    let stats = gpu.alloc(stats_bytes, "svd norms")?;
    let off = gpu.alloc(4, "svd off-diagonal measure")?;
    let norm_bindings = [
        (2, Bind::Buffer(&w, w_bytes)),
        (3, Bind::Buffer(&v, v_bytes)),
        (4, Bind::Buffer(&stats, stats_bytes)),
        (5, Bind::Buffer(&off, 4)),
    ];

    // max|A| (svd_amax) sets the power-of-two scale of W (svd_init); the column norms of W
    // (svd_norms) give ‖W‖_F (svd_fro), the zero threshold of the sweeps.
    let mut enc = gpu.encoder("svd");
    enc.clear(&off, 0, 4);
    dispatch(
        gpu,
        &mut enc,
        "svd_amax",
        &params,
        mn.div_ceil(AMAX_CHUNK),
        &[(1, Bind::Buffer(a, w_bytes)), (5, Bind::Buffer(&off, 4))],
    )?;
    dispatch(
        gpu,
        &mut enc,
        "svd_init",
        &params,
        mn + cols * cols,
        &[
            (1, Bind::Buffer(a, w_bytes)),
            (2, Bind::Buffer(&w, w_bytes)),
            (3, Bind::Buffer(&v, v_bytes)),
            (4, Bind::Buffer(&stats, stats_bytes)),
            (5, Bind::Buffer(&off, 4)),
        ],
    )?;
    column_norms(gpu, &mut enc, &params, &norm_bindings)?;
    dispatch(
        gpu,
        &mut enc,
        "svd_fro",
        &params,
        1,
        &[(4, Bind::Buffer(&stats, stats_bytes))],
    )?;
    enc.submit()?;

    // One uniform block per round-robin step, at the device's uniform offset alignment.
    let (mut sweeps, mut measured) = (0u32, 0f32);
    // With sorting, the stats read after the last sweep (norms of W and V, W untouched since)
    // serve the factors below as well.
    let mut last_stats: Option<Vec<f32>> = None;
    if cols >= 2 {
        let steps = np - 1;
        let steps_params: Vec<SvdParams> = (0..steps).map(|s| params.at(s as u32, 0)).collect();
        let (u, stride) = gpu.upload_params_array(&steps_params)?;
        let size = std::mem::size_of::<SvdParams>() as u64;
        let k = jacobi_pipeline(gpu, "svd", "svd_rotate", wg)?;
        let sort = opts.sort_columns.unwrap_or(true);
        let mut slots: Vec<u32> = (0..np as u32).collect();
        let order = gpu.upload(bytemuck::cast_slice(&slots), "svd order")?;
        let b = [
            (2, Bind::Buffer(&w, w_bytes)),
            (3, Bind::Buffer(&v, v_bytes)),
            (4, Bind::Buffer(&stats, stats_bytes)),
            (5, Bind::Buffer(&off, 4)),
            (9, Bind::Buffer(&order, (np * 4) as u64)),
        ];
        // The bind groups of every step, built once and shared by every sweep's encoders
        // (which keep `u` and the bound buffers, listed in `b`, alive).
        let groups: Vec<wgpu::BindGroup> = (0..steps)
            .map(|s| {
                let mut all = vec![(0, Bind::Range(&u, s as u64 * stride, size))];
                all.extend_from_slice(&b);
                gpu.bind_group(&k, &all)
            })
            .collect();
        let per_step = (np / 2) * (rows + cols);
        let per_submit = (WORK_PER_SUBMIT / per_step.max(1)).clamp(1, steps);
        while sweeps < run.max_sweeps {
            sweeps += 1;
            let mut s0 = 0;
            while s0 < steps {
                let s1 = (s0 + per_submit).min(steps);
                let mut enc = gpu.encoder("svd sweep");
                enc.keep(&u);
                enc.keep_bound(&b);
                if s0 == 0 {
                    enc.clear(&off, 0, 4);
                }
                for bg in &groups[s0..s1] {
                    enc.dispatch(&k, bg, ((np / 2) as u32, 1, 1));
                }
                if s1 == steps && sort {
                    // The norms for the next sweep's order, with the measure beside them:
                    // one readback a sweep.
                    column_norms(gpu, &mut enc, &params, &norm_bindings)?;
                }
                enc.submit()?;
                s0 = s1;
            }
            let norms: Vec<f32> = if sort {
                bytemuck::pod_collect_to_vec(&stats.read((2 * cols + 3) * 4)?)
            } else {
                bytemuck::pod_collect_to_vec(&off.read(4)?)
            };
            measured = if sort {
                norms.get(cols + 2)
            } else {
                norms.first()
            }
            .copied()
            .unwrap_or(f32::NAN);
            if sort {
                last_stats = Some(norms);
            }
            if measured <= params.tol || measured.is_nan() {
                break;
            }
            // The sweep measured each pair before rotating it. Once that measure is small
            // (quadratic convergence then predicts the next at about its square), check the
            // state after the sweep on the whole Gram matrix instead of running one more sweep
            // only to find every pair converged: one GEMM costs far less than a sweep.
            if measured * measured <= params.tol {
                let after = gram_off_diagonal(&gram(&w, rows, cols)?, cols);
                if after <= params.tol {
                    measured = after;
                    break;
                }
            }
            if let Some(norms) = last_stats.as_deref().and_then(|st| st.get(2..cols + 2)) {
                slots[..cols].sort_by(|&x, &y| norms[y as usize].total_cmp(&norms[x as usize]));
                gpu.write(&order, bytemuck::cast_slice(&slots))?;
            }
        }
    }

    let st: Vec<f32> = match last_stats {
        Some(st) => st,
        None => {
            let mut enc = gpu.encoder("svd norms");
            column_norms(gpu, &mut enc, &params, &norm_bindings)?;
            enc.submit()?;
            bytemuck::pod_collect_to_vec(&stats.read((2 * cols + 3) * 4)?)
        }
    };
    let fro = st.first().copied().unwrap_or(0.0).max(0.0).sqrt();
    // An exact power of two: W = A·inv.
    let inv = st.get(1).copied().unwrap_or(1.0);
    let norms = st.get(2..cols + 2).unwrap_or(&[]);
    if !fro.is_finite() || norms.iter().any(|x| !x.is_finite()) {
        return Err(non_finite(m, n));
    }
    let mut order: Vec<usize> = (0..cols).collect();
    order.sort_by(|&x, &y| norms[y].total_cmp(&norms[x]));
    let zt = ZERO_REL * fro;
    let scaled: Vec<f32> = order.iter().map(|&c| norms[c]).collect();
    let zero: Vec<usize> = (0..cols).filter(|&q| scaled[q] <= zt).collect();
    let mut perm: Vec<u32> = order.iter().map(|&c| c as u32).collect();
    perm.extend(
        scaled
            .iter()
            .map(|&x| if x > zt { (1.0 / x).to_bits() } else { 0 }),
    );
    let vnorms = st.get(cols + 3..2 * cols + 3).unwrap_or(&[]);
    perm.extend(order.iter().map(|&c| {
        let x = vnorms.get(c).copied().unwrap_or(1.0);
        if x > 0.0 { 1.0 / x } else { 1.0 }.to_bits()
    }));
    let s: Vec<f32> = scaled.iter().map(|&x| x / inv).collect();
    let perm_buf = gpu.upload(bytemuck::cast_slice(&perm), "svd permutation")?;
    let (u_len, vt_len) = (m * cols, cols * n);
    let uo = gpu.alloc((u_len * 4) as u64, "svd U")?;
    let vto = gpu.alloc((vt_len * 4) as u64, "svd Vt")?;
    let mut enc = gpu.encoder("svd gather");
    dispatch(
        gpu,
        &mut enc,
        "svd_gather",
        &params,
        u_len + vt_len,
        &[
            (2, Bind::Buffer(&w, w_bytes)),
            (3, Bind::Buffer(&v, v_bytes)),
            (6, Bind::Buffer(&perm_buf, (perm.len() * 4) as u64)),
            (7, Bind::Buffer(&uo, (u_len * 4) as u64)),
            (8, Bind::Buffer(&vto, (vt_len * 4) as u64)),
        ],
    )?;
    enc.submit()?;
    if !zero.is_empty() {
        // The normalised-W factor (U when tall, Vt when wide) lacks the zero columns.
        let (buf, len) = if wide { (&vto, vt_len) } else { (&uo, u_len) };
        let mut host: Vec<f32> = bytemuck::pod_collect_to_vec(&buf.read(len * 4)?);
        if wide {
            complete_basis(&mut host, rows, cols, (rows, 1), &zero);
        } else {
            complete_basis(&mut host, rows, cols, (1, cols), &zero);
        }
        gpu.write(buf, bytemuck::cast_slice(&host))?;
    }
    Ok(GpuSvd {
        u: uo,
        s,
        vt: vto,
        sweeps,
        off: measured,
    })
}

/// Replaces vectors `missing` of a set of `count` vectors of length `len` (element `r` of
/// vector `q` at `q·strides.0 + r·strides.1`) by unit vectors orthogonal to all the others:
/// Gram–Schmidt (twice, in f64) of the unit vector eₜ least covered by the vectors so far.
pub(crate) fn complete_basis(
    data: &mut [f32],
    len: usize,
    count: usize,
    strides: (usize, usize),
    missing: &[usize],
) {
    let at = |q: usize, r: usize| q * strides.0 + r * strides.1;
    let mut basis: Vec<Vec<f64>> = (0..count)
        .filter(|q| !missing.contains(q))
        .map(|q| (0..len).map(|r| f64::from(data[at(q, r)])).collect())
        .collect();
    for &q in missing {
        let t = (0..len)
            .min_by(|&x, &y| {
                let cx: f64 = basis.iter().map(|b| b[x] * b[x]).sum();
                let cy: f64 = basis.iter().map(|b| b[y] * b[y]).sum();
                cx.total_cmp(&cy)
            })
            .unwrap_or(0);
        let mut x = vec![0.0f64; len];
        if let Some(e) = x.get_mut(t) {
            *e = 1.0;
        }
        for _ in 0..2 {
            for b in &basis {
                let d: f64 = b.iter().zip(&x).map(|(p, q)| p * q).sum();
                x.iter_mut().zip(b).for_each(|(xi, bi)| *xi -= d * bi);
            }
        }
        let nrm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if nrm > 0.0 {
            x.iter_mut().for_each(|v| *v /= nrm);
        }
        for (r, v) in x.iter().enumerate() {
            data[at(q, r)] = *v as f32;
        }
        basis.push(x);
    }
}

impl Context {
    /// WᵀW for the cols × rows row-major buffer `w` (a column of W per row), read back.
    fn gram(&self, w: &Arc<GpuBuffer>, rows: usize, cols: usize) -> Result<Vec<f32>> {
        let wt = Tensor::from_gpu(vec![cols, rows], DType::F32, w.clone());
        let opts = crate::MatmulOptions {
            transpose_b: true,
            ..Default::default()
        };
        self.matmul_with(&wt, &wt, &opts)?.to_vec()
    }

    /// The workgroup size of this adapter's SVD kernels (before narrowing to short columns):
    /// forced by `GPU_LINALG_SVD_WORKGROUP`, else remembered, read from the tuning cache, or
    /// tuned now by [`Context::tune_svd`] (every size's SVD checked first) and cached on disk.
    /// An error on the CPU backend.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// match ctx.svd_workgroup() {
    ///     Ok(size) => println!("svd workgroup: {size}"),
    ///     Err(e) => assert!(!ctx.is_gpu(), "{e}"), // the CPU backend has no GPU kernel
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd_workgroup(&self) -> Result<u32> {
        let Some(gpu) = self.gpu() else {
            return Err(Error::InvalidArgument(
                "the CPU backend has no GPU svd kernel".into(),
            ));
        };
        if let Ok(v) = std::env::var(SVD_WORKGROUP_ENV) {
            let wg = v.trim().parse::<u32>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "{SVD_WORKGROUP_ENV}={v:?} is not a workgroup size; expected one of \
                     {SVD_WORKGROUPS:?}"
                ))
            })?;
            return workgroup(gpu, usize::MAX / 2, Some(wg), wg);
        }
        WORKGROUP_CHOICE
            .get(gpu, "all", || self.tune_svd_outcomes())
            .map(|w| w.0)
    }

    /// Times one Jacobi sweep of a random n×n matrix (n = 128 on CPU-type adapters, 512 on
    /// GPUs) at each workgroup size of [`SVD_WORKGROUPS`] the adapter allows, after checking a
    /// whole SVD of a random 48×40 matrix at that size: (size, best of three runs in seconds,
    /// or why it was ruled out). Used by [`Context::svd_workgroup`] and `gpu-linalg info
    /// --tune`.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// if ctx.is_gpu() { // nothing to tune on the CPU backend
    ///     for (size, outcome) in ctx.tune_svd()? {
    ///         println!("{size}: {outcome:?}");
    ///     }
    /// }
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tune_svd(&self) -> Result<Vec<(u32, std::result::Result<f64, String>)>> {
        Ok(self
            .tune_svd_outcomes()?
            .into_iter()
            .map(|o| (o.choice.0, o.seconds))
            .collect())
    }

    fn tune_svd_outcomes(&self) -> Result<Vec<crate::runtime::TuneOutcome<SvdWorkgroup>>> {
        let Some(gpu) = self.gpu() else {
            return Ok(Vec::new());
        };
        let n: usize = if gpu.is_cpu_adapter() { 128 } else { 512 };
        let a = self.resident(&self.rand_normal(&[n, n], 0x5eed, 0.0, 1.0)?)?;
        let (cm, cn) = (48, 40);
        let check_in = self.rand_normal(&[cm, cn], 0xc4ec, 0.0, 1.0)?;
        let check_host = check_in.to_vec()?;
        let gram = |w: &Arc<GpuBuffer>, rows: usize, cols: usize| self.gram(w, rows, cols);
        let candidates: Vec<SvdWorkgroup> = SVD_WORKGROUPS
            .iter()
            .copied()
            .filter(|&wg| wg <= gpu.limits.max_compute_invocations_per_workgroup)
            .map(SvdWorkgroup)
            .collect();
        let opts = |wg: u32| SvdOptions {
            workgroup: Some(wg),
            sort_columns: Some(false),
            qr_first: Some(false),
            method: Some(SvdMethod::Jacobi),
        };
        Ok(crate::runtime::measure_with(
            gpu,
            &candidates,
            3,
            |SvdWorkgroup(wg)| {
                let f = self.svd_with(&check_in, &opts(wg))?;
                Ok(factor_residuals(
                    cm,
                    cn,
                    &f.u.to_vec()?,
                    &f.s.to_vec()?,
                    &f.vt.to_vec()?,
                ))
            },
            |out| check_factor_residuals(&check_host, cm, cn, out),
            |SvdWorkgroup(wg)| {
                let run = Run {
                    base_wg: wg,
                    max_sweeps: 1,
                };
                gpu.scoped("svd tuning", || {
                    run_gpu(gpu, &a, (n, n), &opts(wg), run, &gram).map(drop)
                })?
            },
        ))
    }

    /// The thin singular value decomposition, as `numpy.linalg.svd(a, full_matrices=False)`:
    /// `U` m×k, `S` k (descending, non-negative), `Vt` k×n with k = min(m, n); U and V have
    /// orthonormal columns even when `a` is rank-deficient. On the CPU: faer. On a GPU, results
    /// resident: matrices of at most [`BATCHED_MAX_DIM`] rows and columns by the batched
    /// one-sided Jacobi kernel; larger ones by the two-stage band SVD ([`SvdMethod::Band`]):
    /// Householder panels reduce A = Q_L·B·Q_Rᵀ to an upper band B of the panel width (16 on
    /// CPU-type adapters, 32 elsewhere; 16 for very tall input) on the GPU, with every block
    /// update a rank-b product; the host reads the
    /// band back (O(n²) values, the one readback besides max|A|) and computes its SVD in f64;
    /// the GPU applies the same reflectors to the band's vectors. A 1024×1024 SVD runs a few
    /// hundred dispatches instead of a Jacobi design's ~12,000.
    /// [`SvdOptions::method`] keeps the Jacobi sweeps on request.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[3.0, 0.0, 0.0, -4.0])?;
    /// let svd = ctx.svd(&a)?;
    /// assert_eq!(svd.s.to_vec()?, vec![4.0, 3.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd(&self, a: &Tensor) -> Result<Svd> {
        self.svd_with(a, &SvdOptions::default())
    }

    /// [`Context::svd`] with options (GPU kernel tuning; ignored on the CPU backend).
    ///
    /// ```
    /// use gpu_linalg::SvdOptions;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 2], &[0., 3., 1., 0.])?;
    /// let r = ctx.svd_with(&a, &SvdOptions::default())?;
    /// let s = r.s.to_vec()?;
    /// assert!((s[0] - 3.0).abs() < 1e-5);
    /// assert!((s[1] - 1.0).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svd_with(&self, a: &Tensor, opts: &SvdOptions) -> Result<Svd> {
        let (mut out, spent) = crate::runtime::counted(|| self.svd_uncounted(a, opts))?;
        (out.dispatches, out.submits) = (spent.dispatches, spent.submits);
        Ok(out)
    }

    fn svd_uncounted(&self, a: &Tensor, opts: &SvdOptions) -> Result<Svd> {
        let (m, n) = svd_dims(a)?;
        let k = m.min(n);
        let cpu_svd = || -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
            let values = host_values(a)?;
            if values.iter().any(|x| !x.is_finite()) {
                return Err(non_finite(m, n));
            }
            crate::svd::cpu::fast(&values, m, n)
        };
        if let Some(gpu) = self.gpu() {
            if k == 0 {
                return Ok(Svd {
                    u: self.zeros(&[m, k])?,
                    s: self.zeros(&[k])?,
                    vt: self.zeros(&[k, n])?,
                    sweeps: 0,
                    off_diagonal: 0.0,
                    dispatches: 0,
                    submits: 0,
                });
            }
            let gram = |w: &Arc<GpuBuffer>, rows: usize, cols: usize| self.gram(w, rows, cols);
            let use_band = match opts.method {
                Some(method) => method == SvdMethod::Band,
                None => opts.workgroup.is_none() && opts.sort_columns.is_none(),
            };
            // The Jacobi SVD of a resident matrix: matrices of at most BATCHED_MAX_DIM rows and
            // columns by the batched kernel (one dispatch a sweep instead of k − 1: 2× faster
            // on lavapipe at 8…32), unless a workgroup size is forced; the others by the
            // round-robin kernels.
            let jacobi = |t: &Tensor, rows: usize, cols: usize| -> Result<Svd> {
                let kk = rows.min(cols);
                if rows.max(cols) <= crate::svd::batched::BATCHED_MAX_DIM
                    && opts.workgroup.is_none()
                {
                    // Its NaN/Inf error names the batch: name this svd's input instead.
                    let b =
                        self.svd_batched(&t.reshape(&[1, rows, cols])?)
                            .map_err(|e| match e {
                                Error::InvalidArgument(msg) if msg.contains("NaN") => {
                                    non_finite(m, n)
                                }
                                e => e,
                            })?;
                    return Ok(Svd {
                        u: b.u.reshape(&[rows, kk])?,
                        s: b.s.reshape(&[kk])?,
                        vt: b.vt.reshape(&[kk, cols])?,
                        ..b
                    });
                }
                if use_band && band::fits(rows.max(cols)) {
                    let (s, factors) = self.svd_band(gpu, t, (rows, cols), true)?;
                    let Some((u, vt)) = factors else {
                        return Err(Error::Readback(
                            "svd: the band SVD returned no vectors".into(),
                        ));
                    };
                    return Ok(Svd {
                        u,
                        s: self.tensor(&[s.len()], &s)?,
                        vt,
                        sweeps: 0,
                        off_diagonal: 0.0,
                        dispatches: 0,
                        submits: 0,
                    });
                }
                let run = Run {
                    base_wg: match opts.workgroup {
                        Some(wg) => wg,
                        None => self.svd_workgroup()?,
                    },
                    max_sweeps: MAX_SWEEPS,
                };
                let tb = self.resident(t)?;
                let out =
                    gpu.scoped("svd", || run_gpu(gpu, &tb, (rows, cols), opts, run, &gram))??;
                Ok(Svd {
                    u: Tensor::from_gpu(vec![rows, kk], DType::F32, out.u),
                    s: self.tensor(&[kk], &out.s)?,
                    vt: Tensor::from_gpu(vec![kk, cols], DType::F32, out.vt),
                    sweeps: out.sweeps,
                    off_diagonal: out.off,
                    dispatches: 0,
                    submits: 0,
                })
            };
            let r = (|| {
                let (long, short) = (m.max(n), m.min(n));
                let reduce_first = opts.qr_first.unwrap_or(if use_band {
                    // The band reduction's panels hold every row: longer sides go through R.
                    !band::fits(long)
                } else {
                    long >= SVD_QR_RATIO * short
                        && (short >= SVD_QR_MIN_COLS || long > SVD_QR_LONG_COLUMN)
                }) && m != n;
                if reduce_first && m < n {
                    // Wide: the SVD of the tall Aᵀ (reduced by its QR), transposed back.
                    let tall = self.svd_with(
                        &self.transpose(a)?,
                        &SvdOptions {
                            qr_first: Some(true),
                            ..*opts
                        },
                    )?;
                    return Ok(Svd {
                        u: self.transpose(&tall.vt)?,
                        s: tall.s,
                        vt: self.transpose(&tall.u)?,
                        sweeps: tall.sweeps,
                        off_diagonal: tall.off_diagonal,
                        dispatches: 0,
                        submits: 0,
                    });
                }
                if reduce_first {
                    let qr = self.qr(a)?;
                    let small = jacobi(&qr.r, n, n)?;
                    return Ok(Svd {
                        u: self.matmul(&qr.q, &small.u)?,
                        ..small
                    });
                }
                jacobi(a, m, n)
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
            let (u, s, vt) = cpu_svd()?;
            return Ok(Svd {
                u: self.tensor(&[m, k], &u)?,
                s: self.tensor(&[k], &s)?,
                vt: self.tensor(&[k, n], &vt)?,
                sweeps: 0,
                off_diagonal: 0.0,
                dispatches: 0,
                submits: 0,
            });
        }
        let (u, s, vt) = cpu_svd()?;
        Ok(Svd {
            u: Tensor::from_vec(&[m, k], u)?,
            s: Tensor::from_vec(&[k], s)?,
            vt: Tensor::from_vec(&[k, n], vt)?,
            sweeps: 0,
            off_diagonal: 0.0,
            dispatches: 0,
            submits: 0,
        })
    }
}

/// U and Vt of an SVD.
type UVt = (Tensor, Tensor);

impl Context {
    /// The band SVD ([`SvdMethod::Band`]) of the m×n `t` (m, n ≥ 1; a wide one through its
    /// transpose): the singular values, descending, and with `vectors` also (U, Vt).
    fn svd_band(
        &self,
        gpu: &Arc<Gpu>,
        t: &Tensor,
        (m, n): (usize, usize),
        vectors: bool,
    ) -> Result<(Vec<f32>, Option<UVt>)> {
        let wide = m < n;
        let (rows, cols) = if wide { (n, m) } else { (m, n) };
        let (w, up) = self.scaled_copy(t, wide, m, n)?;
        let out = gpu.scoped("svd", || band::band_svd(gpu, &w, rows, cols, vectors))??;
        let s: Vec<f32> = out.s.iter().map(|x| x * up).collect();
        let factors = match (out.u, out.vt) {
            (Some(u), Some(vt)) => {
                let u = Tensor::from_gpu(vec![rows, cols], DType::F32, u);
                let vt = Tensor::from_gpu(vec![cols, cols], DType::F32, vt);
                Some(if wide {
                    (self.transpose(&vt)?, self.transpose(&u)?)
                } else {
                    (u, vt)
                })
            }
            _ => None,
        };
        Ok((s, factors))
    }

    /// A resident copy of `t` (m×n; transposed when `wide`) scaled by the power of two 1/up
    /// that brings max|t| into [0.5, 1), and `up`; an error naming the shape when `t` holds
    /// NaN or Inf.
    fn scaled_copy(
        &self,
        t: &Tensor,
        wide: bool,
        m: usize,
        n: usize,
    ) -> Result<(Arc<GpuBuffer>, f32)> {
        let max = self.max(&self.abs(t)?, None)?.to_vec()?;
        let max = max.first().copied().unwrap_or(0.0);
        if !max.is_finite() {
            return Err(non_finite(m, n));
        }
        let e = crate::reference::scale_exponent(max);
        let src = if wide { self.transpose(t)? } else { t.clone() };
        let scaled = self.scale(&src, 2f32.powi(-e))?;
        Ok((self.resident(&scaled)?, 2f32.powi(e)))
    }

    /// The singular values of an m×n matrix, descending, without forming U or V
    /// (`numpy.linalg.svd(a, compute_uv=False)`, `torch.linalg.svdvals`). On a GPU: the band
    /// reduction of [`SvdMethod::Band`] and the band's values on the host in f64; on the CPU:
    /// faer.
    ///
    /// ```
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let a = ctx.tensor(&[2, 3], &[3.0, 0.0, 0.0, 0.0, -4.0, 0.0])?;
    /// assert_eq!(ctx.svdvals(&a)?.to_vec()?, vec![4.0, 3.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn svdvals(&self, a: &Tensor) -> Result<Tensor> {
        let (m, n) = svd_dims(a)?;
        let k = m.min(n);
        if k == 0 {
            return self.zeros(&[0]);
        }
        if let Some(gpu) = self.gpu() {
            let r = (|| -> Result<Tensor> {
                if !band::fits(m.max(n)) {
                    return Ok(self.svd(a)?.s);
                }
                let (s, _) = self.svd_band(gpu, a, (m, n), false)?;
                self.tensor(&[k], &s)
            })();
            if let Some(t) = self.fallback_or(r)? {
                return Ok(t);
            }
        }
        let values = host_values(a)?;
        if values.iter().any(|x| !x.is_finite()) {
            return Err(non_finite(m, n));
        }
        let s = crate::svd::cpu::singular_values(&values, m, n)?;
        self.tensor(&[k], &s)
    }
}

/// An SVD workgroup size as the tuning cache spells it (`wg=16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SvdWorkgroup(u32);

impl fmt::Display for SvdWorkgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wg={}", self.0)
    }
}

impl std::str::FromStr for SvdWorkgroup {
    type Err = Error;
    fn from_str(s: &str) -> Result<SvdWorkgroup> {
        s.strip_prefix("wg=")
            .and_then(|x| x.parse::<u32>().ok())
            .filter(|wg| SVD_WORKGROUPS.contains(wg))
            .map(SvdWorkgroup)
            .ok_or_else(|| Error::InvalidArgument(format!("not an svd workgroup choice: {s:?}")))
    }
}

/// U·diag(S)·Vt, then UᵀU − I, then Vt·Vtᵀ − I of the thin SVD of an m×n matrix, flattened:
/// what a tuning checks of a candidate's SVD.
pub(crate) fn factor_residuals(m: usize, n: usize, u: &[f32], s: &[f32], vt: &[f32]) -> Vec<f32> {
    let k = m.min(n);
    let mut out = Vec::with_capacity(m * n + 2 * k * k);
    for i in 0..m {
        for j in 0..n {
            let x: f64 = (0..k)
                .map(|q| f64::from(u[i * k + q]) * f64::from(s[q]) * f64::from(vt[q * n + j]))
                .sum();
            out.push(x as f32);
        }
    }
    for (p, q) in (0..k).flat_map(|p| (0..k).map(move |q| (p, q))) {
        let x: f64 = (0..m)
            .map(|i| f64::from(u[i * k + p]) * f64::from(u[i * k + q]))
            .sum();
        out.push((x - f64::from(u8::from(p == q))) as f32);
    }
    for (p, q) in (0..k).flat_map(|p| (0..k).map(move |q| (p, q))) {
        let x: f64 = (0..n)
            .map(|j| f64::from(vt[p * n + j]) * f64::from(vt[q * n + j]))
            .sum();
        out.push((x - f64::from(u8::from(p == q))) as f32);
    }
    out
}

/// Checks [`factor_residuals`] of an SVD of `a` (m×n) against LAPACK's driver-test scale: the
/// reconstruction within 35·max(m,n)·ε·‖A‖₁ of A, both orthogonality defects within 35·m·ε
/// and 35·n·ε.
pub(crate) fn check_factor_residuals(a: &[f32], m: usize, n: usize, out: &[f32]) -> Result<()> {
    let k = m.min(n);
    if out.len() != m * n + 2 * k * k {
        return Err(Error::Verification(format!(
            "svd check: {} values, expected {}",
            out.len(),
            m * n + 2 * k * k
        )));
    }
    let eps = crate::reference::RATIO_EPS;
    let anorm = crate::reference::norm1(m, n, &|i, j| f64::from(a[i * n + j]));
    let limits = [
        (
            0..m * n,
            35.0 * m.max(n) as f64 * eps * anorm.max(f64::MIN_POSITIVE),
        ),
        (m * n..m * n + k * k, 35.0 * m as f64 * eps),
        (m * n + k * k..out.len(), 35.0 * n as f64 * eps),
    ];
    for (part, (range, bound)) in limits.into_iter().enumerate() {
        for i in range {
            let target = if part == 0 { f64::from(a[i]) } else { 0.0 };
            let err = (f64::from(out[i]) - target).abs();
            if err > bound || err.is_nan() {
                return Err(Error::Verification(format!(
                    "svd check: value {i} is off by {err:.3e}, above {bound:.3e} ({})",
                    ["U·S·Vt − A", "UᵀU − I", "Vt·Vtᵀ − I"][part]
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_basis_is_orthonormal() {
        // Two vectors of length 3 given, one missing (vectors as rows).
        let mut d = vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.8];
        complete_basis(&mut d, 3, 3, (3, 1), &[1]);
        let row = |q: usize| [d[3 * q], d[3 * q + 1], d[3 * q + 2]];
        let dot = |x: [f32; 3], y: [f32; 3]| x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
        assert!((dot(row(1), row(1)) - 1.0).abs() < 1e-6);
        assert!(dot(row(1), row(0)).abs() < 1e-6);
        assert!(dot(row(1), row(2)).abs() < 1e-6);
    }
}
