//! Shared test helpers: one GPU context per test binary, deterministic data.
#![allow(dead_code)]

use std::sync::OnceLock;

use gpu_linalg::{Backend, Context};

/// The GPU context for this test binary (`Backend::Gpu`, so lavapipe counts), or `None` with a
/// visible skip message when no adapter exists. With `GPU_LINALG_REQUIRE_ADAPTER=1` a missing
/// adapter fails the test instead.
pub fn gpu() -> Option<&'static Context> {
    static CTX: OnceLock<Option<Context>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| match Context::with_backend(Backend::Gpu) {
        Ok(c) => {
            assert!(c.is_gpu(), "Backend::Gpu must run on a GPU adapter");
            eprintln!("GPU tests run on {}", c.description());
            Some(c)
        }
        Err(e) => {
            if std::env::var("GPU_LINALG_REQUIRE_ADAPTER").is_ok_and(|v| v == "1") {
                panic!("GPU_LINALG_REQUIRE_ADAPTER=1 but no adapter: {e}");
            }
            eprintln!("SKIPPING GPU tests: no adapter ({e})");
            None
        }
    });
    ctx.as_ref()
}

/// The CPU-backend context.
pub fn cpu() -> Context {
    Context::with_backend(Backend::Cpu).expect("the CPU backend always exists")
}

/// The CPU backend, and the GPU context where an adapter exists, each with its name.
pub fn backends() -> Vec<(&'static str, Context)> {
    let mut v = vec![("cpu", cpu())];
    if let Some(g) = gpu() {
        v.push(("gpu", g.clone()));
    }
    v
}

/// Deterministic pseudo-random values, multiples of 1/8 in [-2, 2): products and short sums are
/// exact, long sums test the bound.
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 32) as f32 / 8.0 - 2.0
        })
        .collect()
}

/// Deterministic values with full mantissas in [-1, 1): sums are not exact.
pub fn data_full(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed ^ 0x9E3779B97F4A7C15;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// An m×n matrix with orthonormal-ish mixing and the given singular values: A = Q₁ diag(σ) Q₂
/// with Q₁, Q₂ from Householder reflections of pseudo-random vectors (built in f64).
pub fn with_singular_values(m: usize, n: usize, sigma: &[f64], seed: u64) -> Vec<f32> {
    let householder = |len: usize, seed: u64| -> Vec<Vec<f64>> {
        // Product of two reflections applied to the identity: an orthogonal len×len matrix.
        let mut q: Vec<Vec<f64>> = (0..len)
            .map(|i| (0..len).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
            .collect();
        for s in 0..2 {
            let v: Vec<f64> = data_full(len, seed + s)
                .iter()
                .map(|&x| f64::from(x))
                .collect();
            let vv: f64 = v.iter().map(|x| x * x).sum();
            if vv == 0.0 {
                continue;
            }
            for row in q.iter_mut() {
                let d: f64 = row.iter().zip(&v).map(|(a, b)| a * b).sum();
                row.iter_mut()
                    .zip(&v)
                    .for_each(|(x, vi)| *x -= 2.0 * d / vv * vi);
            }
        }
        q
    };
    let q1 = householder(m, seed);
    let q2 = householder(n, seed + 100);
    let mut a = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let v: f64 = sigma
                .iter()
                .enumerate()
                .map(|(t, s)| q1[i][t] * s * q2[t][j])
                .sum();
            a[i * n + j] = v as f32;
        }
    }
    a
}

/// An m×n matrix with singular values spaced geometrically from 1 down to 1/κ
/// (`with_singular_values`).
pub fn conditioned(m: usize, n: usize, kappa: f64, seed: u64) -> Vec<f32> {
    let k = m.min(n);
    let sigma: Vec<f64> = (0..k)
        .map(|i| kappa.powf(-(i as f64) / (k.max(2) - 1) as f64))
        .collect();
    with_singular_values(m, n, &sigma, seed)
}

/// The rows of `a` (m×n) and `b` (m×k) side by side: `[A | B]`, m×(n + k).
pub fn hstack(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    (0..m)
        .flat_map(|i| a[i * n..][..n].iter().chain(&b[i * k..][..k]).copied())
        .collect()
}

/// LAPACK's SVD driver-test ratios (`gpu_linalg::svd::cpu::ratios`) of a result for the m×n
/// matrix `a`, its factors read back.
pub fn svd_ratios(a: &[f32], m: usize, n: usize, svd: &gpu_linalg::Svd) -> [f64; 3] {
    gpu_linalg::svd::cpu::ratios(
        a,
        m,
        n,
        &svd.u.to_vec().unwrap(),
        &svd.s.to_vec().unwrap(),
        &svd.vt.to_vec().unwrap(),
    )
}

/// The TSQR (and Cholesky) test ratio ‖AᵀA − RᵀR‖₁ / (‖A‖₁² · m · ε) in f64, for the row-major
/// m×n `a` and the k×n `r` (ε = f32's unit roundoff); 0 for the zero matrix with R = 0.
pub fn gram_ratio(a: &[f32], m: usize, n: usize, r: &[f32], k: usize) -> f64 {
    let norm1 = |x: &dyn Fn(usize, usize) -> f64, rows: usize| {
        (0..n)
            .map(|j| (0..rows).map(|i| x(i, j).abs()).sum::<f64>())
            .fold(0.0, f64::max)
    };
    let an = norm1(&|i, j| f64::from(a[i * n + j]), m);
    let mut diff = vec![0.0f64; n * n];
    for i in 0..m {
        for p in 0..n {
            let aip = f64::from(a[i * n + p]);
            for q in 0..n {
                diff[p * n + q] += aip * f64::from(a[i * n + q]);
            }
        }
    }
    for t in 0..k {
        for p in 0..n {
            let rtp = f64::from(r[t * n + p]);
            for q in 0..n {
                diff[p * n + q] -= rtp * f64::from(r[t * n + q]);
            }
        }
    }
    let dn = norm1(&|i, j| diff[i * n + j], n);
    if an == 0.0 {
        return if dn == 0.0 { 0.0 } else { f64::INFINITY };
    }
    dn / (an * an * m as f64 * f64::from(f32::EPSILON) / 2.0)
}
