//! Training ops: activation gradients, losses and their gradients, the linear layer's backward
//! pass (against the CPU path and finite differences), and optimizer updates.

mod common;

use gpu_linalg::nn::cpu::act_grad_f64;
use gpu_linalg::{activation::activate_f64, reference::gamma};
use gpu_linalg::{Activation, Context, Location, LossReduction, Optimizer, OptimizerKind, Targets};

fn contexts() -> Vec<Context> {
    let mut v = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        v.push(g.clone());
    }
    v
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    let ok = (got.is_nan() && want.is_nan()) || approx::abs_diff_eq!(got, want, epsilon = tol);
    assert!(ok, "{what}: got {got}, want {want} (tolerance {tol:e})");
}

#[test]
fn activation_gradients_match_f64_and_finite_differences() {
    let z: Vec<f32> = (0..401).map(|i| (i as f32 - 200.0) / 25.0).collect();
    let dy = common::data_full(z.len(), 3);
    for ctx in contexts() {
        let tz = ctx.tensor(&[z.len()], &z).unwrap();
        let tdy = ctx.tensor(&[z.len()], &dy).unwrap();
        for act in Activation::ALL {
            let dz = ctx.activation_backward(&tz, &tdy, act).unwrap();
            if ctx.is_gpu() {
                assert_eq!(dz.location(), Location::Gpu);
            }
            let y = ctx.activate(&tz, act).unwrap().to_vec().unwrap();
            for (i, (&g, &zi)) in dz.to_vec().unwrap().iter().zip(&z).enumerate() {
                let zi = f64::from(zi);
                let want = f64::from(dy[i]) * act_grad_f64(act, zi);
                close(
                    f64::from(g),
                    want,
                    2e-6 + 1e-5 * want.abs(),
                    &format!("{act:?}' at {zi}"),
                );
                // The f64 derivative itself against a central difference.
                let h = 1e-6;
                if act != Activation::Relu || zi.abs() > 1e-3 {
                    let fd = (activate_f64(act, zi + h) - activate_f64(act, zi - h)) / (2.0 * h);
                    close(
                        act_grad_f64(act, zi),
                        fd,
                        1e-6,
                        &format!("{act:?}' fd at {zi}"),
                    );
                }
                close(
                    f64::from(y[i]),
                    activate_f64(act, zi),
                    1e-6 + 4e-7 * zi.abs(),
                    &format!("{act:?} at {zi}"),
                );
            }
        }
    }
}

#[test]
fn mse_loss_and_gradient() {
    for ctx in contexts() {
        for n in [0usize, 1, 7, 64, 511, 513, 4097, 1_000_003] {
            let p = common::data_full(n, 1);
            let t = common::data_full(n, 2);
            let tp = ctx.tensor(&[n], &p).unwrap();
            let tt = ctx.tensor(&[n], &t).unwrap();
            let exact: f64 = p
                .iter()
                .zip(&t)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum();
            let mag = exact; // all terms are non-negative
            for red in [LossReduction::Mean, LossReduction::Sum] {
                let out = ctx.mse_loss(&tp, &tt, red, true).unwrap();
                assert_eq!(out.loss.shape(), &[] as &[usize]);
                let scale = if red == LossReduction::Mean {
                    1.0 / n as f64
                } else {
                    1.0
                };
                let got = f64::from(out.loss.to_vec().unwrap()[0]);
                let want = scale * exact;
                if n == 0 && red == LossReduction::Mean {
                    assert!(got.is_nan(), "mean of nothing is NaN");
                    continue;
                }
                // Squares and a two-level sum: well within γ of a few thousand terms.
                close(
                    got,
                    want,
                    gamma(4096 + 64) * scale * mag * 2.0 + 1e-30,
                    &format!("mse n={n} {red:?}"),
                );
                let g = out.grad.unwrap().to_vec().unwrap();
                for i in (0..n).step_by(1 + n / 97) {
                    let want = 2.0 * scale * (f64::from(p[i]) - f64::from(t[i]));
                    close(f64::from(g[i]), want, 1e-6 * want.abs() + 1e-12, "mse grad");
                }
            }
        }
    }
}

