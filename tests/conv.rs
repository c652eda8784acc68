//! Convolutions on the GPU (every kernel variant) and the fast CPU backend against the f64
//! reference; held-out cases against an independent implementation of PyTorch's definitions.

mod common;

use gpu_linalg::conv::cpu::reference_for;
use gpu_linalg::{
    Activation, Context, ConvConfig, ConvKind, ConvOptions, Error, Location, Padding, Tensor,
};

#[derive(Clone, Debug)]
struct Case {
    kind: ConvKind,
    x: Vec<usize>,
    w: Vec<usize>,
    stride: [usize; 2],
    padding: Padding,
    dilation: [usize; 2],
    groups: usize,
    output_padding: [usize; 2],
    bias: bool,
    act: Activation,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.next(hi - lo + 1)
    }
}

/// Random valid configurations: kernel 1×1 to 7×7, stride 1–3, padding 0–3, dilation 1–3,
/// groups 1 / 2 / depthwise, batch 1–4, odd sizes, some 1×1 outputs.
fn cases(seed: u64, count: usize) -> Vec<Case> {
    let mut r = Rng(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let kind = match r.next(10) {
            0..=5 => ConvKind::Conv2d,
            6 | 7 => ConvKind::Conv1d,
            _ => ConvKind::ConvTranspose2d,
        };
        let two_d = kind != ConvKind::Conv1d;
        let k = [if two_d { r.range(1, 7) } else { 1 }, r.range(1, 7)];
        let stride = [if two_d { r.range(1, 3) } else { 1 }, r.range(1, 3)];
        let dilation = [if two_d { r.range(1, 3) } else { 1 }, r.range(1, 3)];
        let pad = [if two_d { r.range(0, 3) } else { 0 }, r.range(0, 3)];
        let (groups, cig, cog) = match r.next(3) {
            0 => (1, r.range(1, 5), r.range(1, 6)),
            1 => (2, r.range(1, 3), r.range(1, 3)),
            _ => {
                let c = r.range(2, 6);
                (c, 1, r.range(1, 2)) // depthwise (multiplier 1 or 2)
            }
        };
        let one_by_one = r.next(12) == 0;
        let mut size = [0usize; 2];
        for d in 0..2 {
            if d == 0 && !two_d {
                size[d] = 1;
                continue;
            }
            let span = dilation[d] * (k[d] - 1);
            size[d] = if kind == ConvKind::ConvTranspose2d {
                r.range(1, 9)
            } else {
                let min = (span + 1).saturating_sub(2 * pad[d]).max(1);
                if one_by_one {
                    min
                } else {
                    min + r.next(14)
                }
            };
        }
        let n = r.range(1, 4);
        let cin = groups * cig;
        let (x, w) = match kind {
            ConvKind::Conv1d => (vec![n, cin, size[1]], vec![groups * cog, cig, k[1]]),
            ConvKind::Conv2d => (
                vec![n, cin, size[0], size[1]],
                vec![groups * cog, cig, k[0], k[1]],
            ),
            ConvKind::ConvTranspose2d => {
                (vec![n, cin, size[0], size[1]], vec![cin, cog, k[0], k[1]])
            }
        };
        let mut padding = Padding::Explicit(pad);
        if kind != ConvKind::ConvTranspose2d && r.next(8) == 0 {
            padding = Padding::Valid;
        }
        let mut stride = stride;
        if kind != ConvKind::ConvTranspose2d && r.next(8) == 0 {
            padding = Padding::Same;
            stride = [1, 1];
        }
        let output_padding = if kind == ConvKind::ConvTranspose2d {
            let op = |d: usize, r: &mut Rng| r.next(stride[d].max(dilation[d]));
            [op(0, &mut r), op(1, &mut r)]
        } else {
            [0, 0]
        };
        // Unbatched input now and then.
        let x = if r.next(10) == 0 { x[1..].to_vec() } else { x };
        let c = Case {
            kind,
            x,
            w,
            stride,
            padding,
            dilation,
            groups,
            output_padding,
            bias: r.next(2) == 0,
            act: Activation::ALL[r.next(6)],
        };
        if gpu_linalg::ConvPlan::new(c.kind, &c.x, &c.w, &options(&c, None, None)).is_ok() {
            out.push(c);
        }
    }
    out
}

