//! Reductions on the GPU (each combine kernel forced) and the fast CPU backend against the f64
//! reference: every op on generated shapes, long inputs, NaN/±Inf, empty inputs and errors.

mod common;

use gpu_linalg::reduce::cpu::reference;
use gpu_linalg::{Context, Location, ReduceKernel, ReduceOp, ReduceOptions, ReducePlan, Tensor};

/// (shape, axis, keepdims) cases: 0-d to 4-D, empty axes, length 1, 2^k ± 1, every axis
/// (negative too).
fn cases() -> Vec<(Vec<usize>, Option<isize>, bool)> {
    let shapes: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![1],
        vec![2],
        vec![3],
        vec![4],
        vec![7],
        vec![31],
        vec![63],
        vec![64],
        vec![65],
        vec![127],
        vec![255],
        vec![256],
        vec![257],
        vec![1023],
        vec![1025],
        vec![4097],
        vec![8191],
        vec![8193],
        vec![70001],
        vec![0, 3],
        vec![3, 0],
        vec![1, 1],
        vec![2, 3],
        vec![5, 64],
        vec![17, 33],
        vec![33, 17],
        vec![4, 129],
        vec![129, 4],
        vec![3, 1000],
        vec![1000, 3],
        vec![2, 9000],
        vec![2, 3, 4],
        vec![3, 1, 5],
        vec![2, 0, 3],
        vec![4, 65, 3],
        vec![2, 3, 4, 5],
        vec![1, 2, 1, 3],
        vec![3, 2, 65, 2],
        vec![2, 2, 2, 257],
        vec![5, 7],
        vec![6, 1],
        vec![1, 6],
        vec![2, 1, 4],
        vec![3, 3, 3],
        vec![1, 0, 2, 2],
        vec![2, 5, 1, 3],
        vec![16, 16],
    ];
    let mut out = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let nd = s.len() as isize;
        out.push((s.clone(), None, i % 3 == 0));
        for a in 0..nd {
            out.push((s.clone(), Some(a), (i + a as usize).is_multiple_of(2)));
            out.push((s.clone(), Some(a - nd), (i + a as usize) % 2 == 1));
        }
    }
    out
}

fn input(ctx: &Context, shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v = if seed.is_multiple_of(2) {
        common::data(n, seed)
    } else {
        common::data_full(n, seed)
    };
    ctx.tensor(shape, &v).unwrap()
}

/// Runs `op` and checks it against the reference; `Ok(false)` when numpy refuses it (the
/// error must then be one of numpy's).
fn check(ctx: &Context, x: &Tensor, op: ReduceOp, opts: &ReduceOptions, what: &str) -> bool {
    let xs = x.to_vec().unwrap();
    let plan = match ReducePlan::new(op, x.shape(), opts) {
        Ok(p) => p,
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("zero-size array") || m.contains("empty sequence"),
                "{what}: {m}"
            );
            assert!(ctx.reduce(op, x, opts).is_err(), "{what}");
            return false;
        }
    };
    let y = ctx
        .reduce(op, x, opts)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if ctx.is_gpu() {
        assert_eq!(y.location(), Location::Gpu, "{what}");
    }
    let r = reference(&plan, &xs);
    assert_eq!(y.shape(), r.shape.as_slice(), "{what}");
    if op.is_arg() {
        r.check_indices(&y.to_vec_u32().unwrap())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    } else {
        r.check(&y.to_vec().unwrap())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    true
}

fn run_all(ctx: &Context, kernel: Option<ReduceKernel>) -> usize {
    run_all_capped(ctx, kernel, None)
}

