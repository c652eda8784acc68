//! Matmul on the GPU (every kernel variant) and the fast CPU backend against the f64 reference.

mod common;

use gpu_linalg::matmul::coop::CoopLoads;
use gpu_linalg::matmul::cpu::reference_for;
use gpu_linalg::{
    Activation, Context, DType, Error, Location, MatmulConfig, MatmulOptions, MatmulPlan, Tensor,
};

/// One generated case: operand shapes, transposes, bias, activation.
#[derive(Clone, Debug)]
struct Case {
    a: Vec<usize>,
    b: Vec<usize>,
    ta: bool,
    tb: bool,
    bias: bool,
    act: Activation,
}

fn stored(batch: &[usize], rows: usize, cols: usize, t: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    if t {
        s.extend([cols, rows]);
    } else {
        s.extend([rows, cols]);
    }
    s
}

/// ≥ 200 shapes that break tiling: 1, primes, tile ± 1, tall, wide, vectors, batches, empty.
fn cases() -> Vec<Case> {
    let dims = [
        1usize, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 127, 129,
    ];
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut next = |n: usize| {
        i = i.wrapping_mul(2654435761).wrapping_add(n * 40503 + 7) % 1_000_003;
        i
    };
    // Square-ish and odd shapes, rotating transposes, bias and activation.
    for (idx, &m) in dims.iter().enumerate() {
        for &n in &dims[idx % 3..] {
            let k = dims[next(m * n) % dims.len()];
            let sel = next(k);
            let act = Activation::ALL[sel % 6];
            out.push(Case {
                a: stored(&[], m, k, sel & 8 != 0),
                b: stored(&[], k, n, sel & 16 != 0),
                ta: sel & 8 != 0,
                tb: sel & 16 != 0,
                bias: sel & 32 != 0,
                act,
            });
            if out.len() % 4 == 0 && n > 60 {
                break;
            }
        }
    }
    let plain = |a: Vec<usize>, b: Vec<usize>| Case {
        a,
        b,
        ta: false,
        tb: false,
        bias: false,
        act: Activation::None,
    };
    // Extremes, vectors, empties.
    out.extend([
        plain(vec![1, 1], vec![1, 1]),
        plain(vec![1, 4096], vec![4096, 1]),
        plain(vec![300, 3], vec![3, 2]),
        plain(vec![2, 3], vec![3, 301]),
        plain(vec![1000, 17], vec![17, 5]),
        plain(vec![5, 1000], vec![1000, 3]),
        plain(vec![37], vec![37, 11]),
        plain(vec![11, 37], vec![37]),
        plain(vec![37], vec![37]),
        plain(vec![0, 5], vec![5, 7]),
        plain(vec![5, 0], vec![0, 7]),
        plain(vec![5, 3], vec![3, 0]),
        plain(vec![0], vec![0]),
        plain(vec![2, 0, 4], vec![4, 3]),
        plain(vec![257, 65], vec![65, 129]),
        plain(vec![128, 128], vec![128, 128]),
    ]);
    // Batches with broadcasting.
    let batched = [
        (vec![3], vec![3]),
        (vec![3], vec![]),
        (vec![], vec![4]),
        (vec![2, 3], vec![3]),
        (vec![2, 1], vec![1, 5]),
        (vec![1, 3], vec![2, 1]),
        (vec![4, 2], vec![4, 2]),
        (vec![1], vec![6]),
    ];
    for (j, (ba, bb)) in batched.iter().enumerate() {
        for &(m, k, n) in &[(5, 7, 9), (17, 3, 33), (1, 16, 4), (8, 8, 8)] {
            let sel = next(j + m);
            out.push(Case {
                a: stored(ba, m, k, sel & 1 != 0),
                b: stored(bb, k, n, sel & 2 != 0),
                ta: sel & 1 != 0,
                tb: sel & 2 != 0,
                bias: sel & 4 != 0,
                act: Activation::ALL[sel % 6],
            });
        }
    }
    // Vector operands with batched matrices.
    out.push(plain(vec![3, 5, 7], vec![7]));
    out.push(plain(vec![7], vec![2, 3, 7, 5]));
    out
}

fn bias_len(c: &Case) -> usize {
    let ncols = |s: &[usize], t: bool| -> usize {
        if s.len() == 1 {
            1
        } else if t {
            s[s.len() - 2]
        } else {
            s[s.len() - 1]
        }
    };
    ncols(&c.b, c.tb)
}

