//! `gpu-linalg --mpi …` under `mpiexec`: `pca`, `qr --r-only` and `lstsq` across ranks
//! (`gpu_linalg::distributed`). Every rank reads its share and computes; rank 0 writes the
//! outputs (each through a temporary file and a rename); a failure on any rank makes every
//! rank fail with that rank's message, and no output is written.

use std::path::PathBuf;

use super::streamed::StreamArgs;
use super::{context, Cli, Command, GlobalOpts};
use crate::distributed::Mpi;
use crate::error::{Error, Result};
use crate::npy::write_npy_f32;
use crate::streamed::MemoryBudget;
use crate::Tensor;

/// The budget of a distributed run: `--memory-budget`, else the default (every input streams).
fn budget(args: &StreamArgs) -> Result<MemoryBudget> {
    Ok(args
        .memory_budget
        .as_deref()
        .map(MemoryBudget::parse)
        .transpose()?
        .unwrap_or_default())
}

/// Rank 0 writes the named outputs; the outcome is agreed on.
fn write_outputs(mpi: &Mpi, outputs: &[(&Option<PathBuf>, &Tensor)]) -> Result<()> {
    let written = if mpi.is_root() {
        outputs.iter().try_for_each(|(path, t)| match path {
            Some(p) => write_npy_f32(p, t.shape(), &t.to_vec()?),
            None => Ok(()),
        })
    } else {
        Ok(())
    };
    mpi.agree(written)
}

/// Runs the command on every rank of the MPI job.
pub fn run(cli: &Cli) -> Result<()> {
    let mpi = Mpi::init()?;
    let g: &GlobalOpts = &cli.global;
    if g.verify {
        return mpi.agree(Err(Error::InvalidArgument(
            "--mpi: --verify needs the whole matrix in one process".into(),
        )));
    }
    let ctx = mpi.agree(context(g))?;
    let started = std::time::Instant::now();
    match &cli.command {
        Command::Pca {
            x,
            components_count,
            components,
            explained_variance,
            explained_variance_ratio,
            mean,
            projected,
            stream,
        } => {
            if projected.is_some() {
                return mpi.agree(Err(Error::InvalidArgument(
                    "pca --mpi: --transformed (samples × K) is not gathered across ranks; run pca_transform_stream on each rank's rows".into(),
                )));
            }
            let fit = mpi.pca(&ctx, x, *components_count, budget(stream)?)?;
            write_outputs(
                &mpi,
                &[
                    (components, &fit.components),
                    (explained_variance, &fit.explained_variance),
                    (explained_variance_ratio, &fit.explained_variance_ratio),
                    (mean, &fit.mean),
                ],
            )?;
            if mpi.is_root() {
                eprintln!(
                    "pca: {} samples on {} ranks in {:.2} s",
                    fit.rows,
                    mpi.size(),
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Command::Qr {
            a,
            q,
            r,
            r_only,
            stream,
        } => {
            let (true, None, Some(_)) = (r_only, q, r) else {
                return mpi.agree(Err(Error::InvalidArgument(
                    "qr --mpi computes R only: use --r-only --r R.npy".into(),
                )));
            };
            let t = mpi.tsqr(&ctx, &[a], budget(stream)?)?;
            write_outputs(&mpi, &[(r, &t.r)])?;
            if mpi.is_root() {
                eprintln!(
                    "qr: R of {} rows on {} ranks in {:.2} s",
                    t.rows,
                    mpi.size(),
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Command::Lstsq(args) => {
            let fit = mpi.lstsq(&ctx, &args.a, &args.b, args.rcond, budget(&args.stream)?)?;
            let b_is_1d = crate::npy::NpyRowReader::open(&mpi.rank_path(&args.b))
                .map(|r| r.shape().len() == 1);
            let x = if mpi.agree(b_is_1d)? {
                fit.x.reshape(&[fit.x.shape()[0]])?
            } else {
                fit.x.clone()
            };
            write_outputs(
                &mpi,
                &[
                    (&Some(args.output.clone()), &x),
                    (&args.residuals, &fit.residuals),
                    (&args.s, &fit.s),
                ],
            )?;
            if mpi.is_root() {
                println!("rank {}", fit.rank);
            }
            Ok(())
        }
        _ => mpi.agree(Err(Error::InvalidArgument(
            "--mpi runs pca, qr --r-only and lstsq".into(),
        ))),
    }
}