fn ce_reference(
    x: &[f32],
    rows: usize,
    cols: usize,
    t: &dyn Fn(usize, usize) -> f64,
) -> (f64, Vec<f64>) {
    let mut total = 0.0;
    let mut g = vec![0.0; rows * cols];
    for r in 0..rows {
        let row: Vec<f64> = x[r * cols..(r + 1) * cols]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let se: f64 = row.iter().map(|v| (v - m).exp()).sum();
        let lse = m + se.ln();
        let ts: f64 = (0..cols).map(|j| t(r, j)).sum();
        total += (0..cols).map(|j| t(r, j) * (lse - row[j])).sum::<f64>();
        for j in 0..cols {
            g[r * cols + j] = (row[j] - m).exp() / se * ts - t(r, j);
        }
    }
    (total, g)
}

#[test]
fn cross_entropy_with_classes_and_probabilities() {
    for ctx in contexts() {
        for &(rows, cols) in &[
            (1usize, 1usize),
            (1, 10),
            (4, 3),
            (33, 65),
            (128, 1000),
            (3, 4099),
        ] {
            let mut x = common::data_full(rows * cols, 5);
            // Extreme logits must not overflow.
            x[0] = 1000.0;
            if x.len() > 1 {
                x[1] = -1000.0;
            }
            let classes: Vec<u32> = (0..rows).map(|r| ((r * 7 + 3) % cols) as u32).collect();
            let probs: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 13) % 7) as f32 + 0.5)
                .collect();
            let probs: Vec<f32> = probs
                .chunks(cols)
                .flat_map(|row| {
                    let s: f32 = row.iter().sum();
                    row.iter().map(move |v| v / s).collect::<Vec<_>>()
                })
                .collect();
            let tx = ctx.tensor(&[rows, cols], &x).unwrap();
            let tc = ctx.tensor_u32(&[rows], &classes).unwrap();
            let tp = ctx.tensor(&[rows, cols], &probs).unwrap();
            let by_class = |r: usize, j: usize| f64::from(u8::from(classes[r] as usize == j));
            let by_prob = |r: usize, j: usize| f64::from(probs[r * cols + j]);
            for (targets, tf) in [
                (
                    Targets::Classes(&tc),
                    &by_class as &dyn Fn(usize, usize) -> f64,
                ),
                (Targets::Probabilities(&tp), &by_prob),
            ] {
                let (total, grad) = ce_reference(&x, rows, cols, tf);
                for red in [LossReduction::Mean, LossReduction::Sum] {
                    let scale = if red == LossReduction::Mean {
                        1.0 / rows as f64
                    } else {
                        1.0
                    };
                    let out = ctx.cross_entropy(&tx, targets, red, true).unwrap();
                    let got = f64::from(out.loss.to_vec().unwrap()[0]);
                    let want = scale * total;
                    assert!(got.is_finite(), "{rows}x{cols}: loss {got}");
                    close(
                        got,
                        want,
                        2e-5 * want.abs().max(1.0) * (cols as f64).sqrt(),
                        &format!("ce {rows}x{cols} {red:?}"),
                    );
                    let g = out.grad.unwrap().to_vec().unwrap();
                    for (i, (&a, &b)) in g.iter().zip(&grad).enumerate() {
                        close(
                            f64::from(a),
                            scale * b,
                            2e-6,
                            &format!("ce grad {rows}x{cols} [{i}]"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn cross_entropy_rejects_bad_targets() {
    let cpu = common::cpu();
    let x = cpu.tensor(&[2, 3], &[0.0; 6]).unwrap();
    let t = cpu.tensor_u32(&[2], &[0, 3]).unwrap();
    let e = cpu
        .cross_entropy(&x, Targets::Classes(&t), LossReduction::Mean, false)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("class index 3 out of range for 3 classes"),
        "{e}"
    );
    let t1 = cpu.tensor_u32(&[3], &[0, 1, 2]).unwrap();
    assert!(cpu
        .cross_entropy(&x, Targets::Classes(&t1), LossReduction::Mean, false)
        .is_err());
    let f = cpu.tensor(&[2], &[0.0, 1.0]).unwrap();
    assert!(cpu
        .cross_entropy(&x, Targets::Classes(&f), LossReduction::Mean, false)
        .is_err());
    if let Some(g) = common::gpu() {
        // A GPU-resident index out of range poisons the loss with NaN instead.
        let x = g.tensor(&[2, 3], &[0.0; 6]).unwrap();
        let t = g.tensor_u32(&[2], &[0, 3]).unwrap();
        let out = g
            .cross_entropy(&x, Targets::Classes(&t), LossReduction::Mean, false)
            .unwrap();
        assert!(out.loss.to_vec().unwrap()[0].is_nan());
    }
}

/// f64 forward of `L = Σ R ⊙ act(X·W + b)`.
fn loss_f64(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    r: &[f64],
    dims: (usize, usize, usize),
    act: Activation,
) -> f64 {
    let (n, i_, o) = dims;
    let mut l = 0.0;
    for a in 0..n {
        for c in 0..o {
            let z: f64 = (0..i_).map(|k| x[a * i_ + k] * w[k * o + c]).sum::<f64>() + b[c];
            l += r[a * o + c] * activate_f64(act, z);
        }
    }
    l
}

#[test]
fn linear_backward_matches_cpu_and_finite_differences() {
    let (n, i_, o) = (5usize, 7usize, 3usize);
    let x = common::data_full(n * i_, 11);
    let w = common::data_full(i_ * o, 12);
    let b = common::data_full(o, 13);
    let r = common::data_full(n * o, 14);
    let f = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
    for ctx in contexts() {
        for act in Activation::ALL {
            let (tx, tw, tb, tr) = (
                ctx.tensor(&[n, i_], &x).unwrap(),
                ctx.tensor(&[i_, o], &w).unwrap(),
                ctx.tensor(&[o], &b).unwrap(),
                ctx.tensor(&[n, o], &r).unwrap(),
            );
            let (y, z) = ctx.linear_train(&tx, &tw, Some(&tb), act).unwrap();
            assert_eq!(y.shape(), &[n, o]);
            let g = ctx.linear_backward(&tx, &tw, &z, &tr, act).unwrap();
            assert_eq!(
                (g.dx.shape(), g.dw.shape(), g.db.shape()),
                (&[n, i_][..], &[i_, o][..], &[o][..])
            );
            let (dx, dw, db) = (
                g.dx.to_vec().unwrap(),
                g.dw.to_vec().unwrap(),
                g.db.to_vec().unwrap(),
            );
            let (fx, fw, fb, fr) = (f(&x), f(&w), f(&b), f(&r));
            let h = 1e-5;
            let fd = |which: usize, idx: usize| {
                let (mut xp, mut wp, mut bp) = (fx.clone(), fw.clone(), fb.clone());
                let (mut xm, mut wm, mut bm) = (fx.clone(), fw.clone(), fb.clone());
                match which {
                    0 => {
                        xp[idx] += h;
                        xm[idx] -= h;
                    }
                    1 => {
                        wp[idx] += h;
                        wm[idx] -= h;
                    }
                    _ => {
                        bp[idx] += h;
                        bm[idx] -= h;
                    }
                }
                (loss_f64(&xp, &wp, &bp, &fr, (n, i_, o), act)
                    - loss_f64(&xm, &wm, &bm, &fr, (n, i_, o), act))
                    / (2.0 * h)
            };
            // ReLU is not differentiable at 0; the data keep pre-activations away from it.
            for (k, &v) in dx.iter().enumerate() {
                close(f64::from(v), fd(0, k), 1e-4, &format!("{act:?} dX[{k}]"));
            }
            for (k, &v) in dw.iter().enumerate() {
                close(f64::from(v), fd(1, k), 1e-4, &format!("{act:?} dW[{k}]"));
            }
            for (k, &v) in db.iter().enumerate() {
                close(f64::from(v), fd(2, k), 1e-4, &format!("{act:?} db[{k}]"));
            }
        }
    }
}

#[test]
fn optimizers_match_the_cpu_path() {
    let Some(gpu) = common::gpu() else { return };
    let cpu = common::cpu();
    let kinds = [
        OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        },
        OptimizerKind::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    ];
    for kind in kinds {
        let p0 = common::data_full(1000, 1);
        let mut results = Vec::new();
        for ctx in [&cpu, gpu] {
            let mut opt = Optimizer::new(kind);
            let mut p = ctx.tensor(&[10, 100], &p0).unwrap();
            for s in 0..5 {
                let g = ctx
                    .tensor(&[10, 100], &common::data_full(1000, 10 + s))
                    .unwrap();
                opt.step(ctx, &mut [&mut p], &[&g]).unwrap();
            }
            assert_eq!(opt.steps(), 5);
            results.push(p.to_vec().unwrap());
        }
        for (a, b) in results[0].iter().zip(&results[1]) {
            close(f64::from(*a), f64::from(*b), 1e-5, &format!("{kind:?}"));
        }
    }
    // Mismatched gradients are refused.
    let mut opt = Optimizer::sgd(0.1, 0.0);
    let mut p = gpu.tensor(&[3], &[0.0; 3]).unwrap();
    let g = gpu.tensor(&[4], &[0.0; 4]).unwrap();
    assert!(opt.step(gpu, &mut [&mut p], &[&g]).is_err());
    assert!(opt.step(gpu, &mut [&mut p], &[]).is_err());
}

#[test]
fn a_small_regression_trains_on_every_backend() {
    for ctx in contexts() {
        let (n, d, h) = (64usize, 3usize, 16usize);
        let x = common::data_full(n * d, 21);
        let y: Vec<f32> = x
            .chunks(d)
            .map(|r| (r[0] * 2.0).sin() + r[1] * r[2])
            .collect();
        let tx = ctx.tensor(&[n, d], &x).unwrap();
        let ty = ctx.tensor(&[n, 1], &y).unwrap();
        let mut w1 = ctx.tensor(&[d, h], &common::data_full(d * h, 22)).unwrap();
        let mut b1 = ctx.zeros(&[h]).unwrap();
        let mut w2 = ctx
            .tensor(
                &[h, 1],
                &common::data_full(h, 23)
                    .iter()
                    .map(|v| v * 0.3)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let mut b2 = ctx.zeros(&[1]).unwrap();
        let mut opt = Optimizer::adam(0.02);
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..300 {
            let (a1, z1) = ctx
                .linear_train(&tx, &w1, Some(&b1), Activation::Tanh)
                .unwrap();
            let (p, z2) = ctx
                .linear_train(&a1, &w2, Some(&b2), Activation::None)
                .unwrap();
            let l = ctx.mse_loss(&p, &ty, LossReduction::Mean, true).unwrap();
            let g2 = ctx
                .linear_backward(&a1, &w2, &z2, l.grad.as_ref().unwrap(), Activation::None)
                .unwrap();
            let g1 = ctx
                .linear_backward(&tx, &w1, &z1, &g2.dx, Activation::Tanh)
                .unwrap();
            opt.step(
                &ctx,
                &mut [&mut w1, &mut b1, &mut w2, &mut b2],
                &[&g1.dw, &g1.db, &g2.dw, &g2.db],
            )
            .unwrap();
            last = l.loss.to_vec().unwrap()[0];
            first.get_or_insert(last);
        }
        let first = first.unwrap();
        assert!(
            last < first / 20.0,
            "{}: loss {first} -> {last}",
            ctx.description()
        );
    }
}