/// Runs every case on `ctx` with `kernel`, checking against the f64 reference.
fn run_cases(ctx: &Context, kernel: Option<MatmulConfig>, cases: &[Case], full_mantissa: bool) {
    for (i, c) in cases.iter().enumerate() {
        let gen = |len, seed| {
            if full_mantissa {
                common::data_full(len, seed)
            } else {
                common::data(len, seed)
            }
        };
        let la: usize = c.a.iter().product();
        let lb: usize = c.b.iter().product();
        let a = ctx.tensor(&c.a, &gen(la, i as u64)).unwrap();
        let b = ctx.tensor(&c.b, &gen(lb, i as u64 + 1000)).unwrap();
        let bias_t = c
            .bias
            .then(|| ctx.tensor(&[bias_len(c)], &gen(bias_len(c), 7)).unwrap());
        let opts = MatmulOptions {
            transpose_a: c.ta,
            transpose_b: c.tb,
            bias: bias_t.as_ref(),
            activation: c.act,
            kernel,
            out_dtype: None,
        };
        let got = ctx
            .matmul_with(&a, &b, &opts)
            .unwrap_or_else(|e| panic!("case {i} {c:?} kernel {kernel:?}: {e}"));
        if ctx.is_gpu() {
            assert_eq!(got.location(), Location::Gpu, "result must stay on the GPU");
        }
        let reference = reference_for(&a, &b, &opts).unwrap();
        assert_eq!(got.shape(), reference.shape.as_slice(), "case {c:?}");
        if let Err(e) = reference.check(&got.to_vec().unwrap()) {
            panic!("case {i} {c:?} kernel {kernel:?}: {e}");
        }
    }
}

#[test]
fn generated_cases_are_many() {
    assert!(cases().len() >= 200, "{} cases", cases().len());
}

#[test]
fn cpu_backend_matches_reference() {
    let ctx = common::cpu();
    run_cases(&ctx, None, &cases(), false);
    run_cases(&ctx, None, &cases(), true);
}

#[test]
fn gpu_naive_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    run_cases(ctx, Some(MatmulConfig::NAIVE), &cases(), true);
}

#[test]
fn gpu_tiled_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    let all = cases();
    run_cases(ctx, Some(MatmulConfig::tiled(4, 4)), &all, true);
    run_cases(ctx, Some(MatmulConfig::tiled(2, 2)), &all[..60], false);
}

#[test]
fn gpu_vec4_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    let all = cases();
    run_cases(ctx, Some(MatmulConfig::vec4(4, 2, 64)), &all, true);
    // Every other vec4 candidate on a slice of the cases.
    for (j, cfg) in MatmulConfig::candidates()
        .into_iter()
        .filter(|c| c.kernel == gpu_linalg::MatmulKernel::Vec4)
        .enumerate()
    {
        let start = (j * 37) % (all.len() - 50);
        run_cases(ctx, Some(cfg), &all[start..start + 50], j % 2 == 0);
    }
}

#[test]
fn gpu_blocked_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    let all = cases();
    // Every blocked configuration on every case.
    for (j, cfg) in MatmulConfig::blocked_candidates().into_iter().enumerate() {
        let t = std::time::Instant::now();
        run_cases(ctx, Some(cfg), &all, j % 2 == 0);
        eprintln!("{cfg}: {} cases in {:.1?}", all.len(), t.elapsed());
    }
}

#[test]
fn gpu_chosen_kernel_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    let cfg = ctx.matmul_config().unwrap();
    eprintln!("kernel chosen for this adapter: {cfg}");
    run_cases(ctx, None, &cases()[..80], true);
}

