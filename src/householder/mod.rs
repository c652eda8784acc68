//! Blocked Householder reflectors on resident matrices (`shaders/householder.wgsl`): the
//! building block under the QR, the SVD's reduction to band form and the symmetric
//! eigensolver's reduction to band form. It sits between those families and the runtime and
//! imports only the runtime.
//!
//! A [`Householder`] session factors panels of at most [`Householder::width`] columns in
//! place ([`Householder::factor`], LAPACK's geqr2 + larft in one workgroup) and applies the
//! resulting block reflectors Q = I − V·T·Vᵀ to other regions ([`Householder::apply`],
//! LAPACK's larfb as three GEMM-shaped kernels). Regions are [`View`]s: a region or its
//! transpose, so that reflectors apply from the right as well. Everything is recorded into
//! one [`Encoder`]: no readback, no submit.

use std::sync::Arc;

use crate::error::Result;
use crate::runtime::{checked_pipeline, fold_grid, u32_of, Bind, Encoder, Gpu, GpuBuffer, Kernel};

/// The kernels' WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../shaders/householder.wgsl");

/// Rows of one partial product of `vtc` (`RC` in the shader).
const RC: usize = 256;

/// Threads of the panel workgroup (`WG` in the shader).
const PANEL_THREADS: usize = 256;

/// The loop iterations one invocation may run on lavapipe (which ends it silently after
/// 65,535), with a margin.
const LOOP_BUDGET: usize = 60_000;

crate::kernel_params! {
    /// The kernels' uniform block (`HouseholderParams` in shaders/householder.wgsl).
    struct HouseholderParams: "HouseholderParams" {
        rows: u32,
        cols: u32,
        off: u32,
        rs: u32,
        cs: u32,
        trans: u32,
        chunks: u32,
        cpad: u32,
        gx: u32,
        flags: u32,
    }
}

/// The parameter layouts of the module (for the layout test).
pub(crate) fn params_layouts() -> Vec<crate::runtime::ParamsLayout> {
    use crate::runtime::KernelParams;
    vec![HouseholderParams::layout(SOURCE.to_string())]
}

/// A logical `rows` × `cols` view of a buffer: element (r, c) at `off + r·rs + c·cs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct View {
    /// Rows of the view.
    pub rows: usize,
    /// Columns of the view.
    pub cols: usize,
    /// Index of element (0, 0).
    pub off: usize,
    /// Stride between rows.
    pub rs: usize,
    /// Stride between columns.
    pub cs: usize,
}

