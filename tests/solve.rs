//! LU, triangular solve, solve, inv, det and slogdet on the GPU and the CPU backend against
//! LAPACK's `dchkge` ratios (1-norm, ε = 2⁻²³, below 30): ‖A − P·L·U‖/(n·‖A‖·ε),
//! ‖B − A·X‖/(‖A‖·‖X‖·n·ε), ‖I − A·A⁻¹‖/(n·‖A‖·‖A⁻¹‖·ε); matrix types random, condition
//! numbers 10³ and 10⁶, scaled near underflow and overflow, diagonally dominant; sizes across
//! the block size; batched and broadcast; and the errors (singular, NaN, shapes).

mod common;

use gpu_linalg::solve::cpu::{inv_ratio, lu_ratio, solve_ratio};
use gpu_linalg::{AssumeA, Error, SolveOptions, TriangularOptions, LU_BLOCK};

const SIZES: [usize; 11] = [1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 200];

/// Singular values from 1 down to 1/κ geometrically, mixed by orthogonal factors.
fn conditioned(n: usize, kappa: f64, seed: u64) -> Vec<f32> {
    let s: Vec<f64> = (0..n)
        .map(|i| kappa.powf(-(i as f64) / (n.max(2) - 1) as f64))
        .collect();
    common::with_singular_values(n, n, &s, seed)
}

/// |A_ii| > Σ_j≠i |A_ij|, not symmetric.
fn dominant(n: usize, seed: u64) -> Vec<f32> {
    let mut a = common::data_full(n * n, seed);
    for i in 0..n {
        let off: f32 = (0..n).filter(|&j| j != i).map(|j| a[i * n + j].abs()).sum();
        a[i * n + i] = off + 1.0;
    }
    a
}

fn kinds(n: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let base = common::data_full(n * n, seed);
    vec![
        ("random", base.clone()),
        ("cond1e3", conditioned(n, 1e3, seed + 1)),
        ("cond1e6", conditioned(n, 1e6, seed + 2)),
        ("scaled1e-30", base.iter().map(|x| x * 1e-30).collect()),
        ("scaled1e30", base.iter().map(|x| x * 1e30).collect()),
        ("dominant", dominant(n, seed + 3)),
    ]
}

