//! Layout ops (permute / transpose, slice, concat) on the GPU and the CPU against an
//! independent index-by-index reference: results must be exact.

mod common;

use gpu_linalg::{Context, Error, Location, Slice};

fn backends() -> Vec<(Context, bool)> {
    let mut v = vec![(common::cpu(), false)];
    if let Some(g) = common::gpu() {
        v.push((g.clone(), true));
    }
    v
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// Every multi-index of `shape`, row-major.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut i| {
            let mut c = vec![0; shape.len()];
            for k in (0..shape.len()).rev() {
                c[k] = i % shape[k];
                i /= shape[k];
            }
            c
        })
        .collect()
}

/// Python's range(len)[start:stop:step], written from the language reference.
fn py_slice(len: usize, s: Slice) -> Vec<usize> {
    let n = len as i64;
    let step = s.step as i64;
    let (lo, hi) = if step > 0 { (0, n) } else { (-1, n - 1) };
    let fix = |v: Option<isize>, default: i64| -> i64 {
        match v {
            None => default,
            Some(v) => {
                let v = v as i64;
                let v = if v < 0 { v + n } else { v };
                v.clamp(lo, hi)
            }
        }
    };
    let start = fix(s.start, if step > 0 { 0 } else { n - 1 });
    let stop = fix(s.stop, if step > 0 { n } else { -1 });
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i as usize);
        i += step;
    }
    out
}

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 + 0.5).collect()
}

fn permutations(n: usize) -> Vec<Vec<isize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, (n - 1) as isize);
            out.push(q);
        }
    }
    out
}

#[test]
fn permute_every_axis_order() {
    let shapes: Vec<Vec<usize>> = vec![
        vec![],
        vec![5],
        vec![0, 3],
        vec![3, 4],
        vec![1, 7],
        vec![2, 3, 5],
        vec![4, 1, 3],
        vec![2, 3, 4, 5],
        vec![3, 1, 5, 2],
        vec![33, 17, 5],
        vec![2, 0, 3, 1],
        vec![64, 65, 3, 7],
    ];
    for (ctx, gpu) in backends() {
        for shape in &shapes {
            let x = data(shape.iter().product());
            let t = ctx.tensor(shape, &x).unwrap();
            let xs = strides(shape);
            for perm in permutations(shape.len()) {
                let y = ctx.permute(&t, &perm).unwrap();
                if gpu {
                    assert_eq!(y.location(), Location::Gpu);
                }
                let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p as usize]).collect();
                assert_eq!(y.shape(), &out_shape[..]);
                let want: Vec<f32> = indices(&out_shape)
                    .iter()
                    .map(|c| {
                        x[c.iter()
                            .zip(&perm)
                            .map(|(&ci, &p)| ci * xs[p as usize])
                            .sum::<usize>()]
                    })
                    .collect();
                assert_eq!(y.to_vec().unwrap(), want, "{shape:?} {perm:?} gpu={gpu}");
            }
            // Negative axes and transpose.
            if shape.len() >= 2 {
                let neg: Vec<isize> = (0..shape.len() as isize)
                    .rev()
                    .map(|a| a - shape.len() as isize)
                    .collect();
                let a = ctx.permute(&t, &neg).unwrap().to_vec().unwrap();
                assert_eq!(a, ctx.transpose(&t).unwrap().to_vec().unwrap());
            }
        }
    }
}

#[test]
fn slices_follow_numpy() {
    let shapes: Vec<Vec<usize>> = vec![
        vec![0],
        vec![1],
        vec![10],
        vec![4, 7],
        vec![3, 5, 6],
        vec![2, 3, 4, 9],
        vec![129, 33],
    ];
    let mut r = 17u64;
    let mut next = |m: i64| -> i64 {
        r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((r >> 33) as i64) % m
    };
    for (ctx, gpu) in backends() {
        for shape in &shapes {
            let x = data(shape.iter().product());
            let t = ctx.tensor(shape, &x).unwrap();
            let xs = strides(shape);
            for _ in 0..40 {
                let specs: Vec<Slice> = shape
                    .iter()
                    .map(|&len| {
                        let l = len as i64 + 3;
                        let pick = |v: i64| {
                            if v % 5 == 0 {
                                None
                            } else {
                                Some((v - l) as isize)
                            }
                        };
                        let step = [1, 1, 2, 3, -1, -2, -3][next(7) as usize];
                        Slice::new(pick(next(2 * l)), pick(next(2 * l)), step)
                    })
                    .collect();
                let y = ctx.slice(&t, &specs).unwrap();
                if gpu {
                    assert_eq!(y.location(), Location::Gpu);
                }
                let idx: Vec<Vec<usize>> = shape
                    .iter()
                    .zip(&specs)
                    .map(|(&len, &s)| py_slice(len, s))
                    .collect();
                let out_shape: Vec<usize> = idx.iter().map(Vec::len).collect();
                assert_eq!(y.shape(), &out_shape[..], "{shape:?} {specs:?}");
                let want: Vec<f32> = indices(&out_shape)
                    .iter()
                    .map(|c| x[(0..c.len()).map(|k| idx[k][c[k]] * xs[k]).sum::<usize>()])
                    .collect();
                assert_eq!(y.to_vec().unwrap(), want, "{shape:?} {specs:?} gpu={gpu}");
            }
        }
        // Fewer specs than dims take whole trailing axes; reversed; zero step is an error.
        let t = ctx.tensor(&[3, 4], &data(12)).unwrap();
        let y = ctx.slice(&t, &[Slice::range(1, -1)]).unwrap();
        assert_eq!(y.shape(), &[1, 4]);
        assert_eq!(y.to_vec().unwrap(), vec![4.5, 5.5, 6.5, 7.5]);
        let y = ctx.slice(&t, &[Slice::all(), Slice::reversed()]).unwrap();
        assert_eq!(y.to_vec().unwrap()[..4], [3.5, 2.5, 1.5, 0.5]);
        let e = ctx.slice(&t, &[Slice::new(None, None, 0)]).unwrap_err();
        assert!(e.to_string().contains("axis 0"), "{e}");
        assert!(ctx.slice(&t, &[Slice::all(); 3]).is_err());
    }
}

