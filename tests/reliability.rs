//! Reliability at the edges: operands larger than one storage binding, and ops that cannot
//! split them failing with the limit named.

mod common;

use gpu_linalg::cpu::matmul::reference_for;
use gpu_linalg::{ConvOptions, Error, MatmulConfig, MatmulOptions};

#[test]
fn matmul_with_a_larger_than_one_binding() {
    let Some(ctx) = common::gpu() else { return };
    let limit = ctx
        .device_summary()
        .unwrap()
        .max_storage_buffer_binding_size;
    // 6000 × 6000 · 6000 × 16: A is 144 MB, above lavapipe's (and WebGPU's) 128 MiB binding.
    let (m, k, n) = (6000usize, 6000usize, 16usize);
    if (m * k * 4) as u64 <= limit {
        eprintln!("binding limit {limit} holds A: the chunked path is not exercised here");
    }
    let a = common::data(m * k, 1);
    let b = common::data(k * n, 2);
    let (ta, tb) = (
        ctx.tensor(&[m, k], &a).unwrap(),
        ctx.tensor(&[k, n], &b).unwrap(),
    );
    let host_a = gpu_linalg::Tensor::from_vec(&[m, k], a).unwrap();
    let host_b = gpu_linalg::Tensor::from_vec(&[k, n], b).unwrap();
    let reference = reference_for(&host_a, &host_b, &MatmulOptions::default()).unwrap();
    for kernel in [
        None,
        Some(MatmulConfig::tiled(4, 4)),
        Some(MatmulConfig::NAIVE),
    ] {
        let opts = MatmulOptions {
            kernel,
            ..Default::default()
        };
        let c = ctx
            .matmul_with(&ta, &tb, &opts)
            .unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
        assert_eq!(c.shape(), &[m, n]);
        reference
            .check(&c.to_vec().unwrap())
            .unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
    }
    // A transposed A that large is not split: an error naming the limit, not a crash.
    let e = ctx
        .matmul_with(
            &ta,
            &tb,
            &MatmulOptions {
                transpose_a: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
    // So is a convolution whose input exceeds one binding.
    let x = ctx.zeros(&[1, 1, 6000, 6000]).unwrap();
    let w = ctx.tensor(&[1, 1, 1, 1], &[1.0]).unwrap();
    let e = ctx.conv2d(&x, &w, &ConvOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
}

#[test]
fn eight_threads_share_one_context() {
    let Some(ctx) = common::gpu() else { return };
    let ctx = std::sync::Arc::new(ctx.clone());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                for j in 0..500u64 {
                    let seed = t * 1000 + j;
                    let n = 1 + ((t + j) % 13) as usize;
                    match j % 4 {
                        0 => {
                            let a = common::data(n * (n + 1), seed);
                            let b = common::data((n + 1) * n, seed + 1);
                            let (ta, tb) = (
                                ctx.tensor(&[n, n + 1], &a).unwrap(),
                                ctx.tensor(&[n + 1, n], &b).unwrap(),
                            );
                            let c = ctx.matmul(&ta, &tb).unwrap().to_vec().unwrap();
                            reference_for(&ta, &tb, &MatmulOptions::default())
                                .unwrap()
                                .check(&c)
                                .unwrap();
                        }
                        1 => {
                            let x = ctx
                                .tensor(
                                    &[1, 2, n + 2, n + 2],
                                    &common::data(2 * (n + 2) * (n + 2), seed),
                                )
                                .unwrap();
                            let w = ctx
                                .tensor(&[3, 2, 3, 3], &common::data(54, seed + 1))
                                .unwrap();
                            let o = ConvOptions {
                                padding: gpu_linalg::Padding::from(1),
                                ..Default::default()
                            };
                            let y = ctx.conv2d(&x, &w, &o).unwrap().to_vec().unwrap();
                            gpu_linalg::cpu::conv::reference_for(
                                gpu_linalg::ConvKind::Conv2d,
                                &x,
                                &w,
                                &o,
                            )
                            .unwrap()
                            .check(&y)
                            .unwrap();
                        }
                        2 => {
                            let v = common::data(n * 7, seed);
                            let z = ctx.tensor(&[n * 7], &v).unwrap();
                            let y = ctx
                                .activate(&z, gpu_linalg::Activation::Relu)
                                .unwrap()
                                .to_vec()
                                .unwrap();
                            let want: Vec<f32> = v.iter().map(|x| x.max(0.0)).collect();
                            assert_eq!(y, want);
                        }
                        _ => {
                            let p = common::data(n * 5, seed);
                            let q = common::data(n * 5, seed + 1);
                            let l = ctx
                                .mse_loss(
                                    &ctx.tensor(&[n * 5], &p).unwrap(),
                                    &ctx.tensor(&[n * 5], &q).unwrap(),
                                    gpu_linalg::LossReduction::Sum,
                                    false,
                                )
                                .unwrap();
                            // Multiples of 1/8: the sum is exact.
                            let want: f32 = p.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
                            assert_eq!(l.loss.to_vec().unwrap()[0], want);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn conv_outputs_beyond_the_dispatch_limit_are_split() {
    let Some(ctx) = common::gpu() else { return };
    // 2100 × 2100 = 4.41 M output positions: 68,907 workgroups of 64 for the naive kernel and
    // 137,813 of 32 positions for a 1×1@8 GEMM tile, both above 65,535.
    let hw = 2100;
    let x = ctx
        .tensor(&[1, 1, hw, hw], &common::data(hw * hw, 5))
        .unwrap();
    let w = ctx.tensor(&[2, 1, 1, 1], &[0.5, -2.0]).unwrap();
    let b = ctx.tensor(&[2], &[1.0, 0.25]).unwrap();
    for kernel in [
        gpu_linalg::ConvConfig::Naive,
        gpu_linalg::ConvConfig::gemm(1, 1, 8),
    ] {
        let o = ConvOptions {
            bias: Some(&b),
            kernel: Some(kernel),
            ..Default::default()
        };
        let y = ctx
            .conv2d(&x, &w, &o)
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
        gpu_linalg::cpu::conv::reference_for(gpu_linalg::ConvKind::Conv2d, &x, &w, &o)
            .unwrap()
            .check(&y.to_vec().unwrap())
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
    }
}

#[test]
fn conv_batches_larger_than_one_binding_are_chunked_by_image() {
    let Some(ctx) = common::gpu() else { return };
    // 3 images of 4 × 2048 × 2048: 192 MiB of input, above a 128 MiB binding; one image fits.
    let (n, c, hw) = (3usize, 4usize, 2048usize);
    let x = ctx
        .tensor(&[n, c, hw, hw], &common::data(n * c * hw * hw, 9))
        .unwrap();
    let w = ctx
        .tensor(&[2, c, 3, 3], &common::data(2 * c * 9, 10))
        .unwrap();
    let b = ctx.tensor(&[2], &[0.5, -0.25]).unwrap();
    let o = ConvOptions {
        padding: gpu_linalg::Padding::from(1),
        bias: Some(&b),
        activation: gpu_linalg::Activation::Relu,
        ..Default::default()
    };
    let y = ctx.conv2d(&x, &w, &o).unwrap();
    assert_eq!(y.shape(), &[n, 2, hw, hw]);
    gpu_linalg::cpu::conv::reference_for(gpu_linalg::ConvKind::Conv2d, &x, &w, &o)
        .unwrap()
        .check(&y.to_vec().unwrap())
        .unwrap();
}
