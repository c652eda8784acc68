//! SVD compression of a photograph (scikit-image's CC0 "camera", 512 × 512 grey,
//! `examples/data/`): the best rank-r approximation `U_r·diag(S_r)·V_rᵀ` from the exact SVD
//! (`ctx.svd`) and from the randomized SVD (`ctx.randomized_svd`, Halko–Martinsson–Tropp), at
//! ranks 5, 10, 20, 50, 100 and 200.
//!
//! For each rank it prints the Frobenius error ‖A − A_r‖_F and the PSNR of both, beside the
//! Eckart–Young optimum √(Σ_{i>r} σᵢ²) from an f64 SVD of the photograph (faer, on the host).
//! It draws error and PSNR against rank to `DIR/svd_compress.svg`, writes the photograph and
//! every reconstruction as PNGs (`DIR/svd_compress_exact_r{R}.png`,
//! `DIR/svd_compress_randomized_r{R}.png`), and runs on the chosen backend and on the CPU
//! backend, printing both times. Exits non-zero unless, on every backend and at every rank,
//! the exact error equals the optimum within 0.1% and the randomized error is within 1.05× of
//! it.
//!
//! ```sh
//! cargo run --release --example svd_compress -- [--backend gpu|cpu|auto] [--power-iterations Q] [--small] [--out DIR]
//! ```

#[path = "common/mod.rs"]
mod common;
#[path = "common/photo.rs"]
mod photo;
#[path = "common/plot.rs"]
mod plot;

use std::process::ExitCode;
use std::time::Instant;

use gpu_linalg::{Context, RandomizedSvdOptions, Tensor};

const USAGE: &str =
    "usage: svd_compress [--backend gpu|cpu|auto] [--power-iterations Q] [--small] [--out DIR]
  --backend             where to run first (default auto); the CPU backend always runs too
  --power-iterations Q  the randomized SVD's power iterations (default 4, scikit-learn's
                        randomized_svd choice for ranks of 10% of the size or more)
  --small               the CI size: the photograph averaged down to 128 × 128
  --out DIR             where the SVG and PNGs go (default target/examples-out)";

/// The ranks compressed to (those up to the smaller side of the image).
const RANKS: [usize; 6] = [5, 10, 20, 50, 100, 200];
/// |exact error / optimum − 1| allowed.
const EXACT_TOL: f64 = 1e-3;
/// randomized error / optimum allowed.
const RANDOMIZED_MAX: f64 = 1.05;
/// The randomized SVD's extra sketch columns (scikit-learn's `n_oversamples`).
const OVERSAMPLING: usize = 10;

/// One rank-r reconstruction, measured on the host in f64.
struct Reconstruction {
    pixels: Vec<f32>,
    /// ‖A − A_r‖_F.
    error: f64,
    /// 10·log10(1 / mean squared error), pixels in [0, 1].
    psnr: f64,
}

/// Both methods at every rank on one backend.
struct Run {
    exact: Vec<Reconstruction>,
    randomized: Vec<Reconstruction>,
    exact_seconds: f64,
    randomized_seconds: f64,
}

/// ‖A − B‖_F and the PSNR of B, in f64.
fn measure(a: &[f32], pixels: Vec<f32>) -> Reconstruction {
    let sq: f64 = a
        .iter()
        .zip(&pixels)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = sq / a.len() as f64;
    Reconstruction {
        pixels,
        error: sq.sqrt(),
        psnr: 10.0 * (1.0 / mse).log10(),
    }
}

/// `U[:, :r] · diag(S[:r]) · Vᵀ[:r, :]`, on the context's device.
fn truncate(
    ctx: &Context,
    u: &Tensor,
    s: &Tensor,
    vt: &Tensor,
    r: usize,
) -> gpu_linalg::Result<Tensor> {
    let us = ctx.mul(&ctx.slice_axis(u, 1, 0, r)?, &ctx.slice_axis(s, 0, 0, r)?)?;
    ctx.matmul(&us, &ctx.slice_axis(vt, 0, 0, r)?)
}

fn compress(
    ctx: &Context,
    img: &photo::Photo,
    ranks: &[usize],
    power_iterations: usize,
) -> gpu_linalg::Result<Run> {
    let a = ctx.tensor(&[img.height, img.width], &img.pixels)?;
    let start = Instant::now();
    let svd = ctx.svd(&a)?;
    let mut exact = Vec::with_capacity(ranks.len());
    for &r in ranks {
        let approx = truncate(ctx, &svd.u, &svd.s, &svd.vt, r)?.to_vec()?;
        exact.push(measure(&img.pixels, approx));
    }
    let exact_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut randomized = Vec::with_capacity(ranks.len());
    for &r in ranks {
        let opts = RandomizedSvdOptions {
            oversampling: OVERSAMPLING,
            power_iterations,
            seed: 0,
        };
        let rs = ctx.randomized_svd(&a, r, &opts)?;
        let approx = truncate(ctx, &rs.u, &rs.s, &rs.vt, r)?.to_vec()?;
        randomized.push(measure(&img.pixels, approx));
    }
    Ok(Run {
        exact,
        randomized,
        exact_seconds,
        randomized_seconds: start.elapsed().as_secs_f64(),
    })
}

