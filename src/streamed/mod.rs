//! Streamed algorithms for tall matrices that do not fit one buffer or one memory: each reads
//! its input as consecutive row blocks ([`RowBlocks`]) once or a few times, with a working set
//! of one block (times the copies [`MemoryBudget`] allows for) plus O(n²).
//!
//! - [`Context::gram_stream`]: AᵀA, each block's product on the device and the block sums in
//!   f64 on the host.
//! - [`Context::tsqr_stream`]: the R factor of A by TSQR (each block's R by the device QR, the
//!   Rs combined in order by QRs of two stacked factors); [`Context::tsqr_q_stream`] applies
//!   Q = A·R⁻¹ blockwise on request.
//! - [`Context::lstsq_stream`]: numpy's `lstsq` of a tall A through the TSQR of `[A | B]`.
//! - [`Context::randomized_svd_stream`]: subspace iteration on AᵀA, a pass per power
//!   iteration, and a final TSQR of A·Q; [`Context::svd_u_stream`] forms U blockwise.
//! - [`Context::pca_stream`]: scikit-learn's PCA of the rows, from the shifted covariance in
//!   one pass (up to [`PCA_COVARIANCE_MAX_FEATURES`] features) or by the randomized SVD of the
//!   centred rows; [`Context::pca_transform_stream`] is `transform` blockwise.
//!
//! The same functions over several contexts are on [`crate::ContextGroup`]: blocks go to
//! whichever context is free and are folded in order, so results equal one context's.

pub mod engine;
pub mod source;

pub use engine::PassStats;
pub use source::{
    IterRowBlocks, MemoryBudget, NpyRowBlocks, RowBlock, RowBlocks, TensorRowBlocks, BLOCK_COPIES,
    DEFAULT_MEMORY_BUDGET,
};

use faer::{Mat, Side};

use crate::context::Context;
use crate::decomp::RandomizedSvdOptions;
use crate::error::{Error, Result};
use crate::matmul::MatmulOptions;
use crate::norms::Lstsq;
use crate::solve::TriangularOptions;
use crate::tensor::Tensor;
use engine::pass;

/// Widest input for which [`Context::pca_stream`] forms the covariance matrix (f64, n² values
/// on the host); wider input runs the randomized SVD of the centred rows.
pub const PCA_COVARIANCE_MAX_FEATURES: usize = 4096;

/// How [`Context::pca_stream`] computes the components.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PcaStreamMethod {
    /// The covariance up to [`PCA_COVARIANCE_MAX_FEATURES`] features, randomized above.
    #[default]
    Auto,
    /// The shifted covariance matrix in one pass and its f64 eigen-decomposition: exact.
    Covariance,
    /// The randomized SVD of the centred rows (a pass for the mean, then those of
    /// [`Context::randomized_svd_stream`]).
    Randomized(RandomizedSvdOptions),
}

/// A PCA of streamed rows, as `sklearn.decomposition.PCA(n_components=k).fit(X)` gives it
/// (without `transform(X)`, which is tall: see [`Context::pca_transform_stream`]).
#[derive(Clone, Debug)]
pub struct StreamedPca {
    /// Principal axes as rows, k × features, signs as scikit-learn's (the largest-|·| entry of
    /// each row positive).
    pub components: Tensor,
    /// Variance along each component (n_samples − 1 normalisation), k.
    pub explained_variance: Tensor,
    /// `explained_variance` over the total variance, k.
    pub explained_variance_ratio: Tensor,
    /// Singular values of the centred data, k: √((n_samples − 1)·variance).
    pub singular_values: Tensor,
    /// Per-feature mean, features.
    pub mean: Tensor,
    /// Samples (rows) read.
    pub rows: usize,
    /// Passes over the data.
    pub passes: u32,
}

/// The thin SVD of a streamed matrix without U (tall; see [`Context::svd_u_stream`]).
#[derive(Clone, Debug)]
pub struct StreamedSvd {
    /// Singular values, r, descending.
    pub s: Tensor,
    /// Right singular vectors as rows, r × n.
    pub vt: Tensor,
    /// Rows of the matrix.
    pub rows: usize,
    /// Passes over the data.
    pub passes: u32,
}

/// The R factor of a streamed TSQR.
#[derive(Clone, Debug)]
pub struct Tsqr {
    /// min(m, n) × n upper triangular (trapezoidal when m < n) with a non-negative diagonal:
    /// `numpy.linalg.qr(A, mode='r')` up to the signs of its rows.
    pub r: Tensor,
    /// Rows of A.
    pub rows: usize,
}

/// Host f64 sums of per-block device results, of a fixed length.
struct F64Sum(Vec<f64>);

impl F64Sum {
    fn add(&mut self, part: &[f32]) {
        for (acc, v) in self.0.iter_mut().zip(part) {
            *acc += f64::from(*v);
        }
    }
}

/// The column sums, AᵀA and rows of (A − shift), in f64.
pub(crate) struct Moments {
    pub(crate) rows: usize,
    pub(crate) sums: Vec<f64>,
    pub(crate) gram: Vec<f64>,
}

