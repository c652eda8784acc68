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

/// The binding limit of the test adapter.
fn binding_limit(ctx: &gpu_linalg::Context) -> u64 {
    ctx.device_summary()
        .map_or(u64::MAX, |d| d.max_storage_buffer_binding_size)
}

/// Indices to check in a tensor of `n` elements: a stride through all of it, both ends, and
/// every element near each multiple of `window` (where split dispatches meet).
fn probes(n: usize, window: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).step_by(997).collect();
    v.extend(n.saturating_sub(300)..n);
    let mut w = window;
    while w < n {
        v.extend(w.saturating_sub(300)..(w + 300).min(n));
        w += window;
    }
    v
}

#[test]
fn add_of_two_tensors_above_one_binding() {
    let Some(ctx) = common::gpu() else { return };
    let limit = binding_limit(ctx);
    // 2^25 + 3 elements: 128 MiB + 12 bytes each, and not a multiple of 4 (the scalar kernel).
    let n = (1usize << 25) + 3;
    let (a, b) = (common::data(n, 11), common::data(n, 12));
    let (ta, tb) = (ctx.tensor(&[n], &a).unwrap(), ctx.tensor(&[n], &b).unwrap());
    let got = ctx.add(&ta, &tb).unwrap().to_vec().unwrap();
    let cpu = common::cpu();
    let want = cpu
        .add(
            &cpu.tensor(&[n], &a).unwrap(),
            &cpu.tensor(&[n], &b).unwrap(),
        )
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got.len(), n);
    for i in probes(n, (limit / 4).min(n as u64) as usize) {
        assert_eq!(got[i].to_bits(), want[i].to_bits(), "element {i}");
    }
    // Everything, too (multiples of 1/8: the sums are exact).
    assert!(got == want, "GPU and CPU sums differ");
}

#[test]
fn exp_of_a_150_mib_tensor() {
    let Some(ctx) = common::gpu() else { return };
    let limit = binding_limit(ctx);
    let n = 150 << 18; // 150 MiB of f32, a multiple of 4 (the vec4 kernel)
    let x = common::data_full(n, 21);
    let got = ctx
        .exp(&ctx.tensor(&[n], &x).unwrap())
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got.len(), n);
    for i in probes(n, (limit / 4).min(n as u64) as usize) {
        let want = f64::from(x[i]).exp();
        let err = (f64::from(got[i]) - want).abs();
        assert!(
            err <= 4.0 * f64::from(f32::EPSILON) * want + 1e-6,
            "exp({}) at {i}: {} vs {want}",
            x[i],
            got[i]
        );
    }
}

#[test]
fn row_broadcast_add_above_one_binding() {
    let Some(ctx) = common::gpu() else { return };
    let limit = binding_limit(ctx);
    // [33000, 1024] + [1024]: 135 MB, split along rows; the row vector is bound whole.
    let (rows, d) = (33_000usize, 1024usize);
    if (rows * d * 4) as u64 <= limit {
        eprintln!("binding limit {limit} holds the operand: the split is not exercised here");
    }
    let a = common::data(rows * d, 31);
    let b = common::data(d, 32);
    let got = ctx
        .add(
            &ctx.tensor(&[rows, d], &a).unwrap(),
            &ctx.tensor(&[d], &b).unwrap(),
        )
        .unwrap();
    assert_eq!(got.shape(), &[rows, d]);
    let got = got.to_vec().unwrap();
    for (i, (g, x)) in got.iter().zip(&a).enumerate() {
        assert_eq!(*g, x + b[i % d], "element {i}");
    }
    // A column broadcast of the same size ([rows, d] + [rows, 1]) splits the same way.
    let c = common::data(rows, 33);
    let got = ctx
        .mul(
            &ctx.tensor(&[rows, d], &a).unwrap(),
            &ctx.tensor(&[rows, 1], &c).unwrap(),
        )
        .unwrap()
        .to_vec()
        .unwrap();
    for i in probes(rows * d, (limit / 4).min((rows * d) as u64) as usize) {
        assert_eq!(got[i], a[i] * c[i / d], "element {i}");
    }
}