/// The Eckart–Young optimum √(Σ_{i>r} σᵢ²) at each rank, from an f64 SVD on the host.
fn optimum(img: &photo::Photo, ranks: &[usize]) -> Result<Vec<f64>, String> {
    let (m, n) = (img.height, img.width);
    let mat = faer::Mat::<f64>::from_fn(m, n, |i, j| f64::from(img.pixels[i * n + j]));
    let mut s = mat
        .singular_values()
        .map_err(|e| format!("f64 SVD of the photograph: {e:?}"))?;
    s.sort_by(|x, y| y.total_cmp(x));
    Ok(ranks
        .iter()
        .map(|&r| {
            s[r.min(s.len())..]
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
        })
        .collect())
}

/// Error and PSNR against rank: the optimum, then each method of the first run.
fn plot(
    path: &std::path::Path,
    ranks: &[usize],
    best: &[f64],
    label: &str,
    run: &Run,
) -> Result<(), String> {
    let curve = |name: String, ys: Vec<f64>| plot::Series {
        name,
        points: ranks.iter().map(|&r| r as f64).zip(ys).collect(),
    };
    let errors = [
        curve("Eckart–Young optimum (f64)".into(), best.to_vec()),
        curve(
            format!("exact SVD ({label})"),
            run.exact.iter().map(|x| x.error).collect(),
        ),
        curve(
            format!("randomized SVD ({label})"),
            run.randomized.iter().map(|x| x.error).collect(),
        ),
    ];
    let psnr = [
        curve(
            format!("exact SVD ({label})"),
            run.exact.iter().map(|x| x.psnr).collect(),
        ),
        curve(
            format!("randomized SVD ({label})"),
            run.randomized.iter().map(|x| x.psnr).collect(),
        ),
    ];
    let panels = [
        plot::Panel {
            title: "Frobenius error ‖A − A_r‖",
            x_desc: "rank r",
            y_desc: "error",
            log_y: true,
            series: &errors,
        },
        plot::Panel {
            title: "PSNR",
            x_desc: "rank r",
            y_desc: "dB",
            log_y: false,
            series: &psnr,
        },
    ];
    plot::draw_svg(path, (1200, 480), &panels)
}

fn run() -> Result<bool, String> {
    let Some(args) = common::parse_args(USAGE, &["power-iterations"])? else {
        return Ok(true);
    };
    let power_iterations = args.get("power-iterations").unwrap_or(4);
    let img = photo::load(if args.small { 4 } else { 1 })?;
    let ranks: Vec<usize> = RANKS
        .into_iter()
        .filter(|&r| r + OVERSAMPLING <= img.height.min(img.width))
        .collect();
    let best = optimum(&img, &ranks)?;

    let contexts = common::contexts(args.backend)?;
    println!(
        "photograph {}×{}; ranks {ranks:?}; randomized SVD with {OVERSAMPLING} extra columns and {power_iterations} power iterations",
        img.height, img.width
    );
    let mut ok = true;
    let mut runs = Vec::new();
    for ctx in &contexts {
        let label = if ctx.is_gpu() { "GPU" } else { "CPU" };
        let r =
            compress(ctx, &img, &ranks, power_iterations).map_err(|e| format!("{label}: {e}"))?;
        println!("{label} ({}):", ctx.description());
        println!("   rank   optimum   exact (ratio, PSNR dB)      randomized (ratio, PSNR dB)");
        for (i, &rank) in ranks.iter().enumerate() {
            let (e, z) = (&r.exact[i], &r.randomized[i]);
            let (re, rz) = (e.error / best[i], z.error / best[i]);
            let good = (re - 1.0).abs() <= EXACT_TOL && rz <= RANDOMIZED_MAX;
            println!(
                "  {rank:>5} {:>9.4} {:>9.4} ({re:.5}, {:>5.2})   {:>9.4} ({rz:.4}, {:>5.2}){}",
                best[i],
                e.error,
                e.psnr,
                z.error,
                z.psnr,
                if good { "" } else { "  OUTSIDE" }
            );
            ok &= good;
        }
        runs.push((label, r));
    }
    println!(
        "checks: exact error / optimum within 1 ± {EXACT_TOL:.0e}, randomized error / optimum ≤ {RANDOMIZED_MAX}: {}",
        if ok { "pass" } else { "FAIL" }
    );
    println!("times (SVD plus every reconstruction and its download):");
    for (label, r) in &runs {
        println!(
            "  {label}: exact {:.3} s, randomized (all ranks) {:.3} s",
            r.exact_seconds, r.randomized_seconds
        );
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let (label, first_run) = &runs[0];
    let svg = args.out.join("svd_compress.svg");
    plot(&svg, &ranks, &best, label, first_run)?;
    let (h, w) = (img.height, img.width);
    photo::write_png(
        &args.out.join("svd_compress_original.png"),
        h,
        w,
        &img.pixels,
    )?;
    for (i, &r) in ranks.iter().enumerate() {
        let name = |method: &str| args.out.join(format!("svd_compress_{method}_r{r}.png"));
        photo::write_png(&name("exact"), h, w, &first_run.exact[i].pixels)?;
        photo::write_png(&name("randomized"), h, w, &first_run.randomized[i].pixels)?;
    }
    println!(
        "plot: {}; reconstructions ({label}): {}/svd_compress_{{exact,randomized}}_r{{R}}.png",
        svg.display(),
        args.out.display()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    common::exit_code("svd_compress", run())
}
