//! SVD on the GPU (one-sided Jacobi) and the CPU backend (faer), judged by LAPACK's driver-test
//! ratios and against f64 singular values, on shapes that break the round-robin ordering
//! (odd counts, one column, wide, empty), rank-deficient and ill-conditioned matrices.

mod common;

use std::time::Instant;

use gpu_linalg::svd::batched::BATCHED_WG_SIZES;
use gpu_linalg::svd::cpu::{ratios, singular_values_f64, RATIO_EPS};
use gpu_linalg::{
    Context, Error, Location, SvdBatchedKernel, SvdBatchedOptions, SvdOptions, Tensor, MAX_SWEEPS,
    SVD_WORKGROUPS,
};

struct Case {
    name: String,
    m: usize,
    n: usize,
    a: Vec<f32>,
}

fn case(name: &str, m: usize, n: usize, a: Vec<f32>) -> Case {
    Case {
        name: format!("{name} {m}×{n}"),
        m,
        n,
        a,
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let rnd = |name: &str, m: usize, n: usize, seed: u64| {
        case(name, m, n, common::data_full(m * n, seed))
    };
    v.push(rnd("random", 1, 1, 1));
    v.push(case("zero scalar", 1, 1, vec![0.0]));
    v.push(rnd("row", 1, 9, 2));
    v.push(rnd("column", 9, 1, 3));
    for (i, n) in [2usize, 3, 7, 16, 33, 64].into_iter().enumerate() {
        v.push(rnd("square", n, n, 10 + i as u64));
    }
    v.push(case("exact", 5, 4, common::data(20, 4)));
    v.push(rnd("tall", 100, 7, 20));
    v.push(rnd("tall", 257, 31, 21));
    v.push(rnd("wide", 7, 100, 22));
    v.push(rnd("wide", 2, 3, 23));
    v.push(rnd("long", 1000, 3, 24));
    v.push(rnd("long", 3, 1000, 25));
    // Rank-deficient: duplicate columns, the zero matrix, rank one.
    {
        let (m, n) = (12, 6);
        let mut a = common::data_full(m * n, 30);
        for i in 0..m {
            a[i * n + 4] = a[i * n + 1];
            a[i * n + 5] = a[i * n + 1];
        }
        v.push(case("duplicate columns", m, n, a));
    }
    {
        let (m, n) = (6, 12);
        let mut a = common::data_full(m * n, 31);
        for j in 0..n {
            a[3 * n + j] = a[j];
        }
        v.push(case("duplicate rows", m, n, a));
    }
    v.push(case("zero", 8, 5, vec![0.0; 40]));
    v.push(case("zero", 5, 8, vec![0.0; 40]));
    {
        let (m, n) = (10, 7);
        let x = common::data_full(m, 32);
        let y = common::data_full(n, 33);
        let a = (0..m * n).map(|t| x[t / n] * y[t % n]).collect();
        v.push(case("rank-1", m, n, a));
    }
    {
        let (m, n) = (20, 16);
        let sigma: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(-6.0 * i as f64 / (n - 1) as f64))
            .collect();
        v.push(case(
            "ill-conditioned",
            m,
            n,
            common::with_singular_values(m, n, &sigma, 34),
        ));
        v.push(case(
            "ill-conditioned wide",
            n,
            m,
            common::with_singular_values(n, m, &sigma, 35),
        ));
    }
    {
        let (m, n) = (16, 16);
        let sigma: Vec<f64> = (0..n).map(|i| if i < 8 { 1.0 } else { 0.0 }).collect();
        v.push(case(
            "rank-8, equal σ",
            m,
            n,
            common::with_singular_values(m, n, &sigma, 36),
        ));
    }
    {
        // Rank 5 by construction: B (48×5) · C (5×40), and its transpose.
        let (m, n, r) = (48, 40, 5);
        let b = common::data_full(m * r, 37);
        let c = common::data_full(r * n, 38);
        let a: Vec<f32> = (0..m * n)
            .map(|t| (0..r).map(|q| b[(t / n) * r + q] * c[q * n + t % n]).sum())
            .collect();
        let at: Vec<f32> = (0..n * m).map(|t| a[(t % m) * n + t / m]).collect();
        v.push(case("rank-5", m, n, a));
        v.push(case("rank-5 wide", n, m, at));
    }
    {
        // Graded columns: column j scaled by 10^(−j/2).
        let (m, n) = (30, 10);
        let a = common::data_full(m * n, 39)
            .iter()
            .enumerate()
            .map(|(t, x)| x * 10f32.powf(-((t % n) as f32) / 2.0))
            .collect();
        v.push(case("graded", m, n, a));
    }
    // Scaled far from 1: squares would overflow or underflow f32 without the power-of-two scaling.
    for (name, scale) in [("huge", 1e30f32), ("tiny", 1e-30)] {
        let a = common::data_full(9 * 6, 40)
            .iter()
            .map(|x| x * scale)
            .collect();
        v.push(case(name, 9, 6, a));
    }
    // LAPACK's driver-test types: identity, evenly spaced singular values with condition 10³
    // and 10⁶, clustered at 1 with one small value, and the long shapes of the issue.
    {
        let n = 8;
        let id = (0..n * n)
            .map(|t| if t % (n + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        v.push(case("identity", n, n, id));
        for (cond, seed) in [(1e3, 41u64), (1e6, 42)] {
            let (m, n) = (40, 30);
            let sigma: Vec<f64> = (0..n)
                .map(|i| 1.0 - (1.0 - 1.0 / cond) * i as f64 / (n - 1) as f64)
                .collect();
            v.push(case(
                &format!("evenly spaced, κ = {cond:e}"),
                m,
                n,
                common::with_singular_values(m, n, &sigma, seed),
            ));
        }
        let sigma: Vec<f64> = (0..32).map(|i| if i < 31 { 1.0 } else { 1e-6 }).collect();
        v.push(case(
            "clustered",
            32,
            32,
            common::with_singular_values(32, 32, &sigma, 43),
        ));
    }
    v.push(rnd("tall", 1000, 20, 44));
    v.push(rnd("wide", 20, 1000, 45));
    v.push(case("empty", 0, 5, vec![]));
    v.push(case("empty", 5, 0, vec![]));
    v.push(case("empty", 0, 0, vec![]));
    v
}

/// Runs every case on `ctx`, checks the ratios, the order and the values; returns the sweeps.
fn check_all(ctx: &Context, label: &str, opts: &SvdOptions) -> Vec<(String, u32)> {
    check_cases(ctx, label, opts, cases())
}

/// [`check_all`] on `cases`; also checks `svdvals` against the f64 values.
fn check_cases(
    ctx: &Context,
    label: &str,
    opts: &SvdOptions,
    cases: Vec<Case>,
) -> Vec<(String, u32)> {
    let mut failures = Vec::new();
    let mut sweeps = Vec::new();
    for c in cases {
        let k = c.m.min(c.n);
        let a = ctx.tensor(&[c.m, c.n], &c.a).unwrap();
        let t0 = Instant::now();
        let svd = match ctx.svd_with(&a, opts) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", c.name));
                continue;
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(svd.u.shape(), &[c.m, k], "{}", c.name);
        assert_eq!(svd.s.shape(), &[k], "{}", c.name);
        assert_eq!(svd.vt.shape(), &[k, c.n], "{}", c.name);
        if ctx.is_gpu() {
            for t in [&svd.u, &svd.s, &svd.vt] {
                assert!(k == 0 || t.location() == Location::Gpu, "{}", c.name);
            }
        }
        let (u, s, vt) = (
            svd.u.to_vec().unwrap(),
            svd.s.to_vec().unwrap(),
            svd.vt.to_vec().unwrap(),
        );
        let r = ratios(&c.a, c.m, c.n, &u, &s, &vt);
        if r.iter().any(|x| x.is_nan() || *x >= 35.0) {
            failures.push(format!("{}: ratios {r:?}", c.name));
        }
        if s.iter().any(|x| x.is_nan() || *x < 0.0) || s.windows(2).any(|w| w[0] < w[1]) {
            failures.push(format!("{}: S not descending non-negative: {s:?}", c.name));
        }
        let reference = singular_values_f64(&c.a, c.m, c.n).unwrap();
        let a_norm = reference.first().copied().unwrap_or(0.0);
        let bound = a_norm * (k.max(1) as f64) * RATIO_EPS * 4.0;
        for (q, (&x, &y)) in s.iter().zip(&reference).enumerate() {
            if (f64::from(x) - y).abs() > bound {
                failures.push(format!(
                    "{}: σ{q} = {x}, f64 reference {y}, bound {bound:e}",
                    c.name
                ));
            }
        }
        match ctx.svdvals(&a).and_then(|v| v.to_vec()) {
            Ok(values) => {
                if values.len() != k {
                    failures.push(format!("{}: svdvals gave {} values", c.name, values.len()));
                }
                for (q, (&x, &y)) in values.iter().zip(&reference).enumerate() {
                    if (f64::from(x) - y).abs() > bound {
                        failures.push(format!(
                            "{}: svdvals σ{q} = {x}, f64 reference {y}, bound {bound:e}",
                            c.name
                        ));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: svdvals: {e}", c.name)),
        }
        if svd.sweeps > MAX_SWEEPS {
            failures.push(format!("{}: {} sweeps", c.name, svd.sweeps));
        }
        eprintln!(
            "{label} {:<28} sweeps {:>2} off {:.2e} ratios [{:.2}, {:.2}, {:.2}] {:.1} ms",
            c.name,
            svd.sweeps,
            svd.off_diagonal,
            r[0],
            r[1],
            r[2],
            secs * 1e3
        );
        sweeps.push((c.name, svd.sweeps));
    }
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
    sweeps
}

#[test]
fn gpu_svd_meets_lapack_ratios() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    // The adapter's default workgroup size, then every variant forced.
    let variants = std::iter::once(None).chain(SVD_WORKGROUPS.into_iter().map(Some));
    for workgroup in variants {
        let label = format!("gpu wg={workgroup:?}");
        let sweeps = check_all(
            ctx,
            &label,
            &SvdOptions {
                workgroup,
                ..SvdOptions::default()
            },
        );
        // Jacobi converges in a handful of sweeps on these sizes; 30 means it did not converge.
        for (name, s) in &sweeps {
            assert!(
                *s < MAX_SWEEPS,
                "{label} {name}: no convergence in {s} sweeps"
            );
        }
    }
    // The QR preconditioning forced on for every tall case, and off.
    for qr_first in [Some(true), Some(false)] {
        let label = format!("gpu qr_first={qr_first:?}");
        let opts = SvdOptions {
            qr_first,
            ..SvdOptions::default()
        };
        for (name, s) in &check_all(ctx, &label, &opts) {
            assert!(*s < MAX_SWEEPS, "{label} {name}: {s} sweeps");
        }
    }
    let a = ctx.tensor(&[2, 2], &[1.0; 4]).unwrap();
    let e = ctx
        .svd_with(
            &a,
            &SvdOptions {
                workgroup: Some(48),
                ..SvdOptions::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("48"), "{e}");
}

/// Matrices past the batched kernel's 32 (the band SVD's domain), of every kind the small
/// cases hold: sizes around the panel width 32 and primes, tall, wide, one row or column,
/// rank-deficient, zero, ill-conditioned, graded and scaled far from 1.
fn band_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let rnd = |name: &str, m: usize, n: usize, seed: u64| {
        case(name, m, n, common::data_full(m * n, seed))
    };
    for (i, n) in [33usize, 63, 64, 65, 97, 129].into_iter().enumerate() {
        v.push(rnd("square", n, n, 100 + i as u64));
    }
    v.push(rnd("tall", 300, 40, 110));
    v.push(rnd("tall", 1000, 20, 111));
    v.push(rnd("tall", 2000, 65, 112));
    v.push(rnd("wide", 40, 300, 113));
    v.push(rnd("wide", 65, 2000, 114));
    v.push(rnd("row", 1, 100, 115));
    v.push(rnd("column", 100, 1, 116));
    {
        let (m, n) = (80, 50);
        let mut a = common::data_full(m * n, 117);
        for i in 0..m {
            for j in [10, 20, 33, 49] {
                a[i * n + j] = a[i * n + 1];
            }
        }
        v.push(case("duplicate columns", m, n, a));
    }
    v.push(case("zero", 40, 33, vec![0.0; 40 * 33]));
    {
        let (m, n, r) = (70, 45, 5);
        let b = common::data_full(m * r, 118);
        let c = common::data_full(r * n, 119);
        let a: Vec<f32> = (0..m * n)
            .map(|t| (0..r).map(|q| b[(t / n) * r + q] * c[q * n + t % n]).sum())
            .collect();
        v.push(case("rank-5", m, n, a));
    }
    {
        let (m, n) = (60, 50);
        let sigma: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(-6.0 * i as f64 / (n - 1) as f64))
            .collect();
        v.push(case(
            "ill-conditioned",
            m,
            n,
            common::with_singular_values(m, n, &sigma, 120),
        ));
        let sigma: Vec<f64> = (0..n).map(|i| if i < 40 { 1.0 } else { 0.0 }).collect();
        v.push(case(
            "rank-40, equal σ",
            m,
            n,
            common::with_singular_values(m, n, &sigma, 121),
        ));
    }
    {
        let (m, n) = (100, 40);
        let a = common::data_full(m * n, 122)
            .iter()
            .enumerate()
            .map(|(t, x)| x * 10f32.powf(-((t % n) as f32) / 8.0))
            .collect();
        v.push(case("graded", m, n, a));
    }
    // Periodic entries: rank 2, and the reduction of its remainder (rounding noise) goes
    // through subnormal values, which lavapipe flushes to zero.
    let periodic = |m: usize, n: usize| -> Vec<f32> {
        (0..m * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    v.push(case("periodic", 200, 200, periodic(200, 200)));
    v.push(case("periodic", 300, 100, periodic(300, 100)));
    for (name, scale) in [("huge", 1e30f32), ("tiny", 1e-30)] {
        let a = common::data_full(50 * 40, 123)
            .iter()
            .map(|x| x * scale)
            .collect();
        v.push(case(name, 50, 40, a));
    }
    v
}

#[test]
fn gpu_band_svd_meets_lapack_ratios() {
    let Some(ctx) = common::gpu() else { return };
    // Both panel widths of the band reduction, whichever this adapter prefers.
    for width in [Some(16), Some(32), None] {
        gpu_linalg::force_panel_width(width);
        let label = format!("gpu band, panel {width:?}");
        for (name, s) in check_cases(ctx, &label, &SvdOptions::default(), band_cases()) {
            assert_eq!(s, 0, "{name}: the band SVD runs no Jacobi sweeps");
        }
    }
    // The counts of a 256×256 SVD: dependent dispatches grow like n/b, not n²/2.
    let a = ctx
        .tensor(&[256, 256], &common::data_full(256 * 256, 130))
        .unwrap();
    let svd = ctx.svd(&a).unwrap();
    eprintln!(
        "band 256×256: {} dispatches, {} submits",
        svd.dispatches, svd.submits
    );
    // About 14 per 16-column panel pair at the narrower width (6 for the reduction, 6 for the
    // back-transforms, 2 read-outs): 217 at 256 with 16-wide panels, 105 with 32.
    assert!(
        svd.dispatches > 0 && svd.dispatches < 256,
        "{}",
        svd.dispatches
    );
    // NaN and Inf are refused with the shape, by svd and svdvals.
    let mut bad = common::data_full(40 * 35, 131);
    bad[77] = f32::NAN;
    let t = ctx.tensor(&[40, 35], &bad).unwrap();
    for e in [ctx.svd(&t).unwrap_err(), ctx.svdvals(&t).unwrap_err()] {
        assert!(e.to_string().contains("40×35"), "{e}");
    }
}

#[test]
fn cpu_svd_meets_lapack_ratios() {
    check_all(&common::cpu(), "cpu", &SvdOptions::default());
}

#[test]
fn svd_of_a_diagonal_matrix_is_exact() {
    let cpu = common::cpu();
    for ctx in [Some(&cpu), common::gpu()].into_iter().flatten() {
        let a = ctx
            .tensor(&[3, 3], &[2.0, 0.0, 0.0, 0.0, -5.0, 0.0, 0.0, 0.0, 3.0])
            .unwrap();
        let svd = ctx.svd(&a).unwrap();
        assert_eq!(svd.s.to_vec().unwrap(), vec![5.0, 3.0, 2.0]);
    }
}

#[test]
fn bad_input_is_an_error_naming_the_shape() {
    let cpu = common::cpu();
    for ctx in [Some(&cpu), common::gpu()].into_iter().flatten() {
        for shape in [vec![4usize], vec![2, 2, 2], vec![]] {
            let n = shape.iter().product();
            let t = ctx.tensor(&shape, &vec![1.0; n]).unwrap();
            let e = ctx.svd(&t).unwrap_err();
            assert!(matches!(e, Error::Shape(_)), "{e}");
            assert!(e.to_string().contains(&format!("{shape:?}")), "{e}");
        }
        let t = ctx.tensor_u32(&[2, 2], &[1, 2, 3, 4]).unwrap();
        let e = ctx.svd(&t).unwrap_err();
        assert!(
            e.to_string().contains("[2, 2]") && e.to_string().contains("uint32"),
            "{e}"
        );
    }
    for ctx in [Some(&cpu), common::gpu()].into_iter().flatten() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let t = ctx
                .tensor(&[3, 2], &[1.0, 2.0, bad, 4.0, 5.0, 6.0])
                .unwrap();
            let e = ctx.svd(&t).unwrap_err();
            assert!(e.to_string().contains("3×2"), "{e}");
        }
    }
    // A host tensor works with every backend.
    let h = Tensor::from_vec(&[2, 1], vec![3.0, 4.0]).unwrap();
    let s = cpu.svd(&h).unwrap().s.to_vec().unwrap();
    assert!((s[0] - 5.0).abs() < 1e-6);
}

/// Timing of a 256×256 SVD, GPU against CPU (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn timing_256() {
    let n = 256;
    let a = common::data_full(n * n, 99);
    let cpu = common::cpu();
    for (label, ctx) in [("cpu", Some(&cpu)), ("gpu", common::gpu())] {
        let Some(ctx) = ctx else { continue };
        let t = ctx.tensor(&[n, n], &a).unwrap();
        let _ = ctx.svd(&t).unwrap();
        let t0 = Instant::now();
        let svd = ctx.svd(&t).unwrap();
        let _ = svd.s.to_vec().unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let r = common::svd_ratios(&a, n, n, &svd);
        eprintln!(
            "{label} 256×256: {:.1} ms, {} sweeps, ratios {r:?}",
            secs * 1e3,
            svd.sweeps
        );
    }
}

/// Sweeps and time of tall SVDs with and without the QR first (run with `--ignored
/// --nocapture`).
#[test]
#[ignore]
fn timing_tall_qr_first() {
    let Some(ctx) = common::gpu() else { return };
    for (m, n) in [(4096usize, 64usize), (1000, 7)] {
        let a = common::data_full(m * n, 5);
        let t = ctx.tensor(&[m, n], &a).unwrap();
        for qr_first in [Some(false), Some(true)] {
            let opts = SvdOptions {
                qr_first,
                ..SvdOptions::default()
            };
            let _ = ctx.svd_with(&t, &opts).unwrap().s.to_vec().unwrap();
            let t0 = Instant::now();
            let svd = ctx.svd_with(&t, &opts).unwrap();
            let _ = svd.s.to_vec().unwrap();
            let secs = t0.elapsed().as_secs_f64();
            let r = common::svd_ratios(&a, m, n, &svd);
            eprintln!(
                "{m}×{n} qr_first={qr_first:?}: {:.1} ms, {} sweeps, ratios {r:?}",
                secs * 1e3,
                svd.sweeps
            );
        }
    }
}

#[test]
fn cli_writes_the_factors() {
    use gpu_linalg::npy::{read_npy, write_npy_f32};
    let d = std::env::temp_dir().join(format!("gpu-linalg-svd-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let (m, n) = (6, 4);
    let a = common::data_full(m * n, 77);
    let (pa, pu, ps, pv) = (
        d.join("a.npy"),
        d.join("u.npy"),
        d.join("s.npy"),
        d.join("vt.npy"),
    );
    write_npy_f32(&pa, &[m, n], &a).unwrap();
    let mut backends = vec!["cpu"];
    if common::gpu().is_some() {
        backends.push("gpu");
    }
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for backend in backends {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-linalg"))
            .args(["--backend", backend, "--verify", "svd", &arg(&pa)])
            .args(["--u", &arg(&pu), "--s", &arg(&ps), "--vt", &arg(&pv)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (u, s, vt) = (
            read_npy(&pu).unwrap(),
            read_npy(&ps).unwrap(),
            read_npy(&pv).unwrap(),
        );
        assert_eq!(
            (u.shape.clone(), s.shape.clone(), vt.shape.clone()),
            (vec![m, n], vec![n], vec![n, n])
        );
        let r = ratios(&a, m, n, &u.data, &s.data, &vt.data);
        assert!(r.iter().all(|x| *x < 35.0), "{backend}: {r:?}");
        // A 3-D input is refused in one line naming the shape, and nothing is written.
        let p3 = d.join("a3.npy");
        write_npy_f32(&p3, &[2, 2, 2], &[1.0; 8]).unwrap();
        let none = d.join("none.npy");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-linalg"))
            .args(["--backend", backend, "svd", &arg(&p3), "--s", &arg(&none)])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("[2, 2, 2]"));
        assert!(!none.exists());
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Checks every matrix of a batched SVD (run with `opts`) by the driver-test ratios and its S
/// against f64.
fn check_batched(
    ctx: &Context,
    (label, opts): (&str, &SvdBatchedOptions),
    batch: usize,
    m: usize,
    n: usize,
    a: &[f32],
) -> u32 {
    let k = m.min(n);
    let t = ctx.tensor(&[batch, m, n], a).unwrap();
    let t0 = Instant::now();
    let svd = ctx.svd_batched_with(&t, opts).unwrap();
    let (u, s, vt) = (
        svd.u.to_vec().unwrap(),
        svd.s.to_vec().unwrap(),
        svd.vt.to_vec().unwrap(),
    );
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(svd.u.shape(), &[batch, m, k]);
    assert_eq!(svd.s.shape(), &[batch, k]);
    assert_eq!(svd.vt.shape(), &[batch, k, n]);
    if ctx.is_gpu() {
        assert_eq!(svd.u.location(), Location::Gpu);
    }
    let mut worst = [0.0f64; 3];
    for b in 0..batch {
        let ab = &a[b * m * n..(b + 1) * m * n];
        let (ub, sb, vb) = (
            &u[b * m * k..(b + 1) * m * k],
            &s[b * k..(b + 1) * k],
            &vt[b * k * n..(b + 1) * k * n],
        );
        let r = ratios(ab, m, n, ub, sb, vb);
        assert!(
            r.iter().all(|x| *x < 35.0),
            "{label} {m}×{n} matrix {b}: ratios {r:?}"
        );
        for (w, x) in worst.iter_mut().zip(r) {
            *w = w.max(x);
        }
        assert!(
            sb.windows(2).all(|w| w[0] >= w[1]),
            "{label} {m}×{n} matrix {b}: {sb:?}"
        );
        let reference = singular_values_f64(ab, m, n).unwrap();
        let bound = reference.first().copied().unwrap_or(0.0) * k as f64 * RATIO_EPS * 4.0;
        for (&x, &y) in sb.iter().zip(&reference) {
            assert!(
                (f64::from(x) - y).abs() <= bound,
                "{label} {m}×{n} matrix {b}: σ {x} vs {y}"
            );
        }
    }
    eprintln!(
        "{label} batched {batch}×{m}×{n}: worst ratios {worst:.2?}, sweeps {}, {:.1} ms",
        svd.sweeps,
        secs * 1e3
    );
    svd.sweeps
}

/// Random matrices, then (in the same batch) a zero matrix, one with duplicate columns and a
/// rank-one matrix.
fn rank_deficient_batch(m: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut a = common::data_full(4 * m * n, seed);
    a[..m * n].fill(0.0);
    for i in 0..m {
        a[m * n + i * n + n - 1] = a[m * n + i * n];
    }
    let x = common::data_full(m, seed + 1);
    let y = common::data_full(n, seed + 2);
    for t in 0..m * n {
        a[2 * m * n + t] = x[t / n] * y[t % n];
    }
    a
}

fn batched_cases(ctx: &Context, label: &str, opts: &SvdBatchedOptions) {
    let c = (label, opts);
    check_batched(ctx, c, 1000, 16, 16, &common::data_full(1000 * 256, 61));
    check_batched(ctx, c, 37, 5, 3, &common::data_full(37 * 15, 62));
    check_batched(ctx, c, 37, 3, 5, &common::data_full(37 * 15, 63));
    check_batched(ctx, c, 5, 1, 1, &common::data_full(5, 64));
    check_batched(ctx, c, 4, 9, 1, &common::data_full(36, 71));
    check_batched(ctx, c, 4, 1, 9, &common::data_full(36, 72));
    check_batched(ctx, c, 50, 2, 2, &common::data_full(200, 73));
    check_batched(ctx, c, 20, 7, 5, &common::data_full(20 * 35, 74));
    check_batched(ctx, c, 20, 5, 7, &common::data_full(20 * 35, 75));
    check_batched(ctx, c, 3, 32, 32, &common::data_full(3 * 1024, 65));
    check_batched(ctx, c, 3, 31, 32, &common::data_full(3 * 992, 76));
    check_batched(ctx, c, 3, 32, 31, &common::data_full(3 * 992, 77));
    check_batched(ctx, c, 3, 32, 7, &common::data_full(3 * 224, 66));
    // Rank-deficient members: a zero matrix, duplicate columns, rank one, all in one batch.
    for (m, n, seed) in [
        (6, 4, 67),
        (4, 6, 80),
        (16, 16, 83),
        (32, 32, 86),
        (7, 5, 89),
    ] {
        check_batched(ctx, c, 4, m, n, &rank_deficient_batch(m, n, seed));
    }
    check_batched(ctx, c, 3, 16, 16, &[0.0; 3 * 256]);
}

fn forced(kernel: SvdBatchedKernel) -> SvdBatchedOptions {
    SvdBatchedOptions {
        kernel: Some(kernel),
    }
}

#[test]
fn gpu_svd_batched() {
    let Some(ctx) = common::gpu() else { return };
    for kernel in [
        SvdBatchedKernel::Invocation,
        SvdBatchedKernel::Unrolled,
        SvdBatchedKernel::Workgroup(None),
    ] {
        batched_cases(ctx, &format!("gpu {kernel}"), &forced(kernel));
        // NaN and infinite input: an error naming the shape and NaN.
        let mut v = vec![1.0; 2 * 9];
        v[13] = f32::NAN;
        let bad = ctx.tensor(&[2, 3, 3], &v).unwrap();
        let e = ctx.svd_batched_with(&bad, &forced(kernel)).unwrap_err();
        assert!(
            e.to_string().contains("[2, 3, 3]") && e.to_string().contains("NaN"),
            "{kernel}: {e}"
        );
        v[13] = f32::INFINITY;
        let bad = ctx.tensor(&[2, 3, 3], &v).unwrap();
        assert!(ctx.svd_batched_with(&bad, &forced(kernel)).is_err());
    }
    // Every workgroup size of the workgroup-per-matrix kernel.
    for wg in BATCHED_WG_SIZES {
        let kernel = SvdBatchedKernel::Workgroup(Some(wg));
        let c = (&*format!("gpu {kernel}"), &forced(kernel));
        check_batched(ctx, c, 100, 16, 16, &common::data_full(100 * 256, 90));
        check_batched(ctx, c, 3, 32, 32, &common::data_full(3 * 1024, 91));
        check_batched(ctx, c, 20, 5, 7, &common::data_full(20 * 35, 92));
        check_batched(ctx, c, 4, 16, 16, &rank_deficient_batch(16, 16, 93));
    }
    // More matrices than one grid dimension holds workgroups (65,535): the grid is folded.
    let b = 66_000;
    let c = ("gpu workgroup", &forced(SvdBatchedKernel::Workgroup(None)));
    check_batched(ctx, c, b, 2, 2, &common::data_full(b * 4, 94));
    // The adapter's own choice (tuned at the first call, or read from the cache).
    let chosen = ctx.svd_batched_kernel().unwrap();
    eprintln!("batched svd kernel on {}: {chosen}", ctx.description());
    check_batched(
        ctx,
        ("gpu default", &SvdBatchedOptions::default()),
        20,
        7,
        5,
        &common::data_full(20 * 35, 95),
    );
    let big = ctx.tensor(&[2, 33, 4], &vec![1.0; 264]).unwrap();
    let e = ctx.svd_batched(&big).unwrap_err();
    assert!(
        e.to_string().contains("32") && e.to_string().contains("[2, 33, 4]"),
        "{e}"
    );
    let mut v = vec![1.0; 2 * 9];
    v[13] = f32::NAN;
    let bad = ctx.tensor(&[2, 3, 3], &v).unwrap();
    let e = ctx.svd_batched(&bad).unwrap_err();
    assert!(e.to_string().contains("[2, 3, 3]"), "{e}");
    let empty = ctx.tensor(&[0, 4, 4], &[]).unwrap();
    assert_eq!(ctx.svd_batched(&empty).unwrap().s.shape(), &[0, 4]);
    // A workgroup size outside the list is refused.
    let t = ctx.tensor(&[1, 2, 2], &[1.0, 0.0, 0.0, 1.0]).unwrap();
    let odd = forced(SvdBatchedKernel::Workgroup(Some(48)));
    assert!(ctx.svd_batched_with(&t, &odd).is_err());
}

#[test]
fn batched_kernel_names() {
    for (s, k) in [
        ("invocation", SvdBatchedKernel::Invocation),
        (" Unrolled", SvdBatchedKernel::Unrolled),
        ("workgroup", SvdBatchedKernel::Workgroup(None)),
        ("workgroup@64", SvdBatchedKernel::Workgroup(Some(64))),
        (" Workgroup@256 ", SvdBatchedKernel::Workgroup(Some(256))),
    ] {
        assert_eq!(s.parse::<SvdBatchedKernel>().unwrap(), k);
        assert_eq!(k.to_string().parse::<SvdBatchedKernel>().unwrap(), k);
    }
    for s in ["", "serial", "workgroup@48", "workgroup@", "invocation@64"] {
        let e = s.parse::<SvdBatchedKernel>().unwrap_err();
        assert!(e.to_string().contains("invocation"), "{e}");
    }
}

#[test]
fn cpu_svd_batched() {
    let ctx = common::cpu();
    batched_cases(&ctx, "cpu", &SvdBatchedOptions::default());
    let m2 = ctx.tensor(&[4, 4], &[1.0; 16]).unwrap();
    assert!(matches!(ctx.svd_batched(&m2), Err(Error::Shape(_))));
}

/// 10,000 SVDs of 16×16 and 1,000 of 32×32 in one call each: the CPU, then each GPU kernel
/// (run with `--ignored --nocapture`; prints, asserts nothing about time).
#[test]
#[ignore]
fn timing_batched_10000() {
    let cpu = common::cpu();
    let mut runs: Vec<(String, &Context, SvdBatchedOptions)> =
        vec![("cpu".into(), &cpu, SvdBatchedOptions::default())];
    if let Some(gpu) = common::gpu() {
        // What the first call on an adapter without a cached choice pays (pipelines included).
        let t0 = Instant::now();
        let tuning = gpu.tune_svd_batched().unwrap();
        eprintln!(
            "batched svd tuning: {:.0} ms, {tuning:?}",
            t0.elapsed().as_secs_f64() * 1e3
        );
        eprintln!(
            "GPU default batched kernel: {}",
            gpu.svd_batched_kernel().unwrap()
        );
        for kernel in [
            SvdBatchedKernel::Invocation,
            SvdBatchedKernel::Unrolled,
            SvdBatchedKernel::Workgroup(None),
            SvdBatchedKernel::Workgroup(Some(32)),
            SvdBatchedKernel::Workgroup(Some(128)),
        ] {
            runs.push((format!("gpu {kernel}"), gpu, forced(kernel)));
        }
    }
    for (b, n) in [(10_000, 16), (1_000, 32)] {
        let a = common::data_full(b * n * n, 70);
        for (label, ctx, opts) in &runs {
            let t = ctx.tensor(&[b, n, n], &a).unwrap();
            let _ = ctx.svd_batched_with(&t, opts).unwrap().s.to_vec().unwrap();
            let t0 = Instant::now();
            let svd = ctx.svd_batched_with(&t, opts).unwrap();
            let _ = svd.s.to_vec().unwrap();
            eprintln!(
                "{label} svd_batched {b}×{n}×{n}: {:.1} ms, {} sweeps",
                t0.elapsed().as_secs_f64() * 1e3,
                svd.sweeps
            );
        }
    }
}

/// Sizes up to 512 (the largest), once on the chosen configuration.
#[test]
fn gpu_svd_up_to_512() {
    let Some(ctx) = common::gpu() else { return };
    for (n, seed) in [(200usize, 50u64), (512, 51)] {
        let a = common::data_full(n * n, seed);
        let t = ctx.tensor(&[n, n], &a).unwrap();
        let r = ctx.svd(&t).unwrap();
        let s = r.s.to_vec().unwrap();
        let q = common::svd_ratios(&a, n, n, &r);
        assert!(q.iter().all(|x| *x < 35.0), "{n}×{n}: ratios {q:?}");
        assert!(s.windows(2).all(|w| w[0] >= w[1]) && s.iter().all(|x| *x >= 0.0));
        eprintln!("{n}×{n}: ratios {q:?}, {} sweeps", r.sweeps);
    }
}

/// Random n×n test matrices: uniform entries in [-1, 1) and Gaussian ones (Box–Muller on the
/// same uniforms), for `seeds` seeds.
fn random_square(n: usize, seeds: std::ops::Range<u64>) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    for seed in seeds {
        let uniform = common::data_full(n * n, 1000 + seed);
        let gauss: Vec<f32> = uniform
            .chunks(2)
            .flat_map(|p| {
                let u1 = (f64::from(p[0]) + 1.0) / 2.0 + 1e-12;
                let u2 = f64::from(p[1]) + 1.0;
                let r = (-2.0 * u1.ln()).sqrt();
                let t = std::f64::consts::PI * u2;
                [(r * t.cos()) as f32, (r * t.sin()) as f32]
            })
            .collect();
        out.push((format!("uniform seed {seed}"), uniform));
        out.push((format!("gaussian seed {seed}"), gauss));
    }
    out
}

/// The bar: a random 256×256 matrix converges in at most 12 sweeps. Checked on several
/// seeds and on uniform and Gaussian entries, not on one lucky matrix.
#[test]
fn random_256_converges_within_12_sweeps() {
    let Some(ctx) = common::gpu() else { return };
    let n = 256;
    for (name, a) in random_square(n, 0..4) {
        let t = ctx.tensor(&[n, n], &a).unwrap();
        let svd = ctx.svd(&t).unwrap();
        let q = common::svd_ratios(&a, n, n, &svd);
        eprintln!(
            "256×256 {name}: {} sweeps, off {:e} (tol {:e}), ratios {q:.2?}",
            svd.sweeps,
            svd.off_diagonal,
            gpu_linalg::svd_tolerance(n)
        );
        assert!(q.iter().all(|x| *x < 35.0), "{name}: {q:?}");
        assert!(svd.sweeps <= 12, "{name}: {} sweeps (bar: 12)", svd.sweeps);
    }
}

/// Sweeps with and without sorting the columns by norm before each sweep (run with
/// `--ignored --nocapture`).
#[test]
#[ignore]
fn sweeps_with_and_without_sorting() {
    let Some(ctx) = common::gpu() else { return };
    for n in [64usize, 128, 256] {
        let mut totals = [0u32; 2];
        for (name, a) in random_square(n, 0..8) {
            let t = ctx.tensor(&[n, n], &a).unwrap();
            let mut line = format!("{n}×{n} {name}:");
            for (i, sort) in [false, true].into_iter().enumerate() {
                let opts = SvdOptions {
                    sort_columns: Some(sort),
                    ..SvdOptions::default()
                };
                let svd = ctx.svd_with(&t, &opts).unwrap();
                totals[i] += svd.sweeps;
                line += &format!(" sort={sort} {} sweeps", svd.sweeps);
            }
            eprintln!("{line}");
        }
        eprintln!(
            "{n}×{n} mean sweeps over 16 matrices: unsorted {:.2}, sorted {:.2}",
            f64::from(totals[0]) / 16.0,
            f64::from(totals[1]) / 16.0
        );
    }
}

/// The workgroup size is tuned per adapter (one sweep at each size) and is one of the sizes
/// the kernels are built with; the CPU backend has none.
#[test]
fn svd_workgroup_is_tuned_per_adapter() {
    assert!(common::cpu().svd_workgroup().is_err());
    let Some(ctx) = common::gpu() else { return };
    let wg = ctx.svd_workgroup().unwrap();
    assert!(SVD_WORKGROUPS.contains(&wg), "{wg}");
    let timings = ctx.tune_svd().unwrap();
    assert!(!timings.is_empty());
    for (size, t) in &timings {
        let t = t
            .as_ref()
            .unwrap_or_else(|e| panic!("workgroup {size}: {e}"));
        assert!(*t > 0.0 && t.is_finite(), "workgroup {size}: {t}");
    }
}

/// Small matrices go to the batched kernel (one dispatch a sweep) unless a workgroup size is
/// forced: both routes timed (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn timing_small_matrices() {
    let Some(ctx) = common::gpu() else { return };
    let forced = SvdOptions {
        workgroup: Some(16),
        ..SvdOptions::default()
    };
    for n in [8usize, 16, 32] {
        let a = common::data_full(n * n, 3);
        let t = ctx.tensor(&[n, n], &a).unwrap();
        let mut line = format!("{n}×{n}:");
        for (label, opts) in [
            ("batched kernel", SvdOptions::default()),
            ("round-robin", forced),
        ] {
            let _ = ctx.svd_with(&t, &opts).unwrap().s.to_vec().unwrap();
            let t0 = Instant::now();
            for _ in 0..5 {
                let _ = ctx.svd_with(&t, &opts).unwrap().s.to_vec().unwrap();
            }
            line += &format!(" {label} {:.2} ms", t0.elapsed().as_secs_f64() / 5.0 * 1e3);
        }
        eprintln!("{line}");
    }
}
