//! Every family's kernels built with wgpu's runtime bounds checks, as real GPUs get them
//! (`BoundsChecks::Auto` leaves them off only on CPU-type adapters such as lavapipe, where the
//! rest of the suite runs unchecked modules): a slice of each family's shapes, every kernel
//! variant forced in turn, checked against the CPU reference. nn and the SVD family build
//! checked modules everywhere, and their suites cover them.

mod common;

use std::sync::OnceLock;

use gpu_linalg::elementwise::cpu::{binary_checked, unary_checked};
use gpu_linalg::{
    Activation, Backend, BinaryOp, BoundsChecks, Context, ContextOptions, ConvConfig, ConvKind,
    ConvOptions, MatmulConfig, MatmulOptions, Padding, ReduceKernel, ReduceOp, ReduceOptions,
    ReducePlan, Slice, Tensor, UnaryOp,
};

/// A GPU context whose kernels are all bounds-checked.
fn checked() -> Option<&'static Context> {
    static CTX: OnceLock<Option<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        common::gpu()?;
        let ctx = Context::with_options(ContextOptions {
            backend: Backend::Gpu,
            bounds_checks: BoundsChecks::On,
            ..Default::default()
        })
        .expect("a bounds-checked GPU context");
        assert!(ctx.bounds_checked());
        Some(ctx)
    })
    .as_ref()
}

fn host(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, common::data(n, seed)).expect("a host tensor")
}

#[test]
fn bounds_checks_follow_the_adapter_type() {
    let Some(shared) = common::gpu() else { return };
    let cpu_adapter = shared
        .device_summary()
        .is_some_and(|s| s.adapter.device_type == "Cpu");
    assert_eq!(
        shared.bounds_checked(),
        !cpu_adapter,
        "{}",
        shared.description()
    );
    assert!(checked().is_some_and(Context::bounds_checked));
}

#[test]
fn checked_matmul_kernels_match_the_reference() {
    let Some(ctx) = checked() else { return };
    let configs: Vec<MatmulConfig> = MatmulConfig::candidates()
        .into_iter()
        .chain([MatmulConfig::NAIVE])
        .collect();
    for &(m, k, n, ta, tb) in &[
        (1, 1, 1, false, false),
        (17, 33, 5, false, true),
        (65, 64, 63, true, false),
        (3, 129, 70, false, false),
    ] {
        let a = host(&if ta { [k, m] } else { [m, k] }, 1);
        let b = host(&if tb { [n, k] } else { [k, n] }, 2);
        let bias = host(&[n], 3);
        let (ga, gb, gbias) = (
            ctx.tensor(a.shape(), &a.to_vec().unwrap()).unwrap(),
            ctx.tensor(b.shape(), &b.to_vec().unwrap()).unwrap(),
            ctx.tensor(&[n], &bias.to_vec().unwrap()).unwrap(),
        );
        for &config in &configs {
            let opts = |bias| MatmulOptions {
                transpose_a: ta,
                transpose_b: tb,
                bias,
                activation: Activation::Gelu,
                kernel: Some(config),
                out_dtype: None,
            };
            let got = ctx.matmul_with(&ga, &gb, &opts(Some(&gbias))).unwrap();
            gpu_linalg::matmul::cpu::reference_for(&a, &b, &opts(Some(&bias)))
                .unwrap()
                .check(&got.to_vec().unwrap())
                .unwrap_or_else(|e| panic!("{config} on {m}x{k}x{n}: {e}"));
        }
    }
}

#[test]
fn checked_conv_kernels_match_the_reference() {
    let Some(ctx) = checked() else { return };
    let configs: Vec<ConvConfig> = ConvConfig::candidates()
        .into_iter()
        .chain([ConvConfig::Naive])
        .collect();
    for &(x, w, groups, stride) in &[
        ([2, 3, 9, 11], [5, 3, 3, 3], 1, 1),
        ([1, 4, 7, 7], [4, 1, 3, 3], 4, 2),
        ([1, 6, 5, 13], [6, 3, 1, 5], 2, 1),
    ] {
        let (hx, hw, hb) = (host(&x, 4), host(&w, 5), host(&[w[0]], 6));
        let gx = ctx.tensor(&x, &hx.to_vec().unwrap()).unwrap();
        let gw = ctx.tensor(&w, &hw.to_vec().unwrap()).unwrap();
        let gb = ctx.tensor(&[w[0]], &hb.to_vec().unwrap()).unwrap();
        for &config in &configs {
            for kind in [ConvKind::Conv2d, ConvKind::ConvTranspose2d] {
                if kind == ConvKind::ConvTranspose2d && groups != 1 {
                    continue;
                }
                let (wt, gwt) = if kind == ConvKind::ConvTranspose2d {
                    // conv_transpose2d weights are [C_in, C_out/groups, KH, KW].
                    let s = [x[1], w[0], w[2], w[3]];
                    let h = host(&s, 7);
                    let g = ctx.tensor(&s, &h.to_vec().unwrap()).unwrap();
                    (h, g)
                } else {
                    (hw.clone(), gw.clone())
                };
                let opts = |bias| ConvOptions {
                    stride: [stride, stride],
                    padding: Padding::from(1),
                    groups,
                    bias,
                    activation: Activation::Relu,
                    kernel: Some(config),
                    ..Default::default()
                };
                let got = match kind {
                    ConvKind::Conv2d => ctx.conv2d(&gx, &gwt, &opts(Some(&gb))),
                    _ => ctx.conv_transpose2d(&gx, &gwt, &opts(None)),
                }
                .unwrap();
                let bias = (kind == ConvKind::Conv2d).then_some(&hb);
                gpu_linalg::conv::cpu::reference_for(kind, &hx, &wt, &opts(bias))
                    .unwrap()
                    .check(&got.to_vec().unwrap())
                    .unwrap_or_else(|e| panic!("{config} {kind:?} {x:?} ⊛ {w:?}: {e}"));
            }
        }
    }
}