/// `xᵀ·y` on `ctx`.
fn t_matmul(ctx: &Context, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    ctx.matmul_with(
        x,
        y,
        &MatmulOptions {
            transpose_a: true,
            ..Default::default()
        },
    )
}

/// A 1 × n row tensor of `values`.
fn row_tensor(ctx: &Context, values: &[f64]) -> Result<Tensor> {
    tensor_f64(ctx, &[1, values.len()], values)
}

/// The matrix's row count after a pass, refusing an empty one.
fn nonempty(op: &str, rows: usize, cols: usize) -> Result<usize> {
    if rows == 0 {
        return Err(Error::Shape(format!(
            "{op}: the row-block source gave no rows (of {cols} columns)"
        )));
    }
    Ok(rows)
}

/// One pass for the moments of A − shift, the shift a row of `shift` (none: zero).
pub(crate) fn moments(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    shift: Option<&[f64]>,
) -> Result<Moments> {
    let n = src.cols();
    let shift_rows: Vec<Option<Tensor>> = workers
        .iter()
        .map(|ctx| shift.map(|s| row_tensor(ctx, s)).transpose())
        .collect::<Result<_>>()?;
    let map = |w: usize, x: &Tensor| -> Result<(Tensor, Tensor)> {
        let ctx = &workers[w];
        let centred = match &shift_rows[w] {
            Some(s) => ctx.sub(x, s)?,
            None => x.clone(),
        };
        Ok((
            t_matmul(ctx, &centred, &centred)?,
            ctx.sum(&centred, Some(0))?,
        ))
    };
    let (mut gram, mut sums) = (F64Sum(vec![0.0; n * n]), F64Sum(vec![0.0; n]));
    let stats = pass(workers, src, &map, &mut |_, _, (g, s)| {
        gram.add(&g.to_vec()?);
        sums.add(&s.to_vec()?);
        Ok(())
    })?;
    Ok(Moments {
        rows: stats.rows,
        sums: sums.0,
        gram: gram.0,
    })
}

/// The mean of the first rows of `src` (up to one block), the shift that keeps the covariance
/// sums well conditioned.
pub(crate) fn first_block_mean(src: &mut dyn RowBlocks) -> Result<Vec<f64>> {
    let n = src.cols();
    src.rewind()?;
    let (rows, data) = match src.next_block()? {
        Some(RowBlock::Host { rows, data }) => (rows, data),
        Some(RowBlock::Resident(t)) => (t.shape()[0], t.to_vec()?),
        None => (0, Vec::new()),
    };
    let mut mean = vec![0.0f64; n];
    for row in data.chunks_exact(n.max(1)) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    if rows > 0 {
        mean.iter_mut().for_each(|m| *m /= rows as f64);
    }
    Ok(mean)
}

/// `k` leading eigenpairs (descending) of the symmetric n×n `c`, in f64: values and
/// vectors as rows.
fn top_eigen(c: &[f64], n: usize, k: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mat = Mat::<f64>::from_fn(n, n, |i, j| c[i.max(j) * n + i.min(j)]);
    let evd = mat.self_adjoint_eigen(Side::Lower).map_err(|e| {
        Error::InvalidArgument(format!("eigh of the {n}×{n} covariance failed: {e:?}"))
    })?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
    let values = order[..k].iter().map(|&i| s[i]).collect();
    let mut vectors = Vec::with_capacity(k * n);
    for &i in &order[..k] {
        vectors.extend((0..n).map(|r| u[(r, i)]));
    }
    Ok((values, vectors))
}

/// f32 tensor of f64 values.
fn tensor_f64(ctx: &Context, shape: &[usize], values: &[f64]) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    ctx.tensor(shape, &v)
}

/// How the participants of a streamed computation combine their partial results: one
/// process ([`Alone`]: every step the identity) or the ranks of an MPI job (the `distributed`
/// module). Each step takes the participant's own outcome, so that a failure anywhere fails
/// every participant instead of leaving the others waiting.
pub(crate) trait Combine {
    /// Whether this participant computes the final small steps (and writes outputs).
    fn is_root(&self) -> bool;
    /// Every participant's outcome agreed on: `Ok` where all succeeded.
    fn agree<T>(&self, local: Result<T>) -> Result<T>;
    /// The element-wise sum of every participant's `local`.
    fn sum(&self, local: Result<Vec<f64>>) -> Result<Vec<f64>>;
    /// The root's values (`Some` there) on every participant.
    fn share(&self, root: Result<Option<Vec<f64>>>) -> Result<Vec<f64>>;
    /// On the root, the R factor of every participant's R stacked (R's rows × `n`, row-major);
    /// elsewhere, anything.
    fn combine_r(
        &self,
        ctx: &Context,
        n: usize,
        local: Result<(usize, Vec<f32>)>,
    ) -> Result<(usize, Vec<f32>)>;
}

/// One process: nothing to combine.
pub(crate) struct Alone;

