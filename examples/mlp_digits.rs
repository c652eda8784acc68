//! A 64→128→10 multilayer perceptron on the UCI handwritten digits (8×8 images, 1,797
//! samples, `examples/data/`), trained with the library's training ops only: `linear_train`
//! (relu fused into the first layer's epilogue), `cross_entropy` with its gradient,
//! `linear_backward` and Adam's `step`, on tensors that stay resident on the device.
//!
//! The samples are put in a fixed, seeded random order (the file lists them by writer, so
//! its last rows come from writers absent from the rest); of that order the first 1,437 train
//! (mini-batches of 64, the same batches every epoch) and the last 360 are held out. Prints the training loss per epoch and the held-out accuracy, draws the loss curves to
//! `DIR/mlp_digits_loss.svg`, and runs on the chosen backend and on the CPU backend, printing
//! both times. Exits non-zero when a run's held-out accuracy is below 95%.
//!
//! ```sh
//! cargo run --release --example mlp_digits -- [--backend gpu|cpu|auto] [--epochs N] [--small] [--out DIR]
//! ```
//!
//! `--backend auto` (the default) uses a hardware GPU when there is one; on a machine whose only
//! adapter is a software one (lavapipe) it is the CPU backend, and `--backend gpu` runs there.

#[path = "common/mod.rs"]
mod common;
#[path = "common/plot.rs"]
mod plot;

use std::process::ExitCode;
use std::time::Instant;

use gpu_linalg::{Activation, Context, LossReduction, Optimizer, Targets, Tensor};

const USAGE: &str = "usage: mlp_digits [--backend gpu|cpu|auto] [--epochs N] [--small] [--out DIR]
  --backend   where to train first (default auto); the CPU backend always runs too
  --epochs N  passes over the 1,437 training samples (default 30; 10 with --small)
  --small     the CI size: 10 epochs
  --out DIR   where the loss plot goes (default target/examples-out)";

const TRAIN: usize = 1437;
const HIDDEN: usize = 128;
const CLASSES: usize = 10;
const BATCH: usize = 64;
const LR: f32 = 0.003;
const MIN_ACCURACY: f64 = 0.95;
/// Seed of the fixed shuffle that defines the train/held-out split.
const SPLIT_SEED: u64 = 7;

/// The digits in a seeded random order (Fisher–Yates), the same on every run and backend.
fn shuffled(data: &common::Digits, seed: u64) -> common::Digits {
    let f = common::FEATURES;
    let mut order: Vec<usize> = (0..data.labels.len()).collect();
    let mut s = seed;
    for i in (1..order.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, ((s >> 33) % (i as u64 + 1)) as usize);
    }
    common::Digits {
        x: order
            .iter()
            .flat_map(|&i| data.x[i * f..(i + 1) * f].iter().copied())
            .collect(),
        labels: order.iter().map(|&i| data.labels[i]).collect(),
    }
}

/// `len` seeded values uniform in [-1, 1).
fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Seeded initial weights, uniform ±1/√fan_in (PyTorch's default for `nn.Linear`).
fn init(len: usize, fan_in: usize, seed: u64) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    uniform(len, seed).iter().map(|x| x * bound).collect()
}

struct Run {
    /// Mean training cross-entropy of each epoch.
    losses: Vec<f32>,
    accuracy: f64,
    seconds: f64,
}

