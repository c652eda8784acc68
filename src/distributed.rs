//! Streamed algorithms across processes with MPI (feature `mpi`, through the `mpi` crate):
//! each rank owns a contiguous row range of a shared `.npy` file (or, for a path containing
//! `{rank}`, the whole of its own shard), reads only that, and computes with its own
//! context; the ranks then combine
//! - Gram and column sums by `allreduce` (f64), for the PCA;
//! - each power iteration's AᵀA·Q pieces by `allreduce`, for the randomized SVD;
//! - TSQR's R factors by a binary reduction tree (rank r + 2ˢ sends its R to rank r at step s,
//!   which QRs the two stacked), for `tsqr`, `lstsq` and the randomized SVD's last pass;
//!
//! and the small final eigh, solve or SVD runs on rank 0, its result broadcast back. The
//! algorithms are those of `streamed`, with the MPI steps plugged in where one process has
//! none (the crate's `Combine` trait).
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
use crate::decomp::RandomizedSvdOptions;
use crate::error::{Error, Result};
use crate::norms::Lstsq;
use crate::streamed::{
    self, Combine, MemoryBudget, NpyRowBlocks, PcaStreamMethod, RowBlocks, StreamedPca,
    StreamedSvd, Tsqr,
};

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
        self.broadcast_vec(failed, &mut message);
        Err(Error::Rank {
            rank: failed,
            size: self.size,
            message: String::from_utf8_lossy(&message).into_owned(),
        })
    }

    /// Rank `root`'s `values` on every rank (their length too).
    fn broadcast_vec<T: Equivalence + Default + Clone>(&self, root: usize, values: &mut Vec<T>) {
        let root = self.world.process_at_rank(root as i32);
        let mut len = values.len() as u64;
        root.broadcast_into(&mut len);
        values.resize(len as usize, T::default());
        if len > 0 {
            root.broadcast_into(&mut values[..]);
        }
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
    /// Gram matrix and column sums (the shift is rank 0's first-block mean, broadcast) summed
    /// by `allreduce`, the covariance's f64 eigen-decomposition on rank 0, broadcast back (past
    /// 4,096 features, the randomized SVD of the centred rows, as [`Mpi::randomized_svd`]).
    pub fn pca(
        &self,
        ctx: &Context,
        path: &Path,
        k: usize,
        budget: MemoryBudget,
    ) -> Result<StreamedPca> {
        let mut src = self.open_rows(&[path], budget)?;
        self.same_columns(&src)?;
        streamed::pca(
            std::slice::from_ref(ctx),
            &mut src,
            k,
            PcaStreamMethod::Auto,
            self,
        )
    }

    /// The R factor of the rows of every rank (side by side when several paths): each rank's
    /// TSQR, then a binary reduction tree of the Rs to rank 0; R broadcast back.
    pub fn tsqr(&self, ctx: &Context, paths: &[&Path], budget: MemoryBudget) -> Result<Tsqr> {
        let mut src = self.open_rows(paths, budget)?;
        self.same_columns(&src)?;
        streamed::tsqr(std::slice::from_ref(ctx), &mut src, self)
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
        let mut src = self.open_rows(&[a, b], budget)?;
        self.same_columns(&src)?;
        streamed::lstsq(std::slice::from_ref(ctx), &mut src, a_cols, rcond, self)
    }

    /// The rank-`r` randomized SVD of the rows of every rank: each pass's AᵀA·Q pieces summed
    /// by `allreduce` (Ω and each Q rank 0's, broadcast), the final TSQR of A·Q by the
    /// reduction tree, its small SVD on rank 0; Σ and Vᵀ broadcast back.
    pub fn randomized_svd(
        &self,
        ctx: &Context,
        path: &Path,
        r: usize,
        opts: &RandomizedSvdOptions,
        budget: MemoryBudget,
    ) -> Result<StreamedSvd> {
        let mut src = self.open_rows(&[path], budget)?;
        self.same_columns(&src)?;
        streamed::randomized_svd(std::slice::from_ref(ctx), &mut src, r, opts, None, self)
    }

    /// Fails every rank unless all read the same number of columns.
    fn same_columns(&self, src: &NpyRowBlocks) -> Result<()> {
        let n = src.cols() as u64;
        let (mut lo, mut hi) = (0u64, 0u64);
        self.world
            .all_reduce_into(&n, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&n, &mut hi, SystemOperation::max());
        self.agree(if lo == hi {
            Ok(())
        } else {
            Err(Error::Shape(format!(
                "the ranks' inputs differ in columns: {lo} to {hi}"
            )))
        })
    }

    /// The binary reduction tree of R factors to rank 0: at step s, rank r + 2ˢ sends its R
    /// to rank r, which QRs the two stacked. A failed combine still takes part (sending an
    /// empty R); the failure is agreed on after the tree.
    fn tree_r(
        &self,
        ctx: &Context,
        n: usize,
        mut r_rows: usize,
        mut r: Vec<f32>,
    ) -> Result<(usize, Vec<f32>)> {
        let mut failure: Result<()> = Ok(());
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
        Ok((r_rows, r))
    }
}

impl Combine for Mpi {
    fn is_root(&self) -> bool {
        self.rank == 0
    }

    fn agree<T>(&self, local: Result<T>) -> Result<T> {
        Mpi::agree(self, local)
    }

    fn sum(&self, local: Result<Vec<f64>>) -> Result<Vec<f64>> {
        let mut v = Mpi::agree(self, local)?;
        self.all_sum(&mut v);
        Ok(v)
    }

    fn share(&self, root: Result<Option<Vec<f64>>>) -> Result<Vec<f64>> {
        let mut v = Mpi::agree(self, root)?.unwrap_or_default();
        self.broadcast_vec(0, &mut v);
        Ok(v)
    }

    fn combine_r(
        &self,
        ctx: &Context,
        n: usize,
        local: Result<(usize, Vec<f32>)>,
    ) -> Result<(usize, Vec<f32>)> {
        let (rows, r) = Mpi::agree(self, local)?;
        self.tree_r(ctx, n, rows, r)
    }
}
