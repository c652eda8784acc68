//! Philox4x32-10 random tensors: known answers, CPU/GPU agreement (uniforms bit-identical,
//! normals within a few ulp), reproducibility, and mean / variance on 10^6 samples.

mod common;

use gpu_linalg::random::cpu::philox4x32_10;
use gpu_linalg::{Context, Location};

fn backends() -> Vec<(Context, bool)> {
    let mut v = vec![(common::cpu(), false)];
    if let Some(g) = common::gpu() {
        v.push((g.clone(), true));
    }
    v
}

#[test]
fn philox_known_answers() {
    // Random123's kat_vectors.
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
}

#[test]
fn gpu_and_cpu_give_the_same_stream() {
    let Some(gpu) = common::gpu() else { return };
    let cpu = common::cpu();
    for (shape, seed) in [
        (vec![], 1u64),
        (vec![0], 2),
        (vec![1], 3),
        (vec![7], 4),
        (vec![3, 5, 7], u64::MAX),
        (vec![2, 3, 4, 5], 1 << 40),
        (vec![1_000_003], 12345),
    ] {
        let g = gpu.rand_uniform(&shape, seed).unwrap();
        assert_eq!(g.location(), Location::Gpu);
        assert_eq!(g.shape(), &shape[..]);
        let c = cpu.rand_uniform(&shape, seed).unwrap().to_vec().unwrap();
        let gv = g.to_vec().unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&gv), bits(&c), "uniform {shape:?} seed {seed}");
        let g = gpu.rand_normal(&shape, seed, 0.5, 2.0).unwrap();
        assert_eq!(g.location(), Location::Gpu);
        let gv = g.to_vec().unwrap();
        let c = cpu
            .rand_normal(&shape, seed, 0.5, 2.0)
            .unwrap()
            .to_vec()
            .unwrap();
        for (i, (&a, &b)) in gv.iter().zip(&c).enumerate() {
            let tol = 8.0 * f32::EPSILON * b.abs().max(1.0);
            assert!(
                (a - b).abs() <= tol,
                "normal {shape:?} element {i}: gpu {a}, cpu {b}"
            );
        }
    }
}

#[test]
fn streams_are_reproducible_and_seeded() {
    for (ctx, _) in backends() {
        let a = ctx.rand_uniform(&[1000], 7).unwrap().to_vec().unwrap();
        let b = ctx.rand_uniform(&[1000], 7).unwrap().to_vec().unwrap();
        let c = ctx.rand_uniform(&[1000], 8).unwrap().to_vec().unwrap();
        assert_eq!(a, b);
        assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 5);
        // Counter-based: a prefix of a longer stream is the shorter stream, whatever the shape.
        let long = ctx.rand_uniform(&[10, 250], 7).unwrap().to_vec().unwrap();
        assert_eq!(&long[..1000], &a[..]);
        let n1 = ctx
            .rand_normal(&[999], 3, 0.0, 1.0)
            .unwrap()
            .to_vec()
            .unwrap();
        let n2 = ctx
            .rand_normal(&[1001], 3, 0.0, 1.0)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(&n2[..999], &n1[..]);
    }
}

#[test]
fn moments_of_a_million_samples() {
    let n = 1_000_000usize;
    for (ctx, gpu) in backends() {
        let u = ctx.rand_uniform(&[n], 2024).unwrap().to_vec().unwrap();
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)), "gpu={gpu}");
        let mean = u.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let var = u
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        // Standard errors: 0.29/√n ≈ 2.9e-4 for the mean, ~9e-5 for the variance.
        assert!((mean - 0.5).abs() < 1.5e-3, "uniform mean {mean} gpu={gpu}");
        assert!(
            (var - 1.0 / 12.0).abs() < 5e-4,
            "uniform variance {var} gpu={gpu}"
        );
        // Each of 10 bins holds ~10%.
        let mut bins = [0usize; 10];
        u.iter().for_each(|&v| bins[(v * 10.0) as usize] += 1);
        assert!(
            bins.iter().all(|&b| (b as f64 - 1e5).abs() < 2e3),
            "{bins:?}"
        );

        let z = ctx
            .rand_normal(&[n], 99, 3.0, 0.5)
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(z.iter().all(|v| v.is_finite()));
        let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let var = z
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!((mean - 3.0).abs() < 3e-3, "normal mean {mean} gpu={gpu}");
        assert!((var - 0.25).abs() < 3e-3, "normal variance {var} gpu={gpu}");
        let within1 = z.iter().filter(|&&v| (v - 3.0).abs() < 0.5).count() as f64 / n as f64;
        assert!((within1 - 0.6827).abs() < 3e-3, "P(|z| < 1) = {within1}");
    }
}
