//! The solver commands: `solve`, `inv`, `det`, `slogdet`, `lstsq`, `pinv`, `lu`. Each computes (and,
//! under `--verify`, judges by LAPACK's ratios) everything before it writes any file, so an
//! error leaves no output.

use std::path::PathBuf;

use clap::Args;

use super::{context, load, GlobalOpts};
use crate::error::{Error, Result};
use crate::npy::{write_npy_f32, write_npy_i64};
use crate::solve::cpu::{inv_ratio, lu_ratio, solve_ratio};
use crate::{AssumeA, SolveOptions, Tensor};

/// LAPACK's threshold for the driver-test ratios.
const RATIO_BOUND: f64 = 30.0;

/// Arguments of `solve`.
#[derive(Args, Debug)]
pub struct SolveArgs {
    /// The n×n matrix, or a batch [..., n, n] (.npy).
    a: PathBuf,
    /// The right-hand sides: [n] or [..., n, k] (.npy); batch dims broadcast as numpy does.
    b: PathBuf,
    /// Output for X (.npy, [..., n] or [..., n, k]).
    #[arg(short, long)]
    output: PathBuf,
    /// gen (LU with partial pivoting) or pos (Cholesky; A symmetric positive definite).
    #[arg(long, default_value = "gen")]
    assume: String,
}

/// Arguments of `inv`.
#[derive(Args, Debug)]
pub struct InvArgs {
    /// The n×n matrix, or a batch [..., n, n] (.npy).
    a: PathBuf,
    /// Output for A⁻¹ (.npy, the shape of A).
    #[arg(short, long)]
    output: PathBuf,
}

