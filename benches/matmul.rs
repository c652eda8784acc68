//! Matmul throughput: the chosen GPU kernel vs the fast CPU backend vs the naive WGSL kernel,
//! at 256, 512 and 1024 (GFLOP/s via criterion's throughput), and 1,000 chained 64×64 matmuls
//! and 4,096-float adds with no readback in between (ops/s), through the command stream and
//! with per-op submission.
//!
//! `cargo bench --bench matmul`. The GPU is `Backend::Gpu` (lavapipe counts); without any
//! adapter only the CPU rows run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpu_linalg::{Backend, Context, MatmulConfig, MatmulOptions, SubmitMode};

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn square(c: &mut Criterion) {
    let gpu = Context::with_backend(Backend::Gpu).ok();
    let cpu = Context::with_backend(Backend::Cpu).expect("CPU backend");
    if let Some(g) = &gpu {
        eprintln!(
            "GPU: {}; kernel {}",
            g.description(),
            g.matmul_config().expect("tuning")
        );
    } else {
        eprintln!("no GPU adapter: CPU rows only");
    }
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for n in [256usize, 512, 1024] {
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        let (ha, hb) = (data(n * n, 1), data(n * n, 2));
        let (ca, cb) = (
            cpu.tensor(&[n, n], &ha).unwrap(),
            cpu.tensor(&[n, n], &hb).unwrap(),
        );
        group.bench_with_input(BenchmarkId::new("cpu", n), &n, |bch, _| {
            bch.iter(|| cpu.matmul(&ca, &cb).unwrap())
        });
        if let Some(g) = &gpu {
            let (ga, gb) = (
                g.tensor(&[n, n], &ha).unwrap(),
                g.tensor(&[n, n], &hb).unwrap(),
            );
            let mut kernels = vec![("gpu", None)];
            if n <= 1024 {
                kernels.push(("gpu-naive", Some(MatmulConfig::NAIVE)));
            }
            for (name, kernel) in kernels {
                let opts = MatmulOptions {
                    kernel,
                    ..Default::default()
                };
                group.bench_with_input(BenchmarkId::new(name, n), &n, |bch, _| {
                    bch.iter(|| {
                        let c = g.matmul_with(&ga, &gb, &opts).unwrap();
                        g.synchronize().unwrap();
                        c
                    })
                });
            }
        }
    }
    group.finish();
}

/// 1,000 dependent 64×64 matmuls (by the identity) and 1,000 dependent adds of 4,096 floats,
/// one readback each, through the command stream and with per-op submission.
fn chained(c: &mut Criterion) {
    let Some(g) = Context::with_backend(Backend::Gpu).ok() else {
        return;
    };
    let n = 64;
    let eye: Vec<f32> = (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let id = g.tensor(&[n, n], &eye).unwrap();
    let x0 = g.tensor(&[n, n], &data(n * n, 3)).unwrap();
    let v0 = g.tensor(&[4096], &data(4096, 4)).unwrap();
    let dv = g.tensor(&[4096], &data(4096, 5)).unwrap();
    let mut group = c.benchmark_group("chained");
    group.sample_size(10);
    // Throughput in elements = ops: criterion reports ops/s as "elem/s".
    group.throughput(Throughput::Elements(1000));
    for mode in [SubmitMode::Stream, SubmitMode::PerOp] {
        g.set_submit_mode(mode).unwrap();
        group.bench_function(format!("1000 matmuls 64x64 {}", mode.name()), |bch| {
            bch.iter(|| {
                let mut x = x0.clone();
                for _ in 0..1000 {
                    x = g.matmul(&x, &id).unwrap();
                }
                x.to_vec().unwrap()
            })
        });
        group.bench_function(format!("1000 adds 4096 {}", mode.name()), |bch| {
            bch.iter(|| {
                let mut x = v0.clone();
                for _ in 0..1000 {
                    x = g.add(&x, &dv).unwrap();
                }
                x.to_vec().unwrap()
            })
        });
    }
    g.set_submit_mode(SubmitMode::Stream).unwrap();
    group.finish();
}

criterion_group!(benches, square, chained);
criterion_main!(benches);