/// Records the worst ratio per matrix type.
fn note(worst: &mut Vec<(&'static str, f64)>, kind: &'static str, r: f64) {
    match worst.iter_mut().find(|(k, _)| *k == kind) {
        Some(w) => w.1 = w.1.max(r),
        None => worst.push((kind, r)),
    }
}

#[test]
fn lu_ratios_below_30_and_factors_have_their_shape() {
    for (backend, ctx) in common::backends() {
        let mut worst = Vec::new();
        for (si, &n) in SIZES.iter().enumerate() {
            for (kind, a) in kinds(n, 10 + si as u64) {
                let name = format!("{backend} lu {kind} {n}×{n}");
                let f = ctx
                    .lu(&ctx.tensor(&[n, n], &a).unwrap())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let (p, l, u) = (
                    f.p.to_vec().unwrap(),
                    f.l.to_vec().unwrap(),
                    f.u.to_vec().unwrap(),
                );
                let perm = f.perm.to_vec_u32().unwrap();
                for i in 0..n {
                    assert_eq!(l[i * n + i], 1.0, "{name}: L diagonal");
                    assert_eq!(p[i * n + perm[i] as usize], 1.0, "{name}: P[i, perm[i]]");
                    for j in 0..n {
                        if j > i {
                            assert_eq!(l[i * n + j], 0.0, "{name}: L above the diagonal");
                        }
                        if j < i {
                            assert_eq!(u[i * n + j], 0.0, "{name}: U below the diagonal");
                            assert!(l[i * n + j].abs() <= 1.0, "{name}: |L| > 1");
                        }
                    }
                }
                let r = lu_ratio(&a, n, &p, &l, &u);
                assert!(r < 30.0, "{name}: ratio {r}");
                note(&mut worst, kind, r);
            }
        }
        eprintln!("{backend} lu: worst ratios {worst:?}");
    }
}

#[test]
fn solve_and_inv_ratios_below_30() {
    for (backend, ctx) in common::backends() {
        let mut worst = Vec::new();
        for (si, &n) in SIZES.iter().enumerate() {
            for (kind, a) in kinds(n, 40 + si as u64) {
                let at = ctx.tensor(&[n, n], &a).unwrap();
                for k in [1, 5] {
                    let b = common::data_full(n * k, 7 + n as u64);
                    let name = format!("{backend} solve {kind} {n}×{n}, k = {k}");
                    let x = ctx
                        .solve(&at, &ctx.tensor(&[n, k], &b).unwrap())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(x.shape(), &[n, k]);
                    let r = solve_ratio(&a, n, k, &b, &x.to_vec().unwrap());
                    assert!(r < 30.0, "{name}: ratio {r}");
                    note(&mut worst, "solve", r);
                }
                let name = format!("{backend} inv {kind} {n}×{n}");
                let ai = ctx.inv(&at).unwrap_or_else(|e| panic!("{name}: {e}"));
                let r = inv_ratio(&a, n, &ai.to_vec().unwrap());
                assert!(r < 30.0, "{name}: ratio {r}");
                note(&mut worst, kind, r);
            }
        }
        eprintln!("{backend} solve/inv: worst ratios {worst:?}");
    }
}

#[test]
fn large_systems_past_the_loop_limits() {
    // 512: 16 blocks, a panel loop of 2 rows per invocation, and 64 right-hand sides.
    let n = 512;
    let k = 64;
    let a = dominant(n, 3);
    let b = common::data_full(n * k, 4);
    for (backend, ctx) in common::backends() {
        let x = ctx
            .solve(
                &ctx.tensor(&[n, n], &a).unwrap(),
                &ctx.tensor(&[n, k], &b).unwrap(),
            )
            .unwrap();
        let r = solve_ratio(&a, n, k, &b, &x.to_vec().unwrap());
        assert!(r < 30.0, "{backend} solve 512, k = 64: ratio {r}");
        let r = {
            let g = common::data_full(n * n, 5);
            let f = ctx.lu(&ctx.tensor(&[n, n], &g).unwrap()).unwrap();
            lu_ratio(
                &g,
                n,
                &f.p.to_vec().unwrap(),
                &f.l.to_vec().unwrap(),
                &f.u.to_vec().unwrap(),
            )
        };
        assert!(r < 30.0, "{backend} lu 512: ratio {r}");
    }
}

#[test]
fn triangular_solves_every_variant() {
    for (backend, ctx) in common::backends() {
        for n in [1, 5, LU_BLOCK - 1, LU_BLOCK, LU_BLOCK + 1, 70, 129] {
            let mut t = dominant(n, n as u64);
            for k in [1usize, 3] {
                let b = common::data_full(n * k, 3);
                for lower in [false, true] {
                    for trans in [false, true] {
                        for unit in [false, true] {
                            let opts = TriangularOptions {
                                lower,
                                trans,
                                unit_diagonal: unit,
                            };
                            // The triangle op(T) uses, with the other one garbage (never read).
                            let mut used = vec![0.0f32; n * n];
                            for i in 0..n {
                                for j in 0..n {
                                    let inside = if lower { j <= i } else { j >= i };
                                    if inside {
                                        used[i * n + j] =
                                            if i == j && unit { 1.0 } else { t[i * n + j] };
                                    } else {
                                        t[i * n + j] = 1e3;
                                    }
                                }
                            }
                            let op: Vec<f32> = (0..n * n)
                                .map(|idx| {
                                    let (i, j) = (idx / n, idx % n);
                                    if trans {
                                        used[j * n + i]
                                    } else {
                                        used[idx]
                                    }
                                })
                                .collect();
                            let name = format!("{backend} trsm {n}×{n} k = {k} {opts:?}");
                            let x = ctx
                                .solve_triangular(
                                    &ctx.tensor(&[n, n], &t).unwrap(),
                                    &ctx.tensor(&[n, k], &b).unwrap(),
                                    &opts,
                                )
                                .unwrap_or_else(|e| panic!("{name}: {e}"));
                            let r = solve_ratio(&op, n, k, &b, &x.to_vec().unwrap());
                            assert!(r < 30.0, "{name}: ratio {r}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn batches_broadcast_and_vectors_follow_numpy() {
    for (backend, ctx) in common::backends() {
        let n = 37;
        let batch = 3;
        let a: Vec<f32> = (0..batch)
            .flat_map(|z| dominant(n, 90 + z as u64))
            .collect();
        let at = ctx.tensor(&[batch, n, n], &a).unwrap();
        // One vector b for every matrix: x is [batch, n].
        let b = common::data_full(n, 5);
        let x = ctx.solve(&at, &ctx.tensor(&[n], &b).unwrap()).unwrap();
        assert_eq!(x.shape(), &[batch, n], "{backend}");
        let xv = x.to_vec().unwrap();
        for z in 0..batch {
            let r = solve_ratio(
                &a[z * n * n..(z + 1) * n * n],
                n,
                1,
                &b,
                &xv[z * n..(z + 1) * n],
            );
            assert!(r < 30.0, "{backend} batch {z}: ratio {r}");
        }
        // One matrix, a batch of right-hand sides [2, n, 2]: A broadcasts.
        let a0 = &a[..n * n];
        let bb = common::data_full(2 * n * 2, 6);
        let x = ctx
            .solve(
                &ctx.tensor(&[n, n], a0).unwrap(),
                &ctx.tensor(&[2, n, 2], &bb).unwrap(),
            )
            .unwrap();
        assert_eq!(x.shape(), &[2, n, 2], "{backend}");
        let xv = x.to_vec().unwrap();
        for z in 0..2 {
            let r = solve_ratio(
                a0,
                n,
                2,
                &bb[z * 2 * n..(z + 1) * 2 * n],
                &xv[z * 2 * n..(z + 1) * 2 * n],
            );
            assert!(r < 30.0, "{backend} broadcast {z}: ratio {r}");
        }
        // Batched inv and slogdet agree with each matrix alone.
        let inv = ctx.inv(&at).unwrap().to_vec().unwrap();
        let s = ctx.slogdet(&at).unwrap();
        let (sign, logabs) = (s.sign.to_vec().unwrap(), s.logabsdet.to_vec().unwrap());
        assert_eq!(s.sign.shape(), &[batch]);
        for z in 0..batch {
            let m = &a[z * n * n..(z + 1) * n * n];
            let r = inv_ratio(m, n, &inv[z * n * n..(z + 1) * n * n]);
            assert!(r < 30.0, "{backend} inv batch {z}: ratio {r}");
            let one = ctx.slogdet(&ctx.tensor(&[n, n], m).unwrap()).unwrap();
            assert_eq!(one.sign.to_vec().unwrap(), vec![sign[z]]);
            let l1 = one.logabsdet.to_vec().unwrap()[0];
            assert!(
                (l1 - logabs[z]).abs() <= 1e-5 * l1.abs().max(1.0),
                "{backend} slogdet {z}"
            );
        }
    }
}

#[test]
fn det_and_slogdet_match_f64_and_do_not_overflow() {
    for (backend, ctx) in common::backends() {
        for n in [1usize, 2, 5, 33, 100] {
            let a = common::data_full(n * n, 11 + n as u64);
            // The f64 determinant by Gaussian elimination with partial pivoting.
            let mut m: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
            let (mut sign, mut logabs) = (1.0f64, 0.0f64);
            for c in 0..n {
                let p = (c..n)
                    .max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))
                    .unwrap();
                if p != c {
                    for j in 0..n {
                        m.swap(c * n + j, p * n + j);
                    }
                    sign = -sign;
                }
                let d = m[c * n + c];
                sign *= d.signum();
                logabs += d.abs().ln();
                for i in c + 1..n {
                    let l = m[i * n + c] / d;
                    for j in c..n {
                        m[i * n + j] -= l * m[c * n + j];
                    }
                }
            }
            let at = ctx.tensor(&[n, n], &a).unwrap();
            let s = ctx.slogdet(&at).unwrap();
            assert_eq!(s.sign.shape(), &[] as &[usize]);
            assert_eq!(s.sign.to_vec().unwrap()[0] as f64, sign, "{backend} {n}");
            let got = f64::from(s.logabsdet.to_vec().unwrap()[0]);
            assert!(
                (got - logabs).abs() < 1e-4 * logabs.abs().max(1.0),
                "{backend} {n}: {got} vs {logabs}"
            );
            let d = f64::from(ctx.det(&at).unwrap().to_vec().unwrap()[0]);
            let want = sign * logabs.exp();
            if want.abs() < f64::from(f32::MAX) / 2.0 {
                assert!(
                    (d - want).abs() <= 1e-3 * want.abs(),
                    "{backend} det {n}: {d} vs {want}"
                );
            } else {
                assert!(
                    d.is_infinite() && d.signum() == sign,
                    "{backend} det {n}: {d} vs {want}"
                );
            }
        }
        // 200×200 of 1e30·(random): det overflows f32 but slogdet does not.
        let n = 200;
        let a: Vec<f32> = dominant(n, 1).iter().map(|x| x * 1e30).collect();
        let s = ctx.slogdet(&ctx.tensor(&[n, n], &a).unwrap()).unwrap();
        let l = s.logabsdet.to_vec().unwrap()[0];
        assert!(
            l.is_finite() && l > 200.0 * 69.0,
            "{backend}: logabsdet {l}"
        );
        assert!(ctx
            .det(&ctx.tensor(&[n, n], &a).unwrap())
            .unwrap()
            .to_vec()
            .unwrap()[0]
            .is_infinite());
        // Singular: sign 0, log −∞, det 0 (no error, as numpy).
        let s = ctx
            .slogdet(&ctx.tensor(&[2, 2], &[1.0, 2.0, 2.0, 4.0]).unwrap())
            .unwrap();
        assert_eq!(s.sign.to_vec().unwrap(), vec![0.0]);
        assert_eq!(s.logabsdet.to_vec().unwrap(), vec![f32::NEG_INFINITY]);
        // 0×0: det 1.
        assert_eq!(
            ctx.det(&ctx.zeros(&[0, 0]).unwrap())
                .unwrap()
                .to_vec()
                .unwrap(),
            vec![1.0]
        );
    }
}

#[test]
fn positive_definite_solves_through_cholesky() {
    for (backend, ctx) in common::backends() {
        for n in [1usize, 4, 33, 100] {
            let m = common::data_full(n * n, 21);
            let mut a = vec![0.0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    let s: f32 = (0..n).map(|t| m[i * n + t] * m[j * n + t]).sum();
                    a[i * n + j] = s + if i == j { n as f32 } else { 0.0 };
                }
            }
            for i in 0..n {
                for j in 0..i {
                    a[j * n + i] = a[i * n + j];
                }
            }
            let b = common::data_full(n * 2, 22);
            let pos = SolveOptions {
                assume_a: AssumeA::Positive,
            };
            let x = ctx
                .solve_with(
                    &ctx.tensor(&[n, n], &a).unwrap(),
                    &ctx.tensor(&[n, 2], &b).unwrap(),
                    &pos,
                )
                .unwrap();
            let r = solve_ratio(&a, n, 2, &b, &x.to_vec().unwrap());
            assert!(r < 30.0, "{backend} pos {n}: ratio {r}");
        }
        let pos = SolveOptions {
            assume_a: AssumeA::Positive,
        };
        let indefinite = ctx.tensor(&[2, 2], &[1.0, 2.0, 2.0, 1.0]).unwrap();
        let b = ctx.tensor(&[2], &[1.0, 1.0]).unwrap();
        let e = ctx
            .solve_with(&indefinite, &b, &pos)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not positive definite") && e.contains("order 2"),
            "{backend}: {e}"
        );
        let asym = ctx.tensor(&[2, 2], &[2.0, 1.0, 0.0, 2.0]).unwrap();
        let e = ctx.solve_with(&asym, &b, &pos).unwrap_err().to_string();
        assert!(e.contains("symmetric"), "{backend}: {e}");
    }
}

#[test]
fn errors_name_the_problem() {
    for (backend, ctx) in common::backends() {
        let b2 = ctx.tensor(&[2], &[1.0, 1.0]).unwrap();
        // Singular: the first zero pivot is named.
        let s = ctx
            .tensor(&[3, 3], &[1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 1.0, 0.0, 1.0])
            .unwrap();
        let e = ctx
            .solve(&s, &ctx.tensor(&[3], &[1.0, 1.0, 1.0]).unwrap())
            .unwrap_err();
        assert!(matches!(e, Error::LinAlg(_)), "{backend}: {e}");
        assert!(
            e.to_string().contains("singular") && e.to_string().contains("U[2, 2]"),
            "{backend}: {e}"
        );
        let e = ctx
            .inv(&ctx.zeros(&[4, 4]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("U[0, 0] = 0"), "{backend}: {e}");
        // A batch names the matrix.
        let mut two = vec![1.0f32, 0.0, 0.0, 1.0];
        two.extend([1.0, 1.0, 1.0, 1.0]);
        let e = ctx
            .inv(&ctx.tensor(&[2, 2, 2], &two).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("matrix 1 (flat batch index) of 2") && e.contains("U[1, 1]"),
            "{backend}: {e}"
        );
        // NaN in a or in b.
        let nan = ctx.tensor(&[2, 2], &[1.0, f32::NAN, 0.0, 1.0]).unwrap();
        let e = ctx.solve(&nan, &b2).unwrap_err().to_string();
        assert!(e.contains("a of") && e.contains("NaN"), "{backend}: {e}");
        let e = ctx.lu(&nan).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{backend}: {e}");
        let eye = ctx.tensor(&[2, 2], &[1.0, 0.0, 0.0, 1.0]).unwrap();
        let e = ctx
            .solve(&eye, &ctx.tensor(&[2], &[1.0, f32::INFINITY]).unwrap())
            .unwrap_err();
        assert!(
            e.to_string().contains("b of") && e.to_string().contains("NaN or infinite"),
            "{backend}: {e}"
        );
        // Shapes name both operands.
        let e = ctx
            .solve(&eye, &ctx.tensor(&[3], &[1.0; 3]).unwrap())
            .unwrap_err();
        assert!(
            matches!(e, Error::Shape(_))
                && e.to_string().contains("[2, 2]")
                && e.to_string().contains("[3]"),
            "{backend}: {e}"
        );
        let e = ctx
            .inv(&ctx.zeros(&[2, 3]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("square") && e.contains("[2, 3]"),
            "{backend}: {e}"
        );
        let e = ctx.det(&ctx.zeros(&[4]).unwrap()).unwrap_err().to_string();
        assert!(e.contains("[4]"), "{backend}: {e}");
        // A zero diagonal in a triangular solve names it; unit_diagonal never reads it.
        let t = ctx.tensor(&[2, 2], &[1.0, 5.0, 0.0, 0.0]).unwrap();
        let e = ctx
            .solve_triangular(&t, &b2, &TriangularOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("T[1, 1] = 0"), "{backend}: {e}");
        let unit = TriangularOptions {
            unit_diagonal: true,
            ..Default::default()
        };
        let x = ctx
            .solve_triangular(&t, &b2, &unit)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(x, vec![-4.0, 1.0], "{backend}");
        // Empty inputs give empty results.
        assert_eq!(
            ctx.solve(&ctx.zeros(&[0, 0]).unwrap(), &ctx.zeros(&[0]).unwrap())
                .unwrap()
                .shape(),
            &[0]
        );
        assert_eq!(
            ctx.inv(&ctx.zeros(&[0, 3, 3]).unwrap()).unwrap().shape(),
            &[0, 3, 3]
        );
    }
}

#[test]
fn lu_factor_and_lu_solve_reuse_the_factors() {
    for (backend, ctx) in common::backends() {
        let n = 45;
        let a = common::data_full(n * n, 31);
        let f = ctx.lu_factor(&ctx.tensor(&[n, n], &a).unwrap()).unwrap();
        let piv = f.piv.to_vec_u32().unwrap();
        assert!(
            piv.iter()
                .enumerate()
                .all(|(i, &p)| p as usize >= i && (p as usize) < n),
            "{backend}: {piv:?}"
        );
        for k in [1, 3] {
            let b = common::data_full(n * k, 32 + k as u64);
            let x = ctx.lu_solve(&f, &ctx.tensor(&[n, k], &b).unwrap()).unwrap();
            let r = solve_ratio(&a, n, k, &b, &x.to_vec().unwrap());
            assert!(r < 30.0, "{backend} lu_solve k = {k}: ratio {r}");
        }
        // Singular factors factor, then refuse to solve.
        let f = ctx.lu_factor(&ctx.zeros(&[3, 3]).unwrap()).unwrap();
        let e = ctx
            .lu_solve(&f, &ctx.tensor(&[3], &[1.0; 3]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("singular"), "{backend}: {e}");
    }
}

#[test]
fn gpu_and_cpu_pick_the_same_pivots() {
    let Some(gpu) = common::gpu() else { return };
    let cpu = common::cpu();
    for n in [7usize, 64, 100] {
        let a = common::data_full(n * n, 50 + n as u64);
        let g = gpu.lu_factor(&gpu.tensor(&[n, n], &a).unwrap()).unwrap();
        let c = cpu.lu_factor(&cpu.tensor(&[n, n], &a).unwrap()).unwrap();
        assert_eq!(
            g.piv.to_vec_u32().unwrap(),
            c.piv.to_vec_u32().unwrap(),
            "n = {n}"
        );
    }
}

#[test]
fn rectangular_lu_has_scipys_shapes_and_factors() {
    for (backend, ctx) in common::backends() {
        for (batch, m, n) in [
            (1usize, 5usize, 3usize),
            (1, 3, 5),
            (2, 4, 6),
            (1, 1, 4),
            (1, 70, 33),
        ] {
            let a = common::data_full(batch * m * n, (m * n) as u64);
            let shape: Vec<usize> = if batch == 1 {
                vec![m, n]
            } else {
                vec![batch, m, n]
            };
            let f = ctx.lu(&ctx.tensor(&shape, &a).unwrap()).unwrap();
            let k = m.min(n);
            let lead: Vec<usize> = shape[..shape.len() - 2].to_vec();
            let with =
                |inner: &[usize]| -> Vec<usize> { lead.iter().chain(inner).copied().collect() };
            assert_eq!(f.p.shape(), with(&[m, m]).as_slice(), "{backend}");
            assert_eq!(f.l.shape(), with(&[m, k]).as_slice(), "{backend}");
            assert_eq!(f.u.shape(), with(&[k, n]).as_slice(), "{backend}");
            assert_eq!(f.perm.shape(), with(&[m]).as_slice(), "{backend}");
            let (p, l, u) = (
                f.p.to_vec().unwrap(),
                f.l.to_vec().unwrap(),
                f.u.to_vec().unwrap(),
            );
            let perm = f.perm.to_vec_u32().unwrap();
            for z in 0..batch {
                let (pz, lz, uz) = (&p[z * m * m..], &l[z * m * k..], &u[z * k * n..]);
                let az = &a[z * m * n..(z + 1) * m * n];
                let an: f64 = az.iter().map(|x| f64::from(x.abs())).sum();
                for i in 0..m {
                    assert_eq!(
                        pz[i * m + perm[z * m + i] as usize],
                        1.0,
                        "{backend}: P[i, perm[i]]"
                    );
                    for j in 0..n {
                        let lu_row = |r: usize| -> f64 {
                            (0..k)
                                .map(|t| f64::from(lz[r * k + t]) * f64::from(uz[t * n + j]))
                                .sum()
                        };
                        let plu: f64 = (0..m).map(|r| f64::from(pz[i * m + r]) * lu_row(r)).sum();
                        assert!(
                            (plu - f64::from(az[i * n + j])).abs() <= 1e-5 * an.max(1.0),
                            "{backend} {batch}×{m}×{n}: (P·L·U)[{i},{j}] = {plu} vs {}",
                            az[i * n + j]
                        );
                    }
                }
                for i in 0..m {
                    for t in 0..k {
                        let v = lz[i * k + t];
                        assert!(if t == i {
                            v == 1.0
                        } else if t > i {
                            v == 0.0
                        } else {
                            v.abs() <= 1.0
                        });
                    }
                }
            }
        }
        let nan = ctx
            .tensor(&[2, 3], &[1.0, f32::NAN, 0.0, 1.0, 2.0, 3.0])
            .unwrap();
        let e = ctx.lu(&nan).unwrap_err().to_string();
        assert!(e.contains("NaN") && e.contains("2×3"), "{backend}: {e}");
    }
}