fn options<'a>(c: &Case, bias: Option<&'a Tensor>, kernel: Option<ConvConfig>) -> ConvOptions<'a> {
    ConvOptions {
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        groups: c.groups,
        output_padding: c.output_padding,
        bias,
        activation: c.act,
        kernel,
    }
}

fn cout(c: &Case) -> usize {
    match c.kind {
        ConvKind::ConvTranspose2d => c.w[1] * c.groups,
        _ => c.w[0],
    }
}

fn run_case(ctx: &Context, c: &Case, i: usize, kernel: Option<ConvConfig>) {
    let x = ctx
        .tensor(&c.x, &common::data_full(c.x.iter().product(), i as u64))
        .unwrap();
    let w = ctx
        .tensor(
            &c.w,
            &common::data_full(c.w.iter().product(), i as u64 + 99),
        )
        .unwrap();
    let b = c.bias.then(|| {
        ctx.tensor(&[cout(c)], &common::data_full(cout(c), 5))
            .unwrap()
    });
    let opts = options(c, b.as_ref(), kernel);
    let y = ctx
        .conv(c.kind, &x, &w, &opts)
        .unwrap_or_else(|e| panic!("case {i} {c:?} {kernel:?}: {e}"));
    if ctx.is_gpu() {
        assert_eq!(y.location(), Location::Gpu);
    }
    let r = reference_for(c.kind, &x, &w, &opts).unwrap();
    assert_eq!(y.shape(), r.shape.as_slice(), "case {i} {c:?}");
    r.check(&y.to_vec().unwrap())
        .unwrap_or_else(|e| panic!("case {i} {c:?} kernel {kernel:?}: {e}"));
}

#[test]
fn generated_configurations_cover_the_space() {
    let all = cases(1, 240);
    assert!(all.len() >= 200);
    let kinds = |k| all.iter().filter(|c| c.kind == k).count();
    assert!(
        kinds(ConvKind::Conv2d) > 100
            && kinds(ConvKind::Conv1d) > 20
            && kinds(ConvKind::ConvTranspose2d) > 20
    );
    assert!(all.iter().any(|c| c.groups > 2), "depthwise");
    assert!(all.iter().any(|c| c.w.last() == Some(&7)));
}

#[test]
fn cpu_backend_matches_reference() {
    let ctx = common::cpu();
    for (i, c) in cases(1, 240).iter().enumerate() {
        run_case(&ctx, c, i, None);
    }
}

#[test]
fn gpu_kernels_match_reference() {
    let Some(ctx) = common::gpu() else { return };
    eprintln!(
        "conv kernel chosen for this adapter: {}",
        ctx.conv_config().unwrap()
    );
    let variants = [
        None,
        Some(ConvConfig::Naive),
        Some(ConvConfig::gemm(4, 2, 64)),
        Some(ConvConfig::gemm(8, 2, 16)),
        Some(ConvConfig::gemm(4, 4, 64)),
        Some(ConvConfig::gemm(8, 1, 64)),
        Some(ConvConfig::gemm(1, 4, 32)),
    ];
    for (i, c) in cases(1, 240).iter().enumerate() {
        // Every case on the chosen kernel and on one forced variant in rotation.
        run_case(ctx, c, i, None);
        run_case(ctx, c, i, variants[1 + i % (variants.len() - 1)]);
    }
}

