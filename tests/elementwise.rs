//! Elementwise ops on the GPU and the fast CPU backend against f64 references: ≥ 200 shapes
//! (0-d, empty, length 1, 2^k ± 1, broadcasting, 4-D, 10^7 elements), every op, NaN and ±∞.

mod common;

use gpu_linalg::elementwise::cpu::{binary_reference, slerp_reference, unary_f64};
use gpu_linalg::{Activation, BinaryOp, Context, Error, Location, Tensor, UnaryOp};

const U: f64 = 1.0 / 16_777_216.0;

fn unary_ops() -> Vec<UnaryOp> {
    let mut v = vec![
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Scale(-1.75),
        UnaryOp::Clamp(-0.5, 0.25),
        UnaryOp::Clamp(0.5, -0.5),
    ];
    v.extend(Activation::ALL.iter().map(|&a| UnaryOp::Act(a)));
    v
}

fn binary_ops() -> Vec<BinaryOp> {
    vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Axpy(0.3),
        BinaryOp::Lerp(0.25),
        BinaryOp::Lerp(0.75),
        BinaryOp::Lerp(1.0),
    ]
}

/// Input range per op: wide enough to reach each op's interesting region.
fn input(op: UnaryOp, len: usize, seed: u64) -> Vec<f32> {
    let scale = match op {
        UnaryOp::Exp => 40.0,
        UnaryOp::Log | UnaryOp::Sqrt => 1000.0,
        _ => 8.0,
    };
    common::data_full(len, seed)
        .into_iter()
        .map(|v| v * scale)
        .collect()
}

/// Checks `got` against `exp` with NaN = NaN, equal infinities (or f32 overflow), and
/// |got − exp| ≤ bound(i).
fn check(what: &str, got: &[f32], exp: &[f64], bound: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), exp.len(), "{what}: length");
    for (i, (&g, &e)) in got.iter().zip(exp).enumerate() {
        let g = f64::from(g);
        let ok = if e.is_nan() || g.is_nan() {
            e.is_nan() && g.is_nan()
        } else if e.is_infinite() || g.is_infinite() {
            e == g || (g.is_infinite() && g.signum() == e.signum() && e.abs() >= 3.4e38)
        } else {
            (g - e).abs() <= bound(i)
        };
        assert!(
            ok,
            "{what}: element {i} is {g:e}, reference {e:e} (allowed {:e})",
            bound(i)
        );
    }
}

fn unary_bound(op: UnaryOp, e: f64) -> f64 {
    let tiny = f64::from(f32::MIN_POSITIVE);
    match op {
        UnaryOp::Abs | UnaryOp::Clamp(..) => 0.0,
        UnaryOp::Scale(_) | UnaryOp::Act(Activation::Relu | Activation::None) => U * e.abs() + tiny,
        _ => 4.0 * U * e.abs() + 1e-6,
    }
}

fn binary_bound(op: BinaryOp, e: f64, m: f64) -> f64 {
    let tiny = f64::from(f32::MIN_POSITIVE);
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => U * e.abs() + tiny,
        BinaryOp::Div => 3.0 * U * e.abs() + tiny,
        BinaryOp::Axpy(_) => 2.0 * U * m + U * e.abs() + tiny,
        BinaryOp::Lerp(_) => 4.0 * U * m + tiny,
    }
}

fn check_unary(ctx: &Context, gpu: bool, op: UnaryOp, shape: &[usize], x: &[f32]) {
    let t = ctx.tensor(shape, x).unwrap();
    let y = ctx.unary(op, &t).unwrap();
    assert_eq!(y.shape(), shape);
    if gpu {
        assert_eq!(y.location(), Location::Gpu);
    }
    let got = y.to_vec().unwrap();
    let exp: Vec<f64> = x.iter().map(|&v| unary_f64(op, f64::from(v))).collect();
    check(&format!("{op:?} {shape:?} gpu={gpu}"), &got, &exp, |i| {
        unary_bound(op, exp[i])
    });
}