/// Arguments of `det`.
#[derive(Args, Debug)]
pub struct DetArgs {
    /// The n×n matrix, or a batch [..., n, n] (.npy).
    a: PathBuf,
    /// Also write the determinants (.npy, shape [...]; 0-d for one matrix).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Arguments of `slogdet`.
#[derive(Args, Debug)]
pub struct SlogdetArgs {
    /// The n×n matrix, or a batch [..., n, n] (.npy).
    a: PathBuf,
    /// Also write the signs (.npy, shape [...]).
    #[arg(long)]
    sign: Option<PathBuf>,
    /// Also write log|det| (.npy, shape [...]).
    #[arg(long)]
    logabsdet: Option<PathBuf>,
}

/// Arguments of `lstsq`.
#[derive(Args, Debug)]
pub struct LstsqArgs {
    /// The m×n matrix (.npy).
    pub(super) a: PathBuf,
    /// The right-hand sides: [m] or [m, k] (.npy).
    pub(super) b: PathBuf,
    /// Output for the minimum-norm least-squares solution X (.npy, [n] or [n, k]).
    #[arg(short, long)]
    pub(super) output: PathBuf,
    /// Singular values at most rcond·σ_max count as zero (default max(m, n)·ε, ε = 2⁻²³).
    #[arg(long, allow_hyphen_values = true)]
    pub(super) rcond: Option<f32>,
    /// Also write the residuals (.npy: squared norms of the columns of B − A·X, [k]; empty
    /// unless rank = n < m, as numpy).
    #[arg(long)]
    pub(super) residuals: Option<PathBuf>,
    /// Also write A's singular values (.npy, min(m, n), descending).
    #[arg(long)]
    pub(super) s: Option<PathBuf>,
    /// Streamed: one TSQR pass over the rows of [A | B].
    #[command(flatten)]
    pub(super) stream: super::streamed::StreamArgs,
}

/// Arguments of `pinv`.
#[derive(Args, Debug)]
pub struct PinvArgs {
    /// The m×n matrix, or a batch [..., m, n] (.npy).
    a: PathBuf,
    /// Output for the pseudo-inverse (.npy, [..., n, m]).
    #[arg(short, long)]
    output: PathBuf,
    /// Singular values at most rtol·σ_max count as zero (default max(m, n)·ε, ε = 2⁻²³).
    #[arg(long)]
    rtol: Option<f32>,
}

/// Arguments of `lu`.
#[derive(Args, Debug)]
pub struct LuArgs {
    /// The m×n matrix, or a batch [..., m, n] (.npy).
    a: PathBuf,
    /// Output for the permutation matrix P (.npy, A = P·L·U).
    #[arg(long)]
    p: Option<PathBuf>,
    /// Output for the unit lower factor L (.npy, m×k with k = min(m, n)).
    #[arg(long)]
    l: Option<PathBuf>,
    /// Output for the upper factor U (.npy, k×n).
    #[arg(long)]
    u: Option<PathBuf>,
    /// Output for scipy's p_indices, A = L[perm]·U (.npy, int64, [..., m]).
    #[arg(long)]
    perm: Option<PathBuf>,
}

/// The order n of a loaded [..., n, n] (or [..., m, n]) operand, 0 below 2 dims.
fn order(t: &Tensor) -> usize {
    t.shape().last().copied().unwrap_or(0)
}

/// Fails with `op`'s message if the worst of `ratios` reaches `bound` (or is NaN); else notes
/// it on stderr.
fn judge(op: &str, what: &str, ratios: &[f64], bound: f64, ctx: &crate::Context) -> Result<()> {
    let worst = ratios.iter().fold(0.0f64, |w, &r| w.max(r));
    if ratios.iter().any(|r| r.is_nan()) || worst >= bound {
        return Err(Error::Verification(format!(
            "{op}: LAPACK ratio {what} = {worst} reaches {bound}"
        )));
    }
    eprintln!(
        "verified: LAPACK ratio {worst:.2} below {bound} ({})",
        ctx.description()
    );
    Ok(())
}

/// The flat index into a batch of shape `own` of the matrix at flat index `z` of the
/// broadcast batch `out` (numpy's broadcasting: size-1 and missing dims repeat).
fn broadcast_source(out: &[usize], own: &[usize], z: usize) -> usize {
    let mut rem = z;
    let mut idx = 0;
    let mut stride = 1;
    for (d, &od) in out.iter().enumerate().rev() {
        let i = rem % od.max(1);
        rem /= od.max(1);
        let from_end = out.len() - 1 - d;
        if from_end < own.len() {
            let dim = own[own.len() - 1 - from_end];
            if dim != 1 {
                idx += i * stride;
            }
            stride *= dim;
        }
    }
    idx
}

/// `solve`.
pub fn solve(g: &GlobalOpts, a: &SolveArgs) -> Result<()> {
    let assume_a: AssumeA = a.assume.parse()?;
    let ctx = context(g)?;
    let (ha, hb) = (load(&a.a)?, load(&a.b)?);
    let x = ctx.solve_with(&ha, &hb, &SolveOptions { assume_a })?;
    let xv = x.to_vec()?;
    if g.verify {
        let plan = crate::SystemPlan::new("solve", &ha, &hb)?;
        let (n, k) = (plan.a.n, plan.k);
        let (av, bv) = (ha.to_vec()?, hb.to_vec()?);
        let sym: Vec<f32>;
        let av = if assume_a == AssumeA::Positive {
            // The matrix solved is the lower triangle mirrored.
            sym = (0..av.len())
                .map(|idx| {
                    let (z, i, j) = (idx / (n * n), (idx / n) % n, idx % n);
                    av[z * n * n + i.max(j) * n + i.min(j)]
                })
                .collect();
            &sym
        } else {
            &av
        };
        let ratios: Vec<f64> = (0..plan.a.batch)
            .map(|z| {
                let za = broadcast_source(&plan.a.batch_shape, &plan.a_batch_shape, z);
                let zb = broadcast_source(&plan.a.batch_shape, &plan.b_batch_shape, z);
                solve_ratio(
                    &av[za * n * n..(za + 1) * n * n],
                    n,
                    k,
                    &bv[zb * n * k..(zb + 1) * n * k],
                    &xv[z * n * k..(z + 1) * n * k],
                )
            })
            .collect();
        judge(
            "solve",
            "‖B − A·X‖/(‖A‖·‖X‖·n·ε)",
            &ratios,
            RATIO_BOUND,
            &ctx,
        )?;
    }
    write_npy_f32(&a.output, x.shape(), &xv)
}

/// `inv`.
pub fn inv(g: &GlobalOpts, a: &InvArgs) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(&a.a)?;
    let x = ctx.inv(&ha)?;
    let xv = x.to_vec()?;
    if g.verify {
        let n = order(&ha);
        let av = ha.to_vec()?;
        let ratios: Vec<f64> = (0..av.len().checked_div(n * n).unwrap_or(0))
            .map(|z| {
                let m = z * n * n..(z + 1) * n * n;
                inv_ratio(&av[m.clone()], n, &xv[m])
            })
            .collect();
        judge(
            "inv",
            "‖I − A·A⁻¹‖/(n·‖A‖·‖A⁻¹‖·ε)",
            &ratios,
            RATIO_BOUND,
            &ctx,
        )?;
    }
    write_npy_f32(&a.output, x.shape(), &xv)
}