#[test]
fn concat_along_each_axis() {
    for (ctx, gpu) in backends() {
        for base in [
            vec![3usize],
            vec![2, 3],
            vec![2, 3, 4],
            vec![2, 1, 3, 5],
            vec![0, 4],
        ] {
            for axis in 0..base.len() {
                let parts: Vec<Vec<usize>> = [2usize, 0, 1, 3]
                    .iter()
                    .map(|&k| {
                        let mut s = base.clone();
                        s[axis] = k;
                        s
                    })
                    .collect();
                let mut seed = 0.0;
                let vals: Vec<Vec<f32>> = parts
                    .iter()
                    .map(|s| {
                        seed += 1000.0;
                        data(s.iter().product()).iter().map(|v| v + seed).collect()
                    })
                    .collect();
                let ts: Vec<_> = parts
                    .iter()
                    .zip(&vals)
                    .map(|(s, v)| ctx.tensor(s, v).unwrap())
                    .collect();
                let refs: Vec<_> = ts.iter().collect();
                let neg = axis as isize - base.len() as isize;
                let y = ctx
                    .concat(&refs, if axis % 2 == 0 { axis as isize } else { neg })
                    .unwrap();
                if gpu {
                    assert_eq!(y.location(), Location::Gpu);
                }
                let mut out_shape = base.clone();
                out_shape[axis] = 6;
                assert_eq!(y.shape(), &out_shape[..]);
                let want: Vec<f32> = indices(&out_shape)
                    .iter()
                    .map(|c| {
                        let mut k = c[axis];
                        let mut j = 0;
                        while k >= parts[j][axis] {
                            k -= parts[j][axis];
                            j += 1;
                        }
                        let mut cc = c.clone();
                        cc[axis] = k;
                        let ps = strides(&parts[j]);
                        vals[j][cc.iter().zip(&ps).map(|(a, b)| a * b).sum::<usize>()]
                    })
                    .collect();
                assert_eq!(y.to_vec().unwrap(), want, "{base:?} axis {axis} gpu={gpu}");
            }
        }
        let a = ctx.zeros(&[2, 3]).unwrap();
        let b = ctx.zeros(&[2, 4]).unwrap();
        let e = ctx.concat(&[&a, &b], 0).unwrap_err();
        assert!(matches!(e, Error::Shape(_)), "{e}");
        assert!(
            e.to_string().contains("[2, 4]") && e.to_string().contains("[2, 3]"),
            "{e}"
        );
        assert!(ctx.concat(&[&a, &b], 1).is_ok());
        assert!(ctx.concat(&[&a, &b], 2).is_err());
        assert!(ctx.concat(&[], 0).is_err());
    }
}

#[test]
fn large_transpose_is_exact() {
    let shape = [1000, 1001];
    let x = common::data_full(1000 * 1001, 7);
    for (ctx, gpu) in backends() {
        let t = ctx.tensor(&shape, &x).unwrap();
        let y = ctx.transpose(&t).unwrap();
        if gpu {
            assert_eq!(y.location(), Location::Gpu);
        }
        let v = y.to_vec().unwrap();
        for i in (0..1000).step_by(37) {
            for j in (0..1001).step_by(13) {
                assert_eq!(v[j * 1000 + i], x[i * 1001 + j]);
            }
        }
        let back = ctx.transpose(&y).unwrap().to_vec().unwrap();
        assert_eq!(back, x);
    }
}
