//! Several contexts sharing work (`ContextGroup`): two contexts on one adapter give results
//! identical to one context on batched matmul, batched SVD, batched solve and streamed PCA;
//! Vulkan + GL agree within the ratios; shares follow the weights.

mod common;

use gpu_linalg::{Backend, Context, ContextGroup, ContextOptions, IterRowBlocks, PcaStreamMethod};

fn second_gpu() -> Option<(Context, Context)> {
    let first = common::gpu()?.clone();
    let second = Context::with_backend(Backend::Gpu).expect("a second context on the same adapter");
    Some((first, second))
}

fn rows(
    x: &[f32],
    n: usize,
    h: usize,
) -> IterRowBlocks<impl FnMut() -> std::vec::IntoIter<Vec<f32>> + Send, std::vec::IntoIter<Vec<f32>>>
{
    let blocks: Vec<Vec<f32>> = x.chunks(h * n).map(|c| c.to_vec()).collect();
    IterRowBlocks::new(n, move || blocks.clone().into_iter())
}

#[test]
fn two_contexts_on_one_adapter_equal_one_context() {
    let Some((one, two)) = second_gpu() else {
        return;
    };
    let group = ContextGroup::with_weights(vec![one.clone(), two], vec![1.0, 2.0]).unwrap();
    // Batched matmul: 7 products of 33×17 by 17×29 (an uneven split, 2 + 5).
    let (batch, m, k, n) = (7, 33, 17, 29);
    let a = one
        .tensor(&[batch, m, k], &common::data_full(batch * m * k, 1))
        .unwrap();
    let b = one
        .tensor(&[batch, k, n], &common::data_full(batch * k * n, 2))
        .unwrap();
    assert_eq!(
        group.matmul(&a, &b).unwrap().to_vec().unwrap(),
        one.matmul(&a, &b).unwrap().to_vec().unwrap()
    );
    let shared = one.tensor(&[k, n], &common::data_full(k * n, 3)).unwrap();
    assert_eq!(
        group.matmul(&a, &shared).unwrap().to_vec().unwrap(),
        one.matmul(&a, &shared).unwrap().to_vec().unwrap()
    );
    // Batched SVD of 100 16×16 matrices.
    let s = one
        .tensor(&[100, 16, 16], &common::data_full(100 * 256, 4))
        .unwrap();
    let (g, w) = (group.svd_batched(&s).unwrap(), one.svd_batched(&s).unwrap());
    assert_eq!(g.s.shape(), w.s.shape());
    assert_eq!(
        g.s.to_vec().unwrap(),
        w.s.to_vec().unwrap(),
        "singular values"
    );
    assert_eq!(g.u.to_vec().unwrap(), w.u.to_vec().unwrap(), "U");
    assert_eq!(g.vt.to_vec().unwrap(), w.vt.to_vec().unwrap(), "Vt");
    // Batched solve.
    let mut sys = common::data_full(9 * 20 * 20, 5);
    for t in 0..9 {
        (0..20).for_each(|i| sys[t * 400 + i * 21] += 20.0);
    }
    let sa = one.tensor(&[9, 20, 20], &sys).unwrap();
    let sb = one
        .tensor(&[9, 20, 3], &common::data_full(9 * 60, 6))
        .unwrap();
    assert_eq!(
        group.solve(&sa, &sb).unwrap().to_vec().unwrap(),
        one.solve(&sa, &sb).unwrap().to_vec().unwrap()
    );
    // Streamed PCA: blocks go to whichever context is free and are folded in order.
    let (mm, nn) = (3000, 20);
    let x: Vec<f32> = common::data_full(mm * nn, 7)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1 + i % nn) as f32)
        .collect();
    let gp = group
        .pca_stream(&mut rows(&x, nn, 97), 4, PcaStreamMethod::Auto)
        .unwrap();
    let op = one
        .pca_stream(&mut rows(&x, nn, 97), 4, PcaStreamMethod::Auto)
        .unwrap();
    assert_eq!(
        gp.explained_variance.to_vec().unwrap(),
        op.explained_variance.to_vec().unwrap()
    );
    assert_eq!(
        gp.components.to_vec().unwrap(),
        op.components.to_vec().unwrap()
    );
    assert_eq!(gp.mean.to_vec().unwrap(), op.mean.to_vec().unwrap());
    let (gt, ot) = (
        group.tsqr_stream(&mut rows(&x, nn, 97)).unwrap(),
        one.tsqr_stream(&mut rows(&x, nn, 97)).unwrap(),
    );
    assert_eq!(gt.r.to_vec().unwrap(), ot.r.to_vec().unwrap(), "TSQR R");
}

