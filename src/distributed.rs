//! Streamed algorithms across processes with MPI (feature `mpi`, through the `mpi` crate):
//! each rank owns a contiguous row range of a shared `.npy` file (or, for a path containing
//! `{rank}`, the whole of its own shard), reads only that, and computes with its own
//! context; the ranks then combine
//! - Gram and column sums by `allreduce` (f64), for the PCA;
//! - TSQR's R factors by a binary reduction tree (rank r + 2ˢ sends its R to rank r at step s,
//!   which QRs the two stacked), for `tsqr` and `lstsq`;
//!
//! and the small final eigh or solve runs on rank 0, its result broadcast back.
//!
//! Failures are agreed on: after each phase every rank learns whether any rank failed, and if
//! one did, every rank returns [`Error::Rank`] with the lowest failing rank's one-line
//! message, so that all exit non-zero with it and none waits forever in a collective.

use std::ops::Range;
use std::path::{Path, PathBuf};

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::norms::Lstsq;
use crate::streamed::{self, MemoryBudget, NpyRowBlocks, RowBlocks, StreamedPca, Tsqr};
use crate::tensor::Tensor;

/// The placeholder a sharded path names the rank with.
pub const RANK_PLACEHOLDER: &str = "{rank}";

/// An initialised MPI run (MPI is finalised when it is dropped).
pub struct Mpi {
    _universe: mpi::environment::Universe,
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
}