/// `--verify` of `det` and `slogdet`: the LU factors they come from are judged by LAPACK's
/// ratio, and (sign, log|det|) recomputed from those factors in f64 must match.
fn verify_slogdet(ctx: &crate::Context, ha: &Tensor, sign: &[f32], logabs: &[f32]) -> Result<()> {
    let n = order(ha);
    let f = ctx.lu(ha)?;
    let (av, p, l, u) = (ha.to_vec()?, f.p.to_vec()?, f.l.to_vec()?, f.u.to_vec()?);
    let perm = f.perm.to_vec_u32()?;
    let mut ratios = Vec::new();
    for z in 0..sign.len() {
        let m = z * n * n..(z + 1) * n * n;
        ratios.push(lu_ratio(
            &av[m.clone()],
            n,
            &p[m.clone()],
            &l[m.clone()],
            &u[m],
        ));
        let (s, la) = crate::solve::cpu::slogdet_of_factors(
            &u[z * n * n..(z + 1) * n * n],
            &perm[z * n..(z + 1) * n],
            n,
        );
        let close = if s == 0.0 {
            sign[z] == 0.0
        } else {
            sign[z] as f64 == s
                && (f64::from(logabs[z]) - la).abs() <= 1e-5 * la.abs().max(1.0) + 1e-6 * n as f64
        };
        if !close {
            return Err(Error::Verification(format!(
                "slogdet of matrix {z}: ({}, {}) but its LU factors give ({s}, {la}) in f64",
                sign[z], logabs[z]
            )));
        }
    }
    judge(
        "slogdet",
        "‖A − P·L·U‖/(n·‖A‖·ε)",
        &ratios,
        RATIO_BOUND,
        ctx,
    )
}

/// Prints one value per matrix of a batch (one line for one matrix).
fn print_values(label: &str, values: &[String]) {
    if values.len() == 1 {
        println!("{label}{}", values[0]);
    } else {
        for (z, v) in values.iter().enumerate() {
            println!("{label}[{z}] {v}");
        }
    }
}

/// `det`: prints the determinant(s).
pub fn det(g: &GlobalOpts, a: &DetArgs) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(&a.a)?;
    let d = ctx.det(&ha)?;
    let dv = d.to_vec()?;
    if g.verify {
        // det is sign·exp(log|det|) of the same factorisation: judge those.
        let s = ctx.slogdet(&ha)?;
        verify_slogdet(&ctx, &ha, &s.sign.to_vec()?, &s.logabsdet.to_vec()?)?;
    }
    if let Some(p) = &a.output {
        write_npy_f32(p, d.shape(), &dv)?;
    }
    print_values("", &dv.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>());
    Ok(())
}

/// `slogdet`: prints sign and log|det|.
pub fn slogdet(g: &GlobalOpts, a: &SlogdetArgs) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(&a.a)?;
    let s = ctx.slogdet(&ha)?;
    let (sign, logabs) = (s.sign.to_vec()?, s.logabsdet.to_vec()?);
    if g.verify {
        verify_slogdet(&ctx, &ha, &sign, &logabs)?;
    }
    for (path, values) in [(&a.sign, &sign), (&a.logabsdet, &logabs)] {
        if let Some(p) = path {
            write_npy_f32(p, s.sign.shape(), values)?;
        }
    }
    let lines: Vec<String> = sign
        .iter()
        .zip(&logabs)
        .map(|(s, l)| format!("sign {s} logabsdet {l}"))
        .collect();
    print_values("", &lines);
    Ok(())
}