impl Combine for Alone {
    fn is_root(&self) -> bool {
        true
    }
    fn agree<T>(&self, local: Result<T>) -> Result<T> {
        local
    }
    fn sum(&self, local: Result<Vec<f64>>) -> Result<Vec<f64>> {
        local
    }
    fn share(&self, root: Result<Option<Vec<f64>>>) -> Result<Vec<f64>> {
        root?.ok_or_else(|| Error::InvalidArgument("internal: no value to share".into()))
    }
    fn combine_r(
        &self,
        _: &Context,
        _: usize,
        local: Result<(usize, Vec<f32>)>,
    ) -> Result<(usize, Vec<f32>)> {
        local
    }
}

/// The root's `f()` on every participant (`f` runs on the root only).
fn on_root<C: Combine>(comb: &C, f: impl FnOnce() -> Result<Vec<f64>>) -> Result<Vec<f64>> {
    let root = if comb.is_root() {
        f().map(Some)
    } else {
        Ok(None)
    };
    comb.share(root)
}

/// f32 values as f64.
fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub(crate) fn gram(workers: &[Context], src: &mut dyn RowBlocks) -> Result<Tensor> {
    let n = src.cols();
    let m = moments(workers, src, None)?;
    tensor_f64(&workers[0], &[n, n], &m.gram)
}

pub(crate) fn pca<C: Combine>(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    k: usize,
    method: PcaStreamMethod,
    comb: &C,
) -> Result<StreamedPca> {
    let n = src.cols();
    comb.agree(if k > n {
        Err(Error::InvalidArgument(format!(
            "pca_stream: {k} components of {n} features; at most min(samples, features)"
        )))
    } else {
        Ok(())
    })?;
    // The shift: the root's first-block mean.
    let shift = on_root(comb, || first_block_mean(src))?;
    let covariance = match method {
        PcaStreamMethod::Auto => n <= PCA_COVARIANCE_MAX_FEATURES,
        PcaStreamMethod::Covariance => true,
        PcaStreamMethod::Randomized(_) => false,
    };
    let ctx = &workers[0];
    if covariance {
        let packed = comb.sum(moments(workers, src, Some(&shift)).map(|m| m.packed()))?;
        let mo = Moments::unpack(&packed, n, n * n);
        let fit = on_root(comb, || pca_from_moments(ctx, n, k, &shift, &mo)?.packed())?;
        return StreamedPca::unpack(ctx, &fit, n, k, mo.rows, 1);
    }
    let opts = match method {
        PcaStreamMethod::Randomized(o) => o,
        _ => RandomizedSvdOptions::default(),
    };
    // The mean and the total variance in one pass, then the SVD of the centred rows.
    let packed = comb.sum(moments_diagonal(workers, src, &shift).map(|m| m.packed()))?;
    let mo = Moments::unpack(&packed, n, n);
    let m = comb.agree(nonempty("pca_stream", mo.rows, n).and_then(|m| {
        if m < 2 || k > m {
            return Err(Error::Shape(format!(
                "pca_stream: {k} components of {m} samples; PCA needs at least 2 samples and at most min(samples, features) components"
            )));
        }
        Ok(m)
    }))?;
    let d: Vec<f64> = mo.sums.iter().map(|v| v / m as f64).collect();
    let dof = (m - 1) as f64;
    let total: f64 = (0..n)
        .map(|i| (mo.gram[i] - m as f64 * d[i] * d[i]) / dof)
        .sum();
    let mean: Vec<f64> = shift.iter().zip(&d).map(|(s, d)| s + d).collect();
    let svd = randomized_svd(workers, src, k, &opts, Some(&mean), comb)?;
    let s = widen(&svd.s.to_vec()?);
    let ev: Vec<f64> = s.iter().map(|v| v * v / dof).collect();
    let mut vectors = widen(&svd.vt.to_vec()?);
    crate::reference::flip_rows_largest_positive(&mut vectors, n);
    finish_pca(ctx, n, m, 1 + svd.passes, &ev, total, &vectors, &mean)
}

impl Moments {
    /// Gram, sums and rows in one vector (for a sum across participants).
    fn packed(&self) -> Vec<f64> {
        let mut v = self.gram.clone();
        v.extend_from_slice(&self.sums);
        v.push(self.rows as f64);
        v
    }

    fn unpack(v: &[f64], n: usize, gram_len: usize) -> Moments {
        Moments {
            gram: v[..gram_len].to_vec(),
            sums: v[gram_len..gram_len + n].to_vec(),
            rows: v[gram_len + n] as usize,
        }
    }
}

impl StreamedPca {
    /// Components, explained variance (and ratio), singular values and mean in one vector.
    fn packed(&self) -> Result<Vec<f64>> {
        let mut v = Vec::new();
        for t in [
            &self.components,
            &self.explained_variance,
            &self.explained_variance_ratio,
            &self.singular_values,
            &self.mean,
        ] {
            v.extend(widen(&t.to_vec()?));
        }
        Ok(v)
    }

    fn unpack(
        ctx: &Context,
        v: &[f64],
        n: usize,
        k: usize,
        rows: usize,
        passes: u32,
    ) -> Result<StreamedPca> {
        let mut at = 0;
        let mut take = |shape: &[usize]| {
            let len: usize = shape.iter().product();
            at += len;
            tensor_f64(ctx, shape, &v[at - len..at])
        };
        Ok(StreamedPca {
            components: take(&[k, n])?,
            explained_variance: take(&[k])?,
            explained_variance_ratio: take(&[k])?,
            singular_values: take(&[k])?,
            mean: take(&[n])?,
            rows,
            passes,
        })
    }
}

