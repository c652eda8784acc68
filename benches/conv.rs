//! Convolution throughput on ResNet-like layers: the chosen GPU kernel vs the fast CPU backend
//! (GFLOP/s via criterion's throughput). `cargo bench --bench conv`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpu_linalg::{Backend, Context, ConvKind, ConvOptions, ConvPlan, Padding};

/// A layer: (name, input NCHW, weight OIHW, padding, groups).
type Layer = (&'static str, [usize; 4], [usize; 4], usize, usize);

const LAYERS: &[Layer] = &[
    ("3x3-64@56", [1, 64, 56, 56], [64, 64, 3, 3], 1, 1),
    ("3x3-256@14", [1, 256, 14, 14], [256, 256, 3, 3], 1, 1),
    ("dw3x3-256@56", [1, 256, 56, 56], [256, 1, 3, 3], 1, 256),
    ("1x1-256to128@28", [1, 256, 28, 28], [128, 256, 1, 1], 0, 1),
];

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn layers(c: &mut Criterion) {
    let gpu = Context::with_backend(Backend::Gpu).ok();
    let cpu = Context::with_backend(Backend::Cpu).expect("CPU backend");
    if let Some(g) = &gpu {
        eprintln!(
            "GPU: {}; conv kernel {}",
            g.description(),
            g.conv_config().expect("tuning")
        );
    }
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    for &(name, xs, ws, pad, groups) in LAYERS {
        let opts = ConvOptions {
            padding: Padding::from(pad),
            groups,
            ..Default::default()
        };
        let plan = ConvPlan::new(ConvKind::Conv2d, &xs, &ws, &opts).expect("valid layer");
        group.throughput(Throughput::Elements(plan.flops() as u64));
        let (hx, hw) = (data(xs.iter().product(), 1), data(ws.iter().product(), 2));
        let (cx, cw) = (cpu.tensor(&xs, &hx).unwrap(), cpu.tensor(&ws, &hw).unwrap());
        group.bench_with_input(BenchmarkId::new("cpu", name), &name, |b, _| {
            b.iter(|| cpu.conv2d(&cx, &cw, &opts).unwrap())
        });
        if let Some(g) = &gpu {
            let (gx, gw) = (g.tensor(&xs, &hx).unwrap(), g.tensor(&ws, &hw).unwrap());
            group.bench_with_input(BenchmarkId::new("gpu", name), &name, |b, _| {
                b.iter(|| {
                    let y = g.conv2d(&gx, &gw, &opts).unwrap();
                    g.synchronize().unwrap();
                    y
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