/// `run_all` with each GPU dispatch binding at most max(`cap`, 32·inner·4 + 256) bytes, where
/// inner is the case's column width (a window must hold one segment row of partial slots).
fn run_all_capped(ctx: &Context, kernel: Option<ReduceKernel>, cap: Option<u64>) -> usize {
    let mut ran = 0;
    for (i, (shape, axis, keepdims)) in cases().into_iter().enumerate() {
        let x = input(ctx, &shape, i as u64);
        for op in ReduceOp::ALL {
            if op.is_normalization() && axis.is_none() && shape.len() > 1 && i % 2 == 0 {
                continue;
            }
            let opts = ReduceOptions {
                axis,
                keepdims,
                ddof: i % 3 % 2,
                kernel,
            };
            let what = format!("case {i} {op} shape {shape:?} {opts:?}");
            if let (Some(cap), Ok(plan)) = (cap, ReducePlan::new(op, &shape, &opts)) {
                let c = cap.max(32 * 4 * plan.inner as u64 + 256);
                gpu_linalg::reduce::set_window_cap(Some(c));
            }
            let ok = check(ctx, &x, op, &opts, &what);
            gpu_linalg::reduce::set_window_cap(None);
            if ok {
                ran += 1;
            }
        }
    }
    ran
}

#[test]
fn enough_cases() {
    assert!(cases().len() >= 200, "{}", cases().len());
}

#[test]
fn cpu_backend_matches_reference() {
    let ran = run_all(&common::cpu(), None);
    assert!(ran > 1500, "{ran}");
}

fn kernels(ctx: &Context) -> Vec<ReduceKernel> {
    let mut k = vec![ReduceKernel::Tree, ReduceKernel::Serial];
    let sg = ctx.device_summary().is_some_and(|s| s.subgroups);
    if sg {
        k.push(ReduceKernel::Subgroup);
    } else {
        eprintln!("adapter lacks subgroups: the subgroup kernel is not tested here");
    }
    k
}

#[test]
fn gpu_kernels_match_reference() {
    let Some(ctx) = common::gpu() else { return };
    for k in kernels(ctx) {
        let ran = run_all(ctx, Some(k));
        assert!(ran > 1500, "{ran}");
    }
    // The tuned choice runs too.
    eprintln!("reduce kernel in use: {}", ctx.reduce_kernel().unwrap());
    let x = input(ctx, &[3, 1000], 4);
    check(
        ctx,
        &x,
        ReduceOp::Sum,
        &ReduceOptions::axis(Some(1)),
        "tuned",
    );
}

/// Long axes: several passes, split columns, the 2-D folded grid.
#[test]
fn long_axes_reduce_in_passes() {
    let mut ctxs = vec![(common::cpu(), None)];
    if let Some(g) = common::gpu() {
        for k in kernels(g) {
            ctxs.push((g.clone(), Some(k)));
        }
    }
    for (ctx, kernel) in &ctxs {
        for (shape, axis) in [
            (vec![(1 << 22) + 3], None),
            (vec![3, 400_001], Some(-1)),
            (vec![400_001, 3], Some(0)),
            (vec![2, 300_000, 2], Some(1)),
            (vec![70_000, 20], Some(1)),
            (vec![20, 70_000], Some(0)),
        ] {
            let x = input(ctx, &shape, 7);
            for op in [
                ReduceOp::Sum,
                ReduceOp::Argmax,
                ReduceOp::Var,
                ReduceOp::LogSumExp,
                ReduceOp::Softmax,
            ] {
                let opts = ReduceOptions {
                    axis,
                    kernel: *kernel,
                    ..Default::default()
                };
                check(ctx, &x, op, &opts, &format!("{op} {shape:?} {kernel:?}"));
            }
        }
    }
}

