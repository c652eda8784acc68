//! Classic image filters as convolutions (`torch.nn.functional` semantics: cross-correlation,
//! zero padding) on a photograph (scikit-image's CC0 "camera", 512 × 512 grey,
//! `examples/data/`):
//! - a 5×5 Gaussian blur (σ = 1), `conv2d` with `Padding::Same`;
//! - Sobel edges: both 3×3 Sobel kernels as the two output channels of one `conv2d`, and the
//!   gradient magnitude √(gx² + gy²) by elementwise ops;
//! - a 2× downsample: a 2×2 box filter at stride 2;
//! - the downsample upsampled back 2× by `conv_transpose2d` with the bilinear 4×4 kernel
//!   (stride 2, padding 1), and its PSNR against the photograph.
//!
//! Each output is checked against a direct f64 convolution on the host, and written as a PNG
//! (`DIR/conv_filters_{original,blur,sobel,down2,up2}.png`; the Sobel magnitude scaled by its
//! largest value). Runs on the chosen backend and on the CPU backend and prints both times;
//! exits non-zero when an output differs from the host's by more than 1e-5.
//!
//! ```sh
//! cargo run --release --example conv_filters -- [--backend gpu|cpu|auto] [--small] [--out DIR]
//! ```

#[path = "common/mod.rs"]
mod common;
#[path = "common/photo.rs"]
mod photo;

use std::process::ExitCode;
use std::time::Instant;

use gpu_linalg::{Context, ConvOptions, Padding, Tensor};

const USAGE: &str = "usage: conv_filters [--backend gpu|cpu|auto] [--small] [--out DIR]
  --backend  where to run first (default auto); the CPU backend always runs too
  --small    the CI size: the photograph averaged down to 128 × 128
  --out DIR  where the PNGs go (default target/examples-out)";

/// Largest |backend − host f64| allowed, pixels in [0, 1].
const TOL: f64 = 1e-5;

/// A single-channel filter bank: `out_channels` kernels of `size`×`size`, row-major.
struct Filter {
    out_channels: usize,
    size: usize,
    weights: Vec<f32>,
}

/// The normalised 5×5 Gaussian of σ = 1.
fn gaussian() -> Filter {
    let g: Vec<f64> = (-2i32..=2)
        .map(|x| (-f64::from(x * x) / 2.0).exp())
        .collect();
    let total: f64 = g.iter().sum::<f64>().powi(2);
    let weights = (0..25)
        .map(|i| (g[i / 5] * g[i % 5] / total) as f32)
        .collect();
    Filter {
        out_channels: 1,
        size: 5,
        weights,
    }
}

/// The horizontal and vertical Sobel kernels, as two output channels.
fn sobel() -> Filter {
    let gx = [-1., 0., 1., -2., 0., 2., -1., 0., 1.];
    let gy = [-1., -2., -1., 0., 0., 0., 1., 2., 1.];
    Filter {
        out_channels: 2,
        size: 3,
        weights: gx.iter().chain(&gy).copied().collect(),
    }
}

/// The 2×2 box (mean) filter.
fn box2() -> Filter {
    Filter {
        out_channels: 1,
        size: 2,
        weights: vec![0.25; 4],
    }
}

/// The bilinear 2× upsampling kernel of a transposed convolution: the outer product of
/// (1, 3, 3, 1)/4.
fn bilinear() -> Filter {
    let t = [0.25f32, 0.75, 0.75, 0.25];
    Filter {
        out_channels: 1,
        size: 4,
        weights: (0..16).map(|i| t[i / 4] * t[i % 4]).collect(),
    }
}

/// An image of `channels` planes, row-major, as the host computes or a backend returns it.
struct Planes {
    channels: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

/// Direct f64 cross-correlation of one plane (`conv2d` with one input channel, zero padding
/// `pad`, stride `stride`).
fn correlate(img: &Planes, f: &Filter, stride: usize, pad: usize) -> Planes {
    let (h, w, k) = (img.height as isize, img.width as isize, f.size);
    let oh = (img.height + 2 * pad - k) / stride + 1;
    let ow = (img.width + 2 * pad - k) / stride + 1;
    let mut data = Vec::with_capacity(f.out_channels * oh * ow);
    for c in 0..f.out_channels {
        let wk = &f.weights[c * k * k..][..k * k];
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = 0.0f64;
                for (t, &wt) in wk.iter().enumerate() {
                    let y = (i * stride + t / k) as isize - pad as isize;
                    let x = (j * stride + t % k) as isize - pad as isize;
                    if (0..h).contains(&y) && (0..w).contains(&x) {
                        acc += f64::from(wt) * f64::from(img.data[(y * w + x) as usize]);
                    }
                }
                data.push(acc as f32);
            }
        }
    }
    Planes {
        channels: f.out_channels,
        height: oh,
        width: ow,
        data,
    }
}

