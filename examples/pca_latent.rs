//! Latent interpolation between two handwritten digits (UCI optdigits, `examples/data/`):
//! `ctx.pca` projects the 8×8 images (pixels scaled to [0, 1]) to a k-dimensional latent
//! space (k = 16 by default); the latent codes of two samples of different classes are
//! interpolated by `ctx.lerp` and by `ctx.slerp` at t = 0, 1/7, …, 1 and mapped back to pixel
//! space (z·components + mean). Writes `DIR/pca_latent.png`: 2 rows (lerp, slerp) × 8 columns
//! of digits, each scaled up, dark ink on white.
//!
//! Runs on the chosen backend and on the CPU backend, printing both times and the explained
//! variance ratio of the k components, and checks that the t = 0 and t = 1 reconstructions
//! equal the PCA reconstructions (transform, then inverse transform) of the two samples;
//! exits non-zero otherwise.
//!
//! ```sh
//! cargo run --release --example pca_latent -- [--backend gpu|cpu|auto] [--k K] [--a I] [--b J] [--scale S] [--small] [--out DIR]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Instant;

use gpu_linalg::{Context, Tensor};

const USAGE: &str = "usage: pca_latent [--backend gpu|cpu|auto] [--k K] [--a I] [--b J] [--scale S] [--small] [--out DIR]
  --backend  where to run first (default auto); the CPU backend always runs too
  --k K      latent dimensions (default 16)
  --a I      first sample (default 0, a 0)
  --b J      second sample (default: the first sample whose class is not sample I's)
  --scale S  pixels per image pixel in the PNG (default 8)
  --small    the CI size: the PCA of the first 600 samples only
  --out DIR  where the PNG goes (default target/examples-out)";

/// Interpolation steps: t = 0, 1/7, …, 1.
const STEPS: usize = 8;
/// |reconstruction at t = 0 or 1 − PCA reconstruction| allowed, in pixel units of [0, 1].
const TOL: f32 = 1e-4;

struct Run {
    /// The images, lerp row then slerp row, `2·STEPS` × 64.
    images: Vec<Vec<f32>>,
    ratio: Vec<f32>,
    /// Largest |difference| of the end points from the PCA reconstructions.
    end_error: f32,
    seconds: f64,
}

fn row(ctx: &Context, v: &[f32], k: usize, i: usize) -> gpu_linalg::Result<Tensor> {
    ctx.tensor(&[1, k], &v[i * k..(i + 1) * k])
}

fn latent(
    ctx: &Context,
    x: &[f32],
    n: usize,
    k: usize,
    a: usize,
    b: usize,
) -> gpu_linalg::Result<Run> {
    let f = common::FEATURES;
    let start = Instant::now();
    let xt = ctx.tensor(&[n, f], x)?;
    let pca = ctx.pca(&xt, k)?;
    let ratio = pca.explained_variance_ratio.to_vec()?;
    let projected = pca.projected.to_vec()?;
    let (za, zb) = (row(ctx, &projected, k, a)?, row(ctx, &projected, k, b)?);
    // Back to pixel space: z·components + mean.
    let decode = |z: &Tensor| -> gpu_linalg::Result<Vec<f32>> {
        ctx.add(&ctx.matmul(z, &pca.components)?, &pca.mean)?
            .to_vec()
    };
    let mut images = Vec::with_capacity(2 * STEPS);
    for slerp in [false, true] {
        for s in 0..STEPS {
            let t = s as f32 / (STEPS - 1) as f32;
            let z = if slerp {
                ctx.slerp(&za, &zb, t)?
            } else {
                ctx.lerp(&za, &zb, t)?
            };
            images.push(decode(&z)?);
        }
    }
    // The PCA reconstruction of each sample, computed afresh on the host in f64 from the
    // components and the mean: (x − mean)·Cᵀ·C + mean.
    let (comps, mean) = (pca.components.to_vec()?, pca.mean.to_vec()?);
    let mut end_error = 0.0f32;
    for (idx, col) in [(a, 0), (b, STEPS - 1)] {
        let centred: Vec<f64> = (0..f)
            .map(|p| f64::from(x[idx * f + p]) - f64::from(mean[p]))
            .collect();
        let z: Vec<f64> = (0..k)
            .map(|j| {
                (0..f)
                    .map(|p| centred[p] * f64::from(comps[j * f + p]))
                    .sum()
            })
            .collect();
        let recon: Vec<f64> = (0..f)
            .map(|p| {
                f64::from(mean[p])
                    + (0..k)
                        .map(|j| z[j] * f64::from(comps[j * f + p]))
                        .sum::<f64>()
            })
            .collect();
        for img in [&images[col], &images[STEPS + col]] {
            for (p, q) in img.iter().zip(&recon) {
                end_error = end_error.max((f64::from(*p) - q).abs() as f32);
            }
        }
    }
    Ok(Run {
        images,
        ratio,
        end_error,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes the 2 × STEPS grid of 8×8 images, each pixel `scale`² output pixels, with a gap.
fn write_png(path: &std::path::Path, images: &[Vec<f32>], scale: u32) -> Result<(), String> {
    let (gap, side) = (scale, 8 * scale);
    let cols = STEPS as u32;
    let (w, h) = (cols * side + (cols + 1) * gap, 2 * side + 3 * gap);
    let mut img = image::GrayImage::from_pixel(w, h, image::Luma([255]));
    for (i, pixels) in images.iter().enumerate() {
        let (r, c) = ((i / STEPS) as u32, (i % STEPS) as u32);
        let (x0, y0) = (gap + c * (side + gap), gap + r * (side + gap));
        for (p, &v) in pixels.iter().enumerate() {
            let ink = 255 - (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            let (py, px) = ((p / 8) as u32, (p % 8) as u32);
            for dy in 0..scale {
                for dx in 0..scale {
                    img.put_pixel(
                        x0 + px * scale + dx,
                        y0 + py * scale + dy,
                        image::Luma([ink]),
                    );
                }
            }
        }
    }
    img.save(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn run() -> Result<bool, String> {
    let Some(args) = common::parse_args(USAGE, &["k", "a", "b", "scale"])? else {
        return Ok(true);
    };
    let data = common::load()?;
    let n = if args.small { 600 } else { common::SAMPLES };
    let k = args.get("k").unwrap_or(16);
    if k == 0 || k > common::FEATURES {
        return Err(format!("--k {k}: expected 1..={}", common::FEATURES));
    }
    let a = args.get("a").unwrap_or(0);
    if a >= n {
        return Err(format!("--a {a}: expected a sample index below {n}"));
    }
    let b = match args.get("b") {
        Some(b) if b >= n => return Err(format!("--b {b}: expected a sample index below {n}")),
        Some(b) if data.labels[b] == data.labels[a] => {
            return Err(format!(
                "--b {b}: sample {b} is a {} like sample {a}; pick one of another class",
                data.labels[b]
            ))
        }
        Some(b) => b,
        None => (0..n)
            .find(|&i| data.labels[i] != data.labels[a])
            .ok_or("no sample of another class")?,
    };
    let scale = args.get("scale").unwrap_or(8);
    if !(1..=64).contains(&scale) {
        return Err(format!("--scale {scale}: expected 1..=64"));
    }
    let x = &data.x[..n * common::FEATURES];

    let contexts = common::contexts(args.backend)?;
    println!(
        "PCA of {n} digits (64 pixels) to k = {k}; interpolating sample {a} (a {}) to sample {b} (a {})",
        data.labels[a], data.labels[b]
    );
    let mut ok = true;
    let mut runs = Vec::new();
    for ctx in &contexts {
        let label = if ctx.is_gpu() { "GPU" } else { "CPU" };
        let r = latent(ctx, x, n, k, a, b).map_err(|e| format!("{label}: {e}"))?;
        println!(
            "{label} ({}): {:.3} s; explained variance ratio {:.4?} (sum {:.4})",
            ctx.description(),
            r.seconds,
            r.ratio,
            r.ratio.iter().sum::<f32>()
        );
        let good = r.end_error <= TOL;
        println!(
            "{label}: t = 0 and t = 1 (lerp and slerp) vs the PCA reconstructions: max |difference| {:.2e} ({} {TOL:.0e})",
            r.end_error,
            if good { "within" } else { "OUTSIDE" }
        );
        ok &= good;
        runs.push((label, r));
    }
    println!("times:");
    for (label, r) in &runs {
        println!("  {label}: {:.3} s", r.seconds);
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let path = args.out.join("pca_latent.png");
    write_png(&path, &runs[0].1.images, scale as u32)?;
    println!(
        "grid (row 1 lerp, row 2 slerp; t = 0, 1/7, …, 1): {}",
        path.display()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    common::exit_code("pca_latent", run())
}