#[test]
fn checked_elementwise_and_layout_kernels_match_the_reference() {
    let Some(ctx) = checked() else { return };
    // Same shapes (vec4), a row broadcast (rows of vec4s) and a general broadcast.
    for (sa, sb) in [
        (vec![8, 12], vec![8, 12]),
        (vec![5, 16], vec![16]),
        (vec![3, 1, 7], vec![4, 1]),
    ] {
        let (a, b) = (host(&sa, 8), host(&sb, 9));
        let ga = ctx.tensor(&sa, &a.to_vec().unwrap()).unwrap();
        let gb = ctx.tensor(&sb, &b.to_vec().unwrap()).unwrap();
        let out = gpu_linalg::broadcast_shapes(&sa, &sb).unwrap();
        for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Lerp(0.25)] {
            let got = ctx.binary(op, &ga, &gb).unwrap().to_vec().unwrap();
            binary_checked(
                op,
                &out,
                (&a.to_vec().unwrap(), &sa),
                (&b.to_vec().unwrap(), &sb),
            )
            .check(&got)
            .unwrap_or_else(|e| panic!("{op:?} {sa:?} {sb:?}: {e}"));
        }
        let got = ctx.unary(UnaryOp::Exp, &ga).unwrap().to_vec().unwrap();
        unary_checked(UnaryOp::Exp, &sa, &a.to_vec().unwrap())
            .check(&got)
            .unwrap();
    }
    // Layout: data movement is exact.
    let x = host(&[3, 5, 7], 10);
    let hx = x.to_vec().unwrap();
    let gx = ctx.tensor(&[3, 5, 7], &hx).unwrap();
    let t = ctx.permute(&gx, &[2, 0, 1]).unwrap().to_vec().unwrap();
    for (i, j, k) in (0..3).flat_map(|i| (0..5).flat_map(move |j| (0..7).map(move |k| (i, j, k)))) {
        assert_eq!(t[k * 15 + i * 5 + j], hx[i * 35 + j * 7 + k]);
    }
    let s = ctx
        .slice(&gx, &[Slice::all(), Slice::range(1, 4), Slice::all()])
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(s.len(), 3 * 3 * 7);
    assert_eq!(s[0], hx[7]);
    let c = ctx.concat(&[&gx, &gx], 1).unwrap().to_vec().unwrap();
    assert_eq!(c.len(), 2 * hx.len());
    assert_eq!(c[35], hx[0]);
    // Random: the same Philox stream as the CPU backend, bit for bit.
    let r = ctx.rand_uniform(&[1001], 7).unwrap().to_vec().unwrap();
    let cpu = Context::with_backend(Backend::Cpu).unwrap();
    assert_eq!(r, cpu.rand_uniform(&[1001], 7).unwrap().to_vec().unwrap());
}

#[test]
fn checked_reduce_kernels_match_the_reference() {
    let Some(ctx) = checked() else { return };
    let mut kernels = vec![ReduceKernel::Tree, ReduceKernel::Serial];
    if ctx.device_summary().is_some_and(|s| s.subgroups) {
        kernels.push(ReduceKernel::Subgroup);
    }
    for shape in [vec![3, 1000], vec![70, 9], vec![4097]] {
        let x = host(&shape, 11);
        let hx = x.to_vec().unwrap();
        let gx = ctx.tensor(&shape, &hx).unwrap();
        for &kernel in &kernels {
            for (op, axis) in [
                (ReduceOp::Sum, Some(-1)),
                (ReduceOp::Max, Some(0)),
                (ReduceOp::Argmax, None),
                (ReduceOp::Softmax, Some(-1)),
            ] {
                let opts = ReduceOptions {
                    axis,
                    kernel: Some(kernel),
                    ..Default::default()
                };
                let plan = ReducePlan::new(op, &shape, &opts).unwrap();
                let got = ctx.reduce(op, &gx, &opts).unwrap();
                let reference = gpu_linalg::reduce::cpu::reference(&plan, &hx);
                let r = if op == ReduceOp::Argmax {
                    reference.check_indices(&got.to_vec_u32().unwrap())
                } else {
                    reference.check(&got.to_vec().unwrap())
                };
                r.unwrap_or_else(|e| panic!("{op} {kernel} {shape:?} axis {axis:?}: {e}"));
            }
        }
    }
}

#[test]
fn checked_cholesky_kernels_match_the_reference() {
    let Some(ctx) = checked() else { return };
    for n in [1usize, 31, 33, 70] {
        // A diagonally dominant symmetric matrix: positive definite.
        let r = common::data_full(n * n, n as u64);
        let mut a = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..i {
                a[i * n + j] = r[i * n + j];
                a[j * n + i] = r[i * n + j];
            }
            a[i * n + i] = n as f32 + 1.0;
        }
        let t = ctx
            .tensor(&[2, n, n], &[a.clone(), a.clone()].concat())
            .unwrap();
        let l = ctx.cholesky(&t).unwrap().to_vec().unwrap();
        for z in 0..2 {
            let q = gpu_linalg::cholesky::cpu::ratio(&a, n, &l[z * n * n..(z + 1) * n * n]);
            assert!(q < 30.0, "checked cholesky {n}: ratio {q}");
        }
    }
}
