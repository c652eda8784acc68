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
