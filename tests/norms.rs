//! Matrix norms, cond, matrix_rank and pinv on the GPU and the CPU backend against the f64
//! references of `gpu_linalg::norms::cpu`: random, rank-deficient, diagonal and scaled
//! (1e-20, 1e20) matrices of shapes 1×1 … 64×63 and a batch; pinv by the Moore–Penrose
//! conditions; matrix_rank exact on constructed rank-k matrices; the errors.

mod common;

use gpu_linalg::norms::cpu::{cond_f64, matrix_norm_f64, matrix_rank_f64, moore_penrose_residuals};
use gpu_linalg::reference::gamma;
use gpu_linalg::{Context, Error, MatrixNorm};

/// The shapes of the brief: degenerate, tall, wide, square, past the batched-SVD limit, and
/// one batch [3, 6, 4].
const SHAPES: [&[usize]; 8] = [
    &[1, 1],
    &[1, 7],
    &[7, 1],
    &[17, 5],
    &[5, 17],
    &[33, 33],
    &[64, 63],
    &[3, 6, 4],
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    RankDeficient,
    Diagonal,
    Scaled(f32),
}

const KINDS: [Kind; 5] = [
    Kind::Random,
    Kind::RankDeficient,
    Kind::Diagonal,
    Kind::Scaled(1e-20),
    Kind::Scaled(1e20),
];

/// The exact rank a constructed rank-deficient m×n matrix has.
fn deficient_rank(m: usize, n: usize) -> usize {
    (m.min(n) / 2).max(1)
}

/// A rank-k m×n matrix B·C with B, C of multiples of 1/8 (every entry exact in f32).
fn rank_k(m: usize, n: usize, k: usize, seed: u64) -> Vec<f32> {
    // No zero entries, so that a 1×k or k×1 factor is not the zero matrix.
    let nz = |v: Vec<f32>| -> Vec<f32> {
        v.into_iter()
            .map(|x| if x == 0.0 { 0.625 } else { x })
            .collect()
    };
    let b = nz(common::data(m * k, seed));
    let c = nz(common::data(k * n, seed + 1));
    (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..k)
                .map(|t| f64::from(b[i * k + t]) * f64::from(c[t * n + j]))
                .sum::<f64>() as f32
        })
        .collect()
}

fn matrix(kind: Kind, m: usize, n: usize, seed: u64) -> Vec<f32> {
    match kind {
        Kind::Random => common::data_full(m * n, seed),
        Kind::RankDeficient => rank_k(m, n, deficient_rank(m, n), seed),
        Kind::Diagonal => {
            let mut a = vec![0.0; m * n];
            for i in 0..m.min(n) {
                a[i * n + i] = (i as f32 + 1.0) * 0.75 * if i % 2 == 1 { -1.0 } else { 1.0 };
            }
            a
        }
        Kind::Scaled(f) => common::data_full(m * n, seed)
            .iter()
            .map(|&x| x * f)
            .collect(),
    }
}

/// (batch, m, n) of a shape.
fn dims(shape: &[usize]) -> (usize, usize, usize) {
    let (lead, mn) = shape.split_at(shape.len() - 2);
    (lead.iter().product(), mn[0], mn[1])
}

/// The batch of matrices of `shape` and `kind`, flattened.
fn batch(kind: Kind, shape: &[usize], seed: u64) -> Vec<f32> {
    let (b, m, n) = dims(shape);
    (0..b)
        .flat_map(|i| matrix(kind, m, n, seed + 17 * i as u64))
        .collect()
}

/// The relative error bound of norm `ord` of an m×n matrix: γ bounds for the sums, the
/// reduce family's bound for fro, 1e-4 (of σ_max for −2) for the σ-based ones.
fn bound(ord: MatrixNorm, m: usize, n: usize) -> f64 {
    match ord {
        MatrixNorm::One | MatrixNorm::NegOne => 2.0 * gamma(m + 1),
        MatrixNorm::Inf | MatrixNorm::NegInf => 2.0 * gamma(n + 1),
        MatrixNorm::Fro => 2.0 * gamma(m * n + 2),
        _ => 1e-4,
    }
}

