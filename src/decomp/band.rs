//! The symmetric eigen-decomposition through a two-stage reduction (MAGMA's `syevd`
//! structure, with a band in the middle):
//!
//! 1. on the GPU, resident: A = Q·B·Qᵀ with B symmetric banded (bandwidth b, the panel
//!    width), by a Householder QR of each b-column panel below the diagonal block and the
//!    two-sided block update Qⱼᵀ·A₂₂·Qⱼ of the trailing matrix (`crate::householder`);
//! 2. on the host, in f64: the eigen-decomposition B = Z_B·Λ·Z_Bᵀ (O(n²) data read back once);
//! 3. on the GPU: Z = Q·Z_B by the same block reflectors, backwards.
//!
//! About 7·n/b dependent dispatches; the flops of stages 1 and 3 are rank-b products.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::householder::{band_matrix, panel_reaches, panel_width, work_values, Householder, View};
use crate::runtime::{Gpu, GpuBuffer};

/// Whether the band eigensolver takes an n×n matrix (its panels fit one workgroup's loop
/// budget on lavapipe).
pub(crate) fn fits(n: usize) -> bool {
    panel_reaches(n)
}

/// The eigenvalues (ascending) of the resident symmetric n×n (n ≥ 1) `w` (both triangles
/// stored, scaled so that max|w| is about 1), which it overwrites; with `vectors`, also the
/// eigenvectors as the columns of a resident n×n matrix.
pub(crate) fn band_eigh(
    gpu: &Arc<Gpu>,
    w: &Arc<GpuBuffer>,
    n: usize,
    vectors: bool,
) -> Result<(Vec<f32>, Option<Arc<GpuBuffer>>)> {
    let pb = panel_width(gpu, n).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "eigh: order {n} is too large for a one-workgroup panel"
        ))
    })?;
    let hh = Householder::new(gpu, w, n * n, pb, work_values(pb, &[(n, n)]))?;
    let mut enc = gpu.encoder("eigh band reduction");
    let mut panels = Vec::new();
    let mut j0 = 0;
    while j0 + pb < n {
        let (r0, rest) = (j0 + pb, n - j0 - pb);
        let p = hh.factor(&mut enc, View::block(n, r0, j0, rest, pb))?;
        let trailing = View::block(n, r0, r0, rest, rest);
        hh.apply(&mut enc, &p, None, trailing, true)?;
        hh.apply(&mut enc, &p, None, trailing.t(), true)?;
        panels.push((r0, p));
        j0 += pb;
    }
    enc.submit()?;
    let host: Vec<f32> = bytemuck::pod_collect_to_vec(&w.read(n * n * 4)?);
    // The lower band 0 ≤ r − c ≤ b, mirrored.
    let band = band_matrix("eigh", n, |r, c| {
        let (i, j) = if r >= c { (r, c) } else { (c, r) };
        (i - j <= pb).then(|| host[i * n + j])
    })?;
    let fail = |e: faer::linalg::evd::EvdError| {
        Error::InvalidArgument(format!("eigh: band eigensolver failed: {e:?}"))
    };
    if !vectors {
        let mut w = band
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .map_err(fail)?;
        w.sort_by(f64::total_cmp);
        return Ok((w.iter().map(|&x| x as f32).collect(), None));
    }
    let evd = band.self_adjoint_eigen(faer::Side::Lower).map_err(fail)?;
    let (zb, sb) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| sb[x].total_cmp(&sb[y]));
    let mut z0 = vec![0.0f32; n * n];
    for (q, &c) in order.iter().enumerate() {
        for r in 0..n {
            z0[r * n + q] = zb[(r, c)] as f32;
        }
    }
    let z = gpu.upload(bytemuck::cast_slice(&z0), "eigh vectors")?;
    let mut enc = gpu.encoder("eigh back-transform");
    for (r0, p) in panels.iter().rev() {
        let view = View::block(n, *r0, 0, n - r0, n);
        hh.apply(&mut enc, p, Some((&z, n * n)), view, false)?;
    }
    enc.submit()?;
    Ok((order.iter().map(|&c| sb[c] as f32).collect(), Some(z)))
}
