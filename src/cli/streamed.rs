//! `--stream` and `--memory-budget` of `pca`, `lowrank`, `lstsq` and `qr --r-only`: the
//! input read from disk in row blocks (`gpu_linalg::streamed`), chosen automatically (with a
//! note on stderr) when the input would not fit the adapter's largest buffer or the budget.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::npy::{write_npy_f32, NpyRowReader, NpyRowWriter};
use crate::streamed::{MemoryBudget, NpyRowBlocks, PcaStreamMethod, RowBlocks};
use crate::RandomizedSvdOptions;

/// `--stream` and `--memory-budget`.
#[derive(Args, Debug, Clone, Default)]
pub struct StreamArgs {
    /// Read the input from disk in row blocks (tall matrices past the adapter's largest
    /// buffer or the memory at hand); chosen automatically, with a note on stderr, when the
    /// input would not fit the adapter or the --memory-budget.
    #[arg(long)]
    pub stream: bool,
    /// Memory for the row blocks of a streamed pass, such as 512M or 2G (default 256M); an
    /// input larger than this is streamed.
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<String>,
}

impl StreamArgs {
    /// The `--memory-budget`, parsed.
    pub fn budget(&self) -> Result<Option<MemoryBudget>> {
        self.memory_budget
            .as_deref()
            .map(MemoryBudget::parse)
            .transpose()
    }
}

/// The budget to stream with, or `None` to read the inputs whole: `--stream`, or inputs (as
/// float32) larger than the `--memory-budget` or than the adapter's largest buffer.
pub fn stream_budget(
    ctx: &Context,
    op: &str,
    inputs: &[&Path],
    args: &StreamArgs,
) -> Result<Option<MemoryBudget>> {
    let budget = args.budget()?;
    if args.stream {
        return Ok(Some(budget.unwrap_or_default()));
    }
    let mut bytes = 0u64;
    for p in inputs {
        let r = NpyRowReader::open(p)?;
        bytes += (r.rows() * r.cols() * 4) as u64;
    }
    let buffer = ctx
        .wgpu()
        .map(|(device, _)| device.limits().max_buffer_size);
    let why = match (budget, buffer) {
        (Some(b), _) if bytes > b.bytes as u64 => {
            Some(format!("the --memory-budget of {} MiB", b.bytes >> 20))
        }
        (_, Some(max)) if bytes > max => {
            Some(format!("the adapter's largest buffer ({} MiB)", max >> 20))
        }
        _ => None,
    };
    Ok(why.map(|why| {
        eprintln!(
            "note: {op}: the input ({} MiB as float32) exceeds {why}; streaming it in row blocks (--stream)",
            bytes >> 20
        );
        budget.unwrap_or_default()
    }))
}

/// Refuses `--verify` on a streamed run: its checks need the whole matrix in memory.
fn no_verify(op: &str, verify: bool) -> Result<()> {
    if verify {
        return Err(Error::InvalidArgument(format!(
            "{op}: --verify needs the whole matrix in memory and is not available with --stream"
        )));
    }
    Ok(())
}

/// Writes a small tensor's values to `path` when one is named.
fn write_opt(path: &Option<PathBuf>, t: &crate::Tensor) -> Result<()> {
    if let Some(p) = path {
        write_npy_f32(p, t.shape(), &t.to_vec()?)?;
    }
    Ok(())
}

/// A second pass writing blockwise results (`rows × cols`) to `path` through a temporary
/// file renamed into place, so a failure leaves no output.
fn write_blocks(
    path: &Path,
    rows: usize,
    cols: usize,
    run: impl FnOnce(&mut dyn FnMut(&[f32]) -> Result<()>) -> Result<usize>,
) -> Result<()> {
    let mut writer = NpyRowWriter::create(path, rows, cols)?;
    run(&mut |block| writer.append_rows(block))?;
    writer.finish()
}

/// Outputs of a streamed `pca`, in the order of the command's flags.
pub struct PcaOutputs<'a> {
    pub components: &'a Option<PathBuf>,
    pub explained_variance: &'a Option<PathBuf>,
    pub explained_variance_ratio: &'a Option<PathBuf>,
    pub mean: &'a Option<PathBuf>,
    pub transformed: &'a Option<PathBuf>,
}