/// PyTorch's definitions, written independently of the library: materialise the zero-padded
/// input and cross-correlate; scatter for the transposed convolution.
fn independent(c: &Case, x: &[f32], w: &[f32], b: Option<&[f32]>) -> (Vec<usize>, Vec<f64>) {
    let two_d = c.kind != ConvKind::Conv1d;
    let batched = c.x.len() == if two_d { 4 } else { 3 };
    let xs: Vec<usize> = if batched {
        c.x.clone()
    } else {
        [vec![1], c.x.clone()].concat()
    };
    let (n, cin) = (xs[0], xs[1]);
    let (h, wd) = if two_d { (xs[2], xs[3]) } else { (1, xs[2]) };
    let (kh, kw) = if two_d { (c.w[2], c.w[3]) } else { (1, c.w[2]) };
    let g = c.groups;
    let s = if two_d { c.stride } else { [1, c.stride[1]] };
    let d = if two_d {
        c.dilation
    } else {
        [1, c.dilation[1]]
    };
    let (out_c, out_h, out_w, vals) = if c.kind == ConvKind::ConvTranspose2d {
        let p = match c.padding {
            Padding::Explicit(p) => p,
            _ => unreachable!(),
        };
        let cog = c.w[1];
        let cout = cog * g;
        let cig = cin / g;
        let full_h = (h - 1) * s[0] + d[0] * (kh - 1) + 1 + c.output_padding[0];
        let full_w = (wd - 1) * s[1] + d[1] * (kw - 1) + 1 + c.output_padding[1];
        let (oh, ow) = (full_h - 2 * p[0], full_w - 2 * p[1]);
        let mut full = vec![0.0f64; n * cout * full_h * full_w];
        for ni in 0..n {
            for ci in 0..cin {
                let gi = ci / cig;
                for ih in 0..h {
                    for iw in 0..wd {
                        let xv = f64::from(x[((ni * cin + ci) * h + ih) * wd + iw]);
                        for co in 0..cog {
                            for a in 0..kh {
                                for bb in 0..kw {
                                    let wv = f64::from(w[((ci * cog + co) * kh + a) * kw + bb]);
                                    let (yh, yw) = (ih * s[0] + a * d[0], iw * s[1] + bb * d[1]);
                                    full[((ni * cout + gi * cog + co) * full_h + yh) * full_w
                                        + yw] += xv * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut v = Vec::new();
        for ni in 0..n {
            for co in 0..cout {
                for yh in 0..oh {
                    for yw in 0..ow {
                        v.push(full[((ni * cout + co) * full_h + yh + p[0]) * full_w + yw + p[1]]);
                    }
                }
            }
        }
        (cout, oh, ow, v)
    } else {
        let (pt, pb, pl, pr) = match c.padding {
            Padding::Valid => (0, 0, 0, 0),
            Padding::Explicit(p) => {
                let ph = if two_d { p[0] } else { 0 };
                (ph, ph, p[1], p[1])
            }
            Padding::Same => {
                let th = d[0] * (kh - 1);
                let tw = d[1] * (kw - 1);
                (th / 2, th - th / 2, tw / 2, tw - tw / 2)
            }
        };
        let (ph_, pw_) = (h + pt + pb, wd + pl + pr);
        let cout = c.w[0];
        let (cig, cog) = (cin / g, cout / g);
        let oh = (ph_ - d[0] * (kh - 1) - 1) / s[0] + 1;
        let ow = (pw_ - d[1] * (kw - 1) - 1) / s[1] + 1;
        let mut padded = vec![0.0f64; n * cin * ph_ * pw_];
        for ni in 0..n {
            for ci in 0..cin {
                for ih in 0..h {
                    for iw in 0..wd {
                        padded[((ni * cin + ci) * ph_ + ih + pt) * pw_ + iw + pl] =
                            f64::from(x[((ni * cin + ci) * h + ih) * wd + iw]);
                    }
                }
            }
        }
        let mut v = Vec::new();
        for ni in 0..n {
            for co in 0..cout {
                let gi = co / cog;
                for yh in 0..oh {
                    for yw in 0..ow {
                        let mut acc = 0.0;
                        for ci in 0..cig {
                            for a in 0..kh {
                                for bb in 0..kw {
                                    let xv = padded[((ni * cin + gi * cig + ci) * ph_
                                        + yh * s[0]
                                        + a * d[0])
                                        * pw_
                                        + yw * s[1]
                                        + bb * d[1]];
                                    acc += xv * f64::from(w[((co * cig + ci) * kh + a) * kw + bb]);
                                }
                            }
                        }
                        v.push(acc);
                    }
                }
            }
        }
        (cout, oh, ow, v)
    };
    let m = out_h * out_w;
    let vals: Vec<f64> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let co = (i / m) % out_c;
            gpu_linalg::activation::activate_f64(c.act, v + b.map_or(0.0, |b| f64::from(b[co])))
        })
        .collect();
    let mut shape = vec![];
    if batched {
        shape.push(n);
    }
    shape.push(out_c);
    if two_d {
        shape.push(out_h);
    }
    shape.push(out_w);
    (shape, vals)
}

#[test]
fn held_out_cases_match_an_independent_implementation() {
    let mut ctxs = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        ctxs.push(g.clone());
    }
    for ctx in &ctxs {
        for (i, c) in cases(777, 40).iter().enumerate() {
            let xd = common::data(c.x.iter().product(), i as u64 + 3);
            let wd = common::data(c.w.iter().product(), i as u64 + 4);
            let bd = common::data(cout(c), 9);
            let x = ctx.tensor(&c.x, &xd).unwrap();
            let w = ctx.tensor(&c.w, &wd).unwrap();
            let b = c.bias.then(|| ctx.tensor(&[cout(c)], &bd).unwrap());
            let y = ctx
                .conv(c.kind, &x, &w, &options(c, b.as_ref(), None))
                .unwrap();
            let (shape, want) = independent(c, &xd, &wd, c.bias.then_some(bd.as_slice()));
            assert_eq!(y.shape(), shape.as_slice(), "case {i} {c:?}");
            // Inputs are multiples of 1/8 in [-2, 2): sums are exact in f32 before the activation.
            let r = reference_for(c.kind, &x, &w, &options(c, b.as_ref(), None)).unwrap();
            for (j, (got, want)) in y.to_vec().unwrap().iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*got) - want).abs() <= r.bound(j),
                    "case {i} {c:?} element {j}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn known_values() {
    let mut ctxs = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        ctxs.push(g.clone());
    }
    for ctx in &ctxs {
        let x = ctx.tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]).unwrap();
        let ones = ctx.tensor(&[1, 1, 2, 2], &[1.; 4]).unwrap();
        let up = ctx
            .conv_transpose2d(
                &x,
                &ones,
                &ConvOptions {
                    stride: [2, 2],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(up.shape(), &[1, 1, 4, 4]);
        assert_eq!(
            up.to_vec().unwrap(),
            vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
        );
        let t = ctx
            .conv_transpose2d(&x, &ones, &ConvOptions::default())
            .unwrap();
        assert_eq!(
            t.to_vec().unwrap(),
            vec![1., 3., 2., 4., 10., 6., 3., 7., 4.]
        );
        // conv1d with same padding (even kernel: the extra zero goes to the right).
        let s = ctx.tensor(&[1, 4], &[1., 2., 3., 4.]).unwrap();
        let k = ctx.tensor(&[1, 1, 2], &[1., 10.]).unwrap();
        let y = ctx
            .conv1d(
                &s,
                &k,
                &ConvOptions {
                    padding: Padding::Same,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(y.shape(), &[1, 4]);
        assert_eq!(y.to_vec().unwrap(), vec![21., 32., 43., 4.]);
    }
}

#[test]
fn invalid_configurations_are_errors() {
    let mut ctxs = vec![common::cpu()];
    if let Some(g) = common::gpu() {
        ctxs.push(g.clone());
    }
    for ctx in &ctxs {
        let x = ctx.tensor(&[1, 3, 5, 5], &[0.0; 75]).unwrap();
        let w = ctx.tensor(&[4, 3, 7, 7], &vec![0.0; 4 * 3 * 49]).unwrap();
        let e = ctx.conv2d(&x, &w, &ConvOptions::default()).unwrap_err();
        assert!(
            matches!(e, Error::Shape(_)) && e.to_string().contains("not positive"),
            "{e}"
        );
        let w2 = ctx.tensor(&[4, 1, 3, 3], &[0.0; 36]).unwrap();
        let e = ctx
            .conv2d(
                &x,
                &w2,
                &ConvOptions {
                    groups: 2,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("channels 3 not divisible by groups 2"),
            "{e}"
        );
        let w3 = ctx.tensor(&[4, 3, 3], &[0.0; 36]).unwrap();
        assert!(ctx
            .conv2d(&x, &w3, &ConvOptions::default())
            .unwrap_err()
            .to_string()
            .contains("weight"));
        let w4 = ctx.tensor(&[4, 2, 3, 3], &[0.0; 72]).unwrap();
        assert!(ctx.conv2d(&x, &w4, &ConvOptions::default()).is_err());
        let bias = ctx.tensor(&[3], &[0.0; 3]).unwrap();
        let w5 = ctx.tensor(&[4, 3, 3, 3], &[0.0; 108]).unwrap();
        let e = ctx
            .conv2d(
                &x,
                &w5,
                &ConvOptions {
                    bias: Some(&bias),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("bias"), "{e}");
        let wt = ctx.tensor(&[3, 2, 3, 3], &[0.0; 54]).unwrap();
        let e = ctx
            .conv_transpose2d(
                &x,
                &wt,
                &ConvOptions {
                    stride: [2, 2],
                    output_padding: [2, 0],
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("output padding"), "{e}");
        let idx = ctx.tensor_u32(&[1, 3, 5, 5], &[0; 75]).unwrap();
        assert!(ctx.conv2d(&idx, &w5, &ConvOptions::default()).is_err());
    }
}