fn check_binary(ctx: &Context, gpu: bool, op: BinaryOp, sa: &[usize], sb: &[usize], seed: u64) {
    let (na, nb) = (sa.iter().product(), sb.iter().product());
    let a = common::data_full(na, seed)
        .into_iter()
        .map(|v| v * 4.0)
        .collect::<Vec<_>>();
    let mut b = common::data_full(nb, seed + 1);
    if op == BinaryOp::Div {
        // Away from 0 so the quotients stay normal.
        b.iter_mut()
            .for_each(|v| *v = if *v < 0.0 { *v - 0.25 } else { *v + 0.25 });
    }
    let (ta, tb) = (ctx.tensor(sa, &a).unwrap(), ctx.tensor(sb, &b).unwrap());
    let y = ctx.binary(op, &ta, &tb).unwrap();
    let shape = gpu_linalg::broadcast_shapes(sa, sb).unwrap();
    assert_eq!(y.shape(), &shape[..]);
    if gpu {
        assert_eq!(y.location(), Location::Gpu);
    }
    let got = y.to_vec().unwrap();
    let (exp, mag) = binary_reference(op, &shape, (&a, sa), (&b, sb));
    check(
        &format!("{op:?} {sa:?} {sb:?} gpu={gpu}"),
        &got,
        &exp,
        |i| binary_bound(op, exp[i], mag[i]),
    );
}

/// ≥ 200 broadcasting shape pairs: 0-d, empty, length 1, 2^k ± 1, 4-D, mixed ranks.
fn shape_pairs() -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut v: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![], vec![]),
        (vec![], vec![5]),
        (vec![7], vec![]),
        (vec![0], vec![0]),
        (vec![0], vec![1]),
        (vec![3, 0], vec![3, 1]),
        (vec![1], vec![1]),
        (vec![2, 0, 4], vec![4]),
        (vec![1, 1, 1, 1], vec![]),
    ];
    for k in 0..=13 {
        for n in [(1usize << k).saturating_sub(1).max(1), 1 << k, (1 << k) + 1] {
            v.push((vec![n], vec![n]));
            v.push((vec![n], vec![1]));
        }
    }
    let dims = [1usize, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33];
    let mut s = 7usize;
    let mut next = |m: usize| {
        s = s.wrapping_mul(2654435761).wrapping_add(12345) % 1_000_003;
        s % m
    };
    while v.len() < 240 {
        let nd = 1 + next(4);
        let full: Vec<usize> = (0..nd).map(|_| dims[next(dims.len())]).collect();
        let mut a = full.clone();
        let mut b = full.clone();
        for k in 0..nd {
            match next(4) {
                0 => a[k] = 1,
                1 => b[k] = 1,
                _ => {}
            }
        }
        let drop = next(nd);
        let b = if next(3) == 0 { b[drop..].to_vec() } else { b };
        if next(2) == 0 {
            v.push((a, b));
        } else {
            v.push((b, a));
        }
    }
    v
}

fn backends() -> Vec<(Context, bool)> {
    let mut v = vec![(common::cpu(), false)];
    if let Some(g) = common::gpu() {
        v.push((g.clone(), true));
    }
    v
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    let pairs = shape_pairs();
    assert!(pairs.len() >= 200);
    for (ctx, gpu) in backends() {
        for (i, (sa, sb)) in pairs.iter().enumerate() {
            let ops = binary_ops();
            // Every op on the small cases, one op per case on the rest.
            if sa.len() + sb.len() <= 2 && sa.iter().chain(sb).product::<usize>() < 64 {
                for op in ops {
                    check_binary(&ctx, gpu, op, sa, sb, i as u64);
                }
            } else {
                check_binary(&ctx, gpu, ops[i % ops.len()], sa, sb, i as u64);
            }
        }
    }
}

#[test]
fn unary_ops_on_many_shapes() {
    let mut shapes: Vec<Vec<usize>> = vec![vec![], vec![0], vec![1], vec![2, 0, 3], vec![4, 1]];
    for k in 0..=14 {
        shapes.push(vec![(1usize << k).saturating_sub(1).max(1)]);
        shapes.push(vec![1 << k]);
        shapes.push(vec![(1 << k) + 1]);
    }
    shapes.extend([
        vec![3, 5, 7, 9],
        vec![2, 3, 4, 5],
        vec![17, 33],
        vec![1, 1, 1, 5],
    ]);
    for (ctx, gpu) in backends() {
        for (si, shape) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            for op in unary_ops() {
                let x = input(op, n, si as u64 * 31 + 5);
                check_unary(&ctx, gpu, op, shape, &x);
            }
        }
    }
}