/// Direct f64 transposed convolution of one plane (`conv_transpose2d`, one channel in and
/// out): every input pixel adds its weighted kernel at `stride`·(i, j) − `pad`.
fn transposed(img: &Planes, f: &Filter, stride: usize, pad: usize) -> Planes {
    let k = f.size;
    let oh = (img.height - 1) * stride + k - 2 * pad;
    let ow = (img.width - 1) * stride + k - 2 * pad;
    let mut acc = vec![0.0f64; oh * ow];
    for i in 0..img.height {
        for j in 0..img.width {
            let v = f64::from(img.data[i * img.width + j]);
            for (t, &wt) in f.weights.iter().enumerate() {
                let y = (i * stride + t / k) as isize - pad as isize;
                let x = (j * stride + t % k) as isize - pad as isize;
                if (0..oh as isize).contains(&y) && (0..ow as isize).contains(&x) {
                    acc[y as usize * ow + x as usize] += f64::from(wt) * v;
                }
            }
        }
    }
    Planes {
        channels: 1,
        height: oh,
        width: ow,
        data: acc.into_iter().map(|v| v as f32).collect(),
    }
}

/// √(gx² + gy²) of a two-channel gradient.
fn magnitude(g: &Planes) -> Planes {
    let n = g.height * g.width;
    let data = (0..n)
        .map(|p| {
            let (x, y) = (f64::from(g.data[p]), f64::from(g.data[n + p]));
            (x * x + y * y).sqrt() as f32
        })
        .collect();
    Planes {
        channels: 1,
        height: g.height,
        width: g.width,
        data,
    }
}

/// The four outputs, in the order of [`NAMES`].
const NAMES: [&str; 4] = ["blur", "sobel", "down2", "up2"];

/// The host's f64 outputs.
fn host(img: &Planes) -> [Planes; 4] {
    let down = correlate(img, &box2(), 2, 0);
    let up = transposed(&down, &bilinear(), 2, 1);
    [
        correlate(img, &gaussian(), 1, 2),
        magnitude(&correlate(img, &sobel(), 1, 1)),
        down,
        up,
    ]
}

/// A filter as a `[C_out, 1, K, K]` weight tensor (the layout of `conv2d`, and, with one
/// output channel, of `conv_transpose2d`'s `[C_in, C_out, K, K]`).
fn weight(ctx: &Context, f: &Filter) -> gpu_linalg::Result<Tensor> {
    ctx.tensor(&[f.out_channels, 1, f.size, f.size], &f.weights)
}

/// A `[1, C, H, W]` result read back.
fn read(t: &Tensor) -> gpu_linalg::Result<Planes> {
    let shape = t.shape().to_vec();
    Ok(Planes {
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        data: t.to_vec()?,
    })
}

/// The four outputs on one backend, and the seconds from upload to the last download.
fn filter(ctx: &Context, img: &Planes) -> gpu_linalg::Result<([Planes; 4], f64)> {
    let start = Instant::now();
    let x = ctx.tensor(&[1, 1, img.height, img.width], &img.data)?;
    let same = ConvOptions {
        padding: Padding::Same,
        ..Default::default()
    };
    let blur = ctx.conv2d(&x, &weight(ctx, &gaussian())?, &same)?;
    let grad = ctx.conv2d(&x, &weight(ctx, &sobel())?, &same)?;
    let (gx, gy) = (
        ctx.slice_axis(&grad, 1, 0, 1)?,
        ctx.slice_axis(&grad, 1, 1, 2)?,
    );
    let sobel = ctx.sqrt(&ctx.add(&ctx.mul(&gx, &gx)?, &ctx.mul(&gy, &gy)?)?)?;
    let stride2 = ConvOptions {
        stride: [2, 2],
        ..Default::default()
    };
    let down = ctx.conv2d(&x, &weight(ctx, &box2())?, &stride2)?;
    let up = ctx.conv_transpose2d(
        &down,
        &weight(ctx, &bilinear())?,
        &ConvOptions {
            padding: Padding::Explicit([1, 1]),
            ..stride2
        },
    )?;
    let outputs = [read(&blur)?, read(&sobel)?, read(&down)?, read(&up)?];
    Ok((outputs, start.elapsed().as_secs_f64()))
}

