//! Streamed algorithms over row blocks (`gpu_linalg::streamed`): each checked against the
//! in-memory op or an f64 reference, on block heights that split the rows unevenly (1, primes,
//! one block), on the GPU and the CPU backend; and the `.npy` row-block source's errors.

mod common;

use gpu_linalg::npy::{write_npy_f32, NpyRowWriter};
use gpu_linalg::{
    Context, IterRowBlocks, MemoryBudget, NpyRowBlocks, PcaStreamMethod, RandomizedSvdOptions,
    RowBlocks, TensorRowBlocks,
};

/// Row blocks of `a` (m×n) of `h` rows each (the last shorter), from the host.
fn blocks(a: &[f32], n: usize, h: usize) -> impl RowBlocks + '_ {
    IterRowBlocks::new(n, move || a.chunks(h * n).map(|c| c.to_vec()))
}

/// The LAPACK-style matrix types of the TSQR bar: random, graded, κ = 10⁶, rank-deficient.
fn tsqr_cases() -> Vec<(String, usize, usize, Vec<f32>)> {
    let mut v = Vec::new();
    v.push((
        "random".to_string(),
        600,
        24,
        common::data_full(600 * 24, 1),
    ));
    let (m, n) = (500, 20);
    let mut graded = common::data_full(m * n, 2);
    for i in 0..m {
        for j in 0..n {
            graded[i * n + j] *= 10f32.powi(-(j as i32) / 3);
        }
    }
    v.push(("graded columns".to_string(), m, n, graded));
    v.push((
        "κ=1e6".to_string(),
        480,
        30,
        common::conditioned(480, 30, 1e6, 3),
    ));
    let (m, n) = (400, 16);
    let mut deficient = common::data_full(m * n, 4);
    for i in 0..m {
        deficient[i * n + 5] = deficient[i * n + 1];
        deficient[i * n + 9] = 0.0;
    }
    v.push(("rank-deficient".to_string(), m, n, deficient));
    v.push(("zero".to_string(), 50, 6, vec![0.0; 300]));
    v
}

fn each_backend(mut f: impl FnMut(&str, &Context)) {
    for (name, ctx) in common::backends() {
        f(name, &ctx);
    }
}

#[test]
fn tsqr_ratios_on_lapack_matrix_types() {
    each_backend(|be, ctx| {
        for (name, m, n, a) in tsqr_cases() {
            for h in [7usize, 64, m] {
                let t = ctx
                    .tsqr_stream(&mut blocks(&a, n, h))
                    .unwrap_or_else(|e| panic!("{be} {name} h={h}: {e}"));
                assert_eq!(t.rows, m);
                assert_eq!(t.r.shape(), &[n, n], "{be} {name}");
                let r = t.r.to_vec().unwrap();
                for i in 0..n {
                    assert!(r[i * n + i] >= 0.0, "{be} {name}: R[{i},{i}] < 0");
                    for j in 0..i {
                        assert_eq!(r[i * n + j], 0.0, "{be} {name}: below the diagonal");
                    }
                }
                let ratio = common::gram_ratio(&a, m, n, &r, n);
                eprintln!("{be} tsqr {name:<16} {m}×{n} blocks of {h:>3}: ratio {ratio:.3}");
                assert!(ratio < 35.0, "{be} {name} h={h}: ratio {ratio}");
            }
        }
    });
}