#[derive(Default)]
struct Worst {
    norm: [f64; 8],
    cond: f64,
    pinv: [f64; 4],
}

fn check_norms(ctx: &Context, label: &str, worst: &mut Worst) {
    for (si, shape) in SHAPES.iter().enumerate() {
        let (b, m, n) = dims(shape);
        for (ki, kind) in KINDS.iter().enumerate() {
            let data = batch(*kind, shape, 100 + 10 * si as u64 + ki as u64);
            let a = ctx.tensor(shape, &data).unwrap();
            for (oi, ord) in MatrixNorm::ALL.iter().enumerate() {
                let got = ctx.matrix_norm(&a, *ord).unwrap();
                assert_eq!(got.shape(), &shape[..shape.len() - 2]);
                let got = got.to_vec().unwrap();
                for i in 0..b {
                    let mat: Vec<f64> = data[i * m * n..(i + 1) * m * n]
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect();
                    let want = matrix_norm_f64(&mat, m, n, *ord).unwrap();
                    let smax = matrix_norm_f64(&mat, m, n, MatrixNorm::Two).unwrap();
                    let denom = if *ord == MatrixNorm::NegTwo || *ord == MatrixNorm::Nuc {
                        smax.max(want)
                    } else {
                        want
                    };
                    let err = if denom == 0.0 {
                        f64::from(got[i]).abs()
                    } else {
                        (f64::from(got[i]) - want).abs() / denom
                    };
                    assert!(
                        err <= bound(*ord, m, n),
                        "{label}: norm {ord} of {kind:?} {shape:?} [{i}]: got {} want {want} \
                         (rel err {err:e})",
                        got[i]
                    );
                    worst.norm[oi] = worst.norm[oi].max(err);
                }
            }
        }
    }
}

fn check_rank_and_pinv(ctx: &Context, label: &str, worst: &mut Worst) {
    for (si, shape) in SHAPES.iter().enumerate() {
        let (b, m, n) = dims(shape);
        for (ki, kind) in KINDS.iter().enumerate() {
            let data = batch(*kind, shape, 300 + 10 * si as u64 + ki as u64);
            let a = ctx.tensor(shape, &data).unwrap();
            // Rank: exact for the constructed ones, the reference's count for the others.
            let rank = ctx.matrix_rank(&a, None).unwrap();
            assert_eq!(rank.shape(), &shape[..shape.len() - 2]);
            let rank = rank.to_vec_u32().unwrap();
            // pinv by the Moore–Penrose conditions.
            let p = ctx.pinv(&a, None).unwrap();
            let mut pshape = shape[..shape.len() - 2].to_vec();
            pshape.extend([n, m]);
            assert_eq!(p.shape(), &pshape[..]);
            let p = p.to_vec().unwrap();
            for i in 0..b {
                let ai = &data[i * m * n..(i + 1) * m * n];
                let want = match kind {
                    Kind::RankDeficient => deficient_rank(m, n),
                    Kind::Diagonal => m.min(n),
                    _ => matrix_rank_f64(ai, m, n, None).unwrap(),
                };
                assert_eq!(
                    rank[i] as usize, want,
                    "{label}: rank of {kind:?} {shape:?} [{i}]"
                );
                let r = moore_penrose_residuals(ai, &p[i * m * n..(i + 1) * m * n], m, n);
                for (w, &x) in worst.pinv.iter_mut().zip(&r) {
                    *w = w.max(x);
                }
                assert!(
                    r.iter().all(|&x| x < 1e-3),
                    "{label}: pinv of {kind:?} {shape:?} [{i}]: Moore–Penrose residuals {r:?}"
                );
            }
        }
    }
    // Explicit tolerances: tol above the second singular value drops it.
    let a = ctx
        .tensor(&[2, 3], &[3.0, 0.0, 0.0, 0.0, 1e-3, 0.0])
        .unwrap();
    assert_eq!(
        ctx.matrix_rank(&a, Some(1e-2))
            .unwrap()
            .to_vec_u32()
            .unwrap(),
        vec![1]
    );
    assert_eq!(
        ctx.matrix_rank(&a, Some(1e-4))
            .unwrap()
            .to_vec_u32()
            .unwrap(),
        vec![2]
    );
    let p = ctx.pinv(&a, Some(1e-2)).unwrap().to_vec().unwrap();
    assert!(
        (p[0] - 1.0 / 3.0).abs() < 1e-6 && p[1..].iter().all(|&x| x == 0.0),
        "{p:?}"
    );
    let p = ctx.pinv(&a, None).unwrap().to_vec().unwrap();
    assert!((p[3] - 1e3).abs() < 1e-1, "{p:?}"); // pinv is 3×2: [1][1]
                                                 // Scaled rank with an absolute tol.
    let tiny: Vec<f32> = rank_k(17, 5, 3, 9).iter().map(|&x| x * 1e-20).collect();
    let t = ctx.tensor(&[17, 5], &tiny).unwrap();
    assert_eq!(
        ctx.matrix_rank(&t, None).unwrap().to_vec_u32().unwrap(),
        vec![3]
    );
    assert_eq!(
        ctx.matrix_rank(&t, Some(1.0))
            .unwrap()
            .to_vec_u32()
            .unwrap(),
        vec![0]
    );
}

