//! QR on the GPU (blocked Householder; shifted CholeskyQR3 over GPU GEMMs for the tallest input)
//! and the CPU backend (faer's Householder),
//! judged by LAPACK's driver-test ratios, R's shape and signs, on tall, square, wide,
//! ill-conditioned (κ up to 10⁵), rank-deficient and empty matrices.

mod common;

use std::time::Instant;

use gpu_linalg::qr::cpu::ratios;
use gpu_linalg::{Context, Error, Location, MAX_QR_PASSES, QR_CHOLESKY_RATIO};

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
    v.push(rnd("scalar", 1, 1, 1));
    v.push(rnd("row", 1, 9, 2));
    v.push(rnd("column", 9, 1, 3));
    for (i, n) in [2usize, 3, 7, 16, 33, 64].into_iter().enumerate() {
        v.push(rnd("square", n, n, 10 + i as u64));
    }
    v.push(case("exact", 5, 4, common::data(20, 4)));
    v.push(rnd("tall", 100, 7, 20));
    v.push(rnd("tall", 257, 31, 21));
    v.push(rnd("tall", 1000, 3, 24));
    v.push(rnd("square", 97, 97, 26));
    v.push(rnd("tall", 300, 129, 27));
    // Past the rows a 32-wide panel may hold on lavapipe: the 16-wide panels.
    v.push(rnd("tall", 9000, 20, 28));
    let periodic: Vec<f32> = (0..200 * 200)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    v.push(case("periodic rank-deficient", 200, 200, periodic));
    {
        // Tall and rank-deficient: CholeskyQR gives up, the GPU's Householder takes it.
        let (m, n) = (400, 20);
        let mut a = common::data_full(m * n, 29);
        for i in 0..m {
            a[i * n + 7] = a[i * n + 2];
            a[i * n + 13] = 0.0;
        }
        v.push(case("tall rank-deficient", m, n, a));
    }
    v.push(rnd("wide", 7, 100, 22));
    v.push(rnd("wide", 2, 3, 23));
    v.push(rnd("wide", 3, 1000, 25));
    for (i, kappa) in [1e1, 1e2, 1e3, 1e4, 1e5].into_iter().enumerate() {
        let s = 140 + 4 * i as u64;
        v.push(case(
            &format!("κ={kappa:e}"),
            200,
            40,
            common::conditioned(200, 40, kappa, s),
        ));
        v.push(case(
            &format!("κ={kappa:e}"),
            32,
            32,
            common::conditioned(32, 32, kappa, s + 1),
        ));
        // Tall-skinny: through CholeskyQR (plain first pass for small κ, shifted otherwise).
        v.push(case(
            &format!("κ={kappa:e} tall"),
            480,
            40,
            common::conditioned(480, 40, kappa, s + 3),
        ));
        v.push(case(
            &format!("κ={kappa:e} wide"),
            24,
            60,
            common::conditioned(24, 60, kappa, s + 2),
        ));
    }
    // Rank-deficient: duplicate columns, a zero column, rank one, the zero matrix.
    {
        let (m, n) = (12, 6);
        let mut a = common::data_full(m * n, 30);
        for i in 0..m {
            a[i * n + 4] = a[i * n + 1];
            a[i * n + 2] = 0.0;
        }
        v.push(case("duplicate and zero columns", m, n, a));
    }
    {
        let (m, n) = (10, 7);
        let x = common::data_full(m, 32);
        let y = common::data_full(n, 33);
        v.push(case(
            "rank-1",
            m,
            n,
            (0..m * n).map(|t| x[t / n] * y[t % n]).collect(),
        ));
    }
    v.push(case("zero", 8, 5, vec![0.0; 40]));
    v.push(case("zero", 5, 8, vec![0.0; 40]));
    v
}

/// The checks every QR must pass; returns the ratios.
fn check(ctx: &Context, c: &Case, gpu: bool) -> ([f64; 2], u32) {
    let (m, n) = (c.m, c.n);
    let k = m.min(n);
    let a = ctx.tensor(&[m, n], &c.a).unwrap();
    let qr = ctx.qr(&a).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    assert_eq!(qr.q.shape(), &[m, k], "{}", c.name);
    assert_eq!(qr.r.shape(), &[k, n], "{}", c.name);
    if gpu {
        assert!(k == 0 || qr.q.location() == Location::Gpu, "{}", c.name);
    }
    let q = qr.q.to_vec().unwrap();
    let r = qr.r.to_vec().unwrap();
    assert!(
        q.iter().chain(&r).all(|x| x.is_finite()),
        "{}: NaN/Inf",
        c.name
    );
    for i in 0..k {
        assert!(
            r[i * n + i] >= 0.0,
            "{}: R[{i},{i}] = {}",
            c.name,
            r[i * n + i]
        );
        for j in 0..i.min(n) {
            assert_eq!(
                r[i * n + j],
                0.0,
                "{}: R[{i},{j}] below the diagonal",
                c.name
            );
        }
    }
    let rt = ratios(&c.a, m, n, &q, &r);
    assert!(rt[0] < 35.0 && rt[1] < 35.0, "{}: ratios {rt:?}", c.name);
    (rt, qr.passes)
}