/// `pca --stream`: the fit in one pass, `--transformed` in a second.
pub fn pca(
    ctx: &Context,
    verify: bool,
    x: &Path,
    k: usize,
    budget: MemoryBudget,
    out: PcaOutputs,
) -> Result<()> {
    no_verify("pca", verify)?;
    let mut src = NpyRowBlocks::open(x, budget)?;
    let started = std::time::Instant::now();
    let fit = ctx.pca_stream(&mut src, k, PcaStreamMethod::Auto)?;
    eprintln!(
        "pca: {} samples streamed in blocks of {} rows, {} pass(es), {:.2} s",
        fit.rows,
        src.block_rows(),
        fit.passes,
        started.elapsed().as_secs_f64()
    );
    if let Some(p) = out.transformed {
        write_blocks(p, fit.rows, k, |sink| {
            ctx.pca_transform_stream(&mut src, &fit, sink)
        })?;
    }
    write_opt(out.components, &fit.components)?;
    write_opt(out.explained_variance, &fit.explained_variance)?;
    write_opt(out.explained_variance_ratio, &fit.explained_variance_ratio)?;
    write_opt(out.mean, &fit.mean)
}

/// Outputs of a streamed `lowrank`: the factors (the m×n approximation is not formed).
pub struct FactorOutputs<'a> {
    pub u: &'a Option<PathBuf>,
    pub s: &'a Option<PathBuf>,
    pub vt: &'a Option<PathBuf>,
}

/// `lowrank --stream`: the randomized SVD's factors U (a further pass), S and Vt.
pub fn lowrank(
    ctx: &Context,
    verify: bool,
    a: &Path,
    rank: usize,
    opts: RandomizedSvdOptions,
    budget: MemoryBudget,
    out: FactorOutputs,
) -> Result<()> {
    no_verify("lowrank", verify)?;
    if out.u.is_none() && out.s.is_none() && out.vt.is_none() {
        return Err(Error::InvalidArgument(
            "lowrank --stream writes the factors: name --u, --s or --vt (the m×n approximation of a streamed matrix is not formed)"
                .into(),
        ));
    }
    let mut src = NpyRowBlocks::open(a, budget)?;
    let svd = ctx.randomized_svd_stream(&mut src, rank, &opts)?;
    if let Some(p) = out.u {
        let r = svd.s.len();
        write_blocks(p, svd.rows, r, |sink| {
            ctx.svd_u_stream(&mut src, &svd, sink)
        })?;
    }
    write_opt(out.s, &svd.s)?;
    write_opt(out.vt, &svd.vt)?;
    println!(
        "rank-{rank} factors of a {}×{} matrix, {} passes in blocks of {} rows",
        svd.rows,
        src.cols(),
        svd.passes,
        src.block_rows()
    );
    Ok(())
}

/// `lstsq --stream`: one TSQR pass of `[A | B]`.
#[allow(clippy::too_many_arguments)]
pub fn lstsq(
    ctx: &Context,
    verify: bool,
    a: &Path,
    b: &Path,
    rcond: Option<f32>,
    budget: MemoryBudget,
    output: &Path,
    residuals: &Option<PathBuf>,
    s: &Option<PathBuf>,
) -> Result<()> {
    no_verify("lstsq", verify)?;
    let a_cols = NpyRowReader::open(a)?.cols();
    let b_is_1d = NpyRowReader::open(b)?.shape().len() == 1;
    let mut src = NpyRowBlocks::open_columns(&[a, b], budget)?;
    let fit = ctx.lstsq_stream(&mut src, a_cols, rcond)?;
    let x = if b_is_1d {
        fit.x.reshape(&[a_cols])?
    } else {
        fit.x.clone()
    };
    write_npy_f32(output, x.shape(), &x.to_vec()?)?;
    write_opt(residuals, &fit.residuals)?;
    write_opt(s, &fit.s)?;
    println!("rank {}", fit.rank);
    Ok(())
}

/// `qr --r-only --stream` (and `--q`, a second pass, Q = A·R⁻¹).
pub fn qr(
    ctx: &Context,
    verify: bool,
    a: &Path,
    budget: MemoryBudget,
    r_out: &Path,
    q_out: &Option<PathBuf>,
) -> Result<()> {
    no_verify("qr", verify)?;
    let mut src = NpyRowBlocks::open(a, budget)?;
    let t = ctx.tsqr_stream(&mut src)?;
    if let Some(p) = q_out {
        let n = src.cols();
        write_blocks(p, t.rows, n, |sink| ctx.tsqr_q_stream(&mut src, &t.r, sink))?;
    }
    write_npy_f32(r_out, t.r.shape(), &t.r.to_vec()?)?;
    eprintln!(
        "qr: R of a {}×{} matrix by TSQR over blocks of {} rows",
        t.rows,
        src.cols(),
        src.block_rows()
    );
    Ok(())
}