/// The PCA from the moments of the rows shifted by `shift` (one pass, or the sum of every
/// rank's): the covariance in f64 and its eigen-decomposition.
pub(crate) fn pca_from_moments(
    ctx: &Context,
    n: usize,
    k: usize,
    shift: &[f64],
    mo: &Moments,
) -> Result<StreamedPca> {
    let m = nonempty("pca_stream", mo.rows, n)?;
    if m < 2 || k > m {
        return Err(Error::Shape(format!(
            "pca_stream: {k} components of {m} samples; PCA needs at least 2 samples and at most min(samples, features) components"
        )));
    }
    // Cov = (Σ(x−s)(x−s)ᵀ − m·d·dᵀ)/(m−1), d = mean − s = sums/m.
    let d: Vec<f64> = mo.sums.iter().map(|v| v / m as f64).collect();
    let dof = (m - 1) as f64;
    let cov: Vec<f64> = (0..n * n)
        .map(|ij| (mo.gram[ij] - m as f64 * d[ij / n] * d[ij % n]) / dof)
        .collect();
    let total: f64 = (0..n).map(|i| cov[i * n + i]).sum();
    let (values, mut vectors) = top_eigen(&cov, n, k)?;
    crate::reference::flip_rows_largest_positive(&mut vectors, n);
    let ev: Vec<f64> = values.iter().map(|v| v.max(0.0)).collect();
    let mean: Vec<f64> = shift.iter().zip(&d).map(|(s, d)| s + d).collect();
    finish_pca(ctx, n, m, 1, &ev, total, &vectors, &mean)
}

/// The column sums and sums of squares of A − shift (the Gram's diagonal only), in f64.
fn moments_diagonal(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    shift: &[f64],
) -> Result<Moments> {
    let n = src.cols();
    let shift_rows: Vec<Tensor> = workers
        .iter()
        .map(|ctx| row_tensor(ctx, shift))
        .collect::<Result<_>>()?;
    let map = |w: usize, x: &Tensor| -> Result<(Tensor, Tensor)> {
        let ctx = &workers[w];
        let centred = ctx.sub(x, &shift_rows[w])?;
        let squares = ctx.sum(&ctx.mul(&centred, &centred)?, Some(0))?;
        Ok((squares, ctx.sum(&centred, Some(0))?))
    };
    let (mut squares, mut sums) = (F64Sum(vec![0.0; n]), F64Sum(vec![0.0; n]));
    let stats = pass(workers, src, &map, &mut |_, _, (q, s)| {
        squares.add(&q.to_vec()?);
        sums.add(&s.to_vec()?);
        Ok(())
    })?;
    Ok(Moments {
        rows: stats.rows,
        sums: sums.0,
        gram: squares.0,
    })
}

#[allow(clippy::too_many_arguments)]
fn finish_pca(
    ctx: &Context,
    n: usize,
    m: usize,
    passes: u32,
    ev: &[f64],
    total: f64,
    vectors: &[f64],
    mean: &[f64],
) -> Result<StreamedPca> {
    let k = ev.len();
    let ratio: Vec<f64> = ev
        .iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect();
    let sv: Vec<f64> = ev.iter().map(|v| (v * (m - 1) as f64).sqrt()).collect();
    Ok(StreamedPca {
        components: tensor_f64(ctx, &[k, n], vectors)?,
        explained_variance: tensor_f64(ctx, &[k], ev)?,
        explained_variance_ratio: tensor_f64(ctx, &[k], &ratio)?,
        singular_values: tensor_f64(ctx, &[k], &sv)?,
        mean: tensor_f64(ctx, &[n], mean)?,
        rows: m,
        passes,
    })
}

/// The R factor of one block (its QR on the device).
pub(crate) fn block_r(ctx: &Context, x: &Tensor) -> Result<Tensor> {
    Ok(ctx.qr(x)?.r)
}

/// Folds block R factors in order: R ← R of [R; R_block] (a QR of the two stacked factors on
/// the first context).
pub(crate) struct RFold<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) n: usize,
    pub(crate) r: Option<Tensor>,
}

impl RFold<'_> {
    pub(crate) fn add(&mut self, rows: usize, values: &[f32]) -> Result<()> {
        let block = self.ctx.tensor(&[rows, self.n], values)?;
        self.r = Some(match self.r.take() {
            None => block,
            Some(acc) => self.ctx.qr(&self.ctx.concat(&[&acc, &block], 0)?)?.r,
        });
        Ok(())
    }

    /// [`add`](Self::add) of a block R computed on any context (read back, then re-made on
    /// the fold's context, so that every fold runs the same QRs whichever context computed it).
    pub(crate) fn add_tensor(&mut self, r: &Tensor) -> Result<()> {
        self.add(r.shape()[0], &r.to_vec()?)
    }

    pub(crate) fn finish(self) -> Result<Tensor> {
        match self.r {
            Some(r) => Ok(r),
            None => self.ctx.zeros(&[0, self.n]),
        }
    }
}