#[test]
fn cpu_qr_ratios() {
    let ctx = common::cpu();
    for c in cases() {
        let (rt, passes) = check(&ctx, &c, false);
        assert_eq!(passes, 0);
        eprintln!("cpu {:<36} ratios {:>6.2} {:>6.2}", c.name, rt[0], rt[1]);
    }
}

#[test]
fn gpu_qr_ratios() {
    let Some(ctx) = common::gpu() else { return };
    // Both Householder panel widths, whichever this adapter prefers.
    for width in [Some(16), Some(32), None] {
        gpu_linalg::force_panel_width(width);
        for c in cases() {
            check_case(ctx, &c, width);
        }
    }
}

/// One case of [`gpu_qr_ratios`] on the GPU, with the forced panel width `width`.
fn check_case(ctx: &Context, c: &Case, width: Option<usize>) {
    let t = Instant::now();
    let (rt, passes) = check(ctx, c, true);
    assert!(passes <= MAX_QR_PASSES);
    eprintln!(
        "gpu panel {width:?} {:<36} ratios {:>6.2} {:>6.2} passes {passes} {:?}",
        c.name,
        rt[0],
        rt[1],
        t.elapsed()
    );
    // Tall-skinny full-rank matrices take CholeskyQR (at least 2 passes: CholeskyQR2 when
    // well conditioned, the shifted CholeskyQR3 otherwise); every other one,
    // rank-deficient tall ones included (CholeskyQR gives up on them), the GPU's blocked
    // Householder: no passes.
    let tall = c.n > 0 && c.m >= QR_CHOLESKY_RATIO * c.n;
    let deficient = c.name.contains("zero") || c.name.contains("rank");
    if tall && !deficient {
        assert!(passes >= 2, "{}: {passes} CholeskyQR passes", c.name);
    } else {
        assert_eq!(passes, 0, "{}: {passes} CholeskyQR passes", c.name);
    }
}

#[test]
fn same_conventions_on_both_backends() {
    let Some(gctx) = common::gpu() else { return };
    let cctx = common::cpu();
    for c in [
        case("tall", 50, 6, common::data_full(300, 7)),
        case("wide", 4, 9, common::data_full(36, 8)),
    ] {
        let a = gctx.tensor(&[c.m, c.n], &c.a).unwrap();
        let g = gctx.qr(&a).unwrap();
        let a = cctx.tensor(&[c.m, c.n], &c.a).unwrap();
        let h = cctx.qr(&a).unwrap();
        // With a positive diagonal the factorization is unique for full-rank input.
        for (x, y) in g.r.to_vec().unwrap().iter().zip(h.r.to_vec().unwrap()) {
            assert!((x - y).abs() < 1e-4, "{}: R differs: {x} vs {y}", c.name);
        }
        for (x, y) in g.q.to_vec().unwrap().iter().zip(h.q.to_vec().unwrap()) {
            assert!((x - y).abs() < 1e-4, "{}: Q differs: {x} vs {y}", c.name);
        }
    }
}

#[test]
fn bad_input() {
    let ctx = common::cpu();
    let v = ctx.tensor(&[3], &[1.0, 2.0, 3.0]).unwrap();
    assert!(matches!(ctx.qr(&v), Err(Error::Shape(_))));
    let nan = ctx.tensor(&[2, 2], &[1.0, f32::NAN, 0.0, 1.0]).unwrap();
    assert!(matches!(ctx.qr(&nan), Err(Error::InvalidArgument(_))));
    let empty = ctx.tensor(&[0, 3], &[]).unwrap();
    let qr = ctx.qr(&empty).unwrap();
    assert_eq!(
        (qr.q.shape(), qr.r.shape()),
        (&[0usize, 0][..], &[0usize, 3][..])
    );
    if let Some(g) = common::gpu() {
        let nan = g.tensor(&[2, 2], &[1.0, f32::NAN, 0.0, 1.0]).unwrap();
        assert!(matches!(g.qr(&nan), Err(Error::InvalidArgument(_))));
        let empty = g.tensor(&[4, 0], &[]).unwrap();
        assert_eq!(g.qr(&empty).unwrap().r.shape(), &[0, 0]);
    }
}

#[test]
fn cli_writes_q_and_r() {
    use gpu_linalg::npy::{read_npy, write_npy_f32};
    let d = std::env::temp_dir().join(format!("gpu-linalg-qr-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let (m, n) = (7, 4);
    let a = common::data_full(m * n, 78);
    let (pa, pq, pr) = (d.join("a.npy"), d.join("q.npy"), d.join("r.npy"));
    write_npy_f32(&pa, &[m, n], &a).unwrap();
    let mut backends = vec!["cpu"];
    if common::gpu().is_some() {
        backends.push("gpu");
    }
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for backend in backends {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-linalg"))
            .args(["--backend", backend, "--verify", "qr", &arg(&pa)])
            .args(["--q", &arg(&pq), "--r", &arg(&pr)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (q, r) = (read_npy(&pq).unwrap(), read_npy(&pr).unwrap());
        assert_eq!((q.shape.clone(), r.shape.clone()), (vec![m, n], vec![n, n]));
        let rt = ratios(&a, m, n, &q.data, &r.data);
        assert!(rt.iter().all(|x| *x < 35.0), "{backend}: {rt:?}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
