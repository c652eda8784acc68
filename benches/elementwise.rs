//! Elementwise throughput (GB/s moved: inputs read + output written) on resident data: the GPU
//! kernels vs the fast CPU backend, plus a broadcast add, a transpose and a random fill.
//! `cargo bench --bench elementwise`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpu_linalg::{Activation, Backend, Context, Tensor};

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

type Op = (
    &'static str,
    usize,
    fn(&Context, &Tensor, &Tensor, &Tensor) -> Tensor,
);

fn ops() -> Vec<Op> {
    vec![
        ("add", 3, |c, a, b, _| c.add(a, b).unwrap()),
        ("add-broadcast-row", 2, |c, a, _, r| c.add(a, r).unwrap()),
        ("exp", 2, |c, a, _, _| c.exp(a).unwrap()),
        ("gelu", 2, |c, a, _, _| {
            c.activate(a, Activation::Gelu).unwrap()
        }),
        ("transpose", 2, |c, a, _, _| c.transpose(a).unwrap()),
        ("rand-normal", 1, |c, a, _, _| {
            c.rand_normal(a.shape(), 1, 0.0, 1.0).unwrap()
        }),
    ]
}

fn elementwise(c: &mut Criterion) {
    let gpu = Context::with_backend(Backend::Gpu).ok();
    let cpu = Context::with_backend(Backend::Cpu).expect("CPU backend");
    if let Some(g) = &gpu {
        eprintln!("GPU: {}", g.description());
    }
    let mut group = c.benchmark_group("elementwise");
    group.sample_size(10);
    for side in [256usize, 1024, 4096] {
        let n = side * side;
        let shape = [side, side];
        let (ha, hb, hr) = (data(n, 1), data(n, 2), data(side, 3));
        for (name, arrays, f) in ops() {
            group.throughput(Throughput::Bytes((arrays * n * 4) as u64));
            let id = format!("{name}/{side}x{side}");
            let (a, b, r) = (
                cpu.tensor(&shape, &ha).unwrap(),
                cpu.tensor(&shape, &hb).unwrap(),
                cpu.tensor(&[side], &hr).unwrap(),
            );
            group.bench_with_input(BenchmarkId::new("cpu", &id), &id, |bch, _| {
                bch.iter(|| f(&cpu, &a, &b, &r))
            });
            if let Some(g) = &gpu {
                let (a, b, r) = (
                    g.tensor(&shape, &ha).unwrap(),
                    g.tensor(&shape, &hb).unwrap(),
                    g.tensor(&[side], &hr).unwrap(),
                );
                group.bench_with_input(BenchmarkId::new("gpu", &id), &id, |bch, _| {
                    bch.iter(|| {
                        let y = f(g, &a, &b, &r);
                        g.synchronize().unwrap();
                        y
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, elementwise);
criterion_main!(benches);
