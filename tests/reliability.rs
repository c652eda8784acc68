//! Reliability at the edges: operands larger than one storage binding, and ops that cannot
//! split them failing with the limit named.

mod common;

use gpu_linalg::matmul::cpu::reference_for;
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
                            gpu_linalg::conv::cpu::reference_for(
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
        gpu_linalg::conv::cpu::reference_for(gpu_linalg::ConvKind::Conv2d, &x, &w, &o)
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
    gpu_linalg::conv::cpu::reference_for(gpu_linalg::ConvKind::Conv2d, &x, &w, &o)
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
    // slerp keeps whole-operand bindings (rows short enough to run on the GPU).
    let y = ctx.zeros(&[big / 8, 8]).unwrap();
    let e = ctx.slerp(&y, &y, 0.5).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
}

/// The big-reduction tests below each hold a few hundred MB; they run one at a time.
static BIG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn big_lock() -> std::sync::MutexGuard<'static, ()> {
    BIG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reduce kernels this adapter runs (subgroup only where supported).
fn reduce_kernels(ctx: &gpu_linalg::Context) -> Vec<gpu_linalg::ReduceKernel> {
    use gpu_linalg::ReduceKernel;
    let mut v = vec![ReduceKernel::Tree, ReduceKernel::Serial];
    if ctx
        .reduce(
            gpu_linalg::ReduceOp::Sum,
            &ctx.tensor(&[4], &[1.0; 4]).unwrap(),
            &gpu_linalg::ReduceOptions {
                kernel: Some(ReduceKernel::Subgroup),
                ..Default::default()
            },
        )
        .is_ok()
    {
        v.push(ReduceKernel::Subgroup);
    }
    v
}

#[test]
fn full_sum_larger_than_one_binding() {
    use gpu_linalg::{ReduceOp, ReduceOptions};
    let Some(ctx) = common::gpu() else { return };
    let _big = big_lock();
    let t0 = std::time::Instant::now();
    let n = 1usize << 26; // 256 MiB of f32
    if (n * 4) as u64 <= binding_limit(ctx) {
        eprintln!("binding limit holds 256 MiB: the windowed path is not exercised here");
    }
    let v: Vec<f32> = common::data_full(n, 21)
        .iter()
        .map(|e| 0.5 + 0.25 * e)
        .collect();
    let exact: f64 = v.iter().map(|&x| f64::from(x)).sum();
    let abs: f64 = v.iter().map(|&x| f64::from(x).abs()).sum();
    // The documented bound: γ_k·Σ|x| with k = sum_terms(n), plus the final rounding.
    let k = gpu_linalg::reduce::sum_terms(n);
    let bound = gpu_linalg::reference::gamma(k) * abs
        + gpu_linalg::reference::F32_UNIT_ROUNDOFF * exact.abs();
    let x = ctx.tensor(&[n], &v).unwrap();
    for kernel in reduce_kernels(ctx) {
        let opts = ReduceOptions {
            kernel: Some(kernel),
            ..Default::default()
        };
        let s = ctx
            .reduce(ReduceOp::Sum, &x, &opts)
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
        assert_eq!(s.shape(), &[] as &[usize]);
        let got = f64::from(s.to_vec().unwrap()[0]);
        eprintln!(
            "sum of 2^26 ({kernel}): error {:.3e}, bound {bound:.3e}",
            (got - exact).abs()
        );
        assert!((got - exact).abs() <= bound, "{kernel}: {got} vs {exact}");
        let mean = f64::from(
            ctx.reduce(ReduceOp::Mean, &x, &opts)
                .unwrap()
                .to_vec()
                .unwrap()[0],
        );
        assert!(
            (mean - exact / n as f64).abs() <= bound / n as f64 * 2.0,
            "{kernel}: mean {mean}"
        );
    }
    let max = ctx.max(&x, None).unwrap().to_vec().unwrap()[0];
    assert_eq!(max, v.iter().copied().fold(f32::MIN, f32::max));
    eprintln!("full_sum_larger_than_one_binding: {:.1?}", t0.elapsed());
}

