//! Best rank-r approximation from the full SVD against the randomized SVD (Halko–Martinsson–
//! Tropp) on a matrix with a decaying spectrum: Frobenius errors and timings, on the GPU
//! (lavapipe counts) and the CPU backend.
//!
//! `cargo run --release --example low_rank [-- M N R]`

use std::time::Instant;

use gpu_linalg::{Backend, Context, RandomizedSvdOptions, Result};

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (m, n, r) = match args[..] {
        [m, n, r] => (m, n, r),
        _ => (512, 256, 10),
    };
    let cpu = Context::with_backend(Backend::Cpu)?;
    // A = G₁ · diag(1/(i+1)) · G₂ with Gaussian G: a smoothly decaying spectrum.
    let k = m.min(n);
    let d: Vec<f32> = (0..k).map(|i| 1.0 / (i + 1) as f32).collect();
    let g1 = cpu.mul(
        &cpu.rand_normal(&[m, k], 1, 0.0, 1.0)?,
        &cpu.tensor(&[k], &d)?,
    )?;
    let a = cpu
        .matmul(&g1, &cpu.rand_normal(&[k, n], 2, 0.0, 1.0)?)?
        .to_vec()?;
    let mut runs = vec![("cpu", cpu)];
    match Context::with_backend(Backend::Gpu) {
        Ok(g) => runs.push(("gpu", g)),
        Err(e) => eprintln!("no GPU adapter ({e}); CPU only"),
    }
    for (label, ctx) in &runs {
        let at = ctx.tensor(&[m, n], &a)?;
        let t = Instant::now();
        let best = ctx.low_rank(&at, r)?;
        let t_best = t.elapsed();
        let t = Instant::now();
        let opts = RandomizedSvdOptions::default();
        let rs = ctx.randomized_svd(&at, r, &opts)?;
        let us = ctx.mul(&rs.u, &rs.s)?;
        let approx = ctx.matmul(&us, &rs.vt)?;
        let t_rand = t.elapsed();
        let err: f64 = a
            .iter()
            .zip(approx.to_vec()?)
            .map(|(x, y)| (f64::from(*x) - f64::from(y)).powi(2))
            .sum::<f64>()
            .sqrt();
        println!(
            "{label}: {m}×{n} rank {r}: full SVD error {:.4e} in {t_best:.1?}; randomized \
             error {err:.4e} ({:.5}× the optimum) in {t_rand:.1?}",
            best.error,
            err / f64::from(best.error)
        );
    }
    Ok(())
}