/// `lstsq`: prints the rank.
pub fn lstsq(g: &GlobalOpts, a: &LstsqArgs) -> Result<()> {
    let ctx = context(g)?;
    if let Some(budget) = super::streamed::stream_budget(&ctx, "lstsq", &[&a.a, &a.b], &a.stream)? {
        return super::streamed::lstsq(
            &ctx,
            g.verify,
            &a.a,
            &a.b,
            a.rcond,
            budget,
            &a.output,
            &a.residuals,
            &a.s,
        );
    }
    let (ha, hb) = (load(&a.a)?, load(&a.b)?);
    let r = ctx.lstsq(&ha, &hb, a.rcond)?;
    let (x, res, s) = (r.x.to_vec()?, r.residuals.to_vec()?, r.s.to_vec()?);
    if g.verify {
        let (m, n) = (ha.shape()[0], ha.shape()[1]);
        let k = if hb.ndim() == 1 { 1 } else { hb.shape()[1] };
        let (av, bv) = (ha.to_vec()?, hb.to_vec()?);
        // ddrvls: the residual is orthogonal to range(A) where m > rank (dqrt17, with
        // α = ‖B‖ + ‖A‖·‖X‖ so that ill-conditioned A is judged by its backward error), and
        // B − A·X vanishes where rank = m (dqrt16).
        let ratio = if m > r.rank {
            crate::norms::cpu::lstsq_backward_orthogonality_ratio(&av, &bv, &x, m, n, k)
        } else {
            crate::norms::cpu::lstsq_residual_ratio(&av, &bv, &x, m, n, k)
        };
        judge("lstsq", "(ddrvls)", &[ratio], RATIO_BOUND, &ctx)?;
    }
    write_npy_f32(&a.output, r.x.shape(), &x)?;
    if let Some(p) = &a.residuals {
        write_npy_f32(p, r.residuals.shape(), &res)?;
    }
    if let Some(p) = &a.s {
        write_npy_f32(p, r.s.shape(), &s)?;
    }
    println!("rank {}", r.rank);
    Ok(())
}

/// `pinv`.
pub fn pinv(g: &GlobalOpts, a: &PinvArgs) -> Result<()> {
    let ctx = context(g)?;
    let ha = load(&a.a)?;
    let x = ctx.pinv(&ha, a.rtol)?;
    let xv = x.to_vec()?;
    if g.verify {
        let shape = ha.shape();
        let (m, n) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let av = ha.to_vec()?;
        let d = m.max(n);
        let eps = f64::from(crate::NORMS_EPS);
        // Dropping σ ≤ rtol·σ_max perturbs A·X·A by up to rtol relative: allow for it.
        let rtol = a.rtol.map_or(d as f64 * eps, f64::from);
        let bound = RATIO_BOUND * (rtol / (d as f64 * eps)).max(1.0);
        let ratios: Vec<f64> = (0..av.len().checked_div(m * n).unwrap_or(0))
            .flat_map(|z| {
                let r = z * m * n..(z + 1) * m * n;
                crate::norms::cpu::pinv_ratios(&av[r.clone()], m, n, &xv[r])
            })
            .collect();
        judge("pinv", "of the Penrose conditions", &ratios, bound, &ctx)?;
    }
    write_npy_f32(&a.output, x.shape(), &xv)
}

/// `lu`.
pub fn lu(g: &GlobalOpts, a: &LuArgs) -> Result<()> {
    if [&a.p, &a.l, &a.u, &a.perm].iter().all(|o| o.is_none()) {
        return Err(Error::InvalidArgument(
            "lu: name at least one output with --p, --l, --u or --perm".into(),
        ));
    }
    let ctx = context(g)?;
    let ha = load(&a.a)?;
    let f = ctx.lu(&ha)?;
    let (p, l, u) = (f.p.to_vec()?, f.l.to_vec()?, f.u.to_vec()?);
    let perm: Vec<i64> = f.perm.to_vec_u32()?.into_iter().map(i64::from).collect();
    if g.verify {
        let shape = ha.shape();
        let (m, n) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let k = m.min(n);
        let av = ha.to_vec()?;
        let ratios: Vec<f64> = (0..av.len().checked_div(m * n).unwrap_or(0))
            .map(|z| {
                crate::solve::cpu::lu_ratio_rectangular(
                    &av[z * m * n..(z + 1) * m * n],
                    m,
                    n,
                    &p[z * m * m..(z + 1) * m * m],
                    &l[z * m * k..(z + 1) * m * k],
                    &u[z * k * n..(z + 1) * k * n],
                )
            })
            .collect();
        judge("lu", "‖A − P·L·U‖/(n·‖A‖·ε)", &ratios, RATIO_BOUND, &ctx)?;
    }
    for (path, t, values) in [(&a.p, &f.p, &p), (&a.l, &f.l, &l), (&a.u, &f.u, &u)] {
        if let Some(path) = path {
            write_npy_f32(path, t.shape(), values)?;
        }
    }
    if let Some(path) = &a.perm {
        write_npy_i64(path, f.perm.shape(), &perm)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_sources_follow_numpy() {
        // out [2, 3]: own [3] repeats over the first dim, own [2, 1] over the second.
        assert_eq!(broadcast_source(&[2, 3], &[3], 4), 1);
        assert_eq!(broadcast_source(&[2, 3], &[2, 1], 4), 1);
        assert_eq!(broadcast_source(&[2, 3], &[], 5), 0);
        assert_eq!(broadcast_source(&[2, 3], &[2, 3], 5), 5);
    }
}
