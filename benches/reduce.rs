//! Reduction throughput: a full sum with the chosen GPU kernel vs the fast CPU backend (GB/s
//! via criterion's byte throughput), and a row softmax. `cargo bench --bench reduce`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpu_linalg::{Backend, Context};

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn reductions(c: &mut Criterion) {
    let gpu = Context::with_backend(Backend::Gpu).ok();
    let cpu = Context::with_backend(Backend::Cpu).expect("CPU backend");
    if let Some(g) = &gpu {
        eprintln!(
            "GPU: {}; reduce kernel {}",
            g.description(),
            g.reduce_kernel().expect("tuning")
        );
    }
    let mut group = c.benchmark_group("sum");
    group.sample_size(10);
    for n in [1usize << 20, 1 << 22, 1 << 24] {
        group.throughput(Throughput::Bytes((n * 4) as u64));
        let h = data(n);
        let cx = cpu.tensor(&[n], &h).unwrap();
        group.bench_with_input(BenchmarkId::new("cpu", n), &n, |b, _| {
            b.iter(|| cpu.sum(&cx, None).unwrap())
        });
        if let Some(g) = &gpu {
            let gx = g.tensor(&[n], &h).unwrap();
            group.bench_with_input(BenchmarkId::new("gpu", n), &n, |b, _| {
                b.iter(|| {
                    let y = g.sum(&gx, None).unwrap();
                    g.synchronize().unwrap();
                    y
                })
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("softmax");
    group.sample_size(10);
    let shape = [1024usize, 1024];
    group.throughput(Throughput::Bytes((shape[0] * shape[1] * 4) as u64));
    let h = data(shape[0] * shape[1]);
    let cx = cpu.tensor(&shape, &h).unwrap();
    group.bench_function("cpu/1024x1024", |b| {
        b.iter(|| cpu.softmax(&cx, None).unwrap())
    });
    if let Some(g) = &gpu {
        let gx = g.tensor(&shape, &h).unwrap();
        group.bench_function("gpu/1024x1024", |b| {
            b.iter(|| {
                let y = g.softmax(&gx, None).unwrap();
                g.synchronize().unwrap();
                y
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reductions);
criterion_main!(benches);