impl View {
    /// Rows `r0..r0 + rows`, columns `c0..c0 + cols` of a row-major matrix with `ld` columns.
    pub(crate) fn block(ld: usize, r0: usize, c0: usize, rows: usize, cols: usize) -> View {
        View {
            rows,
            cols,
            off: r0 * ld + c0,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of this view (the same elements).
    pub(crate) fn t(self) -> View {
        View {
            rows: self.cols,
            cols: self.rows,
            off: self.off,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn params(&self, what: &str) -> Result<HouseholderParams> {
        Ok(HouseholderParams {
            rows: u32_of(self.rows, what)?,
            cols: u32_of(self.cols, what)?,
            off: u32_of(self.off, what)?,
            rs: u32_of(self.rs, what)?,
            cs: u32_of(self.cs, what)?,
            ..Default::default()
        })
    }
}

/// One factored panel: Q = I − V·T·Vᵀ with V (rows × width, packed) and T (width × width).
pub(crate) struct Panel {
    v: Arc<GpuBuffer>,
    t: Arc<GpuBuffer>,
    rows: usize,
}

/// The kernels of one panel width.
struct Kernels {
    panel: Arc<Kernel>,
    vtc: Arc<Kernel>,
    tw: Arc<Kernel>,
    update: Arc<Kernel>,
    extract: Arc<Kernel>,
}

impl Kernels {
    fn new(gpu: &Gpu, width: usize) -> Result<Kernels> {
        let build = |entry: &str| {
            checked_pipeline(
                gpu,
                &format!("householder/{entry}/pb{width}"),
                "householder.wgsl",
                || SOURCE.to_string(),
                entry,
                &[("PB", width as f64)],
            )
        };
        Ok(Kernels {
            panel: build("panel")?,
            vtc: build("vtc")?,
            tw: build("tw")?,
            update: build("update")?,
            extract: build("extract")?,
        })
    }
}

/// Environment variable that forces the panel width (16 or 32) where the panel reaches.
pub const PANEL_WIDTH_ENV: &str = "GPU_LINALG_HOUSEHOLDER_PANEL";

/// The panel width for a panel of `rows` rows on `gpu`, `None` when no width's one-workgroup
/// factorisation stays inside lavapipe's loop budget. CPU-type adapters take 16 first: on
/// lavapipe the panels run on one core and their work grows with the width, and 16 measured
/// faster or equal on every shape tried (QR 4096×256 1.34 s against 1.65, 2048×512 2.18 against
/// 2.43, 1024×64 49 ms against 68; SVD and eigh 1024² within noise). Other adapters take 32
/// first (rank-32 block updates). [`PANEL_WIDTH_ENV`] forces one.
pub(crate) fn panel_width(gpu: &Gpu, rows: usize) -> Option<usize> {
    let forced = match FORCED_WIDTH.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::env::var(PANEL_WIDTH_ENV)
            .ok()
            .and_then(|v| v.parse().ok()),
        w => Some(w),
    };
    let order = if gpu.is_cpu_adapter() {
        [16usize, 32]
    } else {
        [32, 16]
    };
    order
        .into_iter()
        .filter(|&pb| forced.is_none_or(|f| f == pb))
        .find(|&pb| panel_iterations(pb, rows) <= LOOP_BUDGET)
}

/// The panel width forced by [`force_panel_width`] (0: none).
static FORCED_WIDTH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Forces the panel width (16 or 32) of every later call in this process, or lifts that with
/// `None`: for the tests, which run both widths on every adapter. Width requests that a panel
/// cannot take fall back as [`PANEL_WIDTH_ENV`] does.
#[doc(hidden)]
pub fn force_panel_width(width: Option<usize>) {
    FORCED_WIDTH.store(width.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
}

/// Whether some panel width reaches `rows` rows (16 reaches furthest).
pub(crate) fn panel_reaches(rows: usize) -> bool {
    panel_iterations(16, rows) <= LOOP_BUDGET
}

/// The loop iterations of one `panel` invocation for a `width`-column panel of `rows` rows
/// (the shader's header comment).
fn panel_iterations(width: usize, rows: usize) -> usize {
    let groups = 4 * PANEL_THREADS / width;
    width * (2 * rows.div_ceil(PANEL_THREADS) + 5 * rows.div_ceil(groups))
        + 8 * (rows * width / 4).div_ceil(PANEL_THREADS)
}

/// The n×n f64 matrix whose entry (r, c) is `entry(r, c)` where that is `Some` (a band read
/// back from the GPU), zero elsewhere; an error naming `op` when an entry is NaN or Inf.
pub(crate) fn band_matrix(
    op: &str,
    n: usize,
    entry: impl Fn(usize, usize) -> Option<f32>,
) -> Result<faer::Mat<f64>> {
    let mut bad = false;
    let mat = faer::Mat::<f64>::from_fn(n, n, |r, c| match entry(r, c) {
        Some(x) => {
            bad |= !x.is_finite();
            f64::from(x)
        }
        None => 0.0,
    });
    if bad {
        return Err(crate::error::Error::InvalidArgument(format!(
            "{op}: the band reduction produced NaN or Inf"
        )));
    }
    Ok(mat)
}

/// The work space (in values) of applications with panels of `width` columns to regions of
/// at most each (rows, cols) of `shapes`.
pub(crate) fn work_values(width: usize, shapes: &[(usize, usize)]) -> usize {
    shapes
        .iter()
        .map(|&(rows, cols)| (rows.div_ceil(RC) + 1) * width * cols.div_ceil(4).max(1) * 4)
        .max()
        .unwrap_or(1)
}

/// A session of block reflectors on one matrix buffer `a` (see the module docs).
pub(crate) struct Householder {
    gpu: Arc<Gpu>,
    k: Kernels,
    width: usize,
    a: Arc<GpuBuffer>,
    a_len: usize,
    work: Arc<GpuBuffer>,
    work_len: usize,
}

impl Householder {
    /// A session on `a` (`a_len` values) with panels of `width` columns (16 or 32, from
    /// [`panel_width`]) and `work_len` values of work space ([`work_values`]).
    pub(crate) fn new(
        gpu: &Arc<Gpu>,
        a: &Arc<GpuBuffer>,
        a_len: usize,
        width: usize,
        work_len: usize,
    ) -> Result<Householder> {
        let work_len = work_len.max(1);
        gpu.check_binding((a_len.max(1) * 4) as u64, "the reflectors' matrix")?;
        gpu.check_binding((work_len * 4) as u64, "the reflectors' work space")?;
        Ok(Householder {
            gpu: gpu.clone(),
            k: Kernels::new(gpu, width)?,
            width,
            a: a.clone(),
            a_len: a_len.max(1),
            work: gpu.alloc((work_len * 4) as u64, "reflector work space")?,
            work_len,
        })
    }

    /// The panel width.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    fn a_bind(&self) -> Bind<'_> {
        Bind::Buffer(&self.a, (self.a_len * 4) as u64)
    }

    /// Records the factorisation of the panel `view` of `a` (at most `width` columns) in place:
    /// R on and above its diagonal, the reflectors below.
    pub(crate) fn factor(&self, enc: &mut Encoder, view: View) -> Result<Panel> {
        debug_assert!(view.cols <= self.width && view.rows > 0);
        let pw = self.width;
        let v = self
            .gpu
            .alloc((view.rows * pw * 4) as u64, "reflector vectors")?;
        debug_assert!(panel_iterations(pw, view.rows) <= LOOP_BUDGET);
        let t = self.gpu.alloc((pw * pw * 4) as u64, "reflector T")?;
        let u = enc.params(&view.params("householder panel")?)?;
        let bg = enc.bind(
            &self.k.panel,
            &[
                (0, Bind::Params(&u)),
                (1, self.a_bind()),
                (2, Bind::Buffer(&v, (view.rows * pw * 4) as u64)),
                (3, Bind::Buffer(&t, (pw * pw * 4) as u64)),
            ],
        );
        enc.dispatch(&self.k.panel, &bg, (1, 1, 1));
        Ok(Panel {
            v,
            t,
            rows: view.rows,
        })
    }

    /// Records C ← Qᵀ·C (`transpose`) or C ← Q·C for the panel's Q and the region `c` of
    /// `target` (`target_len` values; `None`: the session's matrix), whose rows are the
    /// panel's rows. Through a transposed view this is C ← C·Q or C·Qᵀ.
    pub(crate) fn apply(
        &self,
        enc: &mut Encoder,
        panel: &Panel,
        target: Option<(&Arc<GpuBuffer>, usize)>,
        c: View,
        transpose: bool,
    ) -> Result<()> {
        debug_assert_eq!(c.rows, panel.rows);
        if c.rows == 0 || c.cols == 0 {
            return Ok(());
        }
        let pw = self.width;
        let mut p = c.params("householder update")?;
        let chunks = c.rows.div_ceil(RC);
        let cpad = c.cols.div_ceil(4) * 4;
        debug_assert!((chunks + 1) * pw * cpad <= self.work_len);
        p.trans = u32::from(transpose);
        p.chunks = chunks as u32;
        p.cpad = cpad as u32;
        let u = enc.params(&p)?;
        let target = match target {
            Some((buf, len)) => Bind::Buffer(buf, (len.max(1) * 4) as u64),
            None => self.a_bind(),
        };
        let v = Bind::Buffer(&panel.v, (panel.rows * pw * 4) as u64);
        let t = Bind::Buffer(&panel.t, (pw * pw * 4) as u64);
        let work = Bind::Buffer(&self.work, (self.work_len * 4) as u64);
        let limit = self.gpu.limits.max_compute_workgroups_per_dimension as usize;
        let bg = enc.bind(
            &self.k.vtc,
            &[(0, Bind::Params(&u)), (1, target), (2, v), (4, work)],
        );
        enc.dispatch(
            &self.k.vtc,
            &bg,
            (
                c.cols.div_ceil(4 * 64) as u32,
                chunks as u32,
                (pw / 8) as u32,
            ),
        );
        let bg = enc.bind(&self.k.tw, &[(0, Bind::Params(&u)), (3, t), (4, work)]);
        enc.dispatch(&self.k.tw, &bg, (cpad.div_ceil(64) as u32, 1, 1));
        let bg = enc.bind(
            &self.k.update,
            &[(0, Bind::Params(&u)), (1, target), (2, v), (4, work)],
        );
        let gy = c.rows.div_ceil(4);
        if gy > limit {
            return Err(crate::error::Error::InvalidArgument(format!(
                "householder update: {gy} row blocks exceed the adapter's {limit} workgroups"
            )));
        }
        enc.dispatch(
            &self.k.update,
            &bg,
            (c.cols.div_ceil(4 * 64) as u32, gy as u32, 1),
        );
        Ok(())
    }

    /// Records `out` (rows × cols of `view`, row-major) = the factored matrix's R with each row
    /// scaled by the sign of its diagonal (`signed_r`), or else the first cols columns of the
    /// identity, column c scaled by the sign of diagonal element (c, c): the QR's read-outs.
    pub(crate) fn extract(
        &self,
        enc: &mut Encoder,
        view: View,
        out: &Arc<GpuBuffer>,
        signed_r: bool,
    ) -> Result<()> {
        let len = view.rows * view.cols;
        if len == 0 {
            return Ok(());
        }
        let (gx, gy) = fold_grid(&self.gpu, len.div_ceil(64), "householder extract")?;
        let mut p = view.params("householder extract")?;
        p.gx = gx;
        p.flags = if signed_r { 1 } else { 2 };
        let u = enc.params(&p)?;
        let bg = enc.bind(
            &self.k.extract,
            &[
                (0, Bind::Params(&u)),
                (1, self.a_bind()),
                (5, Bind::Buffer(out, (len * 4) as u64)),
            ],
        );
        enc.dispatch(&self.k.extract, &bg, (gx, gy, 1));
        Ok(())
    }
}