#[test]
fn rand_uniform_above_one_binding_matches_the_cpu_stream() {
    let Some(ctx) = common::gpu() else { return };
    let limit = binding_limit(ctx);
    let n = 1usize << 26; // 256 MiB
    let got = ctx.rand_uniform(&[n], 1234).unwrap().to_vec().unwrap();
    let want = common::cpu()
        .rand_uniform(&[n], 1234)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got.len(), n);
    for i in probes(n, (limit / 4).min(n as u64) as usize) {
        assert_eq!(got[i].to_bits(), want[i].to_bits(), "element {i}");
    }
    // Normals: the same counters, so the same values to a few ulp.
    let got = ctx
        .rand_normal(&[n], 99, 1.0, 2.0)
        .unwrap()
        .to_vec()
        .unwrap();
    let want = common::cpu()
        .rand_normal(&[n], 99, 1.0, 2.0)
        .unwrap()
        .to_vec()
        .unwrap();
    for i in probes(n, (limit / 4).min(n as u64) as usize) {
        assert!(
            (got[i] - want[i]).abs() <= 1e-5 * (1.0 + want[i].abs()),
            "element {i}: {} vs {}",
            got[i],
            want[i]
        );
    }
}

#[test]
fn transpose_and_slice_above_one_binding() {
    let Some(ctx) = common::gpu() else { return };
    let limit = binding_limit(ctx);
    // 6000 × 6144 floats: 147 MB.
    let (m, n) = (6000usize, 6144usize);
    let x = common::data_full(m * n, 41);
    let tx = ctx.tensor(&[m, n], &x).unwrap();
    // Layout copies are tiled so that every window fits one binding: they must succeed.
    let check = |what: &str, r: Result<gpu_linalg::Tensor, Error>, want: &dyn Fn(usize) -> f32| {
        let v = r
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .to_vec()
            .unwrap();
        for i in probes(v.len(), (limit / 4).min(v.len() as u64) as usize) {
            assert_eq!(v[i], want(i), "{what}: element {i}");
        }
    };
    let t = ctx.transpose(&tx);
    if let Ok(t) = &t {
        assert_eq!(t.shape(), &[n, m]);
    }
    check("transpose", t, &|i| x[(i % m) * n + i / m]);
    // x[::-1, 1:-1]: reversed rows, every column but the ends.
    let s = ctx.slice(
        &tx,
        &[
            gpu_linalg::Slice::reversed(),
            gpu_linalg::Slice::range(1, -1),
        ],
    );
    if let Ok(s) = &s {
        assert_eq!(s.shape(), &[m, n - 2]);
    }
    check("slice", s, &|i| {
        let (r, c) = (i / (n - 2), i % (n - 2));
        x[(m - 1 - r) * n + c + 1]
    });
    // A concatenation whose result exceeds one binding.
    let c = ctx.concat(&[&tx, &tx], 1);
    check("concat", c, &|i| x[(i / (2 * n)) * n + i % n]);
}

#[test]
fn ops_that_do_not_split_name_the_limit() {
    let Some(ctx) = common::gpu() else { return };
    let limit = binding_limit(ctx);
    let big = (limit / 4) as usize + 8;
    if big * 8 > (1 << 31) {
        return;
    }
    // One row of the leading dim is above a binding and b is a column: no window fits.
    let x = ctx.zeros(&[2, big]).unwrap();
    let col = ctx.zeros(&[2, 1]).unwrap();
    let e = ctx.add(&x, &col).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
    // slerp keeps whole-operand bindings.
    let y = ctx.zeros(&[big]).unwrap();
    let e = ctx.slerp(&y, &y, 0.5).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
}
