//! PCA of a synthetic data set with a few strong directions, on the GPU (lavapipe counts) and on
//! the CPU backend: explained-variance ratios, agreement of the components (up to sign), timings.
//!
//! `cargo run --release --example pca [-- SAMPLES FEATURES K]`

use std::time::Instant;

use gpu_linalg::{Backend, Context, Result};

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (m, p, k) = match args[..] {
        [m, p, k] => (m, p, k),
        _ => (2000, 64, 5),
    };
    let cpu = Context::with_backend(Backend::Cpu)?;
    // x = latent (m × 8) · loadings (8 × p) + noise: 8 strong directions, then noise.
    let latent = cpu.rand_normal(&[m, 8], 1, 0.0, 3.0)?;
    let loadings = cpu.rand_normal(&[8, p], 2, 0.0, 1.0)?;
    let noise = cpu.rand_normal(&[m, p], 3, 0.0, 0.1)?;
    let x = cpu
        .add(&cpu.matmul(&latent, &loadings)?, &noise)?
        .to_vec()?;
    let mut runs = vec![("cpu", cpu)];
    match Context::with_backend(Backend::Gpu) {
        Ok(g) => runs.push(("gpu", g)),
        Err(e) => eprintln!("no GPU adapter ({e}); CPU only"),
    }
    let mut comps = Vec::new();
    for (label, ctx) in &runs {
        let xt = ctx.tensor(&[m, p], &x)?;
        let t = Instant::now();
        let pca = ctx.pca(&xt, k)?;
        let ratio = pca.explained_variance_ratio.to_vec()?;
        println!(
            "{label} ({}): {m}×{p}, k={k} in {:.1?}; explained variance ratio {ratio:.4?} (sum {:.4})",
            ctx.description(),
            t.elapsed(),
            ratio.iter().sum::<f32>()
        );
        comps.push(pca.components.to_vec()?);
    }
    if let [a, b] = &comps[..] {
        let worst = (0..k)
            .map(|q| {
                let d: f32 = (0..p).map(|j| a[q * p + j] * b[q * p + j]).sum();
                1.0 - d.abs()
            })
            .fold(0.0f32, f32::max);
        println!("GPU and CPU components agree up to sign: max 1 − |cos| = {worst:.2e}");
    }
    Ok(())
}
