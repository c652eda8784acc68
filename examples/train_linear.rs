//! Fit a 2-layer network to a synthetic regression set with Adam, entirely on the GPU (data
//! uploaded once, the loss read back only when printed), then run the same seeded training on
//! the CPU backend and compare the final losses.
//!
//! `cargo run --release --example train_linear [-- STEPS]`
//!
//! Uses `Backend::Gpu` (lavapipe counts) and falls back to the CPU backend alone, with a
//! message, where no adapter exists.

use std::time::Instant;

use gpu_linalg::{Activation, Backend, Context, LossReduction, Optimizer, Result};

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

/// Seeded data: x uniform in [-1, 1)^D (D ≥ 4), y = sin(2·x0) + x1·x2 − 0.5·x3².
fn dataset(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let x = uniform(n * d, seed);
    let y = x
        .chunks(d)
        .map(|r| (2.0 * r[0]).sin() + r[1] * r[2] - 0.5 * r[3] * r[3])
        .collect();
    (x, y)
}

/// Seeded initial weights, scaled like PyTorch's default (uniform ±1/√fan_in).
fn init(len: usize, fan_in: usize, seed: u64) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    uniform(len, seed).iter().map(|x| x * bound).collect()
}

struct Run {
    losses: Vec<(usize, f32)>,
    seconds: f64,
}

fn train(ctx: &Context, steps: usize, every: usize) -> Result<Run> {
    let (n, d, h) = (512, 4, 32);
    let (x, y) = dataset(n, d, 42);
    let x = ctx.tensor(&[n, d], &x)?;
    let y = ctx.tensor(&[n, 1], &y)?;
    let mut w1 = ctx.tensor(&[d, h], &init(d * h, d, 1))?;
    let mut b1 = ctx.tensor(&[h], &init(h, d, 2))?;
    let mut w2 = ctx.tensor(&[h, 1], &init(h, h, 3))?;
    let mut b2 = ctx.tensor(&[1], &init(1, h, 4))?;
    let mut opt = Optimizer::adam(0.01);
    let mut losses = Vec::new();
    let start = Instant::now();
    for step in 0..=steps {
        // Forward: hidden = tanh(x·W1 + b1), prediction = hidden·W2 + b2.
        let (hidden, z1) = ctx.linear_train(&x, &w1, Some(&b1), Activation::Tanh)?;
        let (pred, z2) = ctx.linear_train(&hidden, &w2, Some(&b2), Activation::None)?;
        let loss = ctx.mse_loss(&pred, &y, LossReduction::Mean, true)?;
        if step % every == 0 || step == steps {
            let l = loss.loss.to_vec()?[0];
            println!("  step {step:>5}  loss {l:.6e}");
            losses.push((step, l));
        }
        if step == steps {
            break;
        }
        // Backward and update, all resident.
        let dpred = loss.grad.as_ref().ok_or_else(|| {
            gpu_linalg::Error::InvalidArgument("the loss returned no gradient".into())
        })?;
        let g2 = ctx.linear_backward(&hidden, &w2, &z2, dpred, Activation::None)?;
        let g1 = ctx.linear_backward(&x, &w1, &z1, &g2.dx, Activation::Tanh)?;
        opt.step(
            ctx,
            &mut [&mut w1, &mut b1, &mut w2, &mut b2],
            &[&g1.dw, &g1.db, &g2.dw, &g2.db],
        )?;
    }
    ctx.synchronize()?;
    Ok(Run {
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn summary(name: &str, r: &Run) -> f32 {
    let first = r.losses.first().map_or(f32::NAN, |l| l.1);
    let last = r.losses.last().map_or(f32::NAN, |l| l.1);
    println!(
        "{name}: loss {first:.4e} -> {last:.4e} ({:.0}x lower) in {:.2} s",
        first / last,
        r.seconds
    );
    last
}

fn main() -> Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let every = (steps / 10).max(1);
    let cpu = Context::with_backend(Backend::Cpu)?;
    let gpu_last = match Context::with_backend(Backend::Gpu) {
        Ok(gpu) => {
            println!("Training on {}", gpu.description());
            let r = train(&gpu, steps, every)?;
            Some(summary("GPU", &r))
        }
        Err(e) => {
            println!("No GPU adapter ({e}); training on the CPU backend only.");
            None
        }
    };
    println!("Training on {}", cpu.description());
    let cpu_last = summary("CPU", &train(&cpu, steps, every)?);
    if let Some(g) = gpu_last {
        let tol = 1e-3 * g.max(cpu_last).max(1e-3);
        let diff = (g - cpu_last).abs();
        println!(
            "final losses: GPU {g:.6e}, CPU {cpu_last:.6e}, |difference| {diff:.3e} ({} the tolerance 1e-3·max(loss, 1e-3) = {tol:.1e})",
            if diff <= tol { "within" } else { "OUTSIDE" }
        );
    }
    Ok(())
}