#[test]
fn tsqr_of_fewer_rows_than_columns_and_q_blockwise() {
    each_backend(|be, ctx| {
        let (m, n) = (5, 9);
        let a = common::data_full(m * n, 5);
        let t = ctx.tsqr_stream(&mut blocks(&a, n, 2)).unwrap();
        assert_eq!(t.r.shape(), &[m, n], "{be}: R of a wide matrix is m×n");
        assert!(common::gram_ratio(&a, m, n, &t.r.to_vec().unwrap(), m) < 35.0);
        // Q = A·R⁻¹ blockwise on a tall matrix: orthonormal columns, Q·R = A.
        let (m, n) = (300, 12);
        let a = common::data_full(m * n, 6);
        let t = ctx.tsqr_stream(&mut blocks(&a, n, 41)).unwrap();
        let mut q = Vec::new();
        let rows = ctx
            .tsqr_q_stream(&mut blocks(&a, n, 41), &t.r, &mut |b| {
                q.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert_eq!((rows, q.len()), (m, m * n));
        let qr = gpu_linalg::qr::cpu::ratios(&a, m, n, &q, &t.r.to_vec().unwrap());
        assert!(qr[0] < 35.0 && qr[1] < 100.0, "{be}: Q ratios {qr:?}");
        // A rank-deficient R has no inverse: refused by name.
        let mut d = a.clone();
        (0..m).for_each(|i| d[i * n + 3] = 0.0);
        let t = ctx.tsqr_stream(&mut blocks(&d, n, 41)).unwrap();
        let e = ctx
            .tsqr_q_stream(&mut blocks(&d, n, 41), &t.r, &mut |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("rank-deficient"), "{be}: {e}");
    });
}

#[test]
fn gram_stream_matches_f64() {
    each_backend(|be, ctx| {
        for (m, n, h) in [
            (1usize, 1usize, 1usize),
            (333, 17, 1),
            (1000, 37, 97),
            (257, 64, 300),
        ] {
            let a = common::data_full(m * n, (m + n) as u64);
            let g = ctx
                .gram_stream(&mut blocks(&a, n, h))
                .unwrap()
                .to_vec()
                .unwrap();
            for p in 0..n {
                for q in 0..n {
                    let want: f64 = (0..m)
                        .map(|i| f64::from(a[i * n + p]) * f64::from(a[i * n + q]))
                        .sum();
                    let scale: f64 = (0..m)
                        .map(|i| (f64::from(a[i * n + p]) * f64::from(a[i * n + q])).abs())
                        .sum();
                    let err = (f64::from(g[p * n + q]) - want).abs();
                    assert!(
                        err <= 1e-5 * scale.max(1e-30) + 1e-30,
                        "{be} {m}×{n} h={h} [{p},{q}]: {} vs {want}",
                        g[p * n + q]
                    );
                }
            }
        }
    });
}

#[test]
fn lstsq_stream_matches_lstsq() {
    each_backend(|be, ctx| {
        let (m, n, k) = (700, 9, 3);
        let a = common::conditioned(m, n, 1e3, 7);
        let b = common::data_full(m * k, 8);
        let ab = common::hstack(&a, &b, m, n, k);
        let fit = ctx
            .lstsq_stream(&mut blocks(&ab, n + k, 101), n, None)
            .unwrap();
        let want = ctx
            .lstsq(
                &ctx.tensor(&[m, n], &a).unwrap(),
                &ctx.tensor(&[m, k], &b).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(fit.rank, n);
        assert_eq!(fit.x.shape(), &[n, k]);
        let close = |x: &[f32], y: &[f32], tol: f32, what: &str| {
            let scale = y.iter().fold(0.0f32, |s, v| s.max(v.abs()));
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= tol * scale, "{be} {what}: {p} vs {q}");
            }
        };
        close(
            &fit.x.to_vec().unwrap(),
            &want.x.to_vec().unwrap(),
            1e-3,
            "x",
        );
        close(
            &fit.s.to_vec().unwrap(),
            &want.s.to_vec().unwrap(),
            1e-4,
            "s",
        );
        close(
            &fit.residuals.to_vec().unwrap(),
            &want.residuals.to_vec().unwrap(),
            1e-3,
            "residuals",
        );
        // Rank-deficient A: the minimum-norm solution, no residuals, as numpy.
        let mut d = a.clone();
        (0..m).for_each(|i| d[i * n + 4] = d[i * n + 2]);
        let db = common::hstack(&d, &b, m, n, k);
        let fit = ctx
            .lstsq_stream(&mut blocks(&db, n + k, 64), n, None)
            .unwrap();
        let want = ctx
            .lstsq(
                &ctx.tensor(&[m, n], &d).unwrap(),
                &ctx.tensor(&[m, k], &b).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(fit.rank, n - 1);
        assert_eq!(fit.residuals.shape(), &[0]);
        close(
            &fit.x.to_vec().unwrap(),
            &want.x.to_vec().unwrap(),
            2e-3,
            "rank-deficient x",
        );
        let e = ctx
            .lstsq_stream(&mut blocks(&a, n, 64), n, None)
            .unwrap_err();
        assert!(e.to_string().contains("at least one of B"), "{be}: {e}");
    });
}

/// The in-memory PCA of `x` and the streamed one agree: explained variance, ratio, mean and
/// components (|cos| where the spectrum separates them).
#[allow(clippy::too_many_arguments)]
fn compare_pca(
    be: &str,
    ctx: &Context,
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    method: PcaStreamMethod,
    h: usize,
    tol: f32,
) {
    let want = ctx.pca(&ctx.tensor(&[m, n], x).unwrap(), k).unwrap();
    let got = ctx.pca_stream(&mut blocks(x, n, h), k, method).unwrap();
    assert_eq!(got.rows, m);
    let (ev, ev0) = (
        got.explained_variance.to_vec().unwrap(),
        want.explained_variance.to_vec().unwrap(),
    );
    for (a, b) in ev.iter().zip(&ev0) {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1e-6),
            "{be} {method:?}: variance {a} vs {b}"
        );
    }
    let (r, r0) = (
        got.explained_variance_ratio.to_vec().unwrap(),
        want.explained_variance_ratio.to_vec().unwrap(),
    );
    for (a, b) in r.iter().zip(&r0) {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1e-6),
            "{be} {method:?}: ratio {a} vs {b}"
        );
    }
    let (mu, mu0) = (got.mean.to_vec().unwrap(), want.mean.to_vec().unwrap());
    for (a, b) in mu.iter().zip(&mu0) {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{be}: mean {a} vs {b}"
        );
    }
    let (c, c0) = (
        got.components.to_vec().unwrap(),
        want.components.to_vec().unwrap(),
    );
    for j in 0..k {
        let dot: f32 = (0..n).map(|p| c[j * n + p] * c0[j * n + p]).sum();
        assert!(
            dot >= 0.999,
            "{be} {method:?}: component {j} cos {dot} (signs follow sklearn)"
        );
    }
}