/// The bar: a sum of 10^7 values of 1e-3 + noise within 1e-6 relative of the f64 sum.
#[test]
fn ten_million_sum_is_accurate() {
    let n = 10_000_000;
    let noise = common::data_full(n, 11);
    let v: Vec<f32> = noise.iter().map(|e| 1e-3 + 1e-4 * e).collect();
    let exact: f64 = v.iter().map(|&x| f64::from(x)).sum();
    let mut ctxs = vec![(common::cpu(), None)];
    if let Some(g) = common::gpu() {
        for k in kernels(g) {
            ctxs.push((g.clone(), Some(k)));
        }
    }
    for (ctx, kernel) in &ctxs {
        let x = ctx.tensor(&[n], &v).unwrap();
        let opts = ReduceOptions {
            kernel: *kernel,
            ..Default::default()
        };
        let s = ctx.reduce(ReduceOp::Sum, &x, &opts).unwrap();
        assert_eq!(s.shape(), &[] as &[usize]);
        let got = f64::from(s.to_vec().unwrap()[0]);
        let rel = (got - exact).abs() / exact;
        eprintln!(
            "sum of 1e7 on {} ({kernel:?}): relative error {rel:.2e}",
            ctx.description()
        );
        assert!(rel <= 1e-6, "{kernel:?}: {got} vs {exact} ({rel:.2e})");
        let mean = f64::from(ctx.mean(&x, None).unwrap().to_vec().unwrap()[0]);
        assert!((mean - exact / n as f64).abs() / (exact / n as f64) <= 1e-6);
    }
}

fn all_ctx() -> Vec<(Context, Option<ReduceKernel>)> {
    let mut ctxs = vec![(common::cpu(), None)];
    if let Some(g) = common::gpu() {
        for k in kernels(g) {
            ctxs.push((g.clone(), Some(k)));
        }
    }
    ctxs
}

#[test]
fn nan_and_infinities_follow_numpy() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    for (ctx, kernel) in all_ctx() {
        let o = |axis| ReduceOptions {
            axis,
            kernel,
            ..Default::default()
        };
        let vals = |t: Tensor| t.to_vec().unwrap();
        // Long enough for the workgroup kernels: NaN at 100 and 300.
        let mut v = vec![1.0f32; 1000];
        v[100] = nan;
        v[300] = nan;
        v[500] = 7.0;
        let x = ctx.tensor(&[1000], &v).unwrap();
        assert!(vals(ctx.reduce(ReduceOp::Max, &x, &o(None)).unwrap())[0].is_nan());
        assert!(vals(ctx.reduce(ReduceOp::Min, &x, &o(None)).unwrap())[0].is_nan());
        assert!(vals(ctx.reduce(ReduceOp::Sum, &x, &o(None)).unwrap())[0].is_nan());
        for op in [ReduceOp::Argmax, ReduceOp::Argmin] {
            let i = ctx.reduce(op, &x, &o(None)).unwrap().to_vec_u32().unwrap();
            assert_eq!(i, vec![100], "{op} {kernel:?}");
        }
        // Short rows and columns.
        let x = ctx
            .tensor(&[2, 3], &[1.0, nan, 5.0, -inf, 2.0, -inf])
            .unwrap();
        let m = vals(ctx.reduce(ReduceOp::Max, &x, &o(Some(1))).unwrap());
        assert!(m[0].is_nan() && m[1] == 2.0, "{m:?}");
        let i = ctx
            .reduce(ReduceOp::Argmin, &x, &o(Some(1)))
            .unwrap()
            .to_vec_u32()
            .unwrap();
        assert_eq!(i, vec![1, 0]);
        let i = ctx
            .reduce(ReduceOp::Argmax, &x, &o(Some(0)))
            .unwrap()
            .to_vec_u32()
            .unwrap();
        assert_eq!(i, vec![0, 0, 0]);
        // +inf and -inf: NaN; one infinity: that infinity.
        let x = ctx.tensor(&[3], &[inf, 1.0, -inf]).unwrap();
        assert!(vals(ctx.reduce(ReduceOp::Sum, &x, &o(None)).unwrap())[0].is_nan());
        let x = ctx.tensor(&[3], &[inf, 1.0, 2.0]).unwrap();
        assert_eq!(
            vals(ctx.reduce(ReduceOp::Sum, &x, &o(None)).unwrap())[0],
            inf
        );
        assert_eq!(
            vals(ctx.reduce(ReduceOp::Norm, &x, &o(None)).unwrap())[0],
            inf
        );
        assert_eq!(
            vals(ctx.reduce(ReduceOp::LogSumExp, &x, &o(None)).unwrap())[0],
            inf
        );
        let x = ctx.tensor(&[2], &[-inf, -inf]).unwrap();
        assert_eq!(
            vals(ctx.reduce(ReduceOp::LogSumExp, &x, &o(None)).unwrap())[0],
            -inf
        );
        assert_eq!(
            vals(ctx.reduce(ReduceOp::Max, &x, &o(None)).unwrap())[0],
            -inf
        );
        assert_eq!(
            ctx.reduce(ReduceOp::Argmax, &x, &o(None))
                .unwrap()
                .to_vec_u32()
                .unwrap(),
            vec![0]
        );
        // Ties: first index.
        let x = ctx.tensor(&[5], &[2.0, 3.0, 3.0, 1.0, 1.0]).unwrap();
        let a = |op| ctx.reduce(op, &x, &o(None)).unwrap().to_vec_u32().unwrap();
        assert_eq!(a(ReduceOp::Argmax), vec![1]);
        assert_eq!(a(ReduceOp::Argmin), vec![3]);
    }
}