/// Trains from the same seeded start on `ctx` and evaluates on the held-out samples.
fn train(ctx: &Context, data: &common::Digits, epochs: usize) -> gpu_linalg::Result<Run> {
    let f = common::FEATURES;
    let start = Instant::now();
    // Upload once: the training set as fixed mini-batches, the held-out set whole.
    let mut batches: Vec<(Tensor, Tensor, usize)> = Vec::new();
    for b0 in (0..TRAIN).step_by(BATCH) {
        let b1 = (b0 + BATCH).min(TRAIN);
        let x = ctx.tensor(&[b1 - b0, f], &data.x[b0 * f..b1 * f])?;
        let y = ctx.tensor_u32(&[b1 - b0], &data.labels[b0..b1])?;
        batches.push((x, y, b1 - b0));
    }
    let held = common::SAMPLES - TRAIN;
    let x_held = ctx.tensor(&[held, f], &data.x[TRAIN * f..])?;

    let mut w1 = ctx.tensor(&[f, HIDDEN], &init(f * HIDDEN, f, 1))?;
    let mut b1 = ctx.tensor(&[HIDDEN], &init(HIDDEN, f, 2))?;
    let mut w2 = ctx.tensor(&[HIDDEN, CLASSES], &init(HIDDEN * CLASSES, HIDDEN, 3))?;
    let mut b2 = ctx.tensor(&[CLASSES], &init(CLASSES, HIDDEN, 4))?;
    let mut opt = Optimizer::adam(LR);
    let mut losses = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        let mut batch_losses = Vec::with_capacity(batches.len());
        for (x, y, rows) in &batches {
            // Forward: hidden = relu(x·W1 + b1) (fused epilogue), logits = hidden·W2 + b2.
            let (hidden, z1) = ctx.linear_train(x, &w1, Some(&b1), Activation::Relu)?;
            let (logits, z2) = ctx.linear_train(&hidden, &w2, Some(&b2), Activation::None)?;
            let loss =
                ctx.cross_entropy(&logits, Targets::Classes(y), LossReduction::Mean, true)?;
            let dlogits = loss.grad.as_ref().ok_or_else(|| {
                gpu_linalg::Error::InvalidArgument("cross_entropy returned no gradient".into())
            })?;
            // Backward and update, all resident.
            let g2 = ctx.linear_backward(&hidden, &w2, &z2, dlogits, Activation::None)?;
            let g1 = ctx.linear_backward(x, &w1, &z1, &g2.dx, Activation::Relu)?;
            opt.step(
                ctx,
                &mut [&mut w1, &mut b1, &mut w2, &mut b2],
                &[&g1.dw, &g1.db, &g2.dw, &g2.db],
            )?;
            batch_losses.push((loss.loss, *rows));
        }
        // One readback per epoch: the first submits every batch, the rest are then done.
        let mut sum = 0.0f64;
        for (l, rows) in &batch_losses {
            sum += f64::from(l.to_vec()?[0]) * *rows as f64;
        }
        let mean = (sum / TRAIN as f64) as f32;
        println!("  epoch {epoch:>3}  loss {mean:.4}");
        losses.push(mean);
    }
    // Held-out accuracy: argmax of the logits (the relu network, inference only).
    let hidden = ctx.linear(&x_held, &w1, Some(&b1), Activation::Relu)?;
    let logits = ctx.linear(&hidden, &w2, Some(&b2), Activation::None)?;
    let predicted = ctx.argmax(&logits, Some(1))?.to_vec_u32()?;
    let correct = predicted
        .iter()
        .zip(&data.labels[TRAIN..])
        .filter(|(p, l)| p == l)
        .count();
    Ok(Run {
        losses,
        accuracy: correct as f64 / held as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Draws each run's loss curve (epoch on x, cross-entropy on a log y axis) to an SVG file.
fn plot(path: &std::path::Path, runs: &[(String, &Run)]) -> Result<(), String> {
    let series: Vec<plot::Series> = runs
        .iter()
        .map(|(name, run)| plot::Series {
            name: name.clone(),
            points: (run.losses.iter().enumerate())
                .map(|(e, &l)| ((e + 1) as f64, f64::from(l)))
                .collect(),
        })
        .collect();
    let panel = plot::Panel {
        title: "mlp_digits: training cross-entropy per epoch",
        x_desc: "epoch",
        y_desc: "loss",
        log_y: true,
        series: &series,
    };
    plot::draw_svg(path, (800, 480), &[panel])
}

fn run() -> Result<bool, String> {
    let Some(args) = common::parse_args(USAGE, &["epochs"])? else {
        return Ok(true);
    };
    let epochs = args
        .get("epochs")
        .unwrap_or(if args.small { 10 } else { 30 });
    if epochs == 0 {
        return Err(format!("--epochs must be at least 1\n\n{USAGE}"));
    }
    let data = shuffled(&common::load()?, SPLIT_SEED);
    let contexts = common::contexts(args.backend)?;
    let mut runs = Vec::new();
    for ctx in &contexts {
        let label = if ctx.is_gpu() { "GPU" } else { "CPU" };
        println!(
            "{label} ({}): 64→{HIDDEN}→{CLASSES} relu MLP, Adam lr {LR}, batch {BATCH}, {epochs} epochs, split seed {SPLIT_SEED}",
            ctx.description()
        );
        let r = train(ctx, &data, epochs).map_err(|e| format!("{label} training: {e}"))?;
        println!(
            "{label}: held-out accuracy {:.2}% ({} samples), final loss {:.4}, {:.2} s",
            100.0 * r.accuracy,
            common::SAMPLES - TRAIN,
            r.losses.last().copied().unwrap_or(f32::NAN),
            r.seconds
        );
        runs.push((format!("{label} ({})", ctx.description()), r));
    }
    println!("times:");
    for (name, r) in &runs {
        println!("  {name}: {:.2} s", r.seconds);
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let path = args.out.join("mlp_digits_loss.svg");
    let refs: Vec<(String, &Run)> = runs.iter().map(|(n, r)| (n.clone(), r)).collect();
    plot(&path, &refs)?;
    println!("loss curve: {}", path.display());
    let mut ok = true;
    for (name, r) in &runs {
        if r.accuracy < MIN_ACCURACY {
            eprintln!(
                "{name}: held-out accuracy {:.2}% is below {:.0}%",
                100.0 * r.accuracy,
                100.0 * MIN_ACCURACY
            );
            ok = false;
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    common::exit_code("mlp_digits", run())
}