fn check_cond(ctx: &Context, label: &str, worst: &mut Worst) {
    let orders: [Option<MatrixNorm>; 9] = [
        None,
        Some(MatrixNorm::Two),
        Some(MatrixNorm::NegTwo),
        Some(MatrixNorm::Fro),
        Some(MatrixNorm::Nuc),
        Some(MatrixNorm::One),
        Some(MatrixNorm::NegOne),
        Some(MatrixNorm::Inf),
        Some(MatrixNorm::NegInf),
    ];
    // Square matrices with κ₂ = 10 and 10³, a diagonal one, and a batch.
    let mut cases: Vec<(Vec<usize>, Vec<f32>, f64)> = Vec::new();
    for (n, kappa) in [(1usize, 1.0f64), (17, 10.0), (33, 1e3), (64, 1e3)] {
        let sigma: Vec<f64> = (0..n)
            .map(|i| {
                if n == 1 {
                    2.0
                } else {
                    kappa.powf(-(i as f64) / (n - 1) as f64)
                }
            })
            .collect();
        cases.push((
            vec![n, n],
            common::with_singular_values(n, n, &sigma, n as u64),
            kappa,
        ));
    }
    cases.push((vec![5, 5], matrix(Kind::Diagonal, 5, 5, 0), 5.0));
    cases.push((vec![3, 6, 6], batch(Kind::Random, &[3, 6, 6], 7), 0.0));
    cases.push((vec![33, 33], matrix(Kind::Scaled(1e20), 33, 33, 3), 0.0));
    for (shape, data, kappa) in &cases {
        let (b, m, n) = dims(shape);
        let a = ctx.tensor(shape, data).unwrap();
        for p in orders {
            let got = ctx.cond(&a, p).unwrap();
            assert_eq!(got.shape(), &shape[..shape.len() - 2]);
            let got = got.to_vec().unwrap();
            for i in 0..b {
                let ai = &data[i * m * n..(i + 1) * m * n];
                let want = cond_f64(ai, m, n, p).unwrap();
                let k2 = cond_f64(ai, m, n, None).unwrap();
                if *kappa > 0.0 {
                    assert!(
                        (k2 / kappa - 1.0).abs() < 1e-2,
                        "κ₂ {k2} of a κ = {kappa} case"
                    );
                }
                // The inverse's error grows with κ₂: allow 64·n·ε·κ₂ (at least 1e-4).
                let tol = (64.0 * n as f64 * f64::from(f32::EPSILON) * k2).max(1e-4);
                let err = (f64::from(got[i]) - want).abs() / want;
                assert!(
                    err <= tol,
                    "{label}: cond p={p:?} of {shape:?} [{i}]: got {} want {want} (rel {err:e}, \
                     tol {tol:e})",
                    got[i]
                );
                worst.cond = worst.cond.max(err);
            }
        }
    }
    // Singular input rounded to f32: a huge value (numpy's too: neither the SVD nor the LU of
    // the rounded matrix meets an exact zero); inf where a pivot is exactly zero (below).
    for (m, n) in [(5usize, 5usize), (33, 33)] {
        let a = ctx.tensor(&[m, n], &rank_k(m, n, 2, 5)).unwrap();
        for p in orders {
            let c = ctx.cond(&a, p).unwrap().to_vec().unwrap()[0];
            let ok = if p == Some(MatrixNorm::NegTwo) {
                c < 1e-5
            } else {
                c > 1e5
            };
            assert!(ok, "{label}: cond p={p:?} of a singular {m}×{n}: {c}");
        }
    }
    let exact = ctx
        .tensor(&[3, 3], &[1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 1.0, 0.0, 1.0])
        .unwrap();
    for p in orders
        .iter()
        .filter(|p| !matches!(p, None | Some(MatrixNorm::Two) | Some(MatrixNorm::NegTwo)))
    {
        assert_eq!(
            ctx.cond(&exact, *p).unwrap().to_vec().unwrap(),
            vec![f32::INFINITY],
            "{label}: {p:?}"
        );
    }
    let zero = ctx.zeros(&[3, 3]).unwrap();
    for p in orders {
        assert_eq!(
            ctx.cond(&zero, p).unwrap().to_vec().unwrap(),
            vec![f32::INFINITY]
        );
    }
    // Non-square: p = 2 works, the others name both dims.
    let wide = ctx.tensor(&[2, 3], &[1., 0., 0., 0., 2., 0.]).unwrap();
    assert_eq!(ctx.cond(&wide, None).unwrap().to_vec().unwrap(), vec![2.0]);
    match ctx.cond(&wide, Some(MatrixNorm::One)) {
        Err(Error::Shape(msg)) => assert!(msg.contains("2×3"), "{msg}"),
        other => panic!("{label}: cond 1 of 2×3: {other:?}"),
    }
}

