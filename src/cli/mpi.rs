//! `gpu-linalg --mpi …` under `mpiexec`: `pca`, `qr --r-only`, `lstsq` and `lowrank` across ranks
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
    Ok(args.budget()?.unwrap_or_default())
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

/// `bench --ops pca-stream` across the ranks: each rank writes its share of the rows of each
/// M×N bench matrix to a shard file of its own (in its temporary directory, removed after) and
/// the distributed PCA is timed over them (the slowest rank's time, median of the repeats);
/// rank 0 prints the rank count, the time and the GB/s of input consumed.
fn bench(mpi: &Mpi, ctx: &crate::Context, args: &super::bench::BenchArgs) -> Result<()> {
    if args.op_list() != ["pca-stream"] {
        return mpi.agree(Err(Error::InvalidArgument(
            "bench --mpi times --ops pca-stream only".into(),
        )));
    }
    let sizes = mpi.agree(args.pca_stream_sizes())?;
    let dir = std::env::temp_dir().join(format!("gpu-linalg-mpi-bench-{}", std::process::id()));
    if mpi.is_root() {
        println!("op          shape                    ranks  median ms      GB/s");
    }
    for (m, n) in sizes {
        let range = mpi.row_range(m);
        let shard = dir.join("shard-{rank}.npy");
        let written = (|| {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
            let mut w = crate::npy::NpyRowWriter::create(&mpi.rank_path(&shard), range.len(), n)?;
            let mut row = Vec::with_capacity(n);
            for i in range.clone() {
                row.clear();
                super::bench::pca_bench_row(i, n, &mut row);
                w.append_rows(&row)?;
            }
            w.finish()
        })();
        mpi.agree(written)?;
        let k = super::bench::PCA_BENCH_COMPONENTS.min(n);
        let mut times = Vec::new();
        for _ in 0..=args.repeats() {
            mpi.barrier();
            let t = std::time::Instant::now();
            mpi.pca(ctx, &shard, k, MemoryBudget::default())?;
            times.push(mpi.max_over_ranks(t.elapsed().as_secs_f64()));
        }
        let _ = std::fs::remove_file(mpi.rank_path(&shard));
        // The first run builds pipelines: the median of the others.
        let mut timed = times[1..].to_vec();
        timed.sort_by(f64::total_cmp);
        let median = timed[timed.len() / 2];
        if mpi.is_root() {
            println!(
                "{:<11} {:<24} {:>5} {:>10.3} {:>9.3}",
                "pca-stream",
                format!("{m}x{n}"),
                mpi.size(),
                median * 1e3,
                (m * n * 4) as f64 / median / 1e9
            );
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// Runs the command on every rank of the MPI job. A failing rank writes its error line before
/// MPI finalizes (a collective step) and then exits: mpiexec aborts the job when the first
/// rank exits non-zero, which would otherwise cut off ranks that had yet to write theirs.
pub fn run(cli: &Cli) -> Result<()> {
    let mpi = Mpi::init()?;
    let result = run_on_ranks(&mpi, cli);
    if let Err(e) = &result {
        super::report_error(e);
        drop(mpi);
        std::process::exit(1);
    }
    result
}

/// The command on this rank (see [`run`]).
fn run_on_ranks(mpi: &Mpi, cli: &Cli) -> Result<()> {
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
                mpi,
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
            write_outputs(mpi, &[(r, &t.r)])?;
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
                mpi,
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
        Command::Lowrank {
            a,
            rank,
            output,
            u,
            s,
            vt,
            oversample,
            power_iters,
            seed,
            stream,
            ..
        } => {
            if output.is_some() || u.is_some() {
                return mpi.agree(Err(Error::InvalidArgument(
                    "lowrank --mpi writes --s and --vt (the m×n approximation and U stay on the ranks' rows)".into(),
                )));
            }
            let opts = crate::RandomizedSvdOptions {
                oversampling: *oversample,
                power_iterations: *power_iters,
                seed: *seed,
            };
            let svd = mpi.randomized_svd(&ctx, a, *rank, &opts, budget(stream)?)?;
            write_outputs(mpi, &[(s, &svd.s), (vt, &svd.vt)])?;
            if mpi.is_root() {
                println!(
                    "rank-{rank} factors of a {}-row matrix on {} ranks, {} passes",
                    svd.rows,
                    mpi.size(),
                    svd.passes
                );
            }
            Ok(())
        }
        Command::Bench(args) => bench(mpi, &ctx, args),
        _ => mpi.agree(Err(Error::InvalidArgument(
            "--mpi runs pca, qr --r-only, lstsq, lowrank (--s, --vt) and bench --ops pca-stream"
                .into(),
        ))),
    }
}
