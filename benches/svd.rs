//! The SVD family, GPU against the fast CPU backend (faer): thin SVD and eigh of 128×128, and
//! 1,000 batched 16×16 SVDs. Seconds per call (the work depends on the sweeps, so no FLOP
//! rate). `cargo bench --bench svd`; `gpu-linalg bench --ops svd,eigh,qr,svd-batched` covers
//! the sizes.

use criterion::{criterion_group, criterion_main, Criterion};
use gpu_linalg::{Backend, Context, Tensor};

/// Pseudo-random values uniform in [-1, 1) (the library's Philox stream).
fn data(n: usize, seed: u64) -> Vec<f32> {
    gpu_linalg::random::cpu::stream(n, seed, None)
        .into_iter()
        .map(|u| 2.0 * u - 1.0)
        .collect()
}

/// Times `f` on each context under `name/backend`, waiting for the GPU inside the loop.
fn bench_both(
    c: &mut Criterion,
    name: &str,
    ctxs: &[(&str, &Context)],
    input: (&[usize], &[f32]),
    f: impl Fn(&Context, &Tensor) -> Vec<Tensor>,
) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for (label, ctx) in ctxs {
        let t = ctx.tensor(input.0, input.1).unwrap();
        group.bench_function(*label, |b| {
            b.iter(|| {
                let out = f(ctx, &t);
                ctx.synchronize().unwrap();
                out
            })
        });
    }
    group.finish();
}

fn decompositions(c: &mut Criterion) {
    let cpu = Context::with_backend(Backend::Cpu).expect("CPU backend");
    let gpu = Context::with_backend(Backend::Gpu).ok();
    let mut ctxs = vec![("cpu", &cpu)];
    if let Some(g) = &gpu {
        eprintln!(
            "GPU: {}; svd workgroup {}, batched kernel {}",
            g.description(),
            g.svd_workgroup().expect("tuning"),
            g.svd_batched_kernel().expect("tuning")
        );
        ctxs.push(("gpu", g));
    }
    let n = 128;
    let a = data(n * n, 1);
    bench_both(c, "svd/128x128", &ctxs, (&[n, n], &a), |ctx, t| {
        let r = ctx.svd(t).unwrap();
        vec![r.u, r.s, r.vt]
    });
    let sym: Vec<f32> = (0..n * n)
        .map(|i| 0.5 * (a[i] + a[(i % n) * n + i / n]))
        .collect();
    bench_both(c, "eigh/128x128", &ctxs, (&[n, n], &sym), |ctx, t| {
        let r = ctx.eigh(t).unwrap();
        vec![r.values, r.vectors]
    });
    let batch = data(1000 * 16 * 16, 2);
    bench_both(
        c,
        "svd_batched/1000x16x16",
        &ctxs,
        (&[1000, 16, 16], &batch),
        |ctx, t| {
            let r = ctx.svd_batched(t).unwrap();
            vec![r.u, r.s, r.vt]
        },
    );
}

criterion_group!(benches, decompositions);
criterion_main!(benches);