#[test]
fn empty_inputs_follow_numpy() {
    for (ctx, kernel) in all_ctx() {
        let o = |axis| ReduceOptions {
            axis,
            kernel,
            ..Default::default()
        };
        let x = ctx.tensor(&[0], &[]).unwrap();
        let v = |op| ctx.reduce(op, &x, &o(None)).unwrap().to_vec().unwrap()[0];
        assert_eq!(v(ReduceOp::Sum), 0.0);
        assert!(v(ReduceOp::Mean).is_nan());
        assert!(v(ReduceOp::Var).is_nan());
        assert_eq!(v(ReduceOp::Norm), 0.0);
        assert_eq!(v(ReduceOp::LogSumExp), f32::NEG_INFINITY);
        for op in [
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::Argmax,
            ReduceOp::Argmin,
        ] {
            let e = ctx.reduce(op, &x, &o(None)).unwrap_err().to_string();
            assert!(
                e.contains("zero-size array to reduction operation")
                    || e.contains("empty sequence"),
                "{e}"
            );
        }
        assert_eq!(
            ctx.reduce(ReduceOp::Softmax, &x, &o(None)).unwrap().shape(),
            &[0]
        );
        // An empty axis with other dims non-empty: per output element.
        let x = ctx.tensor(&[3, 0], &[]).unwrap();
        let s = ctx.reduce(ReduceOp::Sum, &x, &o(Some(1))).unwrap();
        assert_eq!(s.shape(), &[3]);
        assert_eq!(s.to_vec().unwrap(), vec![0.0; 3]);
        assert!(ctx.reduce(ReduceOp::Max, &x, &o(Some(-1))).is_err());
        // Nothing to reduce into: an empty result, no error.
        let m = ctx.reduce(ReduceOp::Max, &x, &o(Some(0))).unwrap();
        assert_eq!(m.shape(), &[0]);
        // Bad axes name the shape.
        let e = ctx.sum(&x, Some(2)).unwrap_err().to_string();
        assert!(
            e.contains("axis 2 is out of bounds") && e.contains("[3, 0]"),
            "{e}"
        );
    }
}

