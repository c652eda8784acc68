//! The SVD of a matrix with more than [`BATCHED_MAX_DIM`](super::BATCHED_MAX_DIM) columns
//! through a two-stage reduction, MAGMA's hybrid structure:
//!
//! 1. on the GPU, resident: A = Q_L·B·Q_Rᵀ with B upper banded (bandwidth b, the panel width),
//!    by alternating Householder panels, a QR panel of b columns then an LQ panel of b rows,
//!    each followed by its block update as GEMM-shaped kernels (`crate::householder`);
//! 2. on the host, in f64: the SVD B = U_B·Σ·V_Bᵀ of the band (O(n²) data read back once);
//! 3. on the GPU: U = Q_L·[U_B; 0] and V = Q_R·V_B by the same block reflectors, backwards.
//!
//! Dependent dispatches grow like n/b (six per panel pair), not like the n² / 2 column pairs
//! of a Jacobi sweep, and all flops of stages 1 and 3 are in rank-b products.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::householder::{
    band_matrix, panel_reaches, panel_width, work_values, Householder, Panel, View,
};
use crate::runtime::{Gpu, GpuBuffer};

/// The reduction of an m×n matrix (m ≥ n) to upper band form, still on the GPU.
struct Reduced {
    hh: Householder,
    left: Vec<(usize, Panel)>,
    right: Vec<(usize, Panel)>,
}

/// Whether the band SVD takes an m×n matrix (m ≥ n): its panels must fit one workgroup's loop
/// budget on lavapipe.
pub(crate) fn fits(m: usize) -> bool {
    panel_reaches(m)
}

/// The GPU factors and host singular values of the band SVD of the m×n (m ≥ n ≥ 1) row-major
/// `a` (scaled already so that max|a| is about 1); with `vectors` false only the values.
pub(crate) struct BandSvd {
    /// U (m×n), when vectors were asked for.
    pub u: Option<Arc<GpuBuffer>>,
    /// Singular values, descending.
    pub s: Vec<f32>,
    /// Vᵀ (n×n), when vectors were asked for.
    pub vt: Option<Arc<GpuBuffer>>,
}

fn reduce(gpu: &Arc<Gpu>, w: &Arc<GpuBuffer>, m: usize, n: usize) -> Result<Reduced> {
    let pb = panel_width(gpu, m).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "svd: {m} rows are too many for a one-workgroup panel"
        ))
    })?;
    // The largest regions any application reaches: the left updates (m rows), the right
    // updates (n rows, m columns through the transposed view) and the back-transforms.
    let work = work_values(pb, &[(m, n), (n, m)]);
    let hh = Householder::new(gpu, w, m * n, pb, work)?;
    let mut enc = gpu.encoder("svd band reduction");
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for j0 in (0..n).step_by(pb) {
        let wdt = pb.min(n - j0);
        let p = hh.factor(&mut enc, View::block(n, j0, j0, m - j0, wdt))?;
        let rest = n - j0 - wdt;
        hh.apply(
            &mut enc,
            &p,
            None,
            View::block(n, j0, j0 + wdt, m - j0, rest),
            true,
        )?;
        left.push((j0, p));
        if rest == 0 {
            break;
        }
        // The LQ panel of rows j0..j0+w right of the band: the QR of its transpose.
        let q = hh.factor(&mut enc, View::block(n, j0, j0 + wdt, wdt, rest).t())?;
        let below = View::block(n, j0 + wdt, j0 + wdt, m - j0 - wdt, rest).t();
        hh.apply(&mut enc, &q, None, below, true)?;
        right.push((j0 + wdt, q));
    }
    enc.submit()?;
    Ok(Reduced { hh, left, right })
}

/// The band SVD of the resident m×n (m ≥ n ≥ 1) matrix `w`, which it overwrites.
pub(crate) fn band_svd(
    gpu: &Arc<Gpu>,
    w: &Arc<GpuBuffer>,
    m: usize,
    n: usize,
    vectors: bool,
) -> Result<BandSvd> {
    let red = reduce(gpu, w, m, n)?;
    let host: Vec<f32> = bytemuck::pod_collect_to_vec(&w.read(n * n * 4)?);
    let b = red.hh.width();
    // The upper band 0 ≤ c − r ≤ b of the reduced n×n top.
    let band = band_matrix("svd", n, |r, c| {
        (c >= r && c - r <= b).then(|| host[r * n + c])
    })?;
    if !vectors {
        let mut s = band
            .singular_values()
            .map_err(|e| Error::InvalidArgument(format!("svd: band SVD failed: {e:?}")))?;
        s.sort_by(|x, y| y.total_cmp(x));
        return Ok(BandSvd {
            u: None,
            s: s.iter().map(|&x| x as f32).collect(),
            vt: None,
        });
    }
    let svd = band
        .svd()
        .map_err(|e| Error::InvalidArgument(format!("svd: band SVD failed: {e:?}")))?;
    let (ub, sb, vb) = (svd.U(), svd.S().column_vector(), svd.V());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| sb[y].total_cmp(&sb[x]));
    // U starts as [U_B; 0] (m×n), Vᵀ as V_Bᵀ; the views below see V through Vᵀ's transpose.
    let mut u0 = vec![0.0f32; m * n];
    let mut vt0 = vec![0.0f32; n * n];
    for (q, &c) in order.iter().enumerate() {
        for r in 0..n {
            u0[r * n + q] = ub[(r, c)] as f32;
            vt0[q * n + r] = vb[(r, c)] as f32;
        }
    }
    let u = gpu.upload(bytemuck::cast_slice(&u0), "svd U")?;
    let vt = gpu.upload(bytemuck::cast_slice(&vt0), "svd Vt")?;
    let mut enc = gpu.encoder("svd back-transform");
    for (j0, p) in red.left.iter().rev() {
        let view = View::block(n, *j0, 0, m - j0, n);
        red.hh.apply(&mut enc, p, Some((&u, m * n)), view, false)?;
    }
    for (r0, p) in red.right.iter().rev() {
        // Rows r0.. of V (n×n) are columns r0.. of the row-major Vᵀ.
        let view = View::block(n, 0, *r0, n, n - r0).t();
        red.hh.apply(&mut enc, p, Some((&vt, n * n)), view, false)?;
    }
    enc.submit()?;
    Ok(BandSvd {
        u: Some(u),
        s: order.iter().map(|&c| sb[c] as f32).collect(),
        vt: Some(vt),
    })
}