/// The local TSQR: (rows read, R's rows, R).
fn local_tsqr(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    n: usize,
) -> Result<(usize, usize, Vec<f32>)> {
    let mut fold = RFold {
        ctx: &workers[0],
        n,
        r: None,
    };
    let stats = pass(
        workers,
        src,
        &|w, x| block_r(&workers[w], x),
        &mut |_, _, r| fold.add_tensor(&r),
    )?;
    let r = fold.finish()?;
    Ok((stats.rows, r.shape()[0], r.to_vec()?))
}

pub(crate) fn tsqr<C: Combine>(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    comb: &C,
) -> Result<Tsqr> {
    let n = src.cols();
    let ctx = &workers[0];
    let local = local_tsqr(workers, src, n);
    let rows = local.as_ref().map_or(0, |l| l.0);
    // A local failure is agreed on here, before any other step.
    let (r_rows, r) = comb.combine_r(ctx, n, local.map(|(_, rr, r)| (rr, r)))?;
    let rows = comb.sum(Ok(vec![rows as f64]))?[0] as usize;
    let mut shared = on_root(comb, || {
        let mut v = vec![r_rows as f64];
        v.extend(widen(&r));
        Ok(v)
    })?;
    let r_rows = shared.remove(0) as usize;
    Ok(Tsqr {
        r: tensor_f64(ctx, &[r_rows, n], &shared)?,
        rows,
    })
}

/// R⁻¹ of a square upper-triangular R, or an error naming the singular R.
fn r_inverse(ctx: &Context, r: &Tensor, op: &str) -> Result<Tensor> {
    let n = r.shape()[1];
    if r.shape()[0] != n {
        return Err(Error::Shape(format!(
            "{op}: R is {:?}; Q = A·R⁻¹ needs a square R (at least as many rows as columns)",
            r.shape()
        )));
    }
    let diag = r.to_vec()?;
    if let Some(i) = (0..n).find(|&i| diag[i * n + i] == 0.0) {
        return Err(Error::InvalidArgument(format!(
            "{op}: R[{i},{i}] = 0: A is rank-deficient, so Q = A·R⁻¹ does not exist"
        )));
    }
    let mut eye = vec![0.0f32; n * n];
    (0..n).for_each(|i| eye[i * n + i] = 1.0);
    ctx.solve_triangular(
        r,
        &ctx.tensor(&[n, n], &eye)?,
        &TriangularOptions::default(),
    )
}

pub(crate) fn tsqr_q(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    r: &Tensor,
    sink: &mut dyn FnMut(&[f32]) -> Result<()>,
) -> Result<usize> {
    let rinv: Vec<Tensor> = workers
        .iter()
        .map(|ctx| r_inverse(ctx, r, "tsqr_q_stream"))
        .collect::<Result<_>>()?;
    let map = |w: usize, x: &Tensor| {
        let ctx = &workers[w];
        ctx.matmul(x, &rinv[w])
    };
    Ok(pass(workers, src, &map, &mut |_, _, q| sink(&q.to_vec()?))?.rows)
}

pub(crate) fn lstsq<C: Combine>(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    a_cols: usize,
    rcond: Option<f32>,
    comb: &C,
) -> Result<Lstsq> {
    let total = src.cols();
    comb.agree(if a_cols > total || a_cols == 0 || a_cols == total {
        Err(Error::Shape(format!(
            "lstsq_stream: the source's {total} columns must be A's {a_cols} and at least one of B"
        )))
    } else {
        Ok(())
    })?;
    let t = tsqr(workers, src, comb)?;
    let ctx = &workers[0];
    // The solve on the root; x, residuals, s and the rank shared as [rank, |res|, x…, res…, s…].
    let (n, k) = (a_cols, total - a_cols);
    let v = on_root(comb, || {
        let fit = lstsq_from_r(ctx, &t, a_cols, rcond)?;
        let mut v = vec![fit.rank as f64, fit.residuals.len() as f64];
        for part in [&fit.x, &fit.residuals, &fit.s] {
            v.extend(widen(&part.to_vec()?));
        }
        Ok(v)
    })?;
    let (rank, res_len) = (v[0] as usize, v[1] as usize);
    let s_len = t.r.shape()[0].min(n);
    let x = &v[2..2 + n * k];
    Ok(Lstsq {
        x: tensor_f64(ctx, &[n, k], x)?,
        residuals: tensor_f64(ctx, &[res_len], &v[2 + n * k..2 + n * k + res_len])?,
        rank,
        s: tensor_f64(ctx, &[s_len], &v[2 + n * k + res_len..])?,
    })
}