/// Rows with a separated spectrum (variances 40, 20, 10, 5, 2.5 along random directions, then
/// noise) and a large mean.
fn spectrum_data(m: usize, n: usize, seed: u64) -> Vec<f32> {
    let basis = common::with_singular_values(n, n, &vec![1.0; n], seed);
    let z = common::data_full(m * n, seed + 1);
    let scales: Vec<f32> = (0..n)
        .map(|j| {
            if j < 5 {
                40.0 / 2f32.powi(j as i32)
            } else {
                0.3
            }
        })
        .collect();
    let mut x = vec![0.0f32; m * n];
    for i in 0..m {
        for p in 0..n {
            let v: f32 = (0..n)
                .map(|j| z[i * n + j] * 3f32.sqrt() * scales[j].sqrt() * basis[j * n + p])
                .sum();
            x[i * n + p] = v + 100.0 + p as f32;
        }
    }
    x
}

#[test]
fn pca_stream_matches_pca() {
    each_backend(|be, ctx| {
        let (m, n) = (1200, 24);
        let x = spectrum_data(m, n, 11);
        compare_pca(be, ctx, &x, m, n, 5, PcaStreamMethod::Auto, 131, 2e-4);
        compare_pca(be, ctx, &x, m, n, 5, PcaStreamMethod::Covariance, m, 2e-4);
        let opts = RandomizedSvdOptions {
            oversampling: 10,
            power_iterations: 4,
            seed: 3,
        };
        compare_pca(
            be,
            ctx,
            &x,
            m,
            n,
            5,
            PcaStreamMethod::Randomized(opts),
            200,
            1e-3,
        );
        // transform, blockwise, equals the in-memory projection.
        let pca = ctx
            .pca_stream(&mut blocks(&x, n, 131), 5, PcaStreamMethod::Auto)
            .unwrap();
        let want = ctx
            .pca(&ctx.tensor(&[m, n], &x).unwrap(), 5)
            .unwrap()
            .projected
            .to_vec()
            .unwrap();
        let mut got = Vec::new();
        ctx.pca_transform_stream(&mut blocks(&x, n, 131), &pca, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), m * 5);
        let scale = want.iter().fold(0.0f32, |s, v| s.max(v.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-3 * scale, "{be}: transform {a} vs {b}");
        }
        let e = ctx
            .pca_stream(&mut blocks(&x[..n], n, 1), 1, PcaStreamMethod::Auto)
            .unwrap_err();
        assert!(e.to_string().contains("at least 2 samples"), "{be}: {e}");
        let e = ctx
            .pca_stream(&mut blocks(&x, n, 131), n + 1, PcaStreamMethod::Auto)
            .unwrap_err();
        assert!(e.to_string().contains("components"), "{be}: {e}");
    });
}