#[test]
fn nan_and_infinities_follow_numpy() {
    let inf = f32::INFINITY;
    let specials = [
        f32::NAN,
        inf,
        -inf,
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::MIN_POSITIVE,
        f32::MAX,
        -f32::MAX,
        88.0,
        89.0,
        -104.0,
        -87.0,
    ];
    for (ctx, gpu) in backends() {
        for op in unary_ops() {
            check_unary(&ctx, gpu, op, &[specials.len()], &specials);
        }
        for op in [
            UnaryOp::Clamp(f32::NAN, 1.0),
            UnaryOp::Clamp(-inf, inf),
            UnaryOp::Scale(0.0),
        ] {
            check_unary(&ctx, gpu, op, &[specials.len()], &specials);
        }
        for op in binary_ops() {
            // f32 overflow inside axpy / lerp (b − a at ±MAX) is f32 behaviour the f64
            // reference does not share: those ops get the specials without ±MAX.
            let sp: Vec<f32> = specials
                .iter()
                .copied()
                .filter(|v| {
                    matches!(
                        op,
                        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div
                    ) || v.abs() != f32::MAX
                })
                .collect();
            let n = sp.len();
            let a: Vec<f32> = (0..n * n).map(|i| sp[i / n]).collect();
            let b: Vec<f32> = (0..n * n).map(|i| sp[i % n]).collect();
            let y = ctx
                .binary(
                    op,
                    &ctx.tensor(&[n, 1], &sp).unwrap(),
                    &ctx.tensor(&[n], &sp).unwrap(),
                )
                .unwrap();
            let (exp, mag) = binary_reference(op, &[n * n], (&a, &[n * n]), (&b, &[n * n]));
            check(
                &format!("{op:?} specials gpu={gpu}"),
                &y.to_vec().unwrap(),
                &exp,
                |i| binary_bound(op, exp[i], mag[i]),
            );
        }
        // Spot values as numpy gives them.
        let x = ctx.tensor(&[4], &[-1.0, 0.0, -0.0, inf]).unwrap();
        let l = ctx.log(&x).unwrap().to_vec().unwrap();
        assert!(l[0].is_nan());
        assert_eq!(l[1], -inf);
        assert_eq!(l[2], -inf);
        assert_eq!(l[3], inf);
        let s = ctx.sqrt(&x).unwrap().to_vec().unwrap();
        assert!(s[0].is_nan());
        assert_eq!(s[2].to_bits(), (-0.0f32).to_bits());
        let c = ctx
            .clamp(&ctx.tensor(&[2], &[f32::NAN, 5.0]).unwrap(), 0.0, 1.0)
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(c[0].is_nan());
        assert_eq!(c[1], 1.0);
        let d = ctx
            .div(
                &ctx.tensor(&[3], &[1.0, -1.0, 0.0]).unwrap(),
                &ctx.tensor(&[], &[0.0]).unwrap(),
            )
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(d[0], inf);
        assert_eq!(d[1], -inf);
        assert!(d[2].is_nan());
    }
}