/// numpy's `lstsq` from the TSQR of `[A | B]` (A its first `a_cols` columns).
pub(crate) fn lstsq_from_r(
    ctx: &Context,
    t: &Tsqr,
    a_cols: usize,
    rcond: Option<f32>,
) -> Result<Lstsq> {
    let total = t.r.shape()[1];
    let (n, k) = (a_cols, total - a_cols);
    let m = nonempty("lstsq_stream", t.rows, total)?;
    let rr = t.r.shape()[0];
    let top = ctx.slice_axis(&t.r, 0, 0, rr.min(n))?;
    let (r, z) = (
        ctx.slice_axis(&top, 1, 0, n)?,
        ctx.slice_axis(&top, 1, n, total)?,
    );
    let solved = ctx.lstsq(&r, &z, rcond)?;
    // ‖B − A·X‖² per column: the squared column norms of R's bottom-right block, as numpy
    // reports them (only at full rank with m > n).
    let residuals = if solved.rank == n && m > n {
        let bottom = ctx.slice_axis(&ctx.slice_axis(&t.r, 0, n.min(rr), rr)?, 1, n, total)?;
        let vals = bottom.to_vec()?;
        let sq: Vec<f32> = (0..k)
            .map(|j| {
                (0..rr - n.min(rr))
                    .map(|i| f64::from(vals[i * k + j]).powi(2))
                    .sum::<f64>() as f32
            })
            .collect();
        ctx.tensor(&[k], &sq)?
    } else {
        ctx.zeros(&[0])?
    };
    // R has min(m, n) rows and A's singular values.
    Ok(Lstsq {
        residuals,
        ..solved
    })
}

pub(crate) fn randomized_svd<C: Combine>(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    r: usize,
    opts: &RandomizedSvdOptions,
    center: Option<&[f64]>,
    comb: &C,
) -> Result<StreamedSvd> {
    let n = src.cols();
    let l = (r + opts.oversampling).min(n);
    comb.agree(if r == 0 || r > n {
        Err(Error::InvalidArgument(format!(
            "randomized_svd_stream: rank {r} of a matrix of {n} columns; expected 1..={n}"
        )))
    } else {
        Ok(())
    })?;
    let ctx = &workers[0];
    let centres: Vec<Option<Tensor>> = workers
        .iter()
        .map(|c| center.map(|m| row_tensor(c, m)).transpose())
        .collect::<Result<_>>()?;
    let centred = |w: usize, x: &Tensor| -> Result<Tensor> {
        match &centres[w] {
            Some(mu) => workers[w].sub(x, mu),
            None => Ok(x.clone()),
        }
    };
    // Z = AᵀA·Q, a pass each: the sketch (Q = Ω, the root's) and every power iteration; each
    // Q the root's QR of the summed Z.
    let omega = on_root(comb, || {
        Ok(widen(
            &ctx.rand_normal(&[n, l], opts.seed, 0.0, 1.0)?.to_vec()?,
        ))
    })?;
    let mut q = tensor_f64(ctx, &[n, l], &omega)?;
    let mut passes = 0u32;
    let mut rows = 0;
    for _ in 0..=opts.power_iterations {
        let qs: Vec<Tensor> = workers.iter().map(|_| q.clone()).collect();
        let map = |w: usize, x: &Tensor| {
            let c = &workers[w];
            let xc = centred(w, x)?;
            t_matmul(c, &xc, &c.matmul(&xc, &qs[w])?)
        };
        let mut z = F64Sum(vec![0.0; n * l]);
        let local = pass(workers, src, &map, &mut |_, _, part| {
            z.add(&part.to_vec()?);
            Ok(())
        })
        .map(|stats| {
            z.0.push(stats.rows as f64);
            z.0
        });
        let mut z = comb.sum(local)?;
        rows = z.pop().unwrap_or(0.0) as usize;
        passes += 1;
        let qv = on_root(comb, || {
            Ok(widen(&ctx.qr(&tensor_f64(ctx, &[n, l], &z)?)?.q.to_vec()?))
        })?;
        q = tensor_f64(ctx, &[n, l], &qv)?;
    }
    comb.agree(nonempty("randomized_svd_stream", rows, n))?;
    // The final projection: the TSQR of A·Q (m × l), then the SVD of its R on the root.
    let qs: Vec<Tensor> = workers.iter().map(|_| q.clone()).collect();
    let map = |w: usize, x: &Tensor| {
        let c = &workers[w];
        block_r(c, &c.matmul(&centred(w, x)?, &qs[w])?)
    };
    let mut fold = RFold { ctx, n: l, r: None };
    let local = pass(workers, src, &map, &mut |_, _, r| fold.add_tensor(&r))
        .and_then(|_| fold.finish())
        .and_then(|t| Ok((t.shape()[0], t.to_vec()?)));
    let (r_rows, r_values) = comb.combine_r(ctx, l, local)?;
    passes += 1;
    // [k, s…, vt…] with Vᵀ = W_rᵀ·Qᵀ, W the right singular vectors of R.
    let v = on_root(comb, || {
        let small = ctx.svd(&ctx.tensor(&[r_rows, l], &r_values)?)?;
        let kk = small.s.shape()[0].min(r);
        let wt = ctx.slice_axis(&small.vt, 0, 0, kk)?;
        let vt = ctx.matmul_with(
            &wt,
            &q,
            &MatmulOptions {
                transpose_b: true,
                ..Default::default()
            },
        )?;
        let mut v = vec![kk as f64];
        v.extend(widen(&ctx.slice_axis(&small.s, 0, 0, kk)?.to_vec()?));
        v.extend(widen(&vt.to_vec()?));
        Ok(v)
    })?;
    let kk = v[0] as usize;
    Ok(StreamedSvd {
        s: tensor_f64(ctx, &[kk], &v[1..1 + kk])?,
        vt: tensor_f64(ctx, &[kk, n], &v[1 + kk..])?,
        rows,
        passes,
    })
}