fn check_errors(ctx: &Context, label: &str) {
    let nan = ctx.tensor(&[2, 2], &[1.0, f32::NAN, 0.0, 1.0]).unwrap();
    let inf = ctx
        .tensor(&[2, 2], &[1.0, f32::INFINITY, 0.0, 1.0])
        .unwrap();
    let vec1 = ctx.tensor(&[3], &[1.0, 2.0, 3.0]).unwrap();
    for t in [&nan, &inf] {
        let results = [
            ctx.matrix_norm(t, MatrixNorm::Fro).map(drop),
            ctx.matrix_norm(t, MatrixNorm::Two).map(drop),
            ctx.cond(t, None).map(drop),
            ctx.cond(t, Some(MatrixNorm::One)).map(drop),
            ctx.matrix_rank(t, None).map(drop),
            ctx.pinv(t, None).map(drop),
        ];
        for r in results {
            match r {
                Err(Error::InvalidArgument(msg)) => assert!(msg.contains("NaN"), "{msg}"),
                other => panic!("{label}: non-finite input gave {other:?}"),
            }
        }
    }
    let results = [
        ctx.matrix_norm(&vec1, MatrixNorm::Fro).map(drop),
        ctx.cond(&vec1, None).map(drop),
        ctx.matrix_rank(&vec1, None).map(drop),
        ctx.pinv(&vec1, None).map(drop),
    ];
    for r in results {
        match r {
            Err(Error::Shape(msg)) => assert!(msg.contains("[3]"), "{msg}"),
            other => panic!("{label}: 1-D input gave {other:?}"),
        }
    }
    let idx = ctx.tensor_u32(&[2, 2], &[1, 2, 3, 4]).unwrap();
    assert!(matches!(
        ctx.matrix_norm(&idx, MatrixNorm::Fro),
        Err(Error::InvalidArgument(_))
    ));
    // Empty matrices, numpy's way.
    for shape in [[0usize, 3], [3, 0], [0, 0]] {
        let e = ctx.zeros(&shape).unwrap();
        for ord in [MatrixNorm::Fro, MatrixNorm::One, MatrixNorm::Inf] {
            let v = ctx.matrix_norm(&e, ord).unwrap();
            assert_eq!(v.shape(), &[] as &[usize]);
            assert_eq!(v.to_vec().unwrap(), vec![0.0]);
        }
        for ord in [MatrixNorm::Two, MatrixNorm::NegTwo, MatrixNorm::Nuc] {
            match ctx.matrix_norm(&e, ord) {
                Err(Error::LinAlg(msg)) => assert!(msg.contains("empty"), "{msg}"),
                other => panic!("{label}: norm {ord} of empty {shape:?}: {other:?}"),
            }
        }
        assert!(ctx.cond(&e, None).is_err());
        assert_eq!(
            ctx.matrix_rank(&e, None).unwrap().to_vec_u32().unwrap(),
            vec![0]
        );
        assert_eq!(ctx.pinv(&e, None).unwrap().shape(), &[shape[1], shape[0]]);
    }
    let eb = ctx.zeros(&[2, 0, 4]).unwrap();
    assert_eq!(
        ctx.matrix_norm(&eb, MatrixNorm::Fro)
            .unwrap()
            .to_vec()
            .unwrap(),
        vec![0.0, 0.0]
    );
    assert_eq!(ctx.pinv(&eb, None).unwrap().shape(), &[2, 4, 0]);
}