#[test]
fn chained_ops_stay_resident() {
    let Some(ctx) = common::gpu() else { return };
    let n = 64;
    let eye: Vec<f32> = (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let x0 = common::data(n * n, 3);
    let id = ctx.tensor(&[n, n], &eye).unwrap();
    let mut x = ctx.tensor(&[n, n], &x0).unwrap();
    for _ in 0..50 {
        x = ctx.matmul(&x, &id).unwrap();
        assert_eq!(x.location(), Location::Gpu);
    }
    assert_eq!(x.to_vec().unwrap(), x0);
}

#[test]
fn nan_and_inf_propagate_like_numpy() {
    let cpu = common::cpu();
    let gpu = common::gpu();
    let a = vec![1.0, f32::NAN, 2.0, 3.0, f32::INFINITY, 1.0];
    let b = vec![1.0, 2.0, 0.0, 1.0, 1.0, 1.0];
    for ctx in std::iter::once(&cpu).chain(gpu) {
        for kernel in [
            None,
            Some(MatmulConfig::NAIVE),
            Some(MatmulConfig::tiled(4, 4)),
            Some(MatmulConfig::vec4(4, 2, 64)),
        ] {
            if kernel.is_some() && !ctx.is_gpu() {
                continue;
            }
            for act in Activation::ALL {
                let ta = ctx.tensor(&[2, 3], &a).unwrap();
                let tb = ctx.tensor(&[3, 2], &b).unwrap();
                let opts = MatmulOptions {
                    activation: act,
                    kernel,
                    ..Default::default()
                };
                let c = ctx.matmul_with(&ta, &tb, &opts).unwrap().to_vec().unwrap();
                // Row 0 holds a NaN: both outputs NaN. Row 1: [3 + inf + 0·… ] — inf·0 is NaN.
                assert!(c[0].is_nan() && c[1].is_nan(), "{act:?} {kernel:?}: {c:?}");
                let r = reference_for(&ta, &tb, &opts).unwrap();
                r.check(&c)
                    .unwrap_or_else(|e| panic!("{act:?} {kernel:?}: {e}"));
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_shapes() {
    let mut ctxs = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        ctxs.push(g.clone());
    }
    for ctx in &ctxs {
        let a = ctx.tensor(&[3, 4], &[0.0; 12]).unwrap();
        let b = ctx.tensor(&[5, 6], &[0.0; 30]).unwrap();
        let e = ctx.matmul(&a, &b).unwrap_err();
        assert!(matches!(e, Error::Shape(_)));
        let msg = e.to_string();
        assert!(msg.contains("[3, 4]") && msg.contains("[5, 6]"), "{msg}");

        let s = ctx.tensor(&[], &[1.0]).unwrap();
        let msg = ctx.matmul(&s, &a).unwrap_err().to_string();
        assert!(msg.contains("[]"), "{msg}");

        let a3 = ctx.tensor(&[2, 3, 4], &[0.0; 24]).unwrap();
        let b3 = ctx.tensor(&[3, 4, 2], &[0.0; 24]).unwrap();
        let msg = ctx.matmul(&a3, &b3).unwrap_err().to_string();
        assert!(msg.contains("broadcast"), "{msg}");

        let w = ctx.tensor(&[4, 2], &[0.0; 8]).unwrap();
        let bad_bias = ctx.tensor(&[3], &[0.0; 3]).unwrap();
        let msg = ctx
            .linear(&a, &w, Some(&bad_bias), Activation::Relu)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bias") && msg.contains("[3]"), "{msg}");

        assert!(ctx.tensor(&[2, 2], &[1.0; 3]).is_err());
        assert!(ctx.tensor(&[1, 1, 1, 1, 1], &[1.0]).is_err());
        let idx = ctx.tensor_u32(&[2, 2], &[0; 4]).unwrap();
        let msg = ctx.matmul(&idx, &idx).unwrap_err().to_string();
        assert!(msg.contains("uint32"), "{msg}");
    }
}

#[test]
fn empty_products_follow_numpy() {
    let mut ctxs = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        ctxs.push(g.clone());
    }
    for ctx in &ctxs {
        let a = ctx.tensor(&[0, 3], &[]).unwrap();
        let b = ctx.tensor(&[3, 4], &[1.0; 12]).unwrap();
        let c = ctx.matmul(&a, &b).unwrap();
        assert_eq!(c.shape(), &[0, 4]);
        assert!(c.to_vec().unwrap().is_empty());
        // k = 0: zeros, then bias and activation.
        let a = ctx.tensor(&[2, 0], &[]).unwrap();
        let b = ctx.tensor(&[0, 3], &[]).unwrap();
        assert_eq!(ctx.matmul(&a, &b).unwrap().to_vec().unwrap(), vec![0.0; 6]);
        let bias = ctx.tensor(&[3], &[1.0, -1.0, 2.0]).unwrap();
        let y = ctx.linear(&a, &b, Some(&bias), Activation::Relu).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![1.0, 0.0, 2.0, 1.0, 0.0, 2.0]);
    }
}

#[test]
fn host_tensors_are_accepted_by_gpu_ops() {
    let Some(ctx) = common::gpu() else { return };
    let a = Tensor::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let c = ctx.matmul(&a, &a).unwrap();
    assert_eq!(c.location(), Location::Gpu);
    assert_eq!(c.to_vec().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    let v = pollster::block_on(c.to_vec_async()).unwrap();
    assert_eq!(v, vec![7.0, 10.0, 15.0, 22.0]);
}

#[test]
fn grids_beyond_the_dispatch_limit_are_split() {
    let Some(ctx) = common::gpu() else { return };
    let limit = ctx
        .device_summary()
        .unwrap()
        .max_compute_workgroups_per_dimension as usize;
    // A dot product longer than the limit (the vec4 kernel packs B over k · width threads).
    let k = limit * 2 + 3;
    let x = common::data(k, 1);
    let y = common::data(k, 2);
    let tx = ctx.tensor(&[k], &x).unwrap();
    let ty = ctx.tensor(&[k], &y).unwrap();
    let ref_dot = reference_for(&tx, &ty, &MatmulOptions::default()).unwrap();
    for kernel in [
        MatmulConfig::NAIVE,
        MatmulConfig::tiled(4, 4),
        MatmulConfig::vec4(8, 2, 16),
    ] {
        let opts = MatmulOptions {
            kernel: Some(kernel),
            ..Default::default()
        };
        let got = ctx.matmul_with(&tx, &ty, &opts).unwrap();
        assert_eq!(got.shape(), &[] as &[usize]);
        ref_dot
            .check(&got.to_vec().unwrap())
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
    }
    // More rows than one dispatch covers at 8 rows per workgroup.
    let m = limit * 8 + 5;
    let a = ctx.tensor(&[m, 1], &common::data(m, 3)).unwrap();
    let b = ctx.tensor(&[1, 3], &[1.0, -2.0, 0.5]).unwrap();
    let r = reference_for(&a, &b, &MatmulOptions::default()).unwrap();
    for kernel in [MatmulConfig::NAIVE, MatmulConfig::vec4(8, 1, 64)] {
        let opts = MatmulOptions {
            kernel: Some(kernel),
            ..Default::default()
        };
        let got = ctx.matmul_with(&a, &b, &opts).unwrap().to_vec().unwrap();
        r.check(&got).unwrap_or_else(|e| panic!("{kernel}: {e}"));
    }
}

#[test]
fn subnormal_inputs_do_not_crash_and_stay_within_the_bound() {
    let tiny = f32::MIN_POSITIVE / 8.0; // subnormal
    let mut ctxs = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        ctxs.push(g.clone());
    }
    for ctx in &ctxs {
        let a: Vec<f32> = (0..64).map(|i| tiny * (i % 5) as f32).collect();
        let b: Vec<f32> = (0..64)
            .map(|i| if i % 2 == 0 { 1.0 } else { tiny })
            .collect();
        let (ta, tb) = (
            ctx.tensor(&[8, 8], &a).unwrap(),
            ctx.tensor(&[8, 8], &b).unwrap(),
        );
        let c = ctx.matmul(&ta, &tb).unwrap().to_vec().unwrap();
        reference_for(&ta, &tb, &MatmulOptions::default())
            .unwrap()
            .check(&c)
            .unwrap();
    }
}

#[test]
fn every_candidate_on_small_rectangular_shapes() {
    let Some(ctx) = common::gpu() else { return };
    for cfg in MatmulConfig::candidates()
        .into_iter()
        .chain([MatmulConfig::NAIVE])
    {
        for n in 1..=14usize {
            let a = common::data(n * (n + 1), n as u64);
            let b = common::data((n + 1) * n, n as u64 + 50);
            let ta = ctx.tensor(&[n, n + 1], &a).unwrap();
            let tb = ctx.tensor(&[n + 1, n], &b).unwrap();
            let opts = MatmulOptions {
                kernel: Some(cfg),
                ..Default::default()
            };
            let c = ctx.matmul_with(&ta, &tb, &opts).unwrap().to_vec().unwrap();
            reference_for(&ta, &tb, &MatmulOptions::default())
                .unwrap()
                .check(&c)
                .unwrap_or_else(|e| panic!("{cfg} n={n}: {e}"));
        }
    }
}

/// The structure hints the decompositions pass (op(B) upper triangular; only C's upper
/// triangle wanted) let the kernels skip work but never change a wanted entry: every kernel,
/// transposed operands, tiling-breaking shapes, and k past the loop limit (summed in slices).
#[test]
fn structure_hints_never_change_wanted_entries() {
    let Some(ctx) = common::gpu() else { return };
    let configs: Vec<Option<MatmulConfig>> = MatmulConfig::candidates()
        .into_iter()
        .chain([MatmulConfig::NAIVE, MatmulConfig::tiled(2, 2)])
        .map(Some)
        .chain([None])
        .collect();
    let shapes = [
        (1, 1, 1),
        (5, 3, 7),
        (7, 9, 4),
        (17, 16, 17),
        (63, 65, 64),
        (130, 33, 129),
        (257, 64, 255),
    ];
    for (ci, kernel) in configs.iter().enumerate() {
        for (si, &(m, k, n)) in shapes.iter().enumerate() {
            let (ta, tb) = ((ci + si) % 2 == 1, (ci + si) % 3 == 2);
            let seed = (ci * 31 + si) as u64;
            let a = ctx
                .tensor(&stored(&[], m, k, ta), &common::data_full(m * k, seed))
                .unwrap();
            // op(B)(r, c) = 0 below the diagonal (r > c).
            let mut bv = common::data_full(k * n, seed + 500);
            for r in 0..k {
                for c in 0..n {
                    if r > c {
                        bv[if tb { c * k + r } else { r * n + c }] = 0.0;
                    }
                }
            }
            let b = ctx.tensor(&stored(&[], k, n, tb), &bv).unwrap();
            let opts = MatmulOptions {
                transpose_a: ta,
                transpose_b: tb,
                kernel: *kernel,
                ..Default::default()
            };
            let reference = reference_for(&a, &b, &opts).unwrap();
            let label = format!("{m}×{k}×{n} ta={ta} tb={tb} kernel {kernel:?}");
            for (b_upper, c_upper) in [(true, false), (false, true), (true, true)] {
                let got = ctx
                    .matmul_structured_for_tests(&a, &b, &opts, b_upper, c_upper)
                    .unwrap_or_else(|e| panic!("{label}: {e}"))
                    .to_vec()
                    .unwrap();
                // Entries below the diagonal are not wanted with c_upper: take the reference's.
                let got: Vec<f32> = got
                    .iter()
                    .enumerate()
                    .map(|(e, &x)| {
                        if c_upper && e / n > e % n {
                            reference.values[e] as f32
                        } else {
                            x
                        }
                    })
                    .collect();
                reference
                    .check(&got)
                    .unwrap_or_else(|e| panic!("{label} b_upper={b_upper} c_upper={c_upper}: {e}"));
            }
        }
    }
    // k past the loop limit: the slices of k drop b_upper and keep c_upper.
    let (m, k, n) = (3, gpu_linalg::MAX_K_PER_PASS_CPU_ADAPTER + 5, 4);
    let a = ctx.tensor(&[m, k], &common::data_full(m * k, 9)).unwrap();
    let mut bv = common::data_full(k * n, 10);
    for r in 0..k {
        for c in 0..n {
            if r > c {
                bv[r * n + c] = 0.0;
            }
        }
    }
    let b = ctx.tensor(&[k, n], &bv).unwrap();
    let opts = MatmulOptions::default();
    let reference = reference_for(&a, &b, &opts).unwrap();
    let got = ctx
        .matmul_structured_for_tests(&a, &b, &opts, true, false)
        .unwrap()
        .to_vec()
        .unwrap();
    reference.check(&got).unwrap();
}

/// Split-k (one batched dispatch over slices of k, summed, plus the k mod slices last terms),
/// forced on this thread: every case, transposes, bias and activation included, with the
/// adapter's kernel and each family; k = 1 and k below the slice count stay unsplit.
#[test]
fn split_k_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    let all = cases();
    for (slices, kernel) in [
        (2, None),
        (3, Some(MatmulConfig::blocked(8, 8, 8))),
        (7, Some(MatmulConfig::vec4(4, 2, 64))),
        (5, Some(MatmulConfig::tiled(4, 4))),
        (4, Some(MatmulConfig::NAIVE)),
    ] {
        gpu_linalg::force_split_k(Some(slices));
        run_cases(ctx, kernel, &all, slices % 2 == 1);
    }
    gpu_linalg::force_split_k(None);
    // The default rule: CPU-type adapters never split; GPUs split few blocks with long k.
    let plan = MatmulPlan::new(&[64, 8192], &[8192, 64], false, false).unwrap();
    assert_eq!(gpu_linalg::split_k_slices(true, &plan), 1);
    assert!(gpu_linalg::split_k_slices(false, &plan) > 1);
    let big = MatmulPlan::new(&[2048, 2048], &[2048, 2048], false, false).unwrap();
    assert_eq!(gpu_linalg::split_k_slices(false, &big), 1);
}

/// Every case in float16 and bfloat16: operands (and bias) rounded to the type, the result in
/// that type (numpy's promotion) judged against the f64 reference on the rounded operands,
/// within the γ_k bound plus half an ulp of the type; and in float32 by `out_dtype`.
fn run_cases_half(ctx: &Context, kernel: Option<MatmulConfig>, cases: &[Case], dtype: DType) {
    for (i, c) in cases.iter().enumerate() {
        let half = |shape: &[usize], seed: u64| {
            let len = shape.iter().product();
            let t = Tensor::from_f32_as(shape, &common::data_full(len, seed), dtype).unwrap();
            // Through the context: GPU tensors on a GPU context, cast there.
            let wide = ctx.tensor(shape, &t.to_vec().unwrap()).unwrap();
            let h = ctx.cast(&wide, dtype).unwrap();
            assert_eq!(h.to_half_bits().unwrap(), t.to_half_bits().unwrap());
            (h, Tensor::from_vec(shape, t.to_vec().unwrap()).unwrap())
        };
        let (a, a32) = half(&c.a, i as u64);
        let (b, b32) = half(&c.b, i as u64 + 1000);
        let bias = c.bias.then(|| half(&[bias_len(c)], 7));
        let opts = MatmulOptions {
            transpose_a: c.ta,
            transpose_b: c.tb,
            bias: bias.as_ref().map(|t| &t.0),
            activation: c.act,
            kernel,
            out_dtype: None,
        };
        let label = format!("case {i} {c:?} {} kernel {kernel:?}", dtype.name());
        let got = ctx
            .matmul_with(&a, &b, &opts)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(got.dtype(), dtype, "{label}");
        if ctx.is_gpu() {
            assert_eq!(got.location(), Location::Gpu, "{label}");
        }
        let ref_opts = MatmulOptions {
            bias: bias.as_ref().map(|t| &t.1),
            ..opts
        };
        let reference = reference_for(&a32, &b32, &ref_opts).unwrap();
        if let Err(e) = reference.check_in(&got.to_vec().unwrap(), dtype) {
            panic!("{label}: {e}");
        }
        if i % 7 == 0 {
            let wide = MatmulOptions {
                out_dtype: Some(DType::F32),
                ..opts
            };
            let got = ctx.matmul_with(&a, &b, &wide).unwrap();
            assert_eq!(got.dtype(), DType::F32);
            reference
                .check(&got.to_vec().unwrap())
                .unwrap_or_else(|e| panic!("{label} out f32: {e}"));
        }
    }
}

#[test]
fn half_precision_matches_reference() {
    let all = cases();
    let cpu = common::cpu();
    for dtype in [DType::F16, DType::BF16] {
        run_cases_half(&cpu, None, &all, dtype);
    }
    let Some(ctx) = common::gpu() else { return };
    for dtype in [DType::F16, DType::BF16] {
        run_cases_half(ctx, None, &all, dtype);
        for (j, kernel) in [
            MatmulConfig::NAIVE,
            MatmulConfig::tiled(4, 4),
            MatmulConfig::vec4(8, 2, 64),
            MatmulConfig::blocked(8, 8, 8),
        ]
        .into_iter()
        .enumerate()
        {
            let start = (j * 53) % (all.len() - 80);
            run_cases_half(ctx, Some(kernel), &all[start..start + 80], dtype);
        }
    }
}

/// Every cooperative-matrix configuration the adapter runs, forced, on every case in float16
/// (transposes, bias, activations, empty and tile-breaking shapes, k past the loop limit).
/// Adapters without cooperative matrices (Debian 12's lavapipe, wgpu's GL backend) skip with a
/// note, or fail under `GPU_LINALG_REQUIRE_COOPERATIVE=1` (scripts/coop-lavapipe.sh).
#[test]
fn cooperative_matrix_kernels_match_reference() {
    let Some(ctx) = common::gpu() else { return };
    let configs = ctx.coop_matmul_candidates();
    if configs.is_empty() {
        assert!(
            std::env::var("GPU_LINALG_REQUIRE_COOPERATIVE").as_deref() != Ok("1"),
            "GPU_LINALG_REQUIRE_COOPERATIVE=1, but this adapter offers no float16 cooperative \
             matrices"
        );
        eprintln!("skipped: this adapter offers no float16 cooperative matrices");
        return;
    }
    let all = cases();
    // The set reaches both load widths of each operand.
    let loads: Vec<CoopLoads> = all
        .iter()
        .map(|c| CoopLoads::for_plan(&MatmulPlan::new(&c.a, &c.b, c.ta, c.tb).unwrap()))
        .collect();
    for (what, pick) in [
        ("A", (|l: &CoopLoads| l.a_vector) as fn(&CoopLoads) -> bool),
        ("B", |l: &CoopLoads| l.b_vector),
    ] {
        let vector = loads.iter().filter(|l| pick(l)).count();
        assert!(
            vector > 10 && vector + 10 < loads.len(),
            "{vector} of {} cases load {what} eight halves at a time",
            loads.len()
        );
    }
    for cfg in configs {
        let t = std::time::Instant::now();
        run_cases_half(ctx, Some(cfg), &all, DType::F16);
        eprintln!("{cfg}: {} cases in {:.1?}", all.len(), t.elapsed());
    }
}

/// A forced cooperative-matrix configuration is refused, naming the problem: on float32 or
/// bfloat16 operands, and for a fragment size the adapter does not offer.
#[test]
fn cooperative_matrix_errors_name_the_problem() {
    let Some(ctx) = common::gpu() else { return };
    let f32s = ctx.tensor(&[4, 4], &[1.0; 16]).unwrap();
    let halves = ctx.cast(&f32s, DType::F16).unwrap();
    let bf16s = ctx.cast(&f32s, DType::BF16).unwrap();
    let forced = |k: MatmulConfig| MatmulOptions {
        kernel: Some(k),
        ..Default::default()
    };
    let cfg = MatmulConfig::coop(2, 2, 8);
    for (a, what) in [(&f32s, "float32"), (&bf16s, "bfloat16")] {
        let e = ctx.matmul_with(a, a, &forced(cfg)).unwrap_err().to_string();
        assert!(e.contains("float16") && e.contains(what), "{e}");
    }
    let offered: Vec<u32> = ctx
        .coop_matmul_candidates()
        .iter()
        .map(|c| c.workgroup)
        .collect();
    if let Some(missing) = [8, 16].into_iter().find(|f| !offered.contains(f)) {
        let e = ctx
            .matmul_with(&halves, &halves, &forced(MatmulConfig::coop(2, 2, missing)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cooperative matrices") && e.contains(&format!("{missing}×")),
            "{e}"
        );
    }
    assert!("coop:3x2@8".parse::<MatmulConfig>().is_err());
    assert!("coop:2x2@32".parse::<MatmulConfig>().is_err());
    assert_eq!(
        "coop:4x2@16".parse::<MatmulConfig>().unwrap(),
        MatmulConfig::coop(4, 2, 16)
    );
}

#[test]
fn half_precision_errors_name_the_types() {
    let ctx = common::cpu();
    let a = Tensor::from_f32_as(&[2, 2], &[1.0; 4], DType::F16).unwrap();
    let idx = ctx.tensor_u32(&[2, 2], &[1; 4]).unwrap();
    let e = ctx.matmul(&a, &idx).unwrap_err().to_string();
    assert!(e.contains("uint32") && e.contains("float16"), "{e}");
    let opts = MatmulOptions {
        out_dtype: Some(DType::U32),
        ..Default::default()
    };
    let e = ctx.matmul_with(&a, &a, &opts).unwrap_err().to_string();
    assert!(e.contains("out_dtype") && e.contains("uint32"), "{e}");
    // float16 @ bfloat16 and float16 @ float32 promote to float32, as numpy's float16 @ float32.
    let b = Tensor::from_f32_as(&[2, 2], &[1.0; 4], DType::BF16).unwrap();
    assert_eq!(ctx.matmul(&a, &b).unwrap().dtype(), DType::F32);
    let f = ctx.tensor(&[2, 2], &[1.0; 4]).unwrap();
    assert_eq!(ctx.matmul(&a, &f).unwrap().dtype(), DType::F32);
    assert_eq!(ctx.matmul(&a, &a).unwrap().to_vec().unwrap(), [2.0; 4]);
}