pub(crate) fn svd_u(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    svd: &StreamedSvd,
    sink: &mut dyn FnMut(&[f32]) -> Result<()>,
) -> Result<usize> {
    let s = svd.s.to_vec()?;
    if let Some(i) = s.iter().position(|&v| v <= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "svd_u_stream: singular value {i} is {}; U = A·V·Σ⁻¹ needs positive ones",
            s[i]
        )));
    }
    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
    // A·V·Σ⁻¹ = A·(Vᵀ)ᵀ scaled by column.
    let vs: Vec<(Tensor, Tensor)> = workers
        .iter()
        .map(|c| Ok((c.transpose(&svd.vt)?, c.tensor(&[inv.len()], &inv)?)))
        .collect::<Result<_>>()?;
    let map = |w: usize, x: &Tensor| {
        let c = &workers[w];
        c.mul(&c.matmul(x, &vs[w].0)?, &vs[w].1)
    };
    Ok(pass(workers, src, &map, &mut |_, _, u| sink(&u.to_vec()?))?.rows)
}

pub(crate) fn pca_transform(
    workers: &[Context],
    src: &mut dyn RowBlocks,
    pca: &StreamedPca,
    sink: &mut dyn FnMut(&[f32]) -> Result<()>,
) -> Result<usize> {
    let parts: Vec<(Tensor, Tensor)> = workers
        .iter()
        .map(|c| {
            let n = pca.mean.len();
            Ok((pca.mean.reshape(&[1, n])?, c.transpose(&pca.components)?))
        })
        .collect::<Result<_>>()?;
    let map = |w: usize, x: &Tensor| {
        let c = &workers[w];
        c.matmul(&c.sub(x, &parts[w].0)?, &parts[w].1)
    };
    Ok(pass(workers, src, &map, &mut |_, _, t| sink(&t.to_vec()?))?.rows)
}

/// The eigenvalues (descending) of the covariance (n − 1 normalisation) of the row-major
/// m×n `x`, all in f64: the reference of the PCA benches and tests.
pub fn covariance_eigenvalues_f64(x: &[f32], m: usize, n: usize) -> Result<Vec<f64>> {
    if m < 2 {
        return Err(Error::Shape(format!(
            "a covariance needs at least 2 rows, got {m}"
        )));
    }
    let mut mean = vec![0.0f64; n];
    for row in x.chunks_exact(n.max(1)) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(s, v)| *s += f64::from(*v));
    }
    mean.iter_mut().for_each(|s| *s /= m as f64);
    let centred = Mat::<f64>::from_fn(m, n, |i, j| f64::from(x[i * n + j]) - mean[j]);
    let cov = centred.transpose() * &centred;
    let c: Vec<f64> = (0..n * n)
        .map(|ij| cov[(ij / n, ij % n)] / (m - 1) as f64)
        .collect();
    Ok(top_eigen(&c, n, n)?.0)
}