/// Largest |a − b|, or infinity when the shapes differ.
fn max_difference(a: &Planes, b: &Planes) -> f64 {
    if (a.channels, a.height, a.width) != (b.channels, b.height, b.width) {
        return f64::INFINITY;
    }
    a.data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
}

/// 10·log10(1 / mean squared error) of `b` against `a` over their common top-left region.
fn psnr(a: &Planes, b: &Planes) -> f64 {
    let (h, w) = (a.height.min(b.height), a.width.min(b.width));
    let mut sq = 0.0f64;
    for i in 0..h {
        for j in 0..w {
            sq += (f64::from(a.data[i * a.width + j]) - f64::from(b.data[i * b.width + j])).powi(2);
        }
    }
    10.0 * ((h * w) as f64 / sq).log10()
}

fn run() -> Result<bool, String> {
    let Some(args) = common::parse_args(USAGE, &[])? else {
        return Ok(true);
    };
    let p = photo::load(if args.small { 4 } else { 1 })?;
    let img = Planes {
        channels: 1,
        height: p.height,
        width: p.width,
        data: p.pixels,
    };
    let start = Instant::now();
    let expected = host(&img);
    let host_seconds = start.elapsed().as_secs_f64();
    let contexts = common::contexts(args.backend)?;
    println!("photograph {}×{}", img.height, img.width);
    let mut ok = true;
    let mut runs = Vec::new();
    for ctx in &contexts {
        let label = if ctx.is_gpu() { "GPU" } else { "CPU" };
        let (outputs, seconds) = filter(ctx, &img).map_err(|e| format!("{label}: {e}"))?;
        println!("{label} ({}): {seconds:.3} s", ctx.description());
        for ((name, got), want) in NAMES.iter().zip(&outputs).zip(&expected) {
            let d = max_difference(got, want);
            let good = d <= TOL;
            println!(
                "  {name:>5}: {}×{}×{}, max |difference| from the host's f64 {d:.2e} ({} {TOL:.0e})",
                got.channels,
                got.height,
                got.width,
                if good { "within" } else { "OUTSIDE" }
            );
            ok &= good;
        }
        println!(
            "  upsampled back vs the photograph: PSNR {:.2} dB",
            psnr(&img, &outputs[3])
        );
        runs.push((label, outputs, seconds));
    }
    println!("times:");
    for (label, _, seconds) in &runs {
        println!("  {label}: {seconds:.3} s");
    }
    println!("  host f64 direct loops: {host_seconds:.3} s");
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let write = |name: &str, pl: &Planes, scale: f32| {
        let px: Vec<f32> = pl.data.iter().map(|v| v * scale).collect();
        photo::write_png(
            &args.out.join(format!("conv_filters_{name}.png")),
            pl.height,
            pl.width,
            &px,
        )
    };
    write("original", &img, 1.0)?;
    let (label, outputs, _) = &runs[0];
    for (name, pl) in NAMES.iter().zip(outputs) {
        let peak = pl.data.iter().copied().fold(0.0f32, f32::max);
        let scale = if *name == "sobel" && peak > 0.0 {
            1.0 / peak
        } else {
            1.0
        };
        write(name, pl, scale)?;
    }
    println!(
        "images ({label}): {}/conv_filters_{{original,blur,sobel,down2,up2}}.png",
        args.out.display()
    );
    println!(
        "checks: every output within {TOL:.0e} of the host's: {}",
        if ok { "pass" } else { "FAIL" }
    );
    Ok(ok)
}

fn main() -> ExitCode {
    common::exit_code("conv_filters", run())
}