#[test]
fn argmax_beyond_the_first_window_is_global() {
    let Some(ctx) = common::gpu() else { return };
    let _big = big_lock();
    let t0 = std::time::Instant::now();
    let n = 1usize << 26;
    let mut v = common::data(n, 31); // in [-2, 2)
                                     // Beyond the first binding-sized window (2^25 f32 on a 128 MiB limit), with a later tie.
    let hi = (3usize << 24) + 12_345;
    let lo = n - 7;
    v[hi] = 5.0;
    v[n - 1] = 5.0;
    v[lo] = -5.0;
    let x = ctx.tensor(&[n], &v).unwrap();
    for kernel in reduce_kernels(ctx) {
        let opts = |op| {
            (
                op,
                gpu_linalg::ReduceOptions {
                    kernel: Some(kernel),
                    ..Default::default()
                },
            )
        };
        let (op, o) = opts(gpu_linalg::ReduceOp::Argmax);
        let i = ctx.reduce(op, &x, &o).unwrap().to_vec_u32().unwrap();
        assert_eq!(i, vec![hi as u32], "{kernel}: argmax");
        let (op, o) = opts(gpu_linalg::ReduceOp::Argmin);
        let i = ctx.reduce(op, &x, &o).unwrap().to_vec_u32().unwrap();
        assert_eq!(i, vec![lo as u32], "{kernel}: argmin");
    }
    eprintln!(
        "argmax_beyond_the_first_window_is_global: {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn mean_along_axis_1_of_two_long_rows() {
    use gpu_linalg::{ReduceOp, ReduceOptions, ReducePlan};
    let Some(ctx) = common::gpu() else { return };
    let _big = big_lock();
    let t0 = std::time::Instant::now();
    let (rows, cols) = (2usize, 1usize << 25); // each row is 128 MiB, the pair 256 MiB
    let v: Vec<f32> = common::data_full(rows * cols, 41)
        .iter()
        .enumerate()
        .map(|(i, e)| if i < cols { 1.0 + e } else { -3.0 + 0.5 * e })
        .collect();
    let x = ctx.tensor(&[rows, cols], &v).unwrap();
    for kernel in reduce_kernels(ctx) {
        let opts = ReduceOptions {
            axis: Some(1),
            kernel: Some(kernel),
            ..Default::default()
        };
        let plan = ReducePlan::new(ReduceOp::Mean, &[rows, cols], &opts).unwrap();
        let m = ctx
            .reduce(ReduceOp::Mean, &x, &opts)
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
        assert_eq!(m.shape(), &[rows]);
        gpu_linalg::reduce::cpu::reference(&plan, &v)
            .check(&m.to_vec().unwrap())
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
    }
    // Argmax along the axis: the index within the row, for a max late in row 1.
    let mut w = v;
    w[cols + cols - 100] = 50.0;
    w[10] = 50.0;
    let x = ctx.tensor(&[rows, cols], &w).unwrap();
    let i = ctx.argmax(&x, Some(1)).unwrap().to_vec_u32().unwrap();
    assert_eq!(i, vec![10, (cols - 100) as u32]);
    eprintln!("mean_along_axis_1_of_two_long_rows: {:.1?}", t0.elapsed());
}

#[test]
fn softmax_larger_than_one_binding() {
    let Some(ctx) = common::gpu() else { return };
    let _big = big_lock();
    let t0 = std::time::Instant::now();
    let (rows, cols) = (4usize, 1usize << 24); // 256 MiB in and out
    let n = rows * cols;
    let v = common::data(n, 51);
    let x = ctx.tensor(&[rows, cols], &v).unwrap();
    let cpu = common::cpu();
    let xc = cpu.tensor(&[rows, cols], &v).unwrap();
    // Spot checks: a stride through everything plus the edges of rows and of 128 MiB windows.
    let mut idx: Vec<usize> = (0..n).step_by(65_521).collect();
    for edge in [0, cols, 2 * cols, 3 * cols, 1 << 25, n] {
        idx.extend(edge.saturating_sub(40)..(edge + 40).min(n));
    }
    for log in [false, true] {
        let (g, c) = if log {
            (ctx.log_softmax(&x, None), cpu.log_softmax(&xc, None))
        } else {
            (ctx.softmax(&x, None), cpu.softmax(&xc, None))
        };
        let g = g.unwrap();
        assert_eq!(g.shape(), &[rows, cols]);
        let (g, c) = (g.to_vec().unwrap(), c.unwrap().to_vec().unwrap());
        for &i in &idx {
            let tol = 1e-5 * c[i].abs() + if log { 1e-6 } else { 1e-12 };
            assert!(
                (g[i] - c[i]).abs() <= tol,
                "log={log}: element {i}: gpu {} cpu {}",
                g[i],
                c[i]
            );
        }
        if !log {
            for r in 0..rows {
                let s: f64 = g[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|&y| f64::from(y))
                    .sum();
                assert!((s - 1.0).abs() < 1e-4, "row {r} sums to {s}");
            }
        }
    }
    eprintln!("softmax_larger_than_one_binding: {:.1?}", t0.elapsed());
}

// lavapipe (llvmpipe) ends every invocation after 65,535 loop iterations in all, silently
// (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS). The ops whose invocations loop over a long
// dimension split it on CPU-type adapters; these tests run them past that count.

#[test]
fn matmul_with_k_beyond_the_loop_limit() {
    let Some(ctx) = common::gpu() else { return };
    let (m, k, n) = (5usize, 70_000usize, 7usize);
    let a = common::data(m * k, 11);
    let b = common::data(k * n, 12);
    let bias = common::data(n, 13);
    let (ta, tb, tbias) = (
        ctx.tensor(&[m, k], &a).unwrap(),
        ctx.tensor(&[k, n], &b).unwrap(),
        ctx.tensor(&[n], &bias).unwrap(),
    );
    let host =
        |shape: &[usize], v: &[f32]| gpu_linalg::Tensor::from_vec(shape, v.to_vec()).unwrap();
    let hbias = host(&[n], &bias);
    for kernel in [
        None,
        Some(MatmulConfig::tiled(4, 4)),
        Some(MatmulConfig::NAIVE),
    ] {
        let opts = MatmulOptions {
            kernel,
            bias: Some(&tbias),
            activation: gpu_linalg::Activation::Gelu,
            ..Default::default()
        };
        let reference = reference_for(
            &host(&[m, k], &a),
            &host(&[k, n], &b),
            &MatmulOptions {
                bias: Some(&hbias),
                activation: gpu_linalg::Activation::Gelu,
                ..Default::default()
            },
        )
        .unwrap();
        let c = ctx.matmul_with(&ta, &tb, &opts).unwrap();
        reference
            .check(&c.to_vec().unwrap())
            .unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
    }
    // Transposed operands and a batch: Aᵀ stored [k, m], B broadcast over 2 batches.
    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let a2 = [a.clone(), a.clone()].concat();
    let c = ctx
        .matmul_with(
            &ctx.tensor(&[k, m], &at).unwrap(),
            &tb,
            &MatmulOptions {
                transpose_a: true,
                ..Default::default()
            },
        )
        .unwrap();
    let reference = reference_for(
        &host(&[m, k], &a),
        &host(&[k, n], &b),
        &MatmulOptions::default(),
    )
    .unwrap();
    reference.check(&c.to_vec().unwrap()).unwrap();
    let c = ctx
        .matmul(&ctx.tensor(&[2, m, k], &a2).unwrap(), &tb)
        .unwrap();
    let got = c.to_vec().unwrap();
    reference.check(&got[..m * n]).unwrap();
    reference.check(&got[m * n..]).unwrap();
}

#[test]
fn conv_with_a_reduction_beyond_the_loop_limit() {
    let Some(ctx) = common::gpu() else { return };
    let cpu = common::cpu();
    let cin = 8192; // 8192 · 3 · 3 = 73,728 terms per output
    let x = common::data(cin * 9, 14);
    let w = common::data(3 * cin * 9, 15);
    let bias = common::data(3, 16);
    for (ctx, label) in [(ctx, "gpu"), (&cpu, "cpu")] {
        let tb = ctx.tensor(&[3], &bias).unwrap();
        let opts = ConvOptions {
            padding: gpu_linalg::Padding::from(1),
            bias: Some(&tb),
            activation: gpu_linalg::Activation::Relu,
            ..Default::default()
        };
        let got = ctx
            .conv2d(
                &ctx.tensor(&[1, cin, 3, 3], &x).unwrap(),
                &ctx.tensor(&[3, cin, 3, 3], &w).unwrap(),
                &opts,
            )
            .unwrap()
            .to_vec()
            .unwrap();
        let hb = gpu_linalg::Tensor::from_vec(&[3], bias.clone()).unwrap();
        let reference = gpu_linalg::conv::cpu::reference_for(
            gpu_linalg::ConvKind::Conv2d,
            &gpu_linalg::Tensor::from_vec(&[1, cin, 3, 3], x.clone()).unwrap(),
            &gpu_linalg::Tensor::from_vec(&[3, cin, 3, 3], w.clone()).unwrap(),
            &ConvOptions {
                padding: gpu_linalg::Padding::from(1),
                bias: Some(&hb),
                activation: gpu_linalg::Activation::Relu,
                ..Default::default()
            },
        )
        .unwrap();
        reference
            .check(&got)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
    }
    // Transposed: x [1, cin, 2, 2], w [cin, 2, 3, 3].
    let xt = common::data(cin * 4, 17);
    let wt = common::data(cin * 2 * 9, 18);
    let got = ctx
        .conv_transpose2d(
            &ctx.tensor(&[1, cin, 2, 2], &xt).unwrap(),
            &ctx.tensor(&[cin, 2, 3, 3], &wt).unwrap(),
            &ConvOptions::default(),
        )
        .unwrap()
        .to_vec()
        .unwrap();
    let reference = gpu_linalg::conv::cpu::reference_for(
        gpu_linalg::ConvKind::ConvTranspose2d,
        &gpu_linalg::Tensor::from_vec(&[1, cin, 2, 2], xt).unwrap(),
        &gpu_linalg::Tensor::from_vec(&[cin, 2, 3, 3], wt).unwrap(),
        &ConvOptions::default(),
    )
    .unwrap();
    reference.check(&got).unwrap();
    // A grouped convolution that long is an error naming the limit on CPU-type adapters.
    if ctx
        .device_summary()
        .unwrap()
        .adapter
        .device_type
        .contains("Cpu")
    {
        let e = ctx
            .conv2d(
                &ctx.zeros(&[1, 2 * cin, 3, 3]).unwrap(),
                &ctx.zeros(&[2, cin, 3, 3]).unwrap(),
                &ConvOptions {
                    groups: 2,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("73728 terms"), "{e}");
    }
}

#[test]
fn column_sums_beyond_the_loop_limit() {
    let Some(ctx) = common::gpu() else { return };
    let rows = 100_000;
    let x = common::data(rows * 3, 19);
    let got = ctx
        .sum_rows(&ctx.tensor(&[rows, 3], &x).unwrap())
        .unwrap()
        .to_vec()
        .unwrap();
    for j in 0..3 {
        let want: f64 = (0..rows).map(|r| f64::from(x[r * 3 + j])).sum();
        assert!(
            (f64::from(got[j]) - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{j}: {} vs {want}",
            got[j]
        );
    }
    // mse over 9·2^20 elements sums more per-workgroup partials than one pass holds.
    let n = 9 << 20;
    let p = ctx.tensor(&[n], &vec![1.5f32; n]).unwrap();
    let t = ctx.zeros(&[n]).unwrap();
    let out = ctx
        .mse_loss(&p, &t, gpu_linalg::LossReduction::Mean, false)
        .unwrap();
    let l = out.loss.to_vec().unwrap()[0];
    assert!((l - 2.25).abs() < 1e-5, "{l}");
}

#[test]
fn svd_of_columns_beyond_the_loop_limit() {
    let Some(ctx) = common::gpu() else { return };
    for (m, n) in [
        (70_000usize, 4usize),
        (100_000, 20),
        (4, 70_000),
        (20, 100_000),
    ] {
        let a = common::data_full(m * n, 20);
        let r = ctx.svd(&ctx.tensor(&[m, n], &a).unwrap()).unwrap();
        let q = common::svd_ratios(&a, m, n, &r);
        assert!(q.iter().all(|x| *x < 35.0), "{m}×{n}: {q:?}");
    }
    // slerp of rows longer than a pass holds (computed on the CPU on CPU-type adapters).
    let d = 70_000;
    let a = common::data_full(d, 21);
    let b = common::data_full(d, 22);
    let got = ctx
        .slerp(
            &ctx.tensor(&[d], &a).unwrap(),
            &ctx.tensor(&[d], &b).unwrap(),
            0.3,
        )
        .unwrap()
        .to_vec()
        .unwrap();
    let want = gpu_linalg::elementwise::cpu::slerp(&a, &b, d, 0.3);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
}