#[test]
fn vulkan_and_gl_agree() {
    if common::gpu().is_none() {
        return;
    }
    let open = |api: &str| {
        Context::with_options(ContextOptions {
            backend: Backend::Gpu,
            api: Some(api.into()),
            ..Default::default()
        })
    };
    let (vk, gl) = match (open("vulkan"), open("gl")) {
        (Ok(v), Ok(g)) => (v, g),
        (v, g) => {
            eprintln!("SKIPPING Vulkan + GL: {:?} / {:?}", v.err(), g.err());
            return;
        }
    };
    eprintln!("group: {} + {}", vk.description(), gl.description());
    let mut group = ContextGroup::new(vec![vk.clone(), gl]).unwrap();
    let weights = group.measure_weights().unwrap();
    assert!(weights.iter().all(|w| *w > 0.0));
    let (batch, m, n) = (40, 12, 12);
    let data = common::data_full(batch * m * n, 8);
    let a = vk.tensor(&[batch, m, n], &data).unwrap();
    let svd = group.svd_batched(&a).unwrap();
    let (u, s, vt) = (
        svd.u.to_vec().unwrap(),
        svd.s.to_vec().unwrap(),
        svd.vt.to_vec().unwrap(),
    );
    for t in 0..batch {
        let one = gpu_linalg::Svd {
            u: vk.tensor(&[m, m], &u[t * m * m..][..m * m]).unwrap(),
            s: vk.tensor(&[m], &s[t * m..][..m]).unwrap(),
            vt: vk.tensor(&[m, n], &vt[t * m * n..][..m * n]).unwrap(),
            ..svd.clone()
        };
        let r = common::svd_ratios(&data[t * m * n..][..m * n], m, n, &one);
        assert!(r.iter().all(|x| *x < 35.0), "matrix {t}: ratios {r:?}");
    }
    let b = vk
        .tensor(&[batch, n, 5], &common::data_full(batch * n * 5, 9))
        .unwrap();
    let got = group.matmul(&a, &b).unwrap().to_vec().unwrap();
    let want = vk.matmul(&a, &b).unwrap().to_vec().unwrap();
    for (x, y) in got.iter().zip(&want) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }
    let (mm, nn) = (2000, 10);
    let x = common::data_full(mm * nn, 10);
    let gp = group
        .pca_stream(&mut rows(&x, nn, 333), 3, PcaStreamMethod::Auto)
        .unwrap();
    let op = vk
        .pca_stream(&mut rows(&x, nn, 333), 3, PcaStreamMethod::Auto)
        .unwrap();
    for (p, q) in gp
        .explained_variance
        .to_vec()
        .unwrap()
        .iter()
        .zip(op.explained_variance.to_vec().unwrap())
    {
        assert!((p - q).abs() <= 1e-5 * q.abs(), "{p} vs {q}");
    }
}

#[test]
fn shares_follow_the_weights_and_bad_groups_are_refused() {
    let cpu = || Context::with_backend(Backend::Cpu).unwrap();
    let g = ContextGroup::with_weights(vec![cpu(), cpu(), cpu()], vec![1.0, 1.0, 2.0]).unwrap();
    assert_eq!(g.shares(8), vec![0..2, 2..4, 4..8]);
    assert_eq!(g.shares(1).iter().map(|r| r.len()).sum::<usize>(), 1);
    assert_eq!(g.shares(0), vec![0..0, 0..0, 0..0]);
    assert_eq!(g.shares_in(130, 64), vec![0..64, 64..128, 128..130]);
    let e = ContextGroup::new(vec![]).err().unwrap().to_string();
    assert!(e.contains("at least one context"), "{e}");
    let e = ContextGroup::with_weights(vec![cpu()], vec![0.0])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("positive weights"), "{e}");
    let e = g
        .matmul(
            &cpu().zeros(&[2, 2]).unwrap(),
            &cpu().zeros(&[2, 2]).unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("[batch, m, k]"), "{e}");
    let e = g
        .matmul(
            &cpu().zeros(&[3, 2, 2]).unwrap(),
            &cpu().zeros(&[4, 2, 2]).unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("leading batch axis"), "{e}");
    let e = Context::with_options(ContextOptions {
        backend: Backend::Gpu,
        api: Some("glide".into()),
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("unknown graphics API"), "{e}");
}