fn report(label: &str, w: &Worst) {
    let names = MatrixNorm::ALL.map(|o| o.name());
    let norms: Vec<String> = names
        .iter()
        .zip(&w.norm)
        .map(|(n, e)| format!("{n} {e:.1e}"))
        .collect();
    eprintln!(
        "{label}: worst relative errors: norm [{}]; cond {:.1e}; pinv Moore–Penrose [{}]",
        norms.join(", "),
        w.cond,
        w.pinv.map(|x| format!("{x:.1e}")).join(", ")
    );
}

fn run_all(ctx: &Context, label: &str) {
    let mut w = Worst::default();
    check_norms(ctx, label, &mut w);
    check_rank_and_pinv(ctx, label, &mut w);
    check_cond(ctx, label, &mut w);
    check_errors(ctx, label);
    report(label, &w);
}

#[test]
fn gpu_norms_cond_rank_pinv() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    run_all(ctx, "gpu");
}

#[test]
fn cpu_norms_cond_rank_pinv() {
    run_all(&common::cpu(), "cpu");
}

#[test]
fn norm_orders_parse() {
    for ord in MatrixNorm::ALL {
        assert_eq!(ord.name().parse::<MatrixNorm>().unwrap(), ord);
        assert_eq!(ord.to_string(), ord.name());
    }
    assert_eq!(" INF ".parse::<MatrixNorm>().unwrap(), MatrixNorm::Inf);
    assert!(matches!(
        "3".parse::<MatrixNorm>(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn batched_shapes() {
    let ctx = common::cpu();
    let data = batch(Kind::Random, &[2, 3, 4, 5], 1);
    let a = ctx.tensor(&[2, 3, 4, 5], &data).unwrap();
    assert_eq!(
        ctx.matrix_norm(&a, MatrixNorm::Two).unwrap().shape(),
        &[2, 3]
    );
    assert_eq!(ctx.matrix_rank(&a, None).unwrap().shape(), &[2, 3]);
    assert_eq!(ctx.pinv(&a, None).unwrap().shape(), &[2, 3, 5, 4]);
    assert_eq!(ctx.cond(&a, None).unwrap().shape(), &[2, 3]);
}