#[test]
fn convenience_methods_and_results_stay_resident() {
    for (ctx, _) in all_ctx() {
        let x = ctx
            .tensor(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap();
        let s = ctx.sum(&x, None).unwrap();
        // Chained without readback.
        let t = ctx.sum(&ctx.mean(&x, Some(0)).unwrap(), None).unwrap();
        if ctx.is_gpu() {
            assert_eq!(s.location(), Location::Gpu);
            assert_eq!(t.location(), Location::Gpu);
        }
        assert_eq!(s.to_vec().unwrap(), vec![21.0]);
        assert_eq!(t.to_vec().unwrap(), vec![10.5]);
        assert_eq!(
            ctx.max(&x, Some(1)).unwrap().to_vec().unwrap(),
            vec![3.0, 6.0]
        );
        assert_eq!(
            ctx.min(&x, Some(0)).unwrap().to_vec().unwrap(),
            vec![1.0, 2.0, 3.0]
        );
        assert_eq!(ctx.argmax(&x, None).unwrap().to_vec_u32().unwrap(), vec![5]);
        assert_eq!(
            ctx.argmin(&x, Some(1)).unwrap().to_vec_u32().unwrap(),
            vec![0, 0]
        );
        assert_eq!(
            ctx.var(&x, Some(1), 1).unwrap().to_vec().unwrap(),
            vec![1.0, 1.0]
        );
        let n = ctx.norm(&x, None).unwrap().to_vec().unwrap()[0];
        assert!((n - 91f32.sqrt()).abs() < 1e-5);
        let sm = ctx.softmax(&x, None).unwrap().to_vec().unwrap();
        assert!((sm[0] + sm[1] + sm[2] - 1.0).abs() < 1e-6);
        let ls = ctx.log_softmax(&x, Some(-1)).unwrap().to_vec().unwrap();
        assert!((ls[2].exp() - sm[2]).abs() < 1e-6);
        let l = ctx.logsumexp(&x, Some(1)).unwrap().to_vec().unwrap();
        assert!((l[0] - (1f32.exp() + 2f32.exp() + 3f32.exp()).ln()).abs() < 1e-5);
        // Index tensors are refused as inputs.
        let i = ctx.argmax(&x, None).unwrap();
        assert!(ctx.sum(&i, None).is_err());
    }
}

/// Multiples of 1/4 with partial sums below 2^22: every order sums exactly, so every kernel
/// must give the exact sum (and mean of the exact sum), over all elements and along axes.
#[test]
fn sums_of_quarters_are_exact() {
    let n = 100_003;
    let v: Vec<f32> = common::data(n, 3)
        .iter()
        .map(|x| (x * 2.0).round() / 4.0)
        .collect();
    let exact: f64 = v.iter().map(|&x| f64::from(x)).sum();
    for (ctx, kernel) in all_ctx() {
        let o = |axis| ReduceOptions {
            axis,
            kernel,
            ..Default::default()
        };
        let x = ctx.tensor(&[n], &v).unwrap();
        let s = ctx
            .reduce(ReduceOp::Sum, &x, &o(None))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(f64::from(s[0]), exact, "{kernel:?}");
        let x = ctx.tensor(&[7, n / 7], &v[..n / 7 * 7]).unwrap();
        for axis in [0isize, 1] {
            let got = ctx
                .reduce(ReduceOp::Sum, &x, &o(Some(axis)))
                .unwrap()
                .to_vec()
                .unwrap();
            let r = gpu_linalg::reduce::cpu::reference(
                &ReducePlan::new(ReduceOp::Sum, x.shape(), &o(Some(axis))).unwrap(),
                &v[..n / 7 * 7],
            );
            for (g, e) in got.iter().zip(&r.values) {
                assert_eq!(f64::from(*g), *e, "{kernel:?} axis {axis}");
            }
        }
    }
}

/// Every case again with each dispatch binding at most 1 KiB (and 4 KiB): the windowed path that
/// inputs larger than one storage binding take, on small inputs — windows that split rows,
/// cross row boundaries, split the partial passes, softmax outputs and their row statistics.
#[test]
fn tiny_binding_windows_match_reference() {
    let Some(ctx) = common::gpu() else { return };
    for (cap, kernel) in [
        (1024, Some(ReduceKernel::Tree)),
        (4096, Some(ReduceKernel::Serial)),
    ] {
        let t = std::time::Instant::now();
        let ran = run_all_capped(ctx, kernel, Some(cap));
        eprintln!(
            "{ran} cases in windows of {cap} bytes ({kernel:?}): {:.1?}",
            t.elapsed()
        );
        assert!(ran > 1500, "{ran}");
    }
}
