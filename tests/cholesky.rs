//! Cholesky on the GPU and the CPU backend against LAPACK's `dchkpo` ratio
//! ‖A − L·Lᵀ‖₁/(n·‖A‖₁·ε) < 30: random SPD, condition numbers 10³ and 10⁶, scaled near
//! underflow and overflow, diagonally dominant; sizes across the block size; batched; upper;
//! and the errors (not positive definite, NaN, shape, asymmetry).

mod common;

use gpu_linalg::cholesky::cpu::ratio;
use gpu_linalg::{CholeskyOptions, Context, Error, CHOLESKY_BLOCK};

const SIZES: [usize; 12] = [1, 2, 3, 31, 32, 33, 63, 64, 65, 97, 127, 200];

/// M·Mᵀ + n·I.
fn spd(n: usize, seed: u64) -> Vec<f32> {
    let m = common::data_full(n * n, seed);
    let mut a = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s: f64 = (0..n)
                .map(|t| f64::from(m[i * n + t]) * f64::from(m[j * n + t]))
                .sum();
            if i == j {
                s += n as f64;
            }
            a[i * n + j] = s as f32;
            a[j * n + i] = s as f32;
        }
    }
    a
}

/// Q·diag(s)·Qᵀ with s from 1 down to 1/κ geometrically and Q the product of two Householder
/// reflections of pseudo-random vectors (built in f64).
fn conditioned(n: usize, kappa: f64, seed: u64) -> Vec<f32> {
    let mut q: Vec<f64> = (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect();
    for r in 0..2 {
        let v: Vec<f64> = common::data_full(n, seed + r)
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let vv: f64 = v.iter().map(|x| x * x).sum();
        for i in 0..n {
            let d: f64 = (0..n).map(|j| q[i * n + j] * v[j]).sum();
            for j in 0..n {
                q[i * n + j] -= 2.0 * d / vv * v[j];
            }
        }
    }
    let s: Vec<f64> = (0..n)
        .map(|i| kappa.powf(-(i as f64) / (n.max(2) - 1) as f64))
        .collect();
    let mut a = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = (0..n).map(|t| q[i * n + t] * s[t] * q[j * n + t]).sum();
            a[i * n + j] = v as f32;
            a[j * n + i] = v as f32;
        }
    }
    a
}

/// Symmetric with |A_ii| > Σ_j≠i |A_ij|.
fn dominant(n: usize, seed: u64) -> Vec<f32> {
    let r = common::data_full(n * n, seed);
    let mut a = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..i {
            a[i * n + j] = r[i * n + j];
            a[j * n + i] = r[i * n + j];
        }
    }
    for i in 0..n {
        a[i * n + i] = (0..n).map(|j| a[i * n + j].abs()).sum::<f32>() + 1.0;
    }
    a
}

fn kinds(n: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let base = spd(n, seed);
    vec![
        ("spd", base.clone()),
        ("cond1e3", conditioned(n, 1e3, seed + 1)),
        ("cond1e6", conditioned(n, 1e6, seed + 2)),
        ("scaled1e-30", base.iter().map(|x| x * 1e-30).collect()),
        ("scaled1e30", base.iter().map(|x| x * 1e30).collect()),
        ("dominant", dominant(n, seed + 3)),
    ]
}

/// The lower factor is lower triangular, finite, and meets the ratio bound; returns the ratio.
fn judged(name: &str, a: &[f32], n: usize, l: &[f32]) -> f64 {
    for i in 0..n {
        for j in i + 1..n {
            assert_eq!(l[i * n + j], 0.0, "{name}: L[{i},{j}] above the diagonal");
        }
    }
    assert!(l.iter().all(|x| x.is_finite()), "{name}: non-finite L");
    let r = ratio(a, n, l);
    assert!(r < 30.0, "{name}: ratio {r}");
    r
}

#[test]
fn ratios_below_30_for_every_type_and_size() {
    for (backend, ctx) in common::backends() {
        let mut worst: Vec<(&str, f64)> = Vec::new();
        for (si, &n) in SIZES.iter().enumerate() {
            for (kind, a) in kinds(n, 100 + si as u64) {
                let t = ctx.tensor(&[n, n], &a).unwrap();
                let name = format!("{backend} {kind} {n}×{n}");
                let l = ctx
                    .cholesky(&t)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .to_vec()
                    .unwrap();
                let r = judged(&name, &a, n, &l);
                match worst.iter_mut().find(|(k, _)| *k == kind) {
                    Some(w) => w.1 = w.1.max(r),
                    None => worst.push((kind, r)),
                }
            }
        }
        eprintln!("{backend}: worst ratios {worst:?}");
    }
}

