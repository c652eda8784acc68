//! `lstsq` (numpy.linalg.lstsq) on the GPU and the CPU backend against the f64 minimum-norm
//! solution and LAPACK's `ddrvls` ratios, each below 30 (1-norm, ε = 2⁻²³):
//! - ‖Aᵀ·(B − A·X)‖/(‖A‖·‖B‖·max(m, n, k)·ε) (`dqrt17`) wherever m > rank (B has a part
//!   outside range(A), and the residual must be orthogonal to range(A)), except for the
//!   κ = 10³ matrices, which like every kind are held to its backward-error form with
//!   ‖B‖ + ‖A‖·‖X‖ in place of ‖B‖ (see `lstsq_backward_orthogonality_ratio`);
//! - ‖B − A·X‖/(‖A‖·‖X‖·max(m, n)·ε) (`dqrt16`) where rank = m (the system is consistent);
//! - ‖X − X*‖₂ against the f64 minimum-norm solution X*, over Wedin's perturbation bound
//!   max(m, n)·ε·κ·(‖X*‖ + κ·‖R*‖/σ₁), κ = σ₁/σ_rank (`lstsq_solution_ratio`);
//! - the singular values within 30·max(m, n)·ε·σ₁ of f64's (Weyl), the rank exactly, the
//!   residuals' square roots within 30·max(m, n)·ε·(‖b‖ + ‖A‖_F·‖x‖) of f64's.
//!
//! Shapes 1×1 … 200×50 and 129×127, tall and wide; B of 1 (1-D) and 4 columns; matrices
//! random, of condition 10³, rank-deficient (trailing zero singular values) and scaled by
//! 1e-30 and 1e30. Also the empty cases, rcond, and the errors.

mod common;

use gpu_linalg::norms::cpu::{
    lstsq_backward_orthogonality_ratio, lstsq_f64, lstsq_orthogonality_ratio, lstsq_residual_ratio,
    lstsq_solution_ratio,
};
use gpu_linalg::{Context, Error, Location, NORMS_EPS};

const SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (5, 3),
    (3, 5),
    (64, 33),
    (33, 64),
    (200, 50),
    (129, 127),
];
const LIMIT: f64 = 30.0;
const EPS: f64 = 1.0 / 8_388_608.0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Random,
    Cond1e3,
    RankDeficient,
    Tiny,
    Huge,
}

const KINDS: [Kind; 5] = [
    Kind::Random,
    Kind::Cond1e3,
    Kind::RankDeficient,
    Kind::Tiny,
    Kind::Huge,
];

/// A (m×n) and B (m×k) of a kind, row-major.
fn problem(kind: Kind, m: usize, n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let p = m.min(n);
    let b = common::data_full(m * k, seed + 7);
    let a = match kind {
        Kind::Random | Kind::Tiny | Kind::Huge => common::data_full(m * n, seed),
        Kind::Cond1e3 => {
            let s: Vec<f64> = (0..p)
                .map(|i| 1e3f64.powf(-(i as f64) / (p.max(2) - 1) as f64))
                .collect();
            common::with_singular_values(m, n, &s, seed)
        }
        Kind::RankDeficient => {
            // rank p/2 (0 for a 1×1: the zero matrix), the nonzero σ from 1 to 0.1.
            let r = p / 2;
            let s: Vec<f64> = (0..p)
                .map(|i| {
                    if i < r {
                        10f64.powf(-(i as f64) / (r.max(2) - 1) as f64)
                    } else {
                        0.0
                    }
                })
                .collect();
            common::with_singular_values(m, n, &s, seed)
        }
    };
    let f = match kind {
        Kind::Tiny => 1e-30f32,
        Kind::Huge => 1e30f32,
        _ => 1.0,
    };
    (
        a.iter().map(|&v| v * f).collect(),
        b.iter().map(|&v| v * f).collect(),
    )
}

#[derive(Default, Debug)]
struct Worst {
    orth: f64,
    orth_backward: f64,
    resid: f64,
    sol: f64,
    s: f64,
    res: f64,
}