#[test]
fn ten_million_elements() {
    let n = 10_000_000usize;
    let shape = [10, 1000, 1000];
    let x = input(UnaryOp::Exp, n, 99);
    let row = common::data_full(1000, 98);
    for (ctx, gpu) in backends() {
        check_unary(&ctx, gpu, UnaryOp::Exp, &shape, &x);
        check_unary(&ctx, gpu, UnaryOp::Act(Activation::Gelu), &shape, &x);
        let t = ctx.tensor(&shape, &x).unwrap();
        let r = ctx.tensor(&[1000], &row).unwrap();
        let y = ctx.add(&t, &r).unwrap();
        if gpu {
            assert_eq!(y.location(), Location::Gpu);
        }
        let (exp, mag) = binary_reference(BinaryOp::Add, &shape, (&x, &shape), (&row, &[1000]));
        check("add 10^7", &y.to_vec().unwrap(), &exp, |i| {
            binary_bound(BinaryOp::Add, exp[i], mag[i])
        });
        // Non-multiple of 4 (the general kernel) at the same size.
        let odd = ctx.tensor(&[n - 1], &x[..n - 1]).unwrap();
        let z = ctx.scale(&odd, 0.5).unwrap().to_vec().unwrap();
        assert!(z.iter().zip(&x).all(|(&z, &v)| z == 0.5 * v));
    }
}

#[test]
fn convenience_methods_match_the_generic_ones() {
    for (ctx, _) in backends() {
        let a = ctx.tensor(&[2, 3], &[1., -2., 3., -4., 5., -6.]).unwrap();
        let b = ctx.tensor(&[3], &[0.5, 2., -1.]).unwrap();
        let v =
            |t: Tensor| -> Vec<u32> { t.to_vec().unwrap().iter().map(|x| x.to_bits()).collect() };
        let f = |t: Tensor| t.to_vec().unwrap();
        assert_eq!(f(ctx.add(&a, &b).unwrap()), [1.5, 0., 2., -3.5, 7., -7.]);
        assert_eq!(f(ctx.sub(&a, &b).unwrap()), [0.5, -4., 4., -4.5, 3., -5.]);
        assert_eq!(f(ctx.mul(&a, &b).unwrap()), [0.5, -4., -3., -2., 10., 6.]);
        assert_eq!(f(ctx.div(&a, &b).unwrap()), [2., -1., -3., -8., 2.5, 6.]);
        assert_eq!(
            f(ctx.scale(&a, 2.0).unwrap()),
            [2., -4., 6., -8., 10., -12.]
        );
        assert_eq!(
            f(ctx.axpy(2.0, &a, &b).unwrap()),
            [2.5, -2., 5., -7.5, 12., -13.]
        );
        assert_eq!(
            f(ctx.clamp(&a, -2., 3.).unwrap()),
            [1., -2., 3., -2., 3., -2.]
        );
        assert_eq!(f(ctx.abs(&a).unwrap()), [1., 2., 3., 4., 5., 6.]);
        assert_eq!(f(ctx.relu(&a).unwrap()), [1., 0., 3., 0., 5., 0.]);
        assert_eq!(
            f(ctx.lerp(&a, &b, 1.0).unwrap()),
            [0.5, 2., -1., 0.5, 2., -1.]
        );
        assert_eq!(v(ctx.lerp(&a, &b, 0.0).unwrap()), v(a.clone()));
        for (act, f) in [
            (
                Activation::Gelu,
                Context::gelu as fn(&Context, &Tensor) -> _,
            ),
            (Activation::GeluTanh, Context::gelu_tanh),
            (Activation::Sigmoid, Context::sigmoid),
            (Activation::Tanh, Context::tanh),
            (Activation::Relu, Context::relu),
        ] {
            assert_eq!(v(f(&ctx, &a).unwrap()), v(ctx.activate(&a, act).unwrap()));
        }
        assert_eq!(
            v(ctx.exp(&a).unwrap()),
            v(ctx.unary(UnaryOp::Exp, &a).unwrap())
        );
        assert_eq!(
            v(ctx.log(&b).unwrap()),
            v(ctx.unary(UnaryOp::Log, &b).unwrap())
        );
        assert_eq!(
            v(ctx.sqrt(&b).unwrap()),
            v(ctx.unary(UnaryOp::Sqrt, &b).unwrap())
        );
    }
}

#[test]
fn broadcast_mismatch_names_both_shapes() {
    for (ctx, _) in backends() {
        let a = ctx.zeros(&[2, 3]).unwrap();
        let b = ctx.zeros(&[4]).unwrap();
        let e = ctx.add(&a, &b).unwrap_err();
        assert!(matches!(e, Error::Shape(_)), "{e}");
        let m = e.to_string();
        assert!(m.contains("[2, 3]") && m.contains("[4]"), "{m}");
        let e = ctx.slerp(&a, &ctx.zeros(&[3]).unwrap(), 0.5).unwrap_err();
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        let idx = ctx.tensor_u32(&[2], &[1, 2]).unwrap();
        assert!(ctx.exp(&idx).is_err());
    }
}