impl Mpi {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::InvalidArgument("MPI is already initialised in this process".into())
        })?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Mpi {
            _universe: universe,
            world,
            rank,
            size,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Processes in the run.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0 (which computes the final small step and writes outputs).
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// This rank's contiguous share of `rows` rows (the first `rows % size` ranks one more).
    pub fn row_range(&self, rows: usize) -> Range<usize> {
        let (base, extra) = (rows / self.size, rows % self.size);
        let start = self.rank * base + self.rank.min(extra);
        start..start + base + usize::from(self.rank < extra)
    }

    /// Every rank's `local` outcome agreed on: `Ok` where all succeeded, else on every rank
    /// [`Error::Rank`] with the lowest failing rank's message.
    pub fn agree<T>(&self, local: Result<T>) -> Result<T> {
        let mine = if local.is_err() {
            self.rank as u64
        } else {
            u64::MAX
        };
        let mut first = u64::MAX;
        self.world
            .all_reduce_into(&mine, &mut first, SystemOperation::min());
        if first == u64::MAX {
            return local;
        }
        let failed = first as usize;
        let mut message = match &local {
            Err(e) if self.rank == failed => e.one_line().into_bytes(),
            _ => Vec::new(),
        };
        self.broadcast_bytes(failed, &mut message);
        Err(Error::Rank {
            rank: failed,
            size: self.size,
            message: String::from_utf8_lossy(&message).into_owned(),
        })
    }

    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) {
        let root = self.world.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        if len > 0 {
            root.broadcast_into(&mut bytes[..]);
        }
    }

    /// Rank 0's `values` on every rank (their length too).
    fn broadcast_vec<T: Equivalence + Default + Clone>(&self, values: &mut Vec<T>) {
        let root = self.world.process_at_rank(0);
        let mut len = values.len() as u64;
        root.broadcast_into(&mut len);
        values.resize(len as usize, T::default());
        if len > 0 {
            root.broadcast_into(&mut values[..]);
        }
    }

    /// Rank 0's tensor (`None` elsewhere) as a tensor of `ctx` on every rank.
    fn broadcast_tensor(&self, ctx: &Context, t: Option<&Tensor>) -> Result<Tensor> {
        let (mut shape, mut values): (Vec<u64>, Vec<f32>) = match t {
            Some(t) => (t.shape().iter().map(|&d| d as u64).collect(), t.to_vec()?),
            None => (Vec::new(), Vec::new()),
        };
        self.broadcast_vec(&mut shape);
        self.broadcast_vec(&mut values);
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        ctx.tensor(&shape, &values)
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// The largest of every rank's `value`.
    pub fn max_over_ranks(&self, value: f64) -> f64 {
        let mut max = value;
        self.world
            .all_reduce_into(&value, &mut max, SystemOperation::max());
        max
    }

    /// Sums `values` over the ranks, in place.
    fn all_sum(&self, values: &mut [f64]) {
        let local = values.to_vec();
        self.world
            .all_reduce_into(&local[..], values, SystemOperation::sum());
    }

    /// The path this rank reads: `path` with [`RANK_PLACEHOLDER`] replaced by the rank.
    pub fn rank_path(&self, path: &Path) -> PathBuf {
        PathBuf::from(
            path.to_string_lossy()
                .replace(RANK_PLACEHOLDER, &self.rank.to_string()),
        )
    }

    /// This rank's row blocks of the files side by side: the whole of its own shards when the
    /// paths contain [`RANK_PLACEHOLDER`], else its [`row_range`](Self::row_range) of the
    /// shared files. Agreed on.
    pub fn open_rows(&self, paths: &[&Path], budget: MemoryBudget) -> Result<NpyRowBlocks> {
        let local = (|| {
            let mine: Vec<PathBuf> = paths.iter().map(|p| self.rank_path(p)).collect();
            let refs: Vec<&Path> = mine.iter().map(PathBuf::as_path).collect();
            let src = NpyRowBlocks::open_columns(&refs, budget)?;
            if paths
                .iter()
                .any(|p| p.to_string_lossy().contains(RANK_PLACEHOLDER))
            {
                return Ok(src);
            }
            let range = self.row_range(src.file_rows());
            src.with_row_range(range.start, range.end)
        })();
        self.agree(local)
    }

    /// `sklearn.decomposition.PCA(k).fit` of the rows of every rank: each rank's shifted
    /// Gram matrix and column sums (the shift is rank 0's first-block mean, broadcast), summed by
    /// `allreduce`; the covariance's f64 eigen-decomposition on rank 0, broadcast back.
    pub fn pca(
        &self,
        ctx: &Context,
        path: &Path,
        k: usize,
        budget: MemoryBudget,
    ) -> Result<StreamedPca> {
        let mut src = self.open_rows(&[path], budget)?;
        let n = src.cols();
        let cols_agree = self.same_on_all(n as u64, "columns");
        self.agree(cols_agree)?;
        let shift = if self.is_root() {
            streamed::first_block_mean(&mut src)
        } else {
            Ok(vec![0.0; n])
        };
        let mut shift = self.agree(shift)?;
        let root = self.world.process_at_rank(0);
        root.broadcast_into(&mut shift[..]);
        let local = streamed::moments(std::slice::from_ref(ctx), &mut src, Some(&shift));
        let mut mo = self.agree(local)?;
        let mut packed = mo.gram.clone();
        packed.extend_from_slice(&mo.sums);
        packed.push(mo.rows as f64);
        self.all_sum(&mut packed);
        mo.rows = packed[n * n + n] as usize;
        mo.sums = packed[n * n..n * n + n].to_vec();
        mo.gram.copy_from_slice(&packed[..n * n]);
        let fit = if self.is_root() {
            streamed::pca_from_moments(ctx, n, k, &shift, &mo).map(Some)
        } else {
            Ok(None)
        };
        let fit = self.agree(fit)?;
        let part = |f: fn(&StreamedPca) -> &Tensor| self.broadcast_tensor(ctx, fit.as_ref().map(f));
        Ok(StreamedPca {
            components: part(|p| &p.components)?,
            explained_variance: part(|p| &p.explained_variance)?,
            explained_variance_ratio: part(|p| &p.explained_variance_ratio)?,
            singular_values: part(|p| &p.singular_values)?,
            mean: part(|p| &p.mean)?,
            rows: mo.rows,
            passes: 1,
        })
    }

    /// `Ok` when every rank passed the same `value` (a shape), else an error naming it.
    fn same_on_all(&self, value: u64, what: &str) -> Result<()> {
        let (mut lo, mut hi) = (0u64, 0u64);
        self.world
            .all_reduce_into(&value, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&value, &mut hi, SystemOperation::max());
        if lo != hi {
            return Err(Error::Shape(format!(
                "the ranks' inputs differ in {what}: {lo} to {hi}"
            )));
        }
        Ok(())
    }

    /// The R factor of the rows of every rank (side by side when several paths): each rank's
    /// TSQR, then a binary reduction tree of the Rs to rank 0; R broadcast back.
    pub fn tsqr(&self, ctx: &Context, paths: &[&Path], budget: MemoryBudget) -> Result<Tsqr> {
        let mut src = self.open_rows(paths, budget)?;
        let n = src.cols();
        let cols_agree = self.same_on_all(n as u64, "columns");
        self.agree(cols_agree)?;
        let local = streamed::tsqr(std::slice::from_ref(ctx), &mut src);
        let local = self.agree(local)?;
        let mut rows = vec![local.rows as f64];
        self.all_sum(&mut rows);
        // The tree: a failed combine still takes part (sending an empty R), and the failure is
        // agreed on after it.
        let mut failure: Result<()> = Ok(());
        let mut r = local.r.to_vec().unwrap_or_default();
        let mut r_rows = local.r.shape()[0];
        let mut step = 1;
        while step < self.size {
            if self.rank % (2 * step) == step {
                let parent = self.world.process_at_rank((self.rank - step) as i32);
                parent.send(&(r_rows as u64));
                parent.send(&r[..]);
                break;
            }
            let child = self.rank + step;
            if self.rank.is_multiple_of(2 * step) && child < self.size {
                let p = self.world.process_at_rank(child as i32);
                let (child_rows, _) = p.receive::<u64>();
                let (child_r, _) = p.receive_vec::<f32>();
                if failure.is_ok() {
                    let mut fold = streamed::RFold { ctx, n, r: None };
                    let combined = fold
                        .add(r_rows, &r)
                        .and_then(|_| fold.add(child_rows as usize, &child_r))
                        .and_then(|_| fold.finish())
                        .and_then(|t| Ok((t.shape()[0], t.to_vec()?)));
                    match combined {
                        Ok((rr, v)) => (r_rows, r) = (rr, v),
                        Err(e) => {
                            failure = Err(e);
                            (r_rows, r) = (0, Vec::new());
                        }
                    }
                }
            }
            step *= 2;
        }
        self.agree(failure)?;
        let root_r = if self.is_root() {
            Some(ctx.tensor(&[r_rows, n], &r)?)
        } else {
            None
        };
        Ok(Tsqr {
            r: self.broadcast_tensor(ctx, root_r.as_ref())?,
            rows: rows[0] as usize,
        })
    }

    /// `numpy.linalg.lstsq(A, B, rcond)` of the rows of every rank: the distributed TSQR of
    /// `[A | B]`, then the small solve on rank 0, broadcast back.
    pub fn lstsq(
        &self,
        ctx: &Context,
        a: &Path,
        b: &Path,
        rcond: Option<f32>,
        budget: MemoryBudget,
    ) -> Result<Lstsq> {
        let a_cols =
            self.agree(crate::npy::NpyRowReader::open(&self.rank_path(a)).map(|r| r.cols()))?;
        let t = self.tsqr(ctx, &[a, b], budget)?;
        let fit = if self.is_root() {
            streamed::lstsq_from_r(ctx, &t, a_cols, rcond).map(Some)
        } else {
            Ok(None)
        };
        let fit = self.agree(fit)?;
        let mut rank = vec![fit.as_ref().map_or(0u64, |f| f.rank as u64)];
        self.broadcast_vec(&mut rank);
        Ok(Lstsq {
            x: self.broadcast_tensor(ctx, fit.as_ref().map(|f| &f.x))?,
            residuals: self.broadcast_tensor(ctx, fit.as_ref().map(|f| &f.residuals))?,
            rank: rank[0] as usize,
            s: self.broadcast_tensor(ctx, fit.as_ref().map(|f| &f.s))?,
        })
    }
}
