//! Distributed runs (`gpu-linalg --mpi` under `mpiexec -n 1, 2, 3` on this machine, loopback
//! only): PCA, TSQR's R and lstsq equal one process's within the ratios; a rank given a
//! truncated file makes every rank exit non-zero with its message, and no output is written.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpu_linalg::npy::{read_npy, write_npy_f32};

/// Seconds one mpiexec run may take before it counts as hung.
const MPI_TIMEOUT_S: &str = "240";

fn backend() -> &'static str {
    if common::gpu().is_some() {
        "gpu"
    } else {
        "cpu"
    }
}

/// `gpu-linalg --backend B --mpi ARGS` on `ranks` processes (`None`: one plain process).
fn run(ranks: Option<usize>, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_gpu-linalg");
    let mut c = match ranks {
        Some(n) => {
            let mut c = Command::new("timeout");
            c.args([
                MPI_TIMEOUT_S,
                "mpiexec",
                "--allow-run-as-root",
                "--oversubscribe",
                "-n",
                &n.to_string(),
                bin,
                "--mpi",
            ]);
            c
        }
        None => Command::new(bin),
    };
    c.args(["--backend", backend()]).args(args);
    c.env("GPU_LINALG_NO_TUNING_CACHE", "1");
    c.output().expect("mpiexec (openmpi-bin) must be installed")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpu-linalg-mpi-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn values(p: &Path) -> Vec<f32> {
    read_npy(p).unwrap().data
}

#[test]
fn pca_on_one_two_and_three_ranks_equals_one_process() {
    let d = tmpdir("pca");
    let (m, n) = (6007, 16);
    let x: Vec<f32> = common::data_full(m * n, 1)
        .iter()
        .enumerate()
        .map(|(i, v)| 10.0 + v * (1.0 + (n - i % n) as f32))
        .collect();
    let px = d.join("x.npy");
    write_npy_f32(&px, &[m, n], &x).unwrap();
    let out = |tag: &str, what: &str| d.join(format!("{tag}-{what}.npy"));
    let pca = |ranks: Option<usize>, tag: &str| {
        let (ev, c, mean) = (out(tag, "ev"), out(tag, "c"), out(tag, "mean"));
        let mut args = vec![
            "pca",
            s(&px),
            "-k",
            "5",
            "--explained-variance",
            s(&ev),
            "--components",
            s(&c),
            "--mean",
            s(&mean),
            "--memory-budget",
            "200K",
        ];
        if ranks.is_none() {
            args.push("--stream");
        }
        ok(&run(ranks, &args));
    };
    pca(None, "one");
    let (ev1, c1) = (values(&out("one", "ev")), values(&out("one", "c")));
    for ranks in [1, 2, 3] {
        let tag = format!("n{ranks}");
        pca(Some(ranks), &tag);
        let ev = values(&out(&tag, "ev"));
        for (a, b) in ev.iter().zip(&ev1) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "{ranks} ranks: explained variance {a} vs {b}"
            );
        }
        let c = values(&out(&tag, "c"));
        for j in 0..5 {
            let dot: f32 = (0..n).map(|p| c[j * n + p] * c1[j * n + p]).sum();
            assert!(dot > 0.9999, "{ranks} ranks: component {j} cos {dot}");
        }
        let mean = values(&out(&tag, "mean"));
        for (a, b) in mean.iter().zip(values(&out("one", "mean"))) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "{ranks} ranks: mean {a} vs {b}"
            );
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn tsqr_and_lstsq_across_ranks() {
    let d = tmpdir("tsqr");
    let ctx = common::cpu();
    let (m, n) = (1201, 12);
    let mut graded = common::data_full(m * n, 3);
    for (i, v) in graded.iter_mut().enumerate() {
        *v *= 10f32.powi(-((i % n) as i32) / 2);
    }
    let mut deficient = common::data_full(m * n, 4);
    for i in 0..m {
        deficient[i * n + 7] = deficient[i * n + 2];
    }
    let cases = [
        ("graded", graded),
        ("kappa1e6", common::conditioned(m, n, 1e6, 5)),
        ("rank-deficient", deficient),
    ];
    for (name, a) in &cases {
        let pa = d.join(format!("{name}.npy"));
        write_npy_f32(&pa, &[m, n], a).unwrap();
        let r1 = d.join(format!("{name}-r1.npy"));
        ok(&run(
            None,
            &[
                "qr",
                s(&pa),
                "--r",
                s(&r1),
                "--r-only",
                "--stream",
                "--memory-budget",
                "100K",
            ],
        ));
        let s1 = ctx
            .svdvals(&ctx.tensor(&[n, n], &values(&r1)).unwrap())
            .unwrap()
            .to_vec()
            .unwrap();
        for ranks in [2, 3] {
            let r = d.join(format!("{name}-r{ranks}.npy"));
            ok(&run(
                Some(ranks),
                &[
                    "qr",
                    s(&pa),
                    "--r",
                    s(&r),
                    "--r-only",
                    "--memory-budget",
                    "100K",
                ],
            ));
            let rv = values(&r);
            let ratio = common::gram_ratio(a, m, n, &rv, n);
            assert!(ratio < 35.0, "{name} on {ranks} ranks: TSQR ratio {ratio}");
            let sv = ctx
                .svdvals(&ctx.tensor(&[n, n], &rv).unwrap())
                .unwrap()
                .to_vec()
                .unwrap();
            // Both are singular values of A to within a backward-stable QR: 35·max(m, n)·ε·σ₁.
            let bound = 35.0 * m as f32 * f32::EPSILON * s1[0];
            for (p, q) in sv.iter().zip(&s1) {
                assert!(
                    (p - q).abs() <= bound,
                    "{name} on {ranks} ranks: σ {p} vs {q}"
                );
            }
        }
    }
    // The randomized SVD's factors (lowrank) equal one process's streamed ones.
    let sigma: Vec<f64> = (0..n).map(|i| 0.6f64.powi(i as i32)).collect();
    let a = common::with_singular_values(m, n, &sigma, 8);
    let pa = d.join("lr.npy");
    write_npy_f32(&pa, &[m, n], &a).unwrap();
    let s1 = d.join("lr-s1.npy");
    ok(&run(
        None,
        &[
            "lowrank",
            s(&pa),
            "-r",
            "4",
            "--s",
            s(&s1),
            "--stream",
            "--memory-budget",
            "100K",
        ],
    ));
    let s1v = values(&s1);
    for ranks in [2, 3] {
        let (sv, vt) = (
            d.join(format!("lr-s{ranks}.npy")),
            d.join(format!("lr-vt{ranks}.npy")),
        );
        ok(&run(
            Some(ranks),
            &[
                "lowrank",
                s(&pa),
                "-r",
                "4",
                "--s",
                s(&sv),
                "--vt",
                s(&vt),
                "--memory-budget",
                "100K",
            ],
        ));
        assert_eq!(read_npy(&vt).unwrap().shape, vec![4, n]);
        let bound = 35.0 * m as f32 * f32::EPSILON * s1v[0];
        for (p, q) in values(&sv).iter().zip(&s1v) {
            assert!(
                (p - q).abs() <= bound,
                "lowrank on {ranks} ranks: σ {p} vs {q}"
            );
        }
    }
    // lstsq with a 2-column B.
    let a = common::conditioned(m, n, 1e2, 6);
    let b = common::data_full(m * 2, 7);
    let (pa, pb) = (d.join("la.npy"), d.join("lb.npy"));
    write_npy_f32(&pa, &[m, n], &a).unwrap();
    write_npy_f32(&pb, &[m, 2], &b).unwrap();
    let x1 = d.join("x1.npy");
    ok(&run(None, &["lstsq", s(&pa), s(&pb), "-o", s(&x1)]));
    for ranks in [2, 3] {
        let x = d.join(format!("x{ranks}.npy"));
        let o = run(Some(ranks), &["lstsq", s(&pa), s(&pb), "-o", s(&x)]);
        ok(&o);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout)
                .matches("rank 12")
                .count(),
            1,
            "only rank 0 prints"
        );
        let (xv, x1v) = (values(&x), values(&x1));
        let scale = x1v.iter().fold(0.0f32, |s, v| s.max(v.abs()));
        for (p, q) in xv.iter().zip(&x1v) {
            assert!((p - q).abs() <= 1e-3 * scale, "{ranks} ranks: x {p} vs {q}");
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_rank_with_a_truncated_file_fails_every_rank() {
    let d = tmpdir("fail");
    let n = 6;
    for rank in 0..3 {
        let p = d.join(format!("part-{rank}.npy"));
        write_npy_f32(&p, &[400, n], &common::data_full(400 * n, rank as u64)).unwrap();
    }
    // Rank 1's shard loses its last 10 bytes.
    let p1 = d.join("part-1.npy");
    let bytes = std::fs::read(&p1).unwrap();
    std::fs::write(&p1, &bytes[..bytes.len() - 10]).unwrap();
    let shards = d.join("part-{rank}.npy");
    let out = d.join("ev.npy");
    for ranks in [2, 3] {
        let o = run(
            Some(ranks),
            &[
                "pca",
                s(&shards),
                "-k",
                "2",
                "--explained-variance",
                s(&out),
            ],
        );
        assert!(!o.status.success(), "{ranks} ranks: expected failure");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("gpu-linalg:"))
            .collect();
        assert_eq!(ours.len(), ranks, "every rank reports: {stderr}");
        for line in &ours {
            assert!(
                line.contains(&format!("rank 1 of {ranks}"))
                    && line.contains("part-1.npy")
                    && line.contains("truncated data"),
                "{line}"
            );
        }
        assert!(!out.exists(), "no output after a failure");
    }
    // The shards of the good ranks alone (a 1-rank run reads part-0.npy) work.
    ok(&run(
        Some(1),
        &[
            "pca",
            s(&shards),
            "-k",
            "2",
            "--explained-variance",
            s(&out),
        ],
    ));
    assert!(out.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bench_reports_the_rank_count() {
    for ranks in [1, 2] {
        let o = run(
            Some(ranks),
            &[
                "bench",
                "--ops",
                "pca-stream",
                "--sizes",
                "3000x8",
                "--repeat",
                "1",
            ],
        );
        ok(&o);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("pca-stream"))
            .collect();
        assert_eq!(rows.len(), 1, "one row, from rank 0: {stdout}");
        let fields: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(fields[1], "3000x8");
        assert_eq!(fields[2], ranks.to_string());
        assert!(fields[4].parse::<f64>().unwrap() > 0.0, "GB/s: {}", rows[0]);
    }
    let o = run(Some(1), &["bench", "--ops", "matmul"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("pca-stream only"));
}