#[test]
fn slerp_against_f64_reference() {
    let shapes: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![1],
        vec![4, 0],
        vec![3],
        vec![2, 5],
        vec![7, 64],
        vec![3, 4, 513],
        vec![2, 2, 3, 17],
        vec![1000, 257],
    ];
    for (ctx, gpu) in backends() {
        for (si, shape) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            let d = shape.last().copied().unwrap_or(1);
            let a = common::data_full(n, si as u64 + 1);
            let mut b = common::data_full(n, si as u64 + 100);
            // Row 0 parallel to a (lerp fallback), row 1 zero, when there are rows.
            if d > 0 && n >= 2 * d {
                for k in 0..d {
                    b[k] = 2.0 * a[k];
                    b[d + k] = 0.0;
                }
            }
            for t in [0.0f32, 0.3, 0.5, 1.0] {
                let y = ctx
                    .slerp(
                        &ctx.tensor(shape, &a).unwrap(),
                        &ctx.tensor(shape, &b).unwrap(),
                        t,
                    )
                    .unwrap();
                assert_eq!(y.shape(), &shape[..]);
                if gpu {
                    assert_eq!(y.location(), Location::Gpu);
                }
                let exp = slerp_reference(&a, &b, d, t);
                let got = y.to_vec().unwrap();
                // Weights of magnitude ≤ ~1.6 with errors of a few ulp plus the f32 dot
                // products (γ_d) amplified by 1/sin θ ≤ 32: scale with the row's size.
                let g = d as f64 * U;
                check(
                    &format!("slerp {shape:?} t={t} gpu={gpu}"),
                    &got,
                    &exp,
                    |i| {
                        let row = i / d.max(1);
                        let amax = a[row * d..(row + 1) * d]
                            .iter()
                            .chain(&b[row * d..(row + 1) * d])
                            .fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
                        (16.0 * U + 64.0 * g) * amax + 1e-6
                    },
                );
            }
        }
    }
}

#[test]
fn activate_matches_fused_epilogue_reference() {
    // The activation ops reuse the shaders' `activate()`: compare with activate_f64.
    let x: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 100.0).collect();
    for (ctx, gpu) in backends() {
        for act in Activation::ALL {
            check_unary(&ctx, gpu, UnaryOp::Act(act), &[2001], &x);
        }
    }
}

#[test]
fn broadcast_index_math_past_two_to_the_24() {
    // 17.5 M elements broadcast against a row of 7: flat indices beyond 2^24, where f32
    // reciprocals alone could not divide exactly.
    let Some(gpu) = common::gpu() else { return };
    let rows = 2_500_001usize;
    let a: Vec<f32> = (0..rows * 7).map(|i| (i % 1013) as f32).collect();
    let row = [0.0f32, 1e4, 2e4, 3e4, 4e4, 5e4, 6e4];
    let y = gpu
        .add(
            &gpu.tensor(&[rows, 7], &a).unwrap(),
            &gpu.tensor(&[7], &row).unwrap(),
        )
        .unwrap()
        .to_vec()
        .unwrap();
    for (i, (&y, &x)) in y.iter().zip(&a).enumerate() {
        assert_eq!(y, x + row[i % 7], "element {i}");
    }
    // And a column broadcast: [rows, 7] + [rows, 1].
    let col: Vec<f32> = (0..rows).map(|r| (r % 7) as f32 * 0.5).collect();
    let y = gpu
        .add(
            &gpu.tensor(&[rows, 7], &a).unwrap(),
            &gpu.tensor(&[rows, 1], &col).unwrap(),
        )
        .unwrap()
        .to_vec()
        .unwrap();
    for (i, (&y, &x)) in y.iter().zip(&a).enumerate() {
        assert_eq!(y, x + col[i / 7], "element {i}");
    }
}