impl Context {
    /// AᵀA of a streamed m×n matrix, n×n: each block's product on the device (f32, the block
    /// height as the inner dimension), the blocks summed in f64 on the host.
    ///
    /// ```
    /// use gpu_linalg::IterRowBlocks;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// // [[1, 2], [3, 4], [5, 6]] in blocks of one and two rows.
    /// let mut src = IterRowBlocks::new(2, || [vec![1., 2.], vec![3., 4., 5., 6.]].into_iter());
    /// assert_eq!(ctx.gram_stream(&mut src)?.to_vec()?, vec![35., 44., 44., 56.]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn gram_stream(&self, src: &mut dyn RowBlocks) -> Result<Tensor> {
        gram(std::slice::from_ref(self), src)
    }

    /// The R factor of a streamed matrix by TSQR, in one pass: each block's R by the device
    /// QR, folded in order (R ← R of the stacked [R; R_block]). Rank-deficient blocks take the
    /// device Householder QR like any other.
    ///
    /// ```
    /// use gpu_linalg::IterRowBlocks;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let mut src = IterRowBlocks::new(2, || [vec![3., 0.], vec![4., 5.]].into_iter());
    /// let r = ctx.tsqr_stream(&mut src)?.r.to_vec()?;
    /// assert!((r[0] - 5.0).abs() < 1e-5 && (r[1] - 4.0).abs() < 1e-5 && (r[3] - 3.0).abs() < 1e-5);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn tsqr_stream(&self, src: &mut dyn RowBlocks) -> Result<Tsqr> {
        tsqr(std::slice::from_ref(self), src, &Alone)
    }

    /// Q = A·R⁻¹ of a [`tsqr_stream`](Self::tsqr_stream), one block at a time to `sink` (its
    /// rows in order). Its orthogonality degrades with κ(A) (as CholeskyQR's first pass does);
    /// a singular R is refused.
    pub fn tsqr_q_stream(
        &self,
        src: &mut dyn RowBlocks,
        r: &Tensor,
        sink: &mut dyn FnMut(&[f32]) -> Result<()>,
    ) -> Result<usize> {
        tsqr_q(std::slice::from_ref(self), src, r, sink)
    }

    /// `numpy.linalg.lstsq(A, B, rcond)` of a tall A streamed beside B: `src` yields the rows
    /// of `[A | B]`, A being its first `a_cols` columns. One TSQR pass of `[A | B]` gives
    /// `[[R, Z], [0, S]]`; X is the minimum-norm solution of R·X = Z, the residuals the squared
    /// column norms of S, the singular values those of R.
    ///
    /// ```
    /// use gpu_linalg::IterRowBlocks;
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// // y = 1 + 2x at x = 0, 1, 2, 3, as rows [1, x, y].
    /// let rows = || (0..4).map(|x| vec![1.0, x as f32, 1.0 + 2.0 * x as f32]);
    /// let fit = ctx.lstsq_stream(&mut IterRowBlocks::new(3, rows), 2, None)?;
    /// let x = fit.x.to_vec()?;
    /// assert!((x[0] - 1.0).abs() < 1e-4 && (x[1] - 2.0).abs() < 1e-4);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn lstsq_stream(
        &self,
        src: &mut dyn RowBlocks,
        a_cols: usize,
        rcond: Option<f32>,
    ) -> Result<Lstsq> {
        lstsq(std::slice::from_ref(self), src, a_cols, rcond, &Alone)
    }

    /// The rank-`r` randomized SVD (Halko–Martinsson–Tropp) of a streamed matrix: a pass for
    /// the sketch AᵀA·Ω and one per power iteration (each re-orthonormalised by QR), then a
    /// final pass for the TSQR of A·Q, whose R's SVD gives Σ and V. U is tall: see
    /// [`svd_u_stream`](Self::svd_u_stream).
    ///
    /// ```
    /// use gpu_linalg::{IterRowBlocks, RandomizedSvdOptions};
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let mut src = IterRowBlocks::new(2, || (0..4).map(|i| vec![i as f32, 0.0]));
    /// let svd = ctx.randomized_svd_stream(&mut src, 1, &RandomizedSvdOptions::default())?;
    /// assert!((svd.s.to_vec()?[0] - 14f32.sqrt()).abs() < 1e-4);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn randomized_svd_stream(
        &self,
        src: &mut dyn RowBlocks,
        r: usize,
        opts: &RandomizedSvdOptions,
    ) -> Result<StreamedSvd> {
        randomized_svd(std::slice::from_ref(self), src, r, opts, None, &Alone)
    }

    /// U = A·V·Σ⁻¹ of a [`randomized_svd_stream`](Self::randomized_svd_stream), one block of
    /// rows at a time to `sink`.
    pub fn svd_u_stream(
        &self,
        src: &mut dyn RowBlocks,
        svd: &StreamedSvd,
        sink: &mut dyn FnMut(&[f32]) -> Result<()>,
    ) -> Result<usize> {
        svd_u(std::slice::from_ref(self), src, svd, sink)
    }

    /// `sklearn.decomposition.PCA(n_components=k).fit(X)` of streamed rows (samples): by
    /// default from the covariance, formed in one pass with the first block's mean as a shift
    /// (so that large means cost no accuracy) and decomposed in f64; see [`PcaStreamMethod`].
    ///
    /// ```
    /// use gpu_linalg::{IterRowBlocks, PcaStreamMethod};
    /// # let ctx = gpu_linalg::Context::with_backend(gpu_linalg::Backend::Cpu)?;
    /// let mut src = IterRowBlocks::new(2, || (0..5).map(|i| vec![i as f32, 10.0 + 2.0 * i as f32]));
    /// let pca = ctx.pca_stream(&mut src, 1, PcaStreamMethod::Auto)?;
    /// assert!((pca.explained_variance_ratio.to_vec()?[0] - 1.0).abs() < 1e-5);
    /// assert_eq!(pca.mean.to_vec()?, vec![2.0, 14.0]);
    /// # Ok::<(), gpu_linalg::Error>(())
    /// ```
    pub fn pca_stream(
        &self,
        src: &mut dyn RowBlocks,
        k: usize,
        method: PcaStreamMethod,
    ) -> Result<StreamedPca> {
        pca(std::slice::from_ref(self), src, k, method, &Alone)
    }

    /// scikit-learn's `PCA.transform(X)` of streamed rows, (X − mean)·componentsᵀ, one block
    /// at a time to `sink`.
    pub fn pca_transform_stream(
        &self,
        src: &mut dyn RowBlocks,
        pca: &StreamedPca,
        sink: &mut dyn FnMut(&[f32]) -> Result<()>,
    ) -> Result<usize> {
        pca_transform(std::slice::from_ref(self), src, pca, sink)
    }
}