#[test]
fn upper_is_the_transpose_and_batches_factor_each_matrix() {
    for (backend, ctx) in common::backends() {
        for n in [5, CHOLESKY_BLOCK - 1, CHOLESKY_BLOCK + 1, 70] {
            let a = spd(n, n as u64);
            let t = ctx.tensor(&[n, n], &a).unwrap();
            let l = ctx.cholesky(&t).unwrap().to_vec().unwrap();
            let u = ctx
                .cholesky_with(&t, &CholeskyOptions { upper: true })
                .unwrap()
                .to_vec()
                .unwrap();
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(
                        u[i * n + j],
                        l[j * n + i],
                        "{backend} {n}: U ≠ Lᵀ at {i},{j}"
                    );
                }
            }
        }
        for shape in [vec![3usize, 17, 17], vec![2, 2, 40, 40]] {
            let n = shape[shape.len() - 1];
            let count: usize = shape[..shape.len() - 2].iter().product();
            let mats: Vec<Vec<f32>> = (0..count).map(|z| spd(n, 7 + z as u64)).collect();
            let t = ctx.tensor(&shape, &mats.concat()).unwrap();
            let l = ctx.cholesky(&t).unwrap();
            assert_eq!(l.shape(), &shape[..]);
            let l = l.to_vec().unwrap();
            for (z, a) in mats.iter().enumerate() {
                let name = format!("{backend} {shape:?} matrix {z}");
                judged(&name, a, n, &l[z * n * n..(z + 1) * n * n]);
            }
        }
        // More matrices than one dispatch's grid holds (65,535): chunked, each factored.
        let count = 70_000;
        let t = ctx
            .tensor(&[count, 2, 2], &[4.0, 2.0, 2.0, 5.0].repeat(count))
            .unwrap();
        let l = ctx.cholesky(&t).unwrap().to_vec().unwrap();
        assert!(
            l.chunks(4).all(|m| m == [2.0, 0.0, 1.0, 2.0]),
            "{backend}: a chunked batch"
        );
        for shape in [vec![0usize, 0], vec![2, 0, 0], vec![0, 3, 3]] {
            let t = ctx.zeros(&shape).unwrap();
            let l = ctx.cholesky(&t).unwrap();
            assert_eq!(l.shape(), &shape[..]);
        }
    }
}

#[test]
fn dispatches_grow_with_the_block_columns() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    for n in [1usize, 32, 33, 200] {
        let t = ctx.tensor(&[n, n], &spd(n, 3)).unwrap();
        ctx.synchronize().unwrap();
        let before = gpu_linalg::runtime::thread_counters();
        let l = ctx.cholesky(&t).unwrap();
        let spent = gpu_linalg::runtime::thread_counters() - before;
        let blocks = n.div_ceil(CHOLESKY_BLOCK) as u64;
        assert_eq!(spent.dispatches, 3 * blocks, "n = {n}");
        drop(l);
    }
}

fn err(ctx: &Context, shape: &[usize], a: &[f32]) -> Error {
    let t = ctx.tensor(shape, a).unwrap();
    ctx.cholesky(&t).expect_err("must fail")
}

#[test]
fn errors_name_what_failed() {
    for (backend, ctx) in common::backends() {
        let n = 100;
        for minor in [1usize, 2, 32, 33, 64, 70, 100] {
            let mut a = dominant(n, 5);
            a[(minor - 1) * n + minor - 1] = -1.0;
            let e = err(&ctx, &[n, n], &a);
            let msg = e.to_string();
            assert!(matches!(e, Error::LinAlg(_)), "{backend}: {msg}");
            assert!(
                msg.contains(&format!("order {minor} ")),
                "{backend} minor {minor}: {msg}"
            );
        }
        // A singular (zero-pivot) and the zero matrix fail at their first zero pivot.
        let e = err(&ctx, &[2, 2], &[1.0, 1.0, 1.0, 1.0]).to_string();
        assert!(e.contains("order 2 "), "{backend}: {e}");
        let e = err(&ctx, &[3, 3], &[0.0; 9]).to_string();
        assert!(e.contains("order 1 "), "{backend}: {e}");
        // In a batch, the failing matrix is named.
        let mut b = spd(20, 1);
        let mut bad = spd(20, 2);
        bad[5 * 20 + 5] = -1e6;
        b.extend_from_slice(&bad);
        let e = err(&ctx, &[2, 20, 20], &b).to_string();
        assert!(
            e.contains("matrix 1 ") && e.contains("order 6 "),
            "{backend}: {e}"
        );
        let mut many = [4.0, 2.0, 2.0, 5.0].repeat(70_000);
        many[69_000 * 4 + 3] = 0.5;
        let e = err(&ctx, &[70_000, 2, 2], &many).to_string();
        assert!(
            e.contains("matrix 69000 ") && e.contains("order 2 "),
            "{backend}: {e}"
        );
        for v in [f32::NAN, f32::INFINITY] {
            let mut a = spd(40, 3);
            a[39 * 40 + 2] = v;
            let e = err(&ctx, &[40, 40], &a);
            assert!(
                matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("NaN"),
                "{backend}: {e}"
            );
        }
        let mut a = spd(40, 4);
        a[3 * 40 + 30] += 1.0;
        let e = err(&ctx, &[40, 40], &a).to_string();
        assert!(
            e.contains("symmetric") && e.contains("max|A−Aᵀ| = 1e0"),
            "{backend}: {e}"
        );
        for shape in [vec![6usize], vec![2, 3], vec![3, 2, 4]] {
            let len = shape.iter().product();
            let e = err(&ctx, &shape, &vec![1.0; len]);
            assert!(
                matches!(e, Error::Shape(_)) && e.to_string().contains(&format!("{shape:?}")),
                "{backend}: {e}"
            );
        }
    }
}