#[test]
fn randomized_svd_stream_matches_the_spectrum() {
    each_backend(|be, ctx| {
        let (m, n, r) = (900, 40, 6);
        let sigma: Vec<f64> = (0..n).map(|i| 0.5f64.powi(i as i32)).collect();
        let a = common::with_singular_values(m, n, &sigma, 12);
        let opts = RandomizedSvdOptions {
            oversampling: 8,
            power_iterations: 2,
            seed: 1,
        };
        let svd = ctx
            .randomized_svd_stream(&mut blocks(&a, n, 77), r, &opts)
            .unwrap();
        assert_eq!(svd.passes, 4);
        assert_eq!(svd.vt.shape(), &[r, n]);
        let s = svd.s.to_vec().unwrap();
        for (i, v) in s.iter().enumerate() {
            assert!(
                (f64::from(*v) - sigma[i]).abs() <= 1e-4 * sigma[0],
                "{be}: σ{i} {v} vs {}",
                sigma[i]
            );
        }
        // U blockwise: A ≈ U·Σ·Vᵀ on the leading subspace, U's columns orthonormal.
        let mut u = Vec::new();
        ctx.svd_u_stream(&mut blocks(&a, n, 77), &svd, &mut |b| {
            u.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        for p in 0..r {
            for q in 0..r {
                let d: f32 = (0..m).map(|i| u[i * r + p] * u[i * r + q]).sum();
                let want = if p == q { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-3, "{be}: UᵀU[{p},{q}] = {d}");
            }
        }
    });
}

#[test]
fn resident_blocks_stream_too() {
    each_backend(|be, ctx| {
        let (m, n) = (90, 5);
        let a = common::data_full(m * n, 13);
        let tensors = a
            .chunks(31 * n)
            .map(|c| ctx.tensor(&[c.len() / n, n], c).unwrap())
            .collect();
        let mut src = TensorRowBlocks::new(tensors).unwrap();
        let g = ctx.gram_stream(&mut src).unwrap().to_vec().unwrap();
        let want = ctx
            .gram_stream(&mut blocks(&a, n, 31))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(g, want, "{be}");
        let bad = TensorRowBlocks::new(vec![
            ctx.zeros(&[2, 3]).unwrap(),
            ctx.zeros(&[2, 4]).unwrap(),
        ]);
        assert!(bad.unwrap_err().to_string().contains("3 columns"));
    });
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gpu-linalg-streamed-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn npy_row_blocks_read_files_and_name_their_errors() {
    let dir = temp_dir("npy");
    let (m, n) = (103, 7);
    let a = common::data_full(m * n, 14);
    let b = common::data_full(m * 2, 15);
    let (pa, pb) = (dir.join("a.npy"), dir.join("b.npy"));
    write_npy_f32(&pa, &[m, n], &a).unwrap();
    write_npy_f32(&pb, &[m, 2], &b).unwrap();
    let ctx = common::cpu();
    let mut src = NpyRowBlocks::open(&pa, MemoryBudget::new(4096)).unwrap();
    assert_eq!(src.block_rows(), 4096 / (gpu_linalg::BLOCK_COPIES * 4 * n));
    let g = ctx.gram_stream(&mut src).unwrap().to_vec().unwrap();
    assert_eq!(
        g,
        ctx.gram_stream(&mut blocks(&a, n, src.block_rows()))
            .unwrap()
            .to_vec()
            .unwrap()
    );
    // Side by side, and a row range.
    let mut ab = NpyRowBlocks::open_columns(&[&pa, &pb], MemoryBudget::default())
        .unwrap()
        .with_row_range(10, 50)
        .unwrap()
        .with_block_rows(7);
    assert_eq!((ab.cols(), ab.rows()), (n + 2, Some(40)));
    ab.rewind().unwrap();
    let first = ab.next_block().unwrap().unwrap();
    let gpu_linalg::RowBlock::Host { rows, data } = first else {
        panic!("host block")
    };
    assert_eq!(rows, 7);
    assert_eq!(&data[..n], &a[10 * n..11 * n]);
    assert_eq!(&data[n..n + 2], &b[20..22]);
    // Errors name the file and the problem.
    let bytes = std::fs::read(&pa).unwrap();
    let truncated = dir.join("truncated.npy");
    std::fs::write(&truncated, &bytes[..bytes.len() - 12]).unwrap();
    let e = NpyRowBlocks::open(&truncated, MemoryBudget::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("truncated.npy") && e.contains("truncated data"),
        "{e}"
    );
    let cube = dir.join("cube.npy");
    write_npy_f32(&cube, &[2, 2, 2], &[0.0; 8]).unwrap();
    let e = NpyRowBlocks::open(&cube, MemoryBudget::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2-D"), "{e}");
    let e = NpyRowBlocks::open_columns(&[&pa, &cube], MemoryBudget::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2-D"), "{e}");
    let short = dir.join("short.npy");
    write_npy_f32(&short, &[5, 2], &[0.0; 10]).unwrap();
    let e = NpyRowBlocks::open_columns(&[&pa, &short], MemoryBudget::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("same rows"), "{e}");
    let e = NpyRowBlocks::open(&dir.join("missing.npy"), MemoryBudget::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.npy") && e.contains("no such file"),
        "{e}"
    );
    assert!(MemoryBudget::parse("12 parsecs").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_row_writer_leaves_nothing_when_unfinished() {
    let dir = temp_dir("writer");
    let path = dir.join("out.npy");
    {
        let mut w = NpyRowWriter::create(&path, 4, 2).unwrap();
        w.append_rows(&[1.0, 2.0]).unwrap();
        assert!(w
            .append_rows(&[1.0])
            .unwrap_err()
            .to_string()
            .contains("whole rows"));
    }
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no temporary file left"
    );
    let mut w = NpyRowWriter::create(&path, 2, 2).unwrap();
    w.append_rows(&[1.0, 2.0]).unwrap();
    let w2 = w;
    let e = w2.finish().unwrap_err().to_string();
    assert!(e.contains("1 of 2 rows"), "{e}");
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