impl Worst {
    fn print(&self, backend: &str) {
        eprintln!(
            "{backend}: worst dqrt17 {:.3} (α = ‖B‖ + ‖A‖‖X‖: {:.3}), dqrt16 {:.3}, \
             solution {:.3}, σ {:.3}, residuals {:.3}",
            self.orth, self.orth_backward, self.resid, self.sol, self.s, self.res
        );
    }
}

/// Runs one case and checks everything against the f64 reference; returns the failures.
fn check_case(
    ctx: &Context,
    kind: Kind,
    m: usize,
    n: usize,
    k: usize,
    one_d: bool,
    worst: &mut Worst,
) -> Vec<String> {
    let label = format!(
        "{kind:?} {m}×{n} k={k}{}",
        if one_d { " (1-D b)" } else { "" }
    );
    let mut fails = Vec::new();
    let (a, b) = problem(kind, m, n, k, (m * 1000 + n * 10 + k) as u64);
    let ta = ctx.tensor(&[m, n], &a).unwrap();
    let tb = if one_d {
        ctx.tensor(&[m], &b).unwrap()
    } else {
        ctx.tensor(&[m, k], &b).unwrap()
    };
    let got = match ctx.lstsq(&ta, &tb, None) {
        Ok(g) => g,
        Err(e) => return vec![format!("{label}: {e}")],
    };
    if ctx.is_gpu() {
        for t in [&got.x, &got.s, &got.residuals] {
            if t.location() != Location::Gpu {
                fails.push(format!("{label}: a result is not resident on the GPU"));
            }
        }
    }
    let rcond = f64::from(NORMS_EPS) * m.max(n) as f64;
    let r = lstsq_f64(&a, &b, m, n, k, rcond).unwrap();
    let x = got.x.to_vec().unwrap();
    let s = got.s.to_vec().unwrap();
    let res = got.residuals.to_vec().unwrap();
    let x_shape: Vec<usize> = if one_d { vec![n] } else { vec![n, k] };
    if got.x.shape() != x_shape.as_slice() {
        fails.push(format!("{label}: x shape {:?}", got.x.shape()));
    }
    if got.rank != r.rank {
        fails.push(format!(
            "{label}: rank {} but f64 gives {}",
            got.rank, r.rank
        ));
    }
    let dim = m.max(n) as f64;
    // Singular values (Weyl: each moves by at most ‖δA‖₂).
    let s1 = r.s[0];
    if s.len() != r.s.len() {
        fails.push(format!("{label}: {} singular values", s.len()));
    } else {
        let ratio = s
            .iter()
            .zip(&r.s)
            .map(|(&g, &e)| (f64::from(g) - e).abs() / (s1 * dim * EPS))
            .fold(0.0, f64::max);
        worst.s = worst.s.max(ratio);
        if ratio >= LIMIT {
            fails.push(format!(
                "{label}: singular values off by {ratio:.1}·max(m,n)·ε·σ₁"
            ));
        }
    }
    // Residuals: shape as numpy, values against f64's.
    let want_res = if r.residuals.is_empty() { 0 } else { k };
    if got.residuals.shape() != [want_res] {
        fails.push(format!(
            "{label}: residuals shape {:?}, numpy gives [{want_res}]",
            got.residuals.shape()
        ));
    } else if want_res > 0 {
        let a_fro = a.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        for c in 0..k {
            let bn = (0..m)
                .map(|i| f64::from(b[i * k + c]).powi(2))
                .sum::<f64>()
                .sqrt();
            let xn = (0..n).map(|j| r.x[j * k + c].powi(2)).sum::<f64>().sqrt();
            let want = r.residuals[c];
            // ‖r‖² of a problem scaled by 1e±30 lies beyond f32's range: inf, or 0 (or a
            // subnormal), is then the right f32 answer.
            let ratio = if want > f64::from(f32::MAX) {
                if res[c] == f32::INFINITY {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else if want < f64::from(f32::MIN_POSITIVE) {
                if res[c] >= 0.0 && res[c] <= 2.0 * f32::MIN_POSITIVE {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else {
                (f64::from(res[c]).sqrt() - want.sqrt()).abs() / (dim * EPS * (bn + a_fro * xn))
            };
            worst.res = worst.res.max(ratio);
            if ratio >= LIMIT || ratio.is_nan() {
                fails.push(format!(
                    "{label}: residual {c} is {} but f64 gives {} (ratio {ratio:.1})",
                    res[c], r.residuals[c]
                ));
            }
        }
    }
    // ddrvls ratios.
    if m > r.rank {
        // dqrt17 as ddrvls uses it (α = ‖B‖) assumes a well-conditioned A; for κ = 10³,
        // ‖A‖·‖X‖ exceeds ‖B‖ by up to κ, and the backward-error form (α = ‖B‖ + ‖A‖·‖X‖)
        // is the one a backward-stable solver satisfies. Every kind is held to the latter.
        if kind != Kind::Cond1e3 {
            let q = lstsq_orthogonality_ratio(&a, &b, &x, m, n, k);
            worst.orth = worst.orth.max(q);
            if q >= LIMIT || q.is_nan() {
                fails.push(format!("{label}: dqrt17 ratio {q:.1}"));
            }
        }
        let q = lstsq_backward_orthogonality_ratio(&a, &b, &x, m, n, k);
        worst.orth_backward = worst.orth_backward.max(q);
        if q >= LIMIT || q.is_nan() {
            fails.push(format!("{label}: dqrt17 ratio (α = ‖B‖ + ‖A‖‖X‖) {q:.1}"));
        }
    }
    if m == r.rank {
        let q = lstsq_residual_ratio(&a, &b, &x, m, n, k);
        worst.resid = worst.resid.max(q);
        if q >= LIMIT || q.is_nan() {
            fails.push(format!("{label}: dqrt16 ratio {q:.1}"));
        }
    }
    let q = lstsq_solution_ratio(&x, &r, m, n, k);
    worst.sol = worst.sol.max(q);
    if q >= LIMIT || q.is_nan() {
        fails.push(format!(
            "{label}: solution ratio {q:.1} against the f64 minimum-norm X"
        ));
    }
    fails
}

fn sweep(ctx: &Context, backend: &str) {
    let mut worst = Worst::default();
    let mut fails = Vec::new();
    for &(m, n) in &SHAPES {
        for kind in KINDS {
            fails.extend(check_case(ctx, kind, m, n, 1, true, &mut worst));
            fails.extend(check_case(ctx, kind, m, n, 4, false, &mut worst));
        }
    }
    worst.print(backend);
    assert!(fails.is_empty(), "{backend}:\n{}", fails.join("\n"));
}

#[test]
fn lstsq_cpu_matches_f64() {
    sweep(&common::cpu(), "cpu");
}

#[test]
fn lstsq_gpu_matches_f64() {
    let Some(ctx) = common::gpu() else { return };
    sweep(ctx, "gpu");
}

fn on_both(f: impl Fn(&Context)) {
    f(&common::cpu());
    if let Some(g) = common::gpu() {
        f(g);
    }
}

#[test]
fn lstsq_empty_follows_numpy() {
    on_both(|ctx| {
        // m = 0: x zeros, residuals empty (m ≤ n), rank 0, no singular values.
        let a = ctx.zeros(&[0, 3]).unwrap();
        let f = ctx.lstsq(&a, &ctx.zeros(&[0, 2]).unwrap(), None).unwrap();
        assert_eq!(f.x.shape(), &[3, 2]);
        assert_eq!(f.x.to_vec().unwrap(), vec![0.0; 6]);
        assert_eq!(f.residuals.shape(), &[0]);
        assert_eq!((f.rank, f.s.shape()), (0, &[0usize][..]));
        let f = ctx.lstsq(&a, &ctx.zeros(&[0]).unwrap(), None).unwrap();
        assert_eq!(f.x.shape(), &[3]);
        // n = 0 < m: rank 0 = n, residuals are ‖b‖² per column (numpy's gelsd path).
        let a = ctx.zeros(&[3, 0]).unwrap();
        let b = ctx
            .tensor(&[3, 2], &[1.0, 2.0, 3.0, 0.0, -1.0, 1.0])
            .unwrap();
        let f = ctx.lstsq(&a, &b, None).unwrap();
        assert_eq!(f.x.shape(), &[0, 2]);
        assert_eq!(f.residuals.to_vec().unwrap(), vec![11.0, 5.0]);
        assert_eq!((f.rank, f.s.shape()), (0, &[0usize][..]));
        let b1 = ctx.tensor(&[3], &[1.0, 2.0, 2.0]).unwrap();
        let f = ctx.lstsq(&a, &b1, None).unwrap();
        assert_eq!(f.x.shape(), &[0]);
        assert_eq!(f.residuals.to_vec().unwrap(), vec![9.0]);
        // 0×0.
        let f = ctx
            .lstsq(
                &ctx.zeros(&[0, 0]).unwrap(),
                &ctx.zeros(&[0]).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(
            (f.x.shape(), f.residuals.shape(), f.rank),
            (&[0usize][..], &[0usize][..], 0)
        );
        // k = 0: the SVD still runs; x is [n, 0], residuals empty.
        let a = ctx
            .tensor(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
            .unwrap();
        let f = ctx.lstsq(&a, &ctx.zeros(&[3, 0]).unwrap(), None).unwrap();
        assert_eq!(f.x.shape(), &[2, 0]);
        assert_eq!(f.residuals.shape(), &[0]);
        assert_eq!((f.rank, f.s.shape()), (2, &[2usize][..]));
    });
}

#[test]
fn lstsq_rcond_and_small_systems() {
    on_both(|ctx| {
        // diag(1, 1e-3) stacked over a zero row: rank 2 by default, 1 with rcond 1e-2.
        let a = ctx
            .tensor(&[3, 2], &[1.0, 0.0, 0.0, 1e-3, 0.0, 0.0])
            .unwrap();
        let b = ctx.tensor(&[3], &[2.0, 3e-3, 5.0]).unwrap();
        let f = ctx.lstsq(&a, &b, None).unwrap();
        assert_eq!(f.rank, 2);
        let x = f.x.to_vec().unwrap();
        assert!(
            (x[0] - 2.0).abs() < 1e-5 && (x[1] - 3.0).abs() < 1e-4,
            "{x:?}"
        );
        assert!((f.residuals.to_vec().unwrap()[0] - 25.0).abs() < 1e-4);
        let f = ctx.lstsq(&a, &b, Some(1e-2)).unwrap();
        assert_eq!(f.rank, 1);
        let x = f.x.to_vec().unwrap();
        assert!((x[0] - 2.0).abs() < 1e-5 && x[1].abs() < 1e-6, "{x:?}");
        assert_eq!(
            f.residuals.shape(),
            &[0],
            "rank < n: numpy gives no residuals"
        );
        // A negative rcond means ε.
        assert_eq!(ctx.lstsq(&a, &b, Some(-1.0)).unwrap().rank, 2);
        // Square full rank: m ≤ n, so no residuals.
        let a = ctx.tensor(&[2, 2], &[2.0, 1.0, 1.0, 3.0]).unwrap();
        let f = ctx
            .lstsq(&a, &ctx.tensor(&[2], &[3.0, 4.0]).unwrap(), None)
            .unwrap();
        assert_eq!(f.residuals.shape(), &[0]);
        let x = f.x.to_vec().unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-5 && (x[1] - 1.0).abs() < 1e-5,
            "{x:?}"
        );
        // The doc example: a line fit, and a rank-1 system.
        let a = ctx
            .tensor(&[4, 2], &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0])
            .unwrap();
        let y = ctx.tensor(&[4], &[1.0, 3.0, 5.0, 6.0]).unwrap();
        let fit = ctx.lstsq(&a, &y, None).unwrap();
        let c = fit.x.to_vec().unwrap();
        assert!(
            (c[0] - 1.2).abs() < 1e-5 && (c[1] - 1.7).abs() < 1e-5,
            "{c:?}"
        );
        assert!((fit.residuals.to_vec().unwrap()[0] - 0.3).abs() < 1e-5);
        let a = ctx.tensor(&[2, 2], &[1.0; 4]).unwrap();
        let fit = ctx
            .lstsq(&a, &ctx.tensor(&[2], &[2.0, 2.0]).unwrap(), None)
            .unwrap();
        assert_eq!(fit.rank, 1);
        let x = fit.x.to_vec().unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
            "{x:?}"
        );
        // The zero matrix: rank 0, x = 0.
        let f = ctx
            .lstsq(
                &ctx.zeros(&[4, 3]).unwrap(),
                &ctx.tensor(&[4], &[1.0, 2.0, 3.0, 4.0]).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(f.rank, 0);
        assert_eq!(f.x.to_vec().unwrap(), vec![0.0; 3]);
        assert_eq!(f.s.to_vec().unwrap(), vec![0.0; 3]);
        // Tiny A and B: x = 1 exactly; the true residual 1e-60 underflows f32 (to 0).
        let a = ctx.tensor(&[2, 1], &[1e-30, 0.0]).unwrap();
        let b = ctx.tensor(&[2], &[1e-30, 1e-30]).unwrap();
        let f = ctx.lstsq(&a, &b, None).unwrap();
        assert!((f.x.to_vec().unwrap()[0] - 1.0).abs() < 1e-6);
        let r = f.residuals.to_vec().unwrap()[0];
        assert!(r == 0.0 || (r - 1e-60f32).abs() <= f32::MIN_POSITIVE, "{r}");
        // A and B of very different scales: x = 1e35 from the scaled problem's x' ≈ 1.
        let a = ctx.tensor(&[1, 1], &[1e-20]).unwrap();
        let b = ctx.tensor(&[1], &[1e15]).unwrap();
        let x = ctx.lstsq(&a, &b, None).unwrap().x.to_vec().unwrap()[0];
        assert!((x / 1e35 - 1.0).abs() < 1e-6, "{x}");
    });
}

#[test]
fn lstsq_errors_name_the_problem() {
    on_both(|ctx| {
        let a = ctx.tensor(&[3, 2], &[1.0; 6]).unwrap();
        let b = ctx.tensor(&[3], &[1.0; 3]).unwrap();
        let mut bad = vec![1.0f32; 6];
        bad[4] = f32::NAN;
        let a_nan = ctx.tensor(&[3, 2], &bad).unwrap();
        let e = ctx.lstsq(&a_nan, &b, None).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(s) if s.contains("NaN") && s.contains(" a ")),
            "{e}"
        );
        let b_inf = ctx.tensor(&[3], &[1.0, f32::INFINITY, 0.0]).unwrap();
        let e = ctx.lstsq(&a, &b_inf, None).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(s) if s.contains("infinite") && s.contains(" b ")),
            "{e}"
        );
        let b4 = ctx.tensor(&[4], &[1.0; 4]).unwrap();
        let e = ctx.lstsq(&a, &b4, None).unwrap_err();
        assert!(
            matches!(&e, Error::Shape(s) if s.contains("[3, 2]") && s.contains("[4]")),
            "{e}"
        );
        let a3 = ctx.tensor(&[1, 3, 2], &[1.0; 6]).unwrap();
        let e = ctx.lstsq(&a3, &b, None).unwrap_err();
        assert!(
            matches!(&e, Error::Shape(s) if s.contains("[1, 3, 2]") && s.contains("2-D")),
            "{e}"
        );
        let b3 = ctx.tensor(&[3, 1, 1], &[1.0; 3]).unwrap();
        let e = ctx.lstsq(&a, &b3, None).unwrap_err();
        assert!(
            matches!(&e, Error::Shape(s) if s.contains("[3, 1, 1]")),
            "{e}"
        );
        let au = ctx.tensor_u32(&[3, 2], &[1; 6]).unwrap();
        let e = ctx.lstsq(&au, &b, None).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(s) if s.contains("float32")),
            "{e}"
        );
        let bu = ctx.tensor_u32(&[3], &[1; 3]).unwrap();
        let e = ctx.lstsq(&a, &bu, None).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(s) if s.contains("float32")),
            "{e}"
        );
    });
}
